package gsm

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Errors of the 7-bit codec.
var (
	// ErrNotEncodable: a character has no GSM 7-bit representation.
	ErrNotEncodable = errors.New("gsm: character not in GSM 7-bit alphabet")
	// ErrInvalidSeptet: an unpacked septet has its high bit set.
	ErrInvalidSeptet = errors.New("gsm: octet is not a septet")
	// ErrPacked: packed input too short for the requested septets, or a
	// fill bit count outside 0..6.
	ErrPacked = errors.New("gsm: bad packed 7-bit data")
)

// esc is the escape to the extension table (TS 23.038 §6.2.1, code 0x1B).
const esc = 0x1B

// basic is the GSM 7-bit default alphabet, TS 23.038 §6.2.1, indexed by
// septet. Entry 0x1B is the escape and never decoded through this table.
var basic = [128]rune{
	'@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å',
	'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\x1b', 'Æ', 'æ', 'ß', 'É',
	' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/',
	'0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?',
	'¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O',
	'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§',
	'¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o',
	'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à',
}

// extension decodes the septet after ESC (TS 23.038 §6.2.1.1). Codes the
// table leaves empty decode as the basic character (the §6.2.1.1 rule for
// receivers); ESC ESC, reserved for a further extension table, decodes as a
// space as the same clause requires.
func extension(c byte) rune {
	switch c {
	case 0x0A:
		return '\f' // page break
	case 0x14:
		return '^'
	case 0x28:
		return '{'
	case 0x29:
		return '}'
	case 0x2F:
		return '\\'
	case 0x3C:
		return '['
	case 0x3D:
		return '~'
	case 0x3E:
		return ']'
	case 0x40:
		return '|'
	case 0x65:
		return '€'
	case esc:
		return ' '
	}
	return basic[c&0x7F]
}

// lookup returns the septet for r and whether it needs the ESC prefix.
func lookup(r rune) (code byte, ext, ok bool) {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9',
		r >= ' ' && r <= '#', r >= '%' && r <= '?':
		return byte(r), false, true // identical to ASCII
	}
	switch r {
	case '@':
		return 0x00, false, true
	case '£':
		return 0x01, false, true
	case '$':
		return 0x02, false, true
	case '¥':
		return 0x03, false, true
	case 'è':
		return 0x04, false, true
	case 'é':
		return 0x05, false, true
	case 'ù':
		return 0x06, false, true
	case 'ì':
		return 0x07, false, true
	case 'ò':
		return 0x08, false, true
	case 'Ç':
		return 0x09, false, true
	case '\n':
		return 0x0A, false, true
	case 'Ø':
		return 0x0B, false, true
	case 'ø':
		return 0x0C, false, true
	case '\r':
		return 0x0D, false, true
	case 'Å':
		return 0x0E, false, true
	case 'å':
		return 0x0F, false, true
	case 'Δ':
		return 0x10, false, true
	case '_':
		return 0x11, false, true
	case 'Φ':
		return 0x12, false, true
	case 'Γ':
		return 0x13, false, true
	case 'Λ':
		return 0x14, false, true
	case 'Ω':
		return 0x15, false, true
	case 'Π':
		return 0x16, false, true
	case 'Ψ':
		return 0x17, false, true
	case 'Σ':
		return 0x18, false, true
	case 'Θ':
		return 0x19, false, true
	case 'Ξ':
		return 0x1A, false, true
	case 'Æ':
		return 0x1C, false, true
	case 'æ':
		return 0x1D, false, true
	case 'ß':
		return 0x1E, false, true
	case 'É':
		return 0x1F, false, true
	case '¤':
		return 0x24, false, true
	case '¡':
		return 0x40, false, true
	case 'Ä':
		return 0x5B, false, true
	case 'Ö':
		return 0x5C, false, true
	case 'Ñ':
		return 0x5D, false, true
	case 'Ü':
		return 0x5E, false, true
	case '§':
		return 0x5F, false, true
	case '¿':
		return 0x60, false, true
	case 'ä':
		return 0x7B, false, true
	case 'ö':
		return 0x7C, false, true
	case 'ñ':
		return 0x7D, false, true
	case 'ü':
		return 0x7E, false, true
	case 'à':
		return 0x7F, false, true
	// Extension table, TS 23.038 §6.2.1.1.
	case '\f':
		return 0x0A, true, true
	case '^':
		return 0x14, true, true
	case '{':
		return 0x28, true, true
	case '}':
		return 0x29, true, true
	case '\\':
		return 0x2F, true, true
	case '[':
		return 0x3C, true, true
	case '~':
		return 0x3D, true, true
	case ']':
		return 0x3E, true, true
	case '|':
		return 0x40, true, true
	case '€':
		return 0x65, true, true
	}
	return 0, false, false
}

