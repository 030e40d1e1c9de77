package quiet

import (
	"testing"
	"time"
)

func TestUntil(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err) // the package links time/tzdata
	}
	at := func(s string) time.Time {
		v, err := time.ParseInLocation("2006-01-02 15:04", s, berlin)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, c := range []struct {
		sched, now, until string // until "" = not quiet
	}{
		{"22:00-07:00", "2026-12-04 23:00", "2026-12-05 07:00"},
		{"22:00-07:00", "2026-12-05 06:59", "2026-12-05 07:00"},
		{"22:00-07:00", "2026-12-05 07:00", ""},
		{"22:00-07:00", "2026-12-05 21:59", ""},
		{"22:00-07:00", "2026-12-05 22:00", "2026-12-06 07:00"},
		{"12:00-13:00; 13:00-14:00", "2026-12-05 12:30", "2026-12-05 14:00"}, // adjoining windows merge
		{"22:00-07:00; 06:00-09:00", "2026-12-05 23:00", "2026-12-06 09:00"}, // overlapping too
		{"sat-sun 00:00-24:00", "2026-12-05 10:00", "2026-12-07 00:00"},      // the weekend, Saturday morning
		{"fri 22:00-07:00", "2026-12-05 03:00", "2026-12-05 07:00"},          // started on Friday, runs into Saturday
		{"fri 22:00-07:00", "2026-12-06 03:00", ""},                          // Saturday's night is not Friday's
		{"mon-fri 09:00-17:00", "2026-12-05 10:00", ""},                      // Saturday
		{"fri-mon 20:00-08:00", "2026-12-07 07:00", "2026-12-07 08:00"},      // a wrapping day range (Sunday's night into Monday)
		{"01:00-04:00", "2026-03-29 01:30", "2026-03-29 04:00"},              // DST starts at 02:00: the window is an hour shorter
		{"01:00-04:00", "2026-10-25 01:30", "2026-10-25 04:00"},              // DST ends at 03:00
	} {
		s, err := Parse(c.sched)
		if err != nil {
			t.Fatalf("%q: %v", c.sched, err)
		}
		until, q := s.Until(at(c.now), berlin)
		switch {
		case c.until == "" && q:
			t.Errorf("%q at %s: quiet until %s, want not quiet", c.sched, c.now, until)
		case c.until != "" && (!q || !until.Equal(at(c.until))):
			t.Errorf("%q at %s: %v %s, want quiet until %s", c.sched, c.now, q, until.In(berlin), c.until)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	for _, s := range []string{"", ";", "22:00", "22-07", "25:00-07:00", "22:00-24:01", "24:00-07:00", "10:00-10:00",
		"xyz 10:00-11:00", "mon-xyz 10:00-11:00", "00:00-24:00", "mon-sun 00:00-24:00", "22:00-7:00",
		"1:00-2:00;1:00-2:00;1:00-2:00;1:00-2:00;1:00-2:00;1:00-2:00;1:00-2:00;1:00-2:00;1:00-2:00;1:00-2:00;1:00-2:00;1:00-2:00;1:00-2:00;1:00-2:00;1:00-2:00;1:00-2:00;1:00-2:00"} {
		if _, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) accepted", s)
		}
	}
}

// FuzzParse: whatever Parse accepts evaluates without panic, and a quiet
// answer has its end after the instant asked.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"22:00-07:00", "sat-sun 00:00-24:00", "mon,wed 12:00-13:30; fri-mon 20:00-08:00", "01:00-04:00", "x"} {
		f.Add(s, int64(1796437668672))
	}
	f.Fuzz(func(t *testing.T, s string, ms int64) {
		sched, err := Parse(s)
		if err != nil {
			return
		}
		now := time.UnixMilli(ms % (1 << 42))
		until, q := sched.Until(now, time.UTC)
		if q && !until.After(now) {
			t.Fatalf("%q at %v: quiet until %v", s, now, until)
		}
	})
}
