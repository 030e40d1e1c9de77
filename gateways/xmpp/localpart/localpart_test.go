package localpart

import (
	"strings"
	"testing"
)

// The examples of XEP-0106 §5 (table 3), and the backslash rule of §4.2.
var cases = []struct{ addr, local string }{
	{"space cadet", `space\20cadet`},
	{`call me "ishmael"`, `call\20me\20\22ishmael\22`},
	{"at&t guy", `at\26t\20guy`},
	{"d'artagnan", `d\27artagnan`},
	{"/.fanboy", `\2f.fanboy`},
	{"::foo::", `\3a\3afoo\3a\3a`},
	{"<foo>", `\3cfoo\3e`},
	{"user@host", `user\40host`},
	{`c:\net`, `c\3a\net`},
	{`c:\\net`, `c\3a\\net`},
	{`c:\cool stuff`, `c\3a\cool\20stuff`},
	{`c:\5commas`, `c\3a\5c5commas`},
	// UIMS addresses
	{"alice@example.com", `alice\40example.com`},
	{"bob", "bob"},
	{"+4915112345678", "+4915112345678"},
	{"xmpp:dave@chat.example.test", `xmpp\3adave\40chat.example.test`},
}

func TestEscape(t *testing.T) {
	for _, c := range cases {
		if got := Escape(c.addr); got != c.local {
			t.Errorf("Escape(%q) = %q, want %q", c.addr, got, c.local)
		}
		if got := Unescape(c.local); got != c.addr {
			t.Errorf("Unescape(%q) = %q, want %q", c.local, got, c.addr)
		}
	}
}

// Sequences that are not escapes stay as they are.
func TestUnescapeLeavesOthers(t *testing.T) {
	for _, s := range []string{`\`, `a\`, `\4`, `\41`, `\3A`, `\\`, `\5C`, `plain`} {
		if got := Unescape(s); got != s {
			t.Errorf("Unescape(%q) = %q", s, got)
		}
	}
}

// FuzzRoundTrip: every string survives Escape then Unescape, and Escape
// writes none of the characters a localpart may not hold (RFC 7622 §3.3.1
// forbids " & ' / : < > @; XEP-0106 adds the space).
func FuzzRoundTrip(f *testing.F) {
	for _, c := range cases {
		f.Add(c.addr)
		f.Add(c.local)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e := Escape(s)
		if strings.ContainsAny(e, escapable) {
			t.Fatalf("Escape(%q) = %q holds a character to escape", s, e)
		}
		if len(e) > 3*len(s) {
			t.Fatalf("Escape(%q) = %q is longer than three times the input", s, e)
		}
		if back := Unescape(e); back != s {
			t.Fatalf("Unescape(Escape(%q)) = %q (escaped %q)", s, back, e)
		}
		// Unescape of anything, an escaped form or not, never grows it.
		if u := Unescape(s); len(u) > len(s) {
			t.Fatalf("Unescape(%q) = %q is longer", s, u)
		}
	})
}
