package ops

import (
	"cmp"
	"sort"
	"strings"
	"time"

	"github.com/uims/uims/schemas"
)

// A message's attempts and hold, as the operator view shows them
// (docs/OPS.md, "Attempts, holds and chains"). Each attempt is one route of
// the same transaction (docs/ROUTING.md, "Fallback"): the first, then one
// per reroute. A hold is the time the brokers kept a message before its
// first route (quiet hours, a scheduled message); its release starts
// attempt 1, a cancellation ends it.
//
// The brokers' history (PROTOCOL.md §13.10: `attempt-failed`, `rerouted`,
// `recorded`, and `held`, `released`, `failed` CANCELLED) says it all, with
// codes and reasons; a recent message the observer only heard in trace
// events gets its attempts from the broker steps `reroute`, `hold`,
// `release` and `cancel` (broker/fallback.go notifyReroute).

// Holds (PROTOCOL.md §6.16) in the history and the steps.
var (
	stateHeld       = schemas.StatusHeld             // state and history entry: the brokers hold the message
	historyReleased = schemas.StatusReleased         // history entry: the hold ended, the message was routed
	codeCancelled   = schemas.CodeCancelled.String() // the code of the failed entry of a cancellation
)

const (
	outcomeExpired = "expired"
	outcomeCancel  = "cancelled"
)

// Attempt is one route of a message.
type Attempt struct {
	N       int    `json:"n"`
	Medium  string `json:"medium,omitempty"`
	Gateway string `json:"gateway,omitempty"`
	Address string `json:"address,omitempty"`
	// Outcome is how the attempt ended: failed, expired, delivered, read
	// or cancelled; empty while it is open, State then says how far it got
	// (routed, transferred).
	Outcome string `json:"outcome,omitempty"`
	State   string `json:"state,omitempty"`
	Code    string `json:"code,omitempty"`
	Reason  string `json:"reason,omitempty"`
	// At is when it was routed, End when it ended, Unix ms.
	At  int64 `json:"at,omitempty"`
	End int64 `json:"end,omitempty"`
	// Late counts the acknowledgements recorded for it that changed
	// nothing (history `recorded`).
	Late int `json:"late,omitempty"`
}

// Hold is the time the brokers held a message before routing it.
type Hold struct {
	At     int64  `json:"at"`               // Unix ms
	Reason string `json:"reason,omitempty"` // "quiet hours on sms until … (Europe/Paris)"
	Party  string `json:"party,omitempty"`  // the broker instance
	// Until is when the hold ends, Unix ms, when known; Local is that time
	// on the wall clock of the zone the reason names ("2026-12-06 07:00"),
	// Zone that zone ("Europe/Paris", "UTC" or an offset).
	Until int64  `json:"until,omitempty"`
	Local string `json:"local,omitempty"`
	Zone  string `json:"zone,omitempty"`
	// Released and Cancelled are when the hold ended, Unix ms.
	Released  int64 `json:"released,omitempty"`
	Cancelled int64 `json:"cancelled,omitempty"`
}

// holdUntil reads the end of a hold from its reason: "… until
// 2026-12-06T07:00:00+01:00 (Europe/Paris)" or "scheduled for
// 2026-12-06T09:00:00Z".
func (h *Hold) holdUntil() {
	for _, marker := range []string{" until ", "scheduled for "} {
		i := strings.Index(h.Reason, marker)
		if i < 0 {
			continue
		}
		rest := strings.TrimSpace(h.Reason[i+len(marker):])
		stamp, zone, _ := strings.Cut(rest, " ")
		t, err := time.Parse(time.RFC3339, stamp)
		if err != nil {
			continue
		}
		h.Until = t.UnixMilli()
		h.Local = t.Format("2006-01-02 15:04")
		zone = strings.Trim(zone, "()")
		switch {
		case zone != "":
			h.Zone = zone
		case strings.HasSuffix(stamp, "Z"):
			h.Zone = "UTC"
		default:
			h.Zone = t.Format("-07:00")
		}
		return
	}
}

// hopOf splits a routed entry's reason "to <gateway>:<address>".
func hopOf(reason string) (gateway, address string) {
	rest, ok := strings.CutPrefix(reason, "to ")
	if !ok {
		return "", ""
	}
	gateway, address, _ = strings.Cut(rest, ":")
	return gateway, address
}

