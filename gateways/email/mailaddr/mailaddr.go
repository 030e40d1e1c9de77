// Package mailaddr parses and validates SMTP envelope addresses for the UIMS
// e-mail gateway and classifies them as local or foreign.
//
// The input is an RFC 5321 forward-path (the argument of RCPT TO, with or
// without the surrounding angle brackets). The package is deliberately
// stricter than RFC 5321: every syntax that has historically been used to
// turn a mail server into an open relay is refused, whatever the domain:
//
//   - the percent hack ("a%b@us"), which asks the server to forward to b;
//   - quoted local parts hiding routing characters ("\"a@x\"@us");
//   - source routes ("@us:a@x", RFC 5321 section C / 4.1.2);
//   - UUCP bang paths ("x!a@us", "x!a");
//   - several "@" ("a@x@us");
//   - addresses with no domain, address literals ("a@[192.0.2.1]") and bare
//     IP addresses used as a domain;
//   - trailing dots, empty labels, control characters and over-long paths.
//
// Every error returned by Classify and Parse matches ErrRelayAttempt with
// errors.Is; errors caused by plain syntax problems also match
// ErrInvalidAddress. The only address accepted without a domain is the
// special "Postmaster" recipient that RFC 5321 section 4.5.1 requires every
// server to accept; it is always local.
//
// The domain is normalised to lower case; the local part keeps its case
// (RFC 5321 section 2.4 makes it case-sensitive), but unnecessary quotes are
// removed ("\"john\"@x" becomes "john@x"). Use Address.Key or EqualFold for
// case-insensitive mailbox lookups. Internationalised domains must be given
// as A-labels ("xn--..."); UTF-8 local parts (RFC 6531) are accepted.
package mailaddr

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Errors returned by this package. Use errors.Is to test for them.
var (
	// ErrRelayAttempt matches every address refused by Classify or Parse.
	ErrRelayAttempt = errors.New("mailaddr: relay attempt refused")
	// ErrInvalidAddress additionally matches refusals caused by plain
	// syntax errors (no domain, bad characters, too long, ...).
	ErrInvalidAddress = errors.New("mailaddr: invalid address")
)

// Length limits (octets).
const (
	// MaxAddressLength is the longest accepted mailbox (local@domain),
	// derived from the 256-octet RFC 5321 path limit minus the brackets.
	MaxAddressLength = 254
	// MaxLocalPartLength is the RFC 5321 section 4.5.3.1.1 limit.
	MaxLocalPartLength = 64
	// MaxDomainLength is the longest domain name in text form.
	MaxDomainLength = 253
	// MaxLabelLength is the RFC 1035 label limit.
	MaxLabelLength = 63
)

// Address is a validated envelope address.
type Address struct {
	// Local is the local part with its case preserved. It is quoted only
	// when RFC 5321 requires it.
	Local string
	// Domain is the lower-case domain without a trailing dot. It is empty
	// only for the special Postmaster address.
	Domain string
	// IsLocal reports whether Domain is one of the local domains passed to
	// Classify (always true for the bare Postmaster address).
	IsLocal bool
}

// String returns the mailbox as "local@domain" (or just the local part for
// the bare Postmaster address).
func (a Address) String() string {
	if a.Domain == "" {
		return a.Local
	}
	return a.Local + "@" + a.Domain
}

// Key returns a case-insensitive lookup key for the mailbox: the lower-cased
// local part and the domain. Two addresses that differ only in the case of
// their local part have the same key.
func (a Address) Key() string {
	return strings.ToLower(a.String())
}

// IsPostmaster reports whether the address is the Postmaster mailbox
// (case-insensitive), with or without a domain.
func (a Address) IsPostmaster() bool {
	return strings.EqualFold(a.Local, "postmaster")
}

// EqualFold reports whether a and b name the same mailbox when the local part
// is compared case-insensitively.
func EqualFold(a, b Address) bool {
	return a.Domain == b.Domain && strings.EqualFold(a.Local, b.Local)
}

