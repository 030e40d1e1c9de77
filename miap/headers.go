package miap

import (
	"crypto/hmac"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"

	"github.com/uims/uims/schemas"
)

// Header names (§4.2). Frames travel as NATS headers next to the body; the
// header map is a plain map so that this package needs no NATS import
// (nats.Header has the same type).
const (
	HdrVersion  = "Miap-Version"
	HdrPurpose  = "Miap-Purpose"
	HdrParty    = "Miap-Party"
	HdrKid      = "Miap-Kid"
	HdrTS       = "Miap-Ts"
	HdrNonce    = "Miap-Nonce"
	HdrSession  = "Miap-Session"
	HdrID       = "Miap-Id"
	HdrPeer     = "Miap-Peer"
	HdrCType    = "Miap-Ctype"
	HdrCLen     = "Miap-Clen"
	HdrCSHA     = "Miap-Csha"
	HdrExpiry   = "Miap-Expiry"
	HdrMAC      = "Miap-Mac"
	HdrMode     = "Miap-Mode"       // "fast" or "strict" (informative, §6)
	HdrIMILen   = "Miap-Imi-Len"    // instant message: length of the routed IMI prefix (§6.6)
	HdrGwSess   = "Miap-Gw-Session" // instant message: the destination's session token (strict, §6.5)
	HdrReceipt  = "Miap-Receipt"    // compact receipt frame for the originator (§6.8)
	HdrError    = "Miap-Error"      // error reply: the code name (§9)
	HdrServerTS = "Miap-Server-Time"
)

// b64 is base64url without padding (RFC 4648 §5). Strict: a value whose
// unused trailing bits are not zero is refused, so that every value has
// one encoding (§4.2).
var b64 = base64.RawURLEncoding.Strict()

// PutHeader writes f's fields into h (§4.2). Empty fields are left out.
func (f *Frame) PutHeader(h map[string][]string) {
	set := func(k, v string) { h[k] = []string{v} }
	set(HdrVersion, "1")
	set(HdrPurpose, f.Purpose.String())
	set(HdrParty, f.Party)
	set(HdrKid, f.Kid)
	set(HdrTS, strconv.FormatInt(f.TS, 10))
	if f.Nonce != ([NonceSize]byte{}) {
		set(HdrNonce, b64.EncodeToString(f.Nonce[:]))
	}
	if len(f.Session) > 0 {
		set(HdrSession, b64.EncodeToString(f.Session))
	}
	if len(f.ID) > 0 {
		set(HdrID, b64.EncodeToString(f.ID))
	}
	if f.Peer != "" {
		set(HdrPeer, f.Peer)
	}
	if f.CType != "" || f.CLen != 0 || len(f.CSHA) > 0 {
		set(HdrCType, f.CType)
		set(HdrCLen, strconv.FormatInt(f.CLen, 10))
		set(HdrCSHA, hex.EncodeToString(f.CSHA))
	}
	if f.Expiry != 0 {
		set(HdrExpiry, strconv.FormatInt(f.Expiry, 10))
	}
	set(HdrMAC, b64.EncodeToString(f.MAC))
}