// attemptsFromHistory reads the attempts and the hold in the brokers'
// history of a transaction (PROTOCOL.md §13.10, docs/ROUTING.md "History").
func attemptsFromHistory(h []schemas.HistoryEntry, mediumOf func(string) string) ([]Attempt, *Hold) {
	var atts []Attempt
	var hold *Hold
	start := func(n int, e schemas.HistoryEntry) {
		gw, addr := hopOf(e.Reason)
		if n <= 0 {
			n = len(atts) + 1
		}
		for i := range atts {
			if atts[i].N == n { // the same attempt again (a replayed entry)
				return
			}
		}
		atts = append(atts, Attempt{N: n, Medium: e.Medium, Gateway: gw, Address: addr, At: e.At, State: schemas.StatusRouted})
	}
	// of returns the attempt an entry belongs to: its number, or the last.
	of := func(e schemas.HistoryEntry) *Attempt {
		if e.Attempt > 0 {
			for i := range atts {
				if atts[i].N == e.Attempt {
					return &atts[i]
				}
			}
			// an entry of an attempt whose route is not in the history
			atts = append(atts, Attempt{N: e.Attempt, Medium: e.Medium})
			return &atts[len(atts)-1]
		}
		if len(atts) == 0 {
			return nil
		}
		return &atts[len(atts)-1]
	}
	for _, e := range h {
		switch e.Status {
		case stateHeld:
			hold = &Hold{At: e.At, Reason: e.Reason, Party: e.Party}
			hold.holdUntil() // the local time and zone, for display
			if e.Until > 0 {
				hold.Until = e.Until
			}
		case historyReleased:
			if hold == nil {
				hold = &Hold{At: e.At}
			}
			hold.Released = e.At
			start(1, e)
		case schemas.StatusRouted:
			if len(atts) == 0 {
				start(1, e)
			}
		case schemas.StatusRerouted:
			start(e.Attempt, e)
		case schemas.StatusTransferred:
			if a := of(e); a != nil && a.Outcome == "" {
				a.State = schemas.StatusTransferred
			}
		case schemas.HistoryAttemptFailed:
			if a := of(e); a != nil {
				a.Outcome, a.Code, a.Reason, a.End, a.State = schemas.StatusFailed, e.Code, e.Reason, e.At, ""
				if e.Code == schemas.CodeExpired.String() {
					a.Outcome = outcomeExpired
				}
				if e.Medium != "" {
					a.Medium = e.Medium
				}
			}
		case schemas.StatusDelivered, schemas.StatusRead:
			if a := of(e); a != nil && a.Outcome != schemas.StatusRead {
				a.Outcome, a.End, a.State = e.Status, e.At, ""
				if e.Medium != "" {
					a.Medium = e.Medium
				}
			}
		case schemas.StatusFailed:
			if e.Code == codeCancelled && len(atts) == 0 {
				if hold == nil {
					hold = &Hold{At: e.At}
				}
				hold.Cancelled = e.At
				continue
			}
			if a := of(e); a != nil && a.Outcome == "" {
				a.Outcome, a.Code, a.Reason, a.End, a.State = schemas.StatusFailed, e.Code, e.Reason, e.At, ""
				switch e.Code {
				case codeCancelled:
					a.Outcome = outcomeCancel
				case schemas.CodeExpired.String():
					a.Outcome = outcomeExpired
				}
			}
		case schemas.HistoryRecorded:
			if a := of(e); a != nil {
				a.Late++
			}
		}
	}
	fillMedia(atts, mediumOf)
	return atts, hold
}

func fillMedia(atts []Attempt, mediumOf func(string) string) {
	for i := range atts {
		if atts[i].Medium == "" && atts[i].Gateway != "" && mediumOf != nil {
			atts[i].Medium = mediumOf(atts[i].Gateway)
		}
	}
}

// ogStep reports whether a gateway's step is the originating gateway's
// (kit originate.go, reroute.go) rather than the destination's.
func ogStep(step string) bool {
	switch step {
	case "accepted", "login", "imi", "route", "transfer", "reroute", "notified":
		return true
	}
	return false
}