// Classify parses addr as an RFC 5321 forward-path and reports whether its
// domain is one of localDomains (compared case-insensitively, a trailing dot
// in a local domain is ignored; there is no wildcard matching).
//
// Every open-relay trick listed in the package documentation is refused with
// an error matching ErrRelayAttempt.
func Classify(addr string, localDomains []string) (Address, error) {
	a, err := Parse(addr)
	if err != nil {
		return Address{}, err
	}
	if a.Domain == "" { // bare Postmaster
		a.IsLocal = true
		return a, nil
	}
	a.IsLocal = IsLocalDomain(a.Domain, localDomains)
	return a, nil
}

// IsLocalDomain reports whether domain (already normalised, as in
// Address.Domain) is in localDomains.
func IsLocalDomain(domain string, localDomains []string) bool {
	for _, d := range localDomains {
		d = strings.TrimSuffix(d, ".")
		if d != "" && strings.EqualFold(d, domain) {
			return true
		}
	}
	return false
}

// Parse validates addr like Classify without classifying it (IsLocal is
// false except for the bare Postmaster address).
func Parse(addr string) (Address, error) {
	if len(addr) > MaxAddressLength+2 {
		return Address{}, invalid("address longer than %d octets", MaxAddressLength)
	}
	for i := 0; i < len(addr); i++ {
		if c := addr[i]; c < 0x20 || c == 0x7f {
			return Address{}, invalid("control character 0x%02x in %q", c, addr)
		}
	}
	if !utf8.ValidString(addr) {
		return Address{}, invalid("invalid UTF-8 in %q", addr)
	}
	s := addr
	if strings.HasPrefix(s, "<") {
		if !strings.HasSuffix(s, ">") || len(s) < 2 {
			return Address{}, invalid("unbalanced angle bracket in %q", addr)
		}
		s = s[1 : len(s)-1]
	}
	if strings.ContainsAny(s, "<>") {
		return Address{}, invalid("unexpected angle bracket in %q", addr)
	}
	if s == "" {
		return Address{}, invalid("empty address")
	}
	if len(s) > MaxAddressLength {
		return Address{}, invalid("address longer than %d octets", MaxAddressLength)
	}
	if s[0] == '@' {
		return Address{}, relay("source route in %q", addr)
	}

	local, rest, err := splitLocal(s, addr)
	if err != nil {
		return Address{}, err
	}
	if rest == "" {
		if strings.EqualFold(local, "postmaster") {
			return Address{Local: local, IsLocal: true}, nil
		}
		if strings.ContainsRune(local, '!') {
			return Address{}, relay("bang path in %q", addr)
		}
		if strings.ContainsRune(local, '%') {
			return Address{}, relay("percent hack in %q", addr)
		}
		return Address{}, invalid("no domain in %q", addr)
	}
	// rest starts with '@'.
	domain := rest[1:]
	if strings.ContainsRune(domain, '@') {
		return Address{}, relay("more than one @ in %q", addr)
	}
	if strings.ContainsRune(local, '!') {
		return Address{}, relay("bang path in %q", addr)
	}
	if strings.ContainsRune(local, '%') {
		return Address{}, relay("percent hack in %q", addr)
	}
	if len(local) > MaxLocalPartLength {
		return Address{}, invalid("local part longer than %d octets", MaxLocalPartLength)
	}
	d, err := checkDomain(domain, addr)
	if err != nil {
		return Address{}, err
	}
	return Address{Local: local, Domain: d}, nil
}

