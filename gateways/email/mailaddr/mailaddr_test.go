package mailaddr

import (
	"errors"
	"strings"
	"testing"
)

var testLocal = []string{"us.example", "Mail.US.example."}

func TestClassifyAccepts(t *testing.T) {
	tests := []struct {
		in      string
		local   string
		domain  string
		isLocal bool
	}{
		{"alice@us.example", "alice", "us.example", true},
		{"<alice@us.example>", "alice", "us.example", true},
		{"Alice.Smith@US.Example", "Alice.Smith", "us.example", true},
		{"bob@mail.us.example", "bob", "mail.us.example", true},
		{"bob@sub.mail.us.example", "bob", "sub.mail.us.example", false},
		{"carol+tag@foreign.example", "carol+tag", "foreign.example", false},
		{"o'neil@us.example", "o'neil", "us.example", true},
		{"\"dave\"@us.example", "dave", "us.example", true},
		{"\"john doe\"@us.example", "\"john doe\"", "us.example", true},
		{"x-y_z=1@xn--bcher-kva.example", "x-y_z=1", "xn--bcher-kva.example", false},
		{"jürgen@us.example", "jürgen", "us.example", true},
		{"Postmaster", "Postmaster", "", true},
		{"<postmaster>", "postmaster", "", true},
		{"postmaster@foreign.example", "postmaster", "foreign.example", false},
		{"a@localhost", "a", "localhost", false},
	}
	for _, tc := range tests {
		a, err := Classify(tc.in, testLocal)
		if err != nil {
			t.Errorf("Classify(%q): unexpected error %v", tc.in, err)
			continue
		}
		if a.Local != tc.local || a.Domain != tc.domain || a.IsLocal != tc.isLocal {
			t.Errorf("Classify(%q) = %+v, want local=%q domain=%q isLocal=%v", tc.in, a, tc.local, tc.domain, tc.isLocal)
		}
	}
}

// TestRelayMatrix follows the address forms probed by nmap's
// smtp-open-relay script (with "us.example" as the server's domain,
// "relay.example" as the victim and 192.0.2.25 as the server's IP), plus the
// classic tricks listed in the package documentation.
func TestRelayMatrix(t *testing.T) {
	const (
		srv = "us.example"
		ip  = "[192.0.2.25]"
		tgt = "relay.example"
	)
	tests := []struct {
		in      string
		invalid bool // also matches ErrInvalidAddress
		reason  string
	}{
		// nmap smtp-open-relay RCPT TO forms
		{"relaytest%" + tgt + "@" + ip, false, "percent"},
		{"relaytest%" + tgt + "@" + srv, false, "percent"},
		{"\"relaytest@" + tgt + "\"", false, "quoted"},
		{"\"relaytest%" + tgt + "\"", false, "quoted"},
		{"relaytest@" + tgt + "@" + ip, false, "more than one @"},
		{"\"relaytest@" + tgt + "\"@" + ip, false, "quoted"},
		{"relaytest@" + tgt + "@" + srv, false, "more than one @"},
		{"@" + ip + ":relaytest@" + tgt, false, "source route"},
		{"@" + srv + ":relaytest@" + tgt, false, "source route"},
		{tgt + "!relaytest", false, "bang"},
		{tgt + "!relaytest@" + ip, false, "bang"},
		{tgt + "!relaytest@" + srv, false, "bang"},
		{"<@" + srv + ":relaytest@" + tgt + ">", false, "source route"},
		{"<@a.example,@b.example:relaytest@" + tgt + ">", false, "source route"},
		{"\"relaytest@" + tgt + "\"@" + srv, false, "quoted"},
		{"relaytest%" + tgt, false, "percent"},
		{"x!a", false, "bang"},
		{"a%b@" + srv, false, "percent"},
		{"\"a@x\"@" + srv, false, "quoted"},
		{"\"a!x\"@" + srv, false, "quoted"},
		{"a@[IPv6:2001:db8::1]", false, "address literal"},
		{"a@192.0.2.1", false, "IP address"},
		{"a@" + srv + ":25", true, "bad character"},
		{"a:b@" + srv, false, "routing characters"},
		// plain syntax problems
		{"", true, "empty"},
		{"<>", true, "empty"},
		{"alice", true, "no domain"},
		{"alice@", true, "no domain"},
		{"@", false, "source route"},
		{"alice@us.example.", true, "trailing dot"},
		{"alice.@us.example", true, "bad local part"},
		{".alice@us.example", true, "bad local part"},
		{"al..ice@us.example", true, "bad local part"},
		{"alice@us..example", true, "empty label"},
		{"alice@.us.example", true, "empty label"},
		{"alice@-us.example", true, "label starts"},
		{"alice@us_x.example", true, "bad character"},
		{"alice@bücher.example", true, "non-ASCII"},
		{"ali ce@us.example", true, "bad local part"},
		{"alice\r\n@us.example", true, "control character"},
		{"alice@us.example\r\nRCPT TO:<x@y>", true, "control character"},
		{"alice\x00@us.example", true, "control character"},
		{"alice\x7f@us.example", true, "control character"},
		{"<alice@us.example", true, "unbalanced"},
		{"alice@us.example>", true, "unexpected angle"},
		{"<<alice@us.example>>", true, "unexpected angle"},
		{"\"unterminated@us.example", true, "unterminated"},
		{"\"\"@us.example", true, "empty quoted"},
		{"\"a\"b@us.example", true, "garbage after"},
		{"a\"b@us.example", true, "stray quote"},
		{"\xff@us.example", true, "invalid UTF-8"},
		{strings.Repeat("a", 65) + "@us.example", true, "local part longer"},
		{"a@" + strings.Repeat("b", 64) + ".example", true, "label longer"},
		{strings.Repeat("a", 60) + "@" + strings.Repeat(strings.Repeat("b", 60)+".", 4) + "example", true, "longer than 254"},
		{"a@example.123", false, "numeric top-level"},
	}
	for _, tc := range tests {
		a, err := Classify(tc.in, []string{srv})
		if err == nil {
			t.Errorf("Classify(%q) = %+v, want error", tc.in, a)
			continue
		}
		if !errors.Is(err, ErrRelayAttempt) {
			t.Errorf("Classify(%q): error %v does not match ErrRelayAttempt", tc.in, err)
		}
		if tc.invalid && !errors.Is(err, ErrInvalidAddress) {
			t.Errorf("Classify(%q): error %v does not match ErrInvalidAddress", tc.in, err)
		}
		if !strings.Contains(err.Error(), tc.reason) {
			t.Errorf("Classify(%q): error %q does not mention %q", tc.in, err, tc.reason)
		}
		if !strings.HasPrefix(err.Error(), "mailaddr: ") {
			t.Errorf("Classify(%q): error %q lacks package prefix", tc.in, err)
		}
	}
}

