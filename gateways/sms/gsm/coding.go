package gsm

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Errors of the UCS-2, Latin-1 and coding helpers.
var (
	// ErrOddLength: UCS-2 data with an odd number of octets.
	ErrOddLength = errors.New("gsm: UCS-2 data has odd length")
	// ErrNotLatin1: a character above U+00FF cannot be encoded as Latin-1.
	ErrNotLatin1 = errors.New("gsm: character not in Latin-1")
	// ErrNotASCII: IA5 data with an octet above 0x7F.
	ErrNotASCII = errors.New("gsm: octet not in IA5/ASCII")
	// ErrUnsupportedCoding: a data_coding this package does not decode
	// (binary, reserved, national tables).
	ErrUnsupportedCoding = errors.New("gsm: unsupported data_coding")
)

// Coding is an SMPP 3.4 data_coding value (§5.2.19) as far as this package
// interprets it.
type Coding uint8

// Codings, SMPP 3.4 §5.2.19.
const (
	CodingGSM7   Coding = 0x00 // SMSC default alphabet: GSM 7-bit, unpacked septets
	CodingASCII  Coding = 0x01 // IA5 (CCITT T.50) / ASCII
	CodingOctet  Coding = 0x02 // octet unspecified (8-bit binary)
	CodingLatin1 Coding = 0x03 // ISO-8859-1
	CodingBinary Coding = 0x04 // octet unspecified (8-bit binary)
	CodingUCS2   Coding = 0x08 // UCS-2 (written and read as UTF-16BE)
)

func (c Coding) String() string {
	switch c {
	case CodingGSM7:
		return "GSM7"
	case CodingASCII:
		return "ASCII"
	case CodingOctet, CodingBinary:
		return fmt.Sprintf("binary(0x%02X)", uint8(c))
	case CodingLatin1:
		return "Latin1"
	case CodingUCS2:
		return "UCS2"
	}
	return fmt.Sprintf("data_coding(0x%02X)", uint8(c))
}

// Choose picks the coding for text: GSM 7-bit when every character is in
// the default alphabet or its extension table, UCS-2 otherwise. units is
// the length in septets or in UTF-16 code units respectively.
func Choose(text string) (c Coding, units int) {
	if n, ok := SeptetLen(text); ok {
		return CodingGSM7, n
	}
	return CodingUCS2, UCS2Len(text)
}

// Encode encodes text in coding c (GSM7, ASCII, Latin1 or UCS2).
func Encode(c Coding, text string) ([]byte, error) {
	switch c {
	case CodingGSM7:
		return EncodeSeptets(text)
	case CodingUCS2:
		return EncodeUCS2(text), nil
	case CodingLatin1:
		return EncodeLatin1(text)
	case CodingASCII:
		for i := 0; i < len(text); i++ {
			if text[i] >= utf8.RuneSelf {
				return nil, fmt.Errorf("%w: byte 0x%02X at %d", ErrNotEncodable, text[i], i)
			}
		}
		return []byte(text), nil
	}
	return nil, fmt.Errorf("%w: %s", ErrUnsupportedCoding, c)
}

// Decode decodes b in coding c (GSM7, ASCII, Latin1 or UCS2).
func Decode(c Coding, b []byte) (string, error) {
	switch c {
	case CodingGSM7:
		return DecodeSeptets(b)
	case CodingUCS2:
		return DecodeUCS2(b)
	case CodingLatin1:
		return DecodeLatin1(b), nil
	case CodingASCII:
		for i, x := range b {
			if x >= utf8.RuneSelf {
				return "", fmt.Errorf("%w: 0x%02X at offset %d", ErrNotASCII, x, i)
			}
		}
		return string(b), nil
	}
	return "", fmt.Errorf("%w: %s", ErrUnsupportedCoding, c)
}

// UCS2Len returns the number of UTF-16 code units of s: two for characters
// beyond the BMP, one otherwise (invalid UTF-8 becomes U+FFFD, one unit).
func UCS2Len(s string) int {
	n := 0
	for _, r := range s {
		n++
		if r > 0xFFFF {
			n++
		}
	}
	return n
}

// EncodeUCS2 encodes s as UTF-16BE, characters beyond the BMP as surrogate
// pairs. Invalid UTF-8 is encoded as U+FFFD.
func EncodeUCS2(s string) []byte {
	return AppendUCS2(make([]byte, 0, 2*len(s)), s)
}

// AppendUCS2 appends the UTF-16BE encoding of s to dst.
func AppendUCS2(dst []byte, s string) []byte {
	for _, r := range s {
		if r > 0xFFFF {
			hi, lo := utf16.EncodeRune(r)
			dst = append(dst, byte(hi>>8), byte(hi), byte(lo>>8), byte(lo))
			continue
		}
		dst = append(dst, byte(r>>8), byte(r))
	}
	return dst
}

// DecodeUCS2 decodes UTF-16BE. Unpaired surrogates decode as U+FFFD. An odd
// final octet is an error (the rest is still returned decoded).
func DecodeUCS2(b []byte) (string, error) {
	var sb strings.Builder
	sb.Grow(len(b) + len(b)/2)
	n := len(b) &^ 1
	for i := 0; i < n; i += 2 {
		u := rune(b[i])<<8 | rune(b[i+1])
		if utf16.IsSurrogate(u) {
			if u < 0xDC00 && i+3 < n {
				lo := rune(b[i+2])<<8 | rune(b[i+3])
				if r := utf16.DecodeRune(u, lo); r != utf8.RuneError {
					sb.WriteRune(r)
					i += 2
					continue
				}
			}
			u = utf8.RuneError
		}
		sb.WriteRune(u)
	}
	if n != len(b) {
		return sb.String(), fmt.Errorf("%w: %d octets", ErrOddLength, len(b))
	}
	return sb.String(), nil
}

// DecodeLatin1 decodes ISO-8859-1 (data_coding 3): every octet is the code
// point of the same value.
func DecodeLatin1(b []byte) string {
	var sb strings.Builder
	sb.Grow(len(b) + len(b)/2)
	for _, x := range b {
		sb.WriteRune(rune(x))
	}
	return sb.String()
}

// EncodeLatin1 encodes s as ISO-8859-1.
func EncodeLatin1(s string) ([]byte, error) {
	out := make([]byte, 0, len(s))
	for i, r := range s {
		if r > 0xFF { // includes U+FFFD from invalid UTF-8
			return nil, fmt.Errorf("%w: %q at byte %d", ErrNotLatin1, r, i)
		}
		out = append(out, byte(r))
	}
	return out, nil
}