// attemptsFromEvents reads the attempts and the hold in the trace events
// of a message, sorted by Seen: attempt 1 starts at the broker's imi (or
// the originator's route), or at the release of a hold; each broker
// reroute ends one attempt and starts the next. state and code are the
// message's, for the last attempt's outcome. starts are the Seen of each
// attempt's first step, for assignEvents.
func attemptsFromEvents(evs []Event, state, code string, mediumOf func(string) string) (atts []Attempt, hold *Hold, starts []int64) {
	var ogReroutes []Event
	cancelled := int64(0)
	for _, ev := range evs {
		switch {
		case ev.broker() && ev.Step == "hold":
			if hold == nil {
				hold = &Hold{At: ev.At, Party: ev.By}
			}
		case ev.broker() && ev.Step == "release":
			if hold == nil {
				hold = &Hold{At: ev.At}
			}
			hold.Released = ev.At
			if len(atts) == 0 {
				atts = append(atts, Attempt{N: 1, Gateway: ev.Dest, At: ev.At, State: schemas.StatusRouted})
				starts = append(starts, ev.Seen)
			}
		case ev.broker() && ev.Step == "cancel":
			cancelled = ev.At
		case ev.broker() && ev.Step == "imi" && ev.Result == schemas.StatusRouted,
			!ev.broker() && ev.Step == "route" && ev.Dest != "":
			if len(atts) == 0 && hold == nil {
				atts = append(atts, Attempt{N: 1, Gateway: ev.Dest, At: ev.At, State: schemas.StatusRouted})
				starts = append(starts, ev.Seen)
			}
		case ev.broker() && ev.Step == "reroute":
			if len(atts) == 0 { // attempt 1's events are not in (yet)
				atts = append(atts, Attempt{N: 1, State: schemas.StatusRouted})
				starts = append(starts, 0)
			}
			prev := &atts[len(atts)-1]
			prev.Outcome, prev.Code, prev.End, prev.State = schemas.StatusFailed, ev.Code, ev.At, ""
			if ev.Code == schemas.CodeExpired.String() {
				prev.Outcome = outcomeExpired
			}
			atts = append(atts, Attempt{N: len(atts) + 1, Gateway: ev.Dest, At: ev.At, State: schemas.StatusRouted})
			starts = append(starts, ev.Seen)
		case !ev.broker() && ev.Step == "reroute":
			ogReroutes = append(ogReroutes, ev)
		}
	}
	// the originator's reroutes stand for the brokers' when their batch
	// has not come yet (a release may be one too: count only the extra)
	for _, ev := range ogReroutes[min(len(ogReroutes), max(0, len(atts)-1)):] {
		if len(atts) == 0 || hold != nil {
			break
		}
		prev := &atts[len(atts)-1]
		prev.Outcome, prev.State = schemas.StatusFailed, ""
		atts = append(atts, Attempt{N: len(atts) + 1, Gateway: ev.Dest, At: ev.At, State: schemas.StatusRouted})
		starts = append(starts, ev.Seen)
	}
	if len(atts) > 0 {
		last := &atts[len(atts)-1]
		switch {
		case cancelled != 0 || code == codeCancelled:
			last.Outcome, last.Code, last.State = outcomeCancel, codeCancelled, ""
		case state == schemas.StatusDelivered || state == schemas.StatusRead || state == schemas.StatusFailed:
			last.Outcome, last.State = state, ""
			if state == schemas.StatusFailed {
				last.Code = code
				if code == schemas.CodeExpired.String() {
					last.Outcome = outcomeExpired
				}
			}
		case state == schemas.StatusTransferred:
			last.State = state
		}
	} else if hold != nil && (cancelled != 0 || code == codeCancelled) {
		hold.Cancelled = max(cancelled, 1)
	}
	fillMedia(atts, mediumOf)
	return atts, hold, starts
}

