// Package faxaddr parses and formats the fax mailbox addresses of Internet
// fax (T.37 store-and-forward, RFC 3965 §2.2): RFC 3192 "FAX=" local parts
// such as FAX=+15550133@offramp.example, with the optional T.33
// sub-address (FAX=+15550133/T33S=6377@offramp.example). Numbers are E.164
// in international form: '+', 1 to 15 digits; the visual separators '-'
// and '.' of RFC 3192 §3 (written-sep) are dropped.
package faxaddr

import (
	"errors"
	"fmt"
	"strings"
)

// Errors, wrapped with details by Parse and ParseMailbox.
var (
	// ErrNotFax is a local part that is not an RFC 3192 fax mailbox.
	ErrNotFax = errors.New("faxaddr: not a FAX= mailbox")
	// ErrBadNumber is a fax number that is not E.164 ('+', 1 to 15 digits).
	ErrBadNumber = errors.New("faxaddr: invalid fax number")
)

// MaxDigits is the longest E.164 number (ITU-T E.164 §6.1).
const MaxDigits = 15

// Address is one fax mailbox.
type Address struct {
	// Number is "+" and the digits.
	Number string
	// SubAddress is the T.33 sub-address (digits), "" when absent.
	SubAddress string
}

// String formats the local part (RFC 3192 §3).
func (a Address) String() string {
	if a.SubAddress != "" {
		return "FAX=" + a.Number + "/T33S=" + a.SubAddress
	}
	return "FAX=" + a.Number
}

// Mailbox returns the full address at domain.
func (a Address) Mailbox(domain string) string { return a.String() + "@" + domain }

// Parse reads an RFC 3192 local part ("FAX=+15550133", case-insensitive
// keyword, optional "/T33S=" sub-address). Other qualifiers are refused.
func Parse(local string) (Address, error) {
	if len(local) < 4 || !strings.EqualFold(local[:4], "FAX=") {
		return Address{}, fmt.Errorf("%w: %q", ErrNotFax, clip(local))
	}
	rest := local[4:]
	var sub string
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		q := rest[i+1:]
		rest = rest[:i]
		if len(q) < 5 || !strings.EqualFold(q[:5], "T33S=") {
			return Address{}, fmt.Errorf("%w: unknown qualifier in %q", ErrNotFax, clip(local))
		}
		sub = q[5:]
		if sub == "" || len(sub) > 20 || strings.Trim(sub, "0123456789") != "" {
			return Address{}, fmt.Errorf("%w: T.33 sub-address %q is not digits", ErrNotFax, clip(sub))
		}
	}
	n, err := Number(rest)
	if err != nil {
		return Address{}, err
	}
	return Address{Number: n, SubAddress: sub}, nil
}

// Number checks an E.164 number written "+" and digits, with '-' and '.'
// as visual separators, and returns it as "+" and the digits.
func Number(s string) (string, error) {
	if !strings.HasPrefix(s, "+") {
		return "", fmt.Errorf("%w: %q does not start with '+'", ErrBadNumber, clip(s))
	}
	var b strings.Builder
	b.WriteByte('+')
	digits := 0
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			digits++
			b.WriteByte(c)
		case c == '-' || c == '.':
		default:
			return "", fmt.Errorf("%w: %q has a character other than digits", ErrBadNumber, clip(s))
		}
	}
	if digits == 0 || digits > MaxDigits {
		return "", fmt.Errorf("%w: %q has %d digits (1 to %d)", ErrBadNumber, clip(s), digits, MaxDigits)
	}
	return b.String(), nil
}

// ParseMailbox splits local@domain at the last '@' and parses the local
// part; it returns the domain in lower case.
func ParseMailbox(addr string) (Address, string, error) {
	i := strings.LastIndexByte(addr, '@')
	if i <= 0 || i == len(addr)-1 {
		return Address{}, "", fmt.Errorf("%w: %q is not local@domain", ErrNotFax, clip(addr))
	}
	a, err := Parse(addr[:i])
	if err != nil {
		return Address{}, "", err
	}
	return a, strings.ToLower(addr[i+1:]), nil
}

// clip bounds what an error quotes.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
