// Package localpart maps any address to a JID localpart and back, by JID
// Escaping (XEP-0106, version 1.1): the bridge writes a UIMS recipient or
// sender that is not a client id, such as alice@example.com, as the
// localpart alice\40example.com of a JID at its own domain.
//
// Escape and Unescape are pure and total: Unescape(Escape(s)) == s for
// every string s (FuzzRoundTrip).
package localpart

import "strings"

// escapable are the characters XEP-0106 §3.1 (table 1) escapes, besides
// the backslash itself: space " & ' / : < > @.
const escapable = ` "&'/:<>@`

// isCode reports whether s starts with one of the ten escape codes of
// XEP-0106 §3.1 (20 22 26 27 2f 3a 3c 3e 40 5c), written in lowercase as
// the table writes them; "\3A" is not an escape sequence here.
func isCode(s string) bool {
	if len(s) < 2 {
		return false
	}
	switch s[:2] {
	case "20", "22", "26", "27", "2f", "3a", "3c", "3e", "40", "5c":
		return true
	}
	return false
}

const hexDigits = "0123456789abcdef"

// Escape returns s as a localpart: each of the nine characters of
// escapable becomes a backslash and its two lowercase hex digits, and a
// backslash becomes \5c only when an escape code follows it (XEP-0106
// §4.2: a backslash that starts no escape sequence stays as it is).
//
// XEP-0106 §4.2 also forbids a localpart that starts or ends with an
// escaped space; Escape escapes such spaces anyway (UIMS addresses carry
// none) and leaves the refusal to the XMPP server.
func Escape(s string) string {
	if !strings.ContainsAny(s, escapable+`\`) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case strings.IndexByte(escapable, c) >= 0, c == '\\' && isCode(s[i+1:]):
			b.WriteByte('\\')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&15])
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// Unescape returns the address a localpart stands for: every escape
// sequence (a backslash and one of the ten codes) becomes its character;
// anything else, a lone backslash too, stays as it is (XEP-0106 §4.3).
func Unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && isCode(s[i+1:]) {
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func unhex(c byte) byte {
	if c >= 'a' {
		return c - 'a' + 10
	}
	return c - '0'
}