// assignEvents sets each event's Attempt: 0 for the steps before the
// release of a hold, else the attempt it belongs to. The destination's
// steps go to the attempt with that destination, the originator's
// transfers one per attempt in order (a refused transfer's reply may come
// after the reroute it caused), a notification of a reroute to the attempt
// it announces; the other steps to the attempt that had started when they
// happened.
func assignEvents(evs []Event, atts []Attempt, hold *Hold, starts []int64) {
	if len(atts) == 0 {
		return
	}
	byTime := func(seen int64) int {
		n := 0
		if hold == nil {
			n = 1
		}
		for i, s := range starts {
			if s <= seen {
				n = i + 1
			}
		}
		return n
	}
	// The originator's transfers in the order it made them: by its own
	// clock (At), which all its events share; the observer hears a batch
	// of them at once, in no particular order (Seen).
	var og []int
	for i := range evs {
		if !evs[i].broker() && evs[i].Step == "transfer" {
			og = append(og, i)
		}
	}
	sort.SliceStable(og, func(a, b int) bool {
		ea, eb := &evs[og[a]], &evs[og[b]]
		if ea.At != eb.At {
			return ea.At < eb.At
		}
		return ea.Seen < eb.Seen
	})
	nth := make(map[int]int, len(og))
	for k, i := range og {
		nth[i] = k + 1
	}
	for i := range evs {
		ev := &evs[i]
		n := byTime(ev.Seen)
		switch {
		case ev.broker() && ev.Step == "hold":
			n = 0
		case ev.broker() && ev.Step == "release":
			n = 1
		case ev.broker() && ev.Step == "notify" && ev.Result == stateHeld,
			!ev.broker() && ev.Step == "notified" && ev.Result == stateHeld:
			n = 0
		case ev.broker() && ev.Step == "notify" && ev.Result == historyReleased,
			!ev.broker() && ev.Step == "notified" && ev.Result == historyReleased:
			n = 1
		case ev.broker() && ev.Step == "notify" && ev.Result == schemas.StatusRerouted:
			// published just before the reroute step it announces
			best := int64(-1)
			for k := 1; k < len(starts); k++ {
				if d := abs(starts[k] - ev.Seen); best < 0 || d < best {
					best, n = d, k+1
				}
			}
		case ev.broker() && ev.Step == "ack", !ev.broker() && !ogStep(ev.Step):
			dg := ev.Party
			if !ev.broker() {
				dg = ev.Source
			}
			if k := attemptOf(atts, starts, dg, ev.Seen); k > 0 {
				n = k
			}
		case !ev.broker() && ev.Step == "transfer":
			n = min(nth[i], len(atts))
		}
		ev.Attempt = n
	}
}

func abs(d int64) int64 {
	if d < 0 {
		return -d
	}
	return d
}

// attemptOf returns the attempt whose destination is gateway: the latest
// that had started at seen, or the first; 0 if none.
func attemptOf(atts []Attempt, starts []int64, gateway string, seen int64) int {
	n := 0
	for i, a := range atts {
		if a.Gateway != gateway {
			continue
		}
		if n == 0 || (i < len(starts) && starts[i] <= seen) {
			n = a.N
		}
	}
	return n
}

// withAttempts completes a summary with the attempts and the hold of its
// message, from the brokers' history when there is one, else from the
// trace events (sorted by Seen; their Attempt set). A message routed once
// with no hold keeps its summary as it was.
func withAttempts(s TxSummary, evs []Event, history []schemas.HistoryEntry, mediumOf func(string) string) TxSummary {
	atts, hold, starts := attemptsFromEvents(evs, s.State, s.Code, mediumOf)
	assignEvents(evs, atts, hold, starts)
	if len(history) > 0 {
		hatts, hhold := attemptsFromHistory(history, mediumOf)
		if len(hatts) >= len(atts) {
			for i := range hatts { // what the history does not say
				if i < len(atts) && hatts[i].Gateway == "" {
					hatts[i].Gateway = atts[i].Gateway
				}
			}
			fillMedia(hatts, mediumOf)
			atts = hatts
		}
		if hhold != nil {
			hold = hhold
		}
	}
	if hold != nil {
		s.Hold = hold
		switch {
		case hold.Cancelled != 0:
			s.State, s.Code = schemas.StatusFailed, codeCancelled
		case hold.Released == 0 && !schemas.Terminal(s.State):
			s.State = stateHeld
		}
	}
	if len(atts) > 1 || hold != nil {
		s.Attempts = atts
	}
	if len(atts) > 0 {
		last := &atts[len(atts)-1]
		if last.Outcome == "" && schemas.Terminal(s.State) { // a history older than the events
			last.Outcome, last.State = s.State, ""
		}
		if last.Gateway != "" {
			s.Dest = last.Gateway
		}
		switch last.Outcome {
		case outcomeCancel:
			s.State, s.Code = schemas.StatusFailed, codeCancelled
		case schemas.StatusFailed, outcomeExpired:
			s.Code = cmp.Or(last.Code, s.Code)
		default:
			if len(atts) > 1 {
				s.Code = "" // an earlier attempt's
			}
		}
	}
	if s.State == schemas.StatusDelivered || s.State == schemas.StatusRead {
		s.Code = "" // an earlier attempt's
	}
	return s
}