func get(h map[string][]string, k string) string {
	if v := h[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Limits on header values (§4.2).
const (
	maxName    = 64
	maxCType   = schemas.MaxContentType
	maxSession = 128
)

// ParseHeader reads a frame from headers h and body (§4.2). It checks the
// syntax only; Verify checks the frame. Header names are matched exactly;
// a header that is absent or has an empty value is the empty field (an
// absent nonce: 16 zero bytes); of a repeated header the first value counts.
func ParseHeader(h map[string][]string, body []byte) (*Frame, error) {
	if v := get(h, HdrVersion); v != "1" {
		if v == "" {
			return nil, fmt.Errorf("%w: no %s header", ErrMalformed, HdrVersion)
		}
		return nil, fmt.Errorf("%w: version %q", ErrBadVersion, v)
	}
	p, ok := ParsePurpose(get(h, HdrPurpose))
	if !ok {
		return nil, fmt.Errorf("%w: purpose %q", ErrMalformed, get(h, HdrPurpose))
	}
	f := &Frame{Purpose: p, Party: get(h, HdrParty), Kid: get(h, HdrKid), Peer: get(h, HdrPeer), CType: get(h, HdrCType), Body: body}
	if len(f.Party) > maxName || len(f.Kid) > maxName || len(f.Peer) > maxName || len(f.CType) > maxCType {
		return nil, fmt.Errorf("%w: header value too long", ErrMalformed)
	}
	var err error
	if f.TS, err = parseInt(h, HdrTS, true); err != nil {
		return nil, err
	}
	if f.CLen, err = parseInt(h, HdrCLen, false); err != nil {
		return nil, err
	}
	if f.Expiry, err = parseInt(h, HdrExpiry, false); err != nil {
		return nil, err
	}
	if v := get(h, HdrNonce); v != "" {
		if b64.DecodedLen(len(v)) != NonceSize {
			return nil, fmt.Errorf("%w: nonce length", ErrMalformed)
		}
		if _, err := b64.Decode(f.Nonce[:], []byte(v)); err != nil {
			return nil, fmt.Errorf("%w: nonce: %w", ErrMalformed, err)
		}
	}
	if f.Session, err = parseB64(h, HdrSession, maxSession); err != nil {
		return nil, err
	}
	if f.ID, err = parseB64(h, HdrID, MACSize); err != nil {
		return nil, err
	}
	if f.ID != nil && len(f.ID) != MACSize {
		return nil, fmt.Errorf("%w: %s of %d bytes", ErrMalformed, HdrID, len(f.ID))
	}
	if f.MAC, err = parseB64(h, HdrMAC, MACSize); err != nil {
		return nil, err
	}
	if len(f.MAC) != MACSize {
		return nil, fmt.Errorf("%w: MAC length %d", ErrMalformed, len(f.MAC))
	}
	if v := get(h, HdrCSHA); v != "" {
		if len(v) != 2*MACSize || !lowerHex(v) {
			return nil, fmt.Errorf("%w: content digest is not 64 lowercase hex digits", ErrMalformed)
		}
		f.CSHA, _ = hex.DecodeString(v)
	}
	return f, nil
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func parseInt(h map[string][]string, k string, required bool) (int64, error) {
	v := get(h, k)
	if v == "" {
		if required {
			return 0, fmt.Errorf("%w: no %s header", ErrMalformed, k)
		}
		return 0, nil
	}
	n, ok := parseDecimal(v)
	if !ok {
		return 0, fmt.Errorf("%w: %s %q", ErrMalformed, k, v)
	}
	return n, nil
}

// parseDecimal reads a canonical decimal integer (§4.2): ASCII digits, no
// sign, no leading zero, at most 19 digits.
func parseDecimal(v string) (int64, bool) {
	if v == "" || len(v) > 19 || (len(v) > 1 && v[0] == '0') {
		return 0, false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil
}

func parseB64(h map[string][]string, k string, maxLen int) ([]byte, error) {
	v := get(h, k)
	if v == "" {
		return nil, nil
	}
	if b64.DecodedLen(len(v)) > maxLen {
		return nil, fmt.Errorf("%w: %s too long", ErrMalformed, k)
	}
	b, err := b64.DecodeString(v)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrMalformed, k, err)
	}
	return b, nil
}

// EncodeB64 and DecodeB64 are the base64 form of MIAP binary values in
// headers and documents: URL alphabet, no padding (§4.2).
func EncodeB64(b []byte) string { return b64.EncodeToString(b) }

// DecodeB64 decodes a value written by EncodeB64.
func DecodeB64(s string) ([]byte, error) { return b64.DecodeString(s) }

// EqualID compares two IDs in constant time (§6.8).
func EqualID(a, b []byte) bool { return len(a) == MACSize && hmac.Equal(a, b) }

// AppendCompact appends the compact form of f (§5.5): the MAC input followed
// by the MAC as field 13. It is used where a frame travels inside another
// message (the receipt in an instant message acknowledgement).
func AppendCompact(dst []byte, f *Frame) []byte {
	dst = AppendMACInput(dst, f)
	return appendField(dst, tagMAC, f.MAC)
}

// ParseCompact reads a frame in compact form. It rejects unknown versions,
// a direction that does not match the purpose, missing, repeated or
// out-of-order fields, wrong integer sizes and trailing bytes.
func ParseCompact(b []byte) (*Frame, error) {
	if len(b) < 7 || string(b[:4]) != magic {
		return nil, fmt.Errorf("%w: no MIAP magic", ErrMalformed)
	}
	if b[4] != Version {
		return nil, fmt.Errorf("%w: version %d", ErrBadVersion, b[4])
	}
	f := &Frame{Purpose: Purpose(b[5])}
	if !f.Purpose.Valid() || Direction(b[6]) != f.Purpose.Direction() {
		return nil, fmt.Errorf("%w: purpose %d direction %d", ErrMalformed, b[5], b[6])
	}
	b = b[7:]
	for tag := byte(tagParty); tag <= tagMAC; tag++ {
		if len(b) < 5 {
			return nil, fmt.Errorf("%w: truncated before field %d", ErrMalformed, tag)
		}
		if b[0] != tag {
			return nil, fmt.Errorf("%w: field %d where %d expected", ErrMalformed, b[0], tag)
		}
		n := binary.BigEndian.Uint32(b[1:5])
		b = b[5:]
		if uint64(n) > uint64(len(b)) {
			return nil, fmt.Errorf("%w: field %d length %d beyond frame", ErrMalformed, tag, n)
		}
		v := b[:n:n]
		b = b[n:]
		switch tag {
		case tagTS, tagCLen, tagExpiry:
			if n != 8 {
				return nil, fmt.Errorf("%w: integer field %d of %d bytes", ErrMalformed, tag, n)
			}
			x := int64(binary.BigEndian.Uint64(v))
			switch tag {
			case tagTS:
				f.TS = x
			case tagCLen:
				f.CLen = x
			default:
				f.Expiry = x
			}
		case tagNonce:
			if n != NonceSize {
				return nil, fmt.Errorf("%w: nonce of %d bytes", ErrMalformed, n)
			}
			copy(f.Nonce[:], v)
		case tagParty, tagKid, tagPeer:
			if n > maxName {
				return nil, fmt.Errorf("%w: field %d too long", ErrMalformed, tag)
			}
			switch tag {
			case tagParty:
				f.Party = string(v)
			case tagKid:
				f.Kid = string(v)
			default:
				f.Peer = string(v)
			}
		case tagCType:
			if n > maxCType {
				return nil, fmt.Errorf("%w: content type too long", ErrMalformed)
			}
			f.CType = string(v)
		case tagSession:
			f.Session = nilIfEmpty(v)
		case tagID:
			f.ID = nilIfEmpty(v)
		case tagCSHA:
			f.CSHA = nilIfEmpty(v)
		case tagBody:
			f.Body = nilIfEmpty(v)
		case tagMAC:
			if n != MACSize {
				return nil, fmt.Errorf("%w: MAC of %d bytes", ErrMalformed, n)
			}
			f.MAC = v
		}
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(b))
	}
	return f, nil
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}
