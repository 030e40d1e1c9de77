package pdu

import (
	"errors"
	"testing"
	"time"
)

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 12, 7, 22, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		in   string
		want time.Time
	}{
		{"", time.Time{}},
		// 23:00 local, one hour ahead of UTC (04 quarter hours): 22:00 UTC
		{"261207230000004+", time.Date(2026, 12, 7, 22, 0, 0, 0, time.UTC)},
		// behind UTC: 2 h 15 (09 quarters)
		{"261207230000009-", time.Date(2026, 12, 8, 1, 15, 0, 0, time.UTC)},
		{"261208070000500+", time.Date(2026, 12, 8, 7, 0, 0, 500_000_000, time.UTC)},
		// relative: a day, 2 h, 30 min, 15 s
		{"000001023015000R", now.Add(26*time.Hour + 30*time.Minute + 15*time.Second)},
		{"000100000000000R", time.Date(2027, 1, 7, 22, 0, 0, 0, time.UTC)},
	} {
		got, err := ParseTime(c.in, now)
		if err != nil || !got.Equal(c.want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"2612072300000", "261207230000004*", "2612072300000a4+", "261307230000004+",
		"261231240000004+", "261207230000049+", "260230120000000+", "000001000000100R", "000001000000001R"} {
		if _, err := ParseTime(bad, now); !errors.Is(err, ErrTime) {
			t.Errorf("ParseTime(%q): %v, want ErrTime", bad, err)
		}
	}
}

func TestFormatTimeRoundTrip(t *testing.T) {
	at := time.Date(2026, 12, 8, 6, 0, 0, 300_000_000, time.UTC)
	s := FormatTime(at)
	if s != "261208060000300+" {
		t.Fatalf("FormatTime = %q", s)
	}
	if got, err := ParseTime(s, time.Time{}); err != nil || !got.Equal(at) {
		t.Fatalf("round trip: %v %v", got, err)
	}
}

// FuzzParseTime: never panics; an accepted absolute time formats back
// to the same instant.
func FuzzParseTime(f *testing.F) {
	for _, s := range []string{"", "261207230000004+", "261207230000009-", "000001023015000R", "991231235959948+",
		"000000000000000R", "260230120000000+", "zzzzzzzzzzzzzzzz"} {
		f.Add(s)
	}
	now := time.Date(2026, 12, 7, 22, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseTime(s, now)
		if err != nil || s == "" || s[15] == 'R' {
			return
		}
		if y := got.UTC().Year(); y < 2000 || y > 2099 {
			return // two-digit years: in UTC, outside what FormatTime can write
		}
		back, err := ParseTime(FormatTime(got), now)
		if err != nil || !back.Equal(got) {
			t.Fatalf("%q → %v → %q → %v %v", s, got, FormatTime(got), back, err)
		}
	})
}
