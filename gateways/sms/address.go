package sms

import "strings"

// Type of number and numbering plan values, SMPP 3.4 §5.2.5 and §5.2.6.
const (
	tonUnknown       = 0
	tonInternational = 1
	tonNational      = 2
	tonAlphanumeric  = 5
	npiUnknown       = 0
	npiISDN          = 1 // E.163/E.164
)

// address is an SMPP address with its type of number and numbering plan.
type address struct {
	TON  uint8  `json:"ton"`
	NPI  uint8  `json:"npi"`
	Addr string `json:"addr"`
}

// phoneDigits returns the digits of a phone number written with or without
// '+' or the international prefix 00, with spaces, dashes, dots and
// brackets allowed between digits. ok is false for anything else.
func phoneDigits(s string) (string, bool) {
	s = strings.TrimSpace(s)
	switch {
	case strings.HasPrefix(s, "+"):
		s = s[1:]
	case strings.HasPrefix(s, "00"):
		s = s[2:]
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == ' ' || r == '-' || r == '.' || r == '(' || r == ')':
		default:
			return "", false
		}
	}
	if b.Len() < 3 {
		return "", false
	}
	return b.String(), true
}

// international returns a as the fabric writes addresses: "+digits" for
// a phone number (international, unknown or national type of number; the
// gateway knows no national prefix, so national numbers are taken as
// written), the text as written for an alphanumeric address.
func (a address) international() string {
	s := strings.TrimSpace(a.Addr)
	if a.TON == tonAlphanumeric {
		return s
	}
	n := s
	if a.TON == tonInternational {
		n = "+" + strings.TrimPrefix(s, "+") // the digits are the international number
	}
	if d, ok := phoneDigits(n); ok {
		return "+" + d
	}
	return s
}

// smppAddress returns the SMPP form of an address written the fabric's
// way: an international number without '+' (TON 1, NPI 1), or an
// alphanumeric address (TON 5) cut to max octets.
func smppAddress(s string, max int) address {
	if d, ok := phoneDigits(s); ok && len(d) <= max {
		return address{TON: tonInternational, NPI: npiISDN, Addr: d}
	}
	var b strings.Builder
	for _, r := range s {
		if r < 0x20 || r > 0x7E { // C-Octet Strings of printable ASCII only
			continue
		}
		if b.Len() >= max {
			break
		}
		b.WriteRune(r)
	}
	return address{TON: tonAlphanumeric, NPI: npiUnknown, Addr: b.String()}
}
