package dlr

import (
	"strings"
	"testing"
	"time"
)

// FuzzParse checks that Parse never panics and that a parsed receipt with
// plain id, stat and err values survives Format→Parse unchanged apart from
// what Format normalises (text cut to 20 characters, dates to minutes,
// empty err written as 000). NormalizeID and SameID must not panic and
// SameID must be reflexive for ids with keys.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"id:1A2B sub:001 dlvrd:001 submit date:2401021504 done date:2401021505 stat:DELIVRD err:000 text:Hello",
		"ID:abc Stat:undeliv submit_date:240102150405 Text:x",
		"stat:DELIVRD id:9 text:id:2 stat:X",
		"id: stat:DELIVRD", "", "id:0e999f21-81ef stat:Delivered err:0x1B",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		if keys := NormalizeID(in); len(keys) > 0 && !SameID(in, in) {
			t.Fatalf("SameID not reflexive for %q (keys %q)", in, keys)
		}
		r, err := Parse(in)
		if err != nil {
			return
		}
		if r.ID == "" {
			t.Fatal("empty id accepted")
		}
		if hasSpace(r.ID) || hasSpace(string(r.Stat)) || hasSpace(r.Err) {
			return // such values cannot be written unambiguously
		}
		out := Format(r)
		r2, err := Parse(out)
		if err != nil {
			t.Fatalf("Format output %q does not parse: %v", out, err)
		}
		want := r
		want.Text = trimSpace(cut(r.Text, MaxText))
		want.SubmitDate = r.SubmitDate.Truncate(time.Minute)
		want.DoneDate = r.DoneDate.Truncate(time.Minute)
		if want.Err == "" {
			want.Err = "000"
		}
		if r2 != want {
			t.Fatalf("Format/Parse of %q via %q:\n got %+v\nwant %+v", in, out, r2, want)
		}
	})
}

func hasSpace(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return r < 0x80 && isSpace(byte(r)) }) >= 0
}

func cut(s string, n int) string {
	for i := range s {
		if n == 0 {
			return s[:i]
		}
		n--
	}
	return s
}
