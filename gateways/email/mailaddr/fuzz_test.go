package mailaddr

import (
	"errors"
	"strings"
	"testing"
)

// FuzzClassify checks that Classify never panics and that every accepted
// address is free of relay syntax, control characters and over-long parts,
// and is stable when classified again.
func FuzzClassify(f *testing.F) {
	for _, s := range []string{
		"alice@us.example", "<alice@us.example>", "a%b@us.example", "\"a@x\"@us.example",
		"@us.example:a@x.example", "x!a@us.example", "x!a", "a", "a@[192.0.2.1]",
		"a@us.example.", "a\r\n@us.example", "Postmaster", "\"john doe\"@us.example",
	} {
		f.Add(s)
	}
	local := []string{"us.example"}
	f.Fuzz(func(t *testing.T, in string) {
		a, err := Classify(in, local)
		if err != nil {
			if !errors.Is(err, ErrRelayAttempt) {
				t.Fatalf("error %v does not match ErrRelayAttempt", err)
			}
			return
		}
		s := a.String()
		if len(s) > MaxAddressLength {
			t.Fatalf("accepted %d-octet address %q", len(s), s)
		}
		for i := 0; i < len(s); i++ {
			if s[i] < 0x20 || s[i] == 0x7f {
				t.Fatalf("accepted control character in %q", s)
			}
		}
		if a.Domain == "" {
			if !strings.EqualFold(a.Local, "postmaster") {
				t.Fatalf("accepted %q without domain", in)
			}
			return
		}
		if a.Domain != strings.ToLower(a.Domain) || strings.HasSuffix(a.Domain, ".") ||
			strings.ContainsAny(a.Domain, "[]@:") {
			t.Fatalf("bad domain %q from %q", a.Domain, in)
		}
		if !strings.HasPrefix(a.Local, "\"") && strings.ContainsAny(a.Local, "@%!:") {
			t.Fatalf("relay syntax in local part %q from %q", a.Local, in)
		}
		if strings.ContainsAny(a.Local, "@%!") {
			t.Fatalf("relay syntax in quoted local part %q from %q", a.Local, in)
		}
		if a.IsLocal != (a.Domain == "us.example") {
			t.Fatalf("IsLocal = %v for %q", a.IsLocal, a.Domain)
		}
		b, err := Classify(s, local)
		if err != nil || b != a {
			t.Fatalf("re-classifying %q: %+v, %v (first %+v)", s, b, err, a)
		}
	})
}
