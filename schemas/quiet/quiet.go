// Package quiet reads and evaluates quiet hours: the times of day, in a
// client's time zone, when a medium must not disturb it (a profile's
// quiet_hours, docs/ROUTING.md). A schedule is a list of windows such as
// "22:00-07:00" (a window that ends before it starts runs past midnight),
// optionally limited to days: "sat-sun 00:00-24:00", "mon,wed 12:00-13:30".
package quiet

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // a client's zone resolves on machines without a zone database
)

// Window is one quiet window: from Start to End minutes after midnight
// (End may be 1440), on Days (a bit per time.Weekday of the day the
// window starts; all days when 0).
type Window struct {
	Days       uint8
	Start, End int
}

// Schedule is the quiet windows of one medium.
type Schedule []Window

var dayNames = map[string]time.Weekday{"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday,
	"wed": time.Wednesday, "thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday}

// MaxWindows bounds the windows of one schedule.
const MaxWindows = 16

// Parse reads a schedule: windows separated by ";", each "[DAYS ]HH:MM-HH:MM"
// where DAYS is a comma-separated list of day names or ranges (mon-fri,
// sat,sun; a range may wrap: fri-mon).
func Parse(s string) (Schedule, error) {
	var out Schedule
	for _, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if len(out) == MaxWindows {
			return nil, fmt.Errorf("quiet: more than %d windows", MaxWindows)
		}
		w, err := parseWindow(part)
		if err != nil {
			return nil, fmt.Errorf("quiet: %q: %w", part, err)
		}
		out = append(out, w)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("quiet: no window in %q", s)
	}
	if until, q := out.Until(time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC), time.UTC); q && until.IsZero() {
		return nil, fmt.Errorf("quiet: %q is quiet all the time: leave the medium out of prefer instead", s)
	}
	return out, nil
}

func parseWindow(s string) (Window, error) {
	var w Window
	days, span, found := strings.Cut(s, " ")
	if !found {
		span, days = s, ""
	}
	span = strings.TrimSpace(span)
	if days != "" {
		for _, d := range strings.Split(strings.ToLower(days), ",") {
			from, to, isRange := strings.Cut(strings.TrimSpace(d), "-")
			a, ok := dayNames[from]
			if !ok {
				return w, fmt.Errorf("unknown day %q", from)
			}
			b := a
			if isRange {
				if b, ok = dayNames[to]; !ok {
					return w, fmt.Errorf("unknown day %q", to)
				}
			}
			for x := a; ; x = (x + 1) % 7 {
				w.Days |= 1 << x
				if x == b {
					break
				}
			}
		}
	}
	from, to, ok := strings.Cut(span, "-")
	if !ok {
		return w, fmt.Errorf("want HH:MM-HH:MM")
	}
	var err error
	if w.Start, err = clock(from, false); err != nil {
		return w, err
	}
	if w.End, err = clock(to, true); err != nil {
		return w, err
	}
	if w.Start == w.End {
		return w, fmt.Errorf("empty window")
	}
	return w, nil
}

// clock reads HH:MM as minutes after midnight; 24:00 only as an end.
func clock(s string, end bool) (int, error) {
	h, m, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok || len(h) != 2 || len(m) != 2 {
		return 0, fmt.Errorf("time %q: want HH:MM", s)
	}
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if err1 != nil || err2 != nil || hh < 0 || mm < 0 || mm > 59 || hh > 24 || (hh == 24 && (mm != 0 || !end)) {
		return 0, fmt.Errorf("time %q out of range", s)
	}
	return hh*60 + mm, nil
}

// Until reports whether t falls in a quiet window of s in loc, and if so
// when the quiet time ends: the end of that window, or of the windows
// that overlap or adjoin it. A schedule quiet all the time (which Parse
// refuses) gives quiet with a zero until.
func (s Schedule) Until(t time.Time, loc *time.Location) (until time.Time, quiet bool) {
	if len(s) == 0 {
		return time.Time{}, false
	}
	if loc == nil {
		loc = time.UTC
	}
	at := t
	for range 8 * 24 { // every hop moves to a window's end: a week of them at most
		end, in := s.windowAt(at, loc)
		if !in {
			break
		}
		quiet, at = true, end
	}
	if !quiet {
		return time.Time{}, false
	}
	if _, in := s.windowAt(at, loc); in {
		return time.Time{}, true // never ends
	}
	return at, true
}

// windowAt returns the latest end of the windows that contain t.
func (s Schedule) windowAt(t time.Time, loc *time.Location) (time.Time, bool) {
	lt := t.In(loc)
	var best time.Time
	found := false
	for back := -1; back <= 0; back++ { // a window that started yesterday may still run
		day := time.Date(lt.Year(), lt.Month(), lt.Day()+back, 0, 0, 0, 0, loc)
		for _, w := range s {
			if w.Days != 0 && w.Days&(1<<day.Weekday()) == 0 {
				continue
			}
			start := time.Date(day.Year(), day.Month(), day.Day(), w.Start/60, w.Start%60, 0, 0, loc)
			endDay := day.Day()
			if w.End <= w.Start {
				endDay++
			}
			end := time.Date(day.Year(), day.Month(), endDay, w.End/60, w.End%60, 0, 0, loc)
			if !t.Before(start) && t.Before(end) && (!found || end.After(best)) {
				best, found = end, true
			}
		}
	}
	return best, found
}