func TestLength(t *testing.T) {
	// 64 + 1 + 189 = 254 octets: accepted; one more is refused.
	local := strings.Repeat("a", 64)
	dom := strings.Repeat("b", 61) + "." + strings.Repeat("c", 61) + "." + strings.Repeat("d", 57) + ".example"
	addr := local + "@" + dom
	if len(addr) != 254 {
		t.Fatalf("test address has %d octets", len(addr))
	}
	if _, err := Classify(addr, nil); err != nil {
		t.Fatalf("254-octet address refused: %v", err)
	}
	if _, err := Classify("<"+addr+">", nil); err != nil {
		t.Fatalf("bracketed 254-octet address refused: %v", err)
	}
	if _, err := Classify(local+"@e"+dom, nil); !errors.Is(err, ErrRelayAttempt) {
		t.Fatalf("255-octet address: err = %v", err)
	}
}

func TestKeyAndEqualFold(t *testing.T) {
	a, err := Classify("Alice@US.example", testLocal)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Classify("aLiCe@us.EXAMPLE", testLocal)
	if err != nil {
		t.Fatal(err)
	}
	if a.Local != "Alice" || b.Local != "aLiCe" {
		t.Fatalf("local part case not preserved: %q %q", a.Local, b.Local)
	}
	if a.Key() != b.Key() || a.Key() != "alice@us.example" {
		t.Fatalf("keys differ: %q %q", a.Key(), b.Key())
	}
	if !EqualFold(a, b) {
		t.Fatal("EqualFold = false")
	}
	if a.String() != "Alice@us.example" {
		t.Fatalf("String = %q", a.String())
	}
	c, _ := Classify("alice@foreign.example", testLocal)
	if EqualFold(a, c) {
		t.Fatal("EqualFold across domains")
	}
	p, _ := Classify("PostMaster", nil)
	if !p.IsPostmaster() || p.String() != "PostMaster" {
		t.Fatalf("postmaster: %+v", p)
	}
}

func TestIsLocalDomain(t *testing.T) {
	if !IsLocalDomain("mail.us.example", testLocal) {
		t.Fatal("trailing-dot local domain not matched")
	}
	if IsLocalDomain("evil-us.example", testLocal) || IsLocalDomain("", []string{""}) {
		t.Fatal("unexpected match")
	}
}