// splitLocal returns the (normalised) local part of s and the rest of s,
// which is either empty or starts with '@'.
func splitLocal(s, addr string) (local, rest string, err error) {
	if s[0] == '"' {
		end := -1
		var content strings.Builder
		for i := 1; i < len(s); i++ {
			c := s[i]
			if c == '\\' {
				if i+1 >= len(s) {
					break
				}
				i++
				content.WriteByte(s[i])
				continue
			}
			if c == '"' {
				end = i
				break
			}
			content.WriteByte(c)
		}
		if end < 0 {
			return "", "", invalid("unterminated quoted local part in %q", addr)
		}
		q := content.String()
		if strings.ContainsAny(q, "@%!") {
			return "", "", relay("quoted local part hides a route in %q", addr)
		}
		if q == "" {
			return "", "", invalid("empty quoted local part in %q", addr)
		}
		for _, r := range q {
			if r == '\\' || r == '"' || !unicode.IsPrint(r) && r != ' ' {
				return "", "", invalid("bad character in quoted local part %q", addr)
			}
		}
		rest = s[end+1:]
		if rest != "" && rest[0] != '@' {
			return "", "", invalid("garbage after quoted local part in %q", addr)
		}
		if isDotString(q) {
			return q, rest, nil
		}
		return s[:end+1], rest, nil
	}
	local, rest = s, ""
	if i := strings.IndexByte(s, '@'); i >= 0 {
		local, rest = s[:i], s[i:]
	}
	if local == "" {
		return "", "", invalid("empty local part in %q", addr)
	}
	if strings.ContainsRune(local, '"') {
		return "", "", invalid("stray quote in %q", addr)
	}
	// Check routing characters before the generic syntax so the error
	// names the trick.
	if strings.ContainsAny(local, "%!") {
		return local, rest, nil
	}
	if !isDotString(local) {
		if strings.ContainsAny(local, ":,[]") {
			return "", "", relay("routing characters in local part of %q", addr)
		}
		return "", "", invalid("bad local part in %q", addr)
	}
	return local, rest, nil
}

// isDotString reports whether s is an RFC 5321 Dot-string (RFC 6531 allows
// non-ASCII characters in atoms).
func isDotString(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for _, r := range s {
		if r == '.' {
			continue
		}
		if !isAtext(r) {
			return false
		}
	}
	return true
}

func isAtext(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return true
	case strings.ContainsRune("!#$%&'*+-/=?^_`{|}~", r):
		return true
	case r >= utf8.RuneSelf:
		return unicode.IsGraphic(r) && !unicode.IsSpace(r)
	}
	return false
}

// checkDomain validates and lower-cases an RFC 5321 domain.
func checkDomain(d, addr string) (string, error) {
	if d == "" {
		return "", invalid("no domain in %q", addr)
	}
	if d[0] == '[' {
		return "", relay("address literal in %q", addr)
	}
	if strings.HasSuffix(d, ".") {
		return "", relayInvalid("trailing dot in domain of %q", addr)
	}
	if len(d) > MaxDomainLength {
		return "", invalid("domain longer than %d octets", MaxDomainLength)
	}
	if _, err := netip.ParseAddr(d); err == nil {
		return "", relay("IP address used as domain in %q", addr)
	}
	labels := strings.Split(d, ".")
	for _, l := range labels {
		if l == "" {
			return "", invalid("empty label in domain of %q", addr)
		}
		if len(l) > MaxLabelLength {
			return "", invalid("label longer than %d octets in %q", MaxLabelLength, addr)
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return "", invalid("label starts or ends with '-' in %q", addr)
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				if c >= utf8.RuneSelf {
					return "", invalid("non-ASCII domain in %q (use A-labels)", addr)
				}
				return "", invalid("bad character %q in domain of %q", c, addr)
			}
		}
	}
	tld := labels[len(labels)-1]
	if strings.Trim(tld, "0123456789") == "" {
		return "", relay("numeric top-level label in %q", addr)
	}
	return strings.ToLower(d), nil
}

func relay(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrRelayAttempt}, args...)...)
}

// invalid returns a syntax error that matches both ErrInvalidAddress and
// ErrRelayAttempt: an address that cannot be parsed unambiguously is never
// routed.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format+" (%w)", append(append([]any{ErrInvalidAddress}, args...), ErrRelayAttempt)...)
}

// relayInvalid is invalid with the relay sentinel first in the message.
func relayInvalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format+" (%w)", append(append([]any{ErrRelayAttempt}, args...), ErrInvalidAddress)...)
}
