package pdu

import (
	"errors"
	"fmt"
	"time"
)

// ErrTime is a schedule_delivery_time or validity_period that is not an
// SMPP time (§7.1.1).
var ErrTime = errors.New("pdu: not an SMPP time")

// ParseTime reads an SMPP time (SMPP 3.4 §7.1.1), as schedule_delivery_time
// and validity_period carry it: 16 characters, absolute
// "YYMMDDhhmmsstnnp" (t tenths of a second, nn the offset from UTC in
// quarter hours, 00 to 48, p "+" ahead of UTC or "-" behind it), or
// relative "YYMMDDhhmmss000R" (years, months, days, hours, minutes and
// seconds after now, the SMSC's current time). The empty string is the
// zero time ("immediate" for a schedule, the default for a validity).
// Years YY are 2000 + YY.
func ParseTime(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if len(s) != 16 {
		return time.Time{}, fmt.Errorf("%w: %d characters, want 16", ErrTime, len(s))
	}
	var f [7]int // YY MM DD hh mm ss t
	for i := range 6 {
		n, ok := digits(s[2*i : 2*i+2])
		if !ok {
			return time.Time{}, fmt.Errorf("%w: %q: not digits at %d", ErrTime, s, 2*i)
		}
		f[i] = n
	}
	t, ok := digits(s[12:13])
	nn, ok2 := digits(s[13:15])
	if !ok || !ok2 {
		return time.Time{}, fmt.Errorf("%w: %q: not digits at 12", ErrTime, s)
	}
	f[6] = t
	switch p := s[15]; p {
	case 'R':
		if t != 0 || nn != 0 {
			return time.Time{}, fmt.Errorf("%w: %q: a relative time ends 000R", ErrTime, s)
		}
		return now.AddDate(f[0], f[1], f[2]).Add(time.Duration(f[3])*time.Hour + time.Duration(f[4])*time.Minute +
			time.Duration(f[5])*time.Second), nil
	case '+', '-':
		if f[1] < 1 || f[1] > 12 || f[2] < 1 || f[2] > 31 || f[3] > 23 || f[4] > 59 || f[5] > 59 || nn > 48 {
			return time.Time{}, fmt.Errorf("%w: %q: a field out of range", ErrTime, s)
		}
		off := nn * 15 * 60
		if p == '-' {
			off = -off
		}
		at := time.Date(2000+f[0], time.Month(f[1]), f[2], f[3], f[4], f[5], f[6]*100_000_000, time.FixedZone("", off))
		if at.Day() != f[2] {
			return time.Time{}, fmt.Errorf("%w: %q: no such day", ErrTime, s)
		}
		return at, nil
	}
	return time.Time{}, fmt.Errorf("%w: %q: the last character is +, - or R", ErrTime, s)
}

// FormatTime writes t as an absolute SMPP time in UTC ("…000+"); its UTC
// year must be 2000 to 2099.
func FormatTime(t time.Time) string {
	t = t.UTC()
	return fmt.Sprintf("%02d%02d%02d%02d%02d%02d%d00+", t.Year()%100, int(t.Month()), t.Day(), t.Hour(), t.Minute(), t.Second(),
		t.Nanosecond()/100_000_000)
}

func digits(s string) (int, bool) {
	n := 0
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}