// Encodable reports whether every character of s is in the GSM 7-bit
// default alphabet or its extension table. Invalid UTF-8 is not encodable.
func Encodable(s string) bool {
	_, ok := SeptetLen(s)
	return ok
}

// SeptetLen returns the number of septets s encodes to (extension
// characters count two) and whether s is encodable at all.
func SeptetLen(s string) (int, bool) {
	n := 0
	for i := 0; i < len(s); {
		r, size := rune(s[i]), 1
		if r >= utf8.RuneSelf {
			r, size = utf8.DecodeRuneInString(s[i:]) // invalid UTF-8: U+FFFD, not in the table
		}
		_, ext, ok := lookup(r)
		if !ok {
			return 0, false
		}
		n++
		if ext {
			n++
		}
		i += size
	}
	return n, true
}

// EncodeSeptets encodes s as unpacked septets, one per octet.
func EncodeSeptets(s string) ([]byte, error) {
	return AppendSeptets(make([]byte, 0, len(s)), s)
}

// AppendSeptets appends the unpacked septets of s to dst. On error dst is
// returned unchanged in length.
func AppendSeptets(dst []byte, s string) ([]byte, error) {
	start := len(dst)
	for i := 0; i < len(s); {
		r, size := rune(s[i]), 1
		if r >= utf8.RuneSelf {
			r, size = utf8.DecodeRuneInString(s[i:])
		}
		code, ext, ok := lookup(r)
		if !ok {
			return dst[:start], fmt.Errorf("%w: %q at byte %d", ErrNotEncodable, s[i:i+size], i)
		}
		if ext {
			dst = append(dst, esc)
		}
		dst = append(dst, code)
		i += size
	}
	return dst, nil
}

// DecodeSeptets decodes unpacked septets. ESC followed by a code missing
// from the extension table decodes as the basic character; a trailing ESC
// with nothing after it decodes as a space (TS 23.038 §6.2.1.1). Octets
// above 0x7F are an error.
func DecodeSeptets(b []byte) (string, error) {
	var sb strings.Builder
	sb.Grow(len(b))
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c > 0x7F {
			return "", fmt.Errorf("%w: 0x%02X at offset %d", ErrInvalidSeptet, c, i)
		}
		if c != esc {
			sb.WriteRune(basic[c])
			continue
		}
		if i+1 == len(b) {
			sb.WriteByte(' ')
			continue
		}
		i++
		if b[i] > 0x7F {
			return "", fmt.Errorf("%w: 0x%02X at offset %d", ErrInvalidSeptet, b[i], i)
		}
		sb.WriteRune(extension(b[i]))
	}
	return sb.String(), nil
}

// FillBits returns the number of fill bits between a UDH of udhLen octets
// (including the UDHL octet) and the first septet, so that septets start on
// a septet boundary of the user data (TS 23.040 §9.2.3.24).
func FillBits(udhLen int) int {
	return (7 - (udhLen*8)%7) % 7
}

// Pack packs septets LSB first into octets (TS 23.038 §6.1.2.1.1), after
// fill zero bits (0..6, see FillBits). When the last octet has 7 spare bits
// they are set to CR as §6.1.2.3.1 requires, so that a receiver counting
// septets from the octet length does not see a spurious '@'.
func Pack(septets []byte, fill int) []byte {
	fill = max(0, min(fill, 6))
	bits := fill + 7*len(septets)
	out := make([]byte, (bits+7)/8)
	bit := fill
	for _, s := range septets {
		s &= 0x7F
		i, off := bit/8, uint(bit%8)
		out[i] |= s << off
		if off > 1 {
			out[i+1] |= s >> (8 - off)
		}
		bit += 7
	}
	if 8*len(out)-bits == 7 {
		out[len(out)-1] |= 0x0D << 1
	}
	return out
}

// Unpack extracts n septets from packed octets that start with fill bits.
// n < 0 takes as many septets as fit, which may include a CR pad septet
// (§6.1.2.3.1); prefer the septet count from the user data length.
func Unpack(packed []byte, fill, n int) ([]byte, error) {
	if fill < 0 || fill > 6 {
		return nil, fmt.Errorf("%w: %d fill bits", ErrPacked, fill)
	}
	avail := (8*len(packed) - fill) / 7
	if 8*len(packed) < fill {
		avail = 0
	}
	if n < 0 {
		n = avail
	}
	if n > avail {
		return nil, fmt.Errorf("%w: %d septets requested, %d octets hold %d", ErrPacked, n, len(packed), avail)
	}
	out := make([]byte, n)
	bit := fill
	for k := range out {
		i, off := bit/8, uint(bit%8)
		v := packed[i] >> off
		if off > 1 {
			v |= packed[i+1] << (8 - off)
		}
		out[k] = v & 0x7F
		bit += 7
	}
	return out, nil
}
