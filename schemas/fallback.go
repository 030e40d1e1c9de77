package schemas

import (
	"fmt"
	"time"
)

// Fallback is a profile's rule for moving a message on to the recipient's
// next medium when an attempt fails (docs/ROUTING.md, "Settings"). The
// zero value is the default: every permanent failure and the deadline
// move on, each medium has the brokers' deadlines, no last resort.
type Fallback struct {
	// On lists what moves a message on: FallbackPermanent (every failed
	// acknowledgement with a code that is not retryable, an unknown or
	// absent code included, and the deadline), FallbackDeadline (the
	// attempt's deadline passed), code names of PROTOCOL.md §9 (a failed
	// acknowledgement with that code; EXPIRED also the deadline), or
	// FallbackNone alone (never). Empty: FallbackPermanent.
	On []string `json:"on,omitempty" yaml:"on"`
	// After bounds, per medium, how long an attempt on it may take before
	// the message moves on: from its routing to its outcome, the time a
	// destination that took it for later delivery ("transferred") waits
	// for its outcome included. A Go duration ("90s", "10m", "2h"), from
	// 1 s to 7 days. A medium not named has the brokers' deadlines (30 s
	// to take it, 24 h to deliver what was taken).
	After map[string]string `json:"after,omitempty" yaml:"after"`
	// LastResort is a medium tried after the prefer list, even if the list
	// does not name it (the client needs an address on it).
	LastResort string `json:"last_resort,omitempty" yaml:"last_resort"`
}

// Words of Fallback.On besides code names.
const (
	FallbackPermanent = "permanent"
	FallbackDeadline  = "deadline"
	FallbackNone      = "none"
)

// Bounds of Fallback.After.
const (
	MinFallbackAfter = time.Second
	MaxFallbackAfter = 7 * 24 * time.Hour
)

// Validate checks a fallback rule.
func (f *Fallback) Validate() error {
	if f == nil {
		return nil
	}
	for _, w := range f.On {
		switch w {
		case FallbackPermanent, FallbackDeadline:
			continue
		case FallbackNone:
			if len(f.On) != 1 {
				return fmt.Errorf("schemas: fallback.on: %q must be alone", FallbackNone)
			}
			continue
		}
		if c, ok := ParseCode(w); !ok || c == CodeOK {
			return fmt.Errorf("schemas: fallback.on: %q is neither %q, %q, %q nor an error code (PROTOCOL.md §9)", w, FallbackPermanent, FallbackDeadline, FallbackNone)
		}
	}
	for m, s := range f.After {
		if !validMedium(m) {
			return fmt.Errorf("schemas: fallback.after: medium %q", m)
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("schemas: fallback.after.%s: %w", m, err)
		}
		if d < MinFallbackAfter || d > MaxFallbackAfter {
			return fmt.Errorf("schemas: fallback.after.%s: %s outside %s to %s", m, s, MinFallbackAfter, MaxFallbackAfter)
		}
	}
	if f.LastResort != "" && !validMedium(f.LastResort) {
		return fmt.Errorf("schemas: fallback.last_resort: medium %q", f.LastResort)
	}
	return nil
}

// Moves reports whether a failure moves the message on: a failed
// acknowledgement with code (deadline false), or the attempt's deadline
// (deadline true, code EXPIRED). A nil rule is the default.
func (f *Fallback) Moves(code string, deadline bool) bool {
	on := []string{FallbackPermanent}
	if f != nil && len(f.On) > 0 {
		on = f.On
	}
	for _, w := range on {
		switch w {
		case FallbackNone:
			return false
		case FallbackPermanent:
			if deadline {
				return true
			}
			if c, ok := ParseCode(code); !ok || !c.Retryable() {
				return true
			}
		case FallbackDeadline:
			if deadline {
				return true
			}
		default:
			if w == code || (deadline && w == CodeExpired.String()) {
				return true
			}
		}
	}
	return false
}

// Off reports whether the rule never moves a message on.
func (f *Fallback) Off() bool {
	return f != nil && len(f.On) == 1 && f.On[0] == FallbackNone
}

// AfterFor returns how long an attempt on medium may take, 0 when the
// rule names no time for it.
func (f *Fallback) AfterFor(medium string) time.Duration {
	if f == nil {
		return 0
	}
	d, err := time.ParseDuration(f.After[medium])
	if err != nil {
		return 0
	}
	return d
}

// validMedium: 1 to 32 characters of [a-z0-9_-], as media are named.
func validMedium(m string) bool {
	if m == "" || len(m) > 32 {
		return false
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '_' {
			return false
		}
	}
	return true
}
