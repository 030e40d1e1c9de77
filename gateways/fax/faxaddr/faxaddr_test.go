package faxaddr

import (
	"errors"
	"testing"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		in, num, sub string
		err          error
	}{
		{"FAX=+15550133", "+15550133", "", nil},
		{"fax=+1-555-0133", "+15550133", "", nil},
		{"FAX=+44.20.7946.0000/T33S=6377", "+442079460000", "6377", nil},
		{"FAX=15550133", "", "", ErrBadNumber},
		{"FAX=+", "", "", ErrBadNumber},
		{"FAX=+1234567890123456", "", "", ErrBadNumber},
		{"FAX=+1555x", "", "", ErrBadNumber},
		{"FAX=+1555/T33S=", "", "", ErrNotFax},
		{"FAX=+1555/X=1", "", "", ErrNotFax},
		{"bob", "", "", ErrNotFax},
	} {
		a, err := Parse(c.in)
		if c.err != nil {
			if !errors.Is(err, c.err) {
				t.Errorf("Parse(%q) = %v, want %v", c.in, err, c.err)
			}
			continue
		}
		if err != nil || a.Number != c.num || a.SubAddress != c.sub {
			t.Errorf("Parse(%q) = %+v, %v; want %s %s", c.in, a, err, c.num, c.sub)
		}
	}
}

func TestMailbox(t *testing.T) {
	a, dom, err := ParseMailbox("FAX=+15550199@OnRamp.Example")
	if err != nil || a.Number != "+15550199" || dom != "onramp.example" {
		t.Fatalf("ParseMailbox = %+v %q %v", a, dom, err)
	}
	if got := a.Mailbox("offramp.test"); got != "FAX=+15550199@offramp.test" {
		t.Fatalf("Mailbox = %q", got)
	}
	if _, _, err := ParseMailbox("FAX=+1@"); err == nil {
		t.Fatal("empty domain accepted")
	}
}

// FuzzParse checks that what Parse accepts formats back to a local part
// that parses to the same address.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"FAX=+15550133", "fax=+1-555-0133/T33S=12", "FAX=+", "FAX=+1/T33S=x", "x@y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := Parse(s)
		if err != nil {
			return
		}
		b, err := Parse(a.String())
		if err != nil || b != a {
			t.Fatalf("round trip %q -> %q -> %+v, %v", s, a.String(), b, err)
		}
		if len(a.Number) < 2 || len(a.Number) > MaxDigits+1 {
			t.Fatalf("number %q out of range", a.Number)
		}
	})
}
