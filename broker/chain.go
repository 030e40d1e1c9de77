package broker

import (
	"slices"
	"strconv"
	"strings"

	"github.com/uims/uims/schemas"
)

// chain is a candidate chain of conversions: offers by index (into the
// offers, which are in the order of conversion name and party) and what
// they cost together.
type chain struct {
	cost  int
	steps []int
}

// better orders chains (PROTOCOL.md §6.12, "Chains"): the cheaper, then the
// shorter, then the one whose steps come first by conversion name and
// party, step by step. The order is total, so the choice is the same on
// every broker.
func (c chain) better(d chain) bool {
	if c.cost != d.cost {
		return c.cost < d.cost
	}
	if len(c.steps) != len(d.steps) {
		return len(c.steps) < len(d.steps)
	}
	return slices.Compare(c.steps, d.steps) < 0
}

// cheapest returns the best chain (better) of at most schemas.MaxChain
// conversions from content type ctype to a type that target accepts, over
// offers; ok is false when there is none. Content that target accepts as
// it is needs no chain: the caller checks that first.
//
// It is Bellman-Ford in layers: layer d holds, per media type, the best
// chain of exactly d steps that produces it. better is kept by extending
// two chains of the same length with the same step, so the best chain of
// d+1 steps to a type extends a best chain of d steps; the best chain
// overall never passes a type twice, since costs are at least 1.
func cheapest(ctype string, target []string, offers []offer) ([]schemas.Step, bool) {
	start := schemas.MediaType(ctype)
	if start == "" {
		return nil, false
	}
	to := make([]string, len(offers))
	for i, o := range offers {
		if to[i] = o.toMT; to[i] == "" {
			to[i] = schemas.MediaType(o.To)
		}
	}
	layer := map[string]chain{start: {}}
	var best chain
	found := false
	for d := 1; d <= schemas.MaxChain && len(layer) > 0; d++ {
		next := make(map[string]chain)
		for t, c := range layer {
			if found && c.cost >= best.cost {
				continue // every extension costs more than the best chain
			}
			for i := range offers {
				if to[i] == "" || !matches(offers[i].From, t) {
					continue
				}
				n := chain{cost: c.cost + offers[i].CostOrDefault(), steps: append(slices.Clip(c.steps), i)}
				if cur, ok := next[to[i]]; !ok || n.better(cur) {
					next[to[i]] = n
				}
			}
		}
		for t, c := range next {
			if (!found || c.better(best)) && matchesAny(target, t) {
				best, found = c, true
			}
		}
		layer = next
	}
	if !found {
		return nil, false
	}
	steps := make([]schemas.Step, len(best.steps))
	for k, i := range best.steps {
		steps[k] = schemas.Step{Conversion: offers[i].Name, Processor: offers[i].proc, To: offers[i].To}
	}
	return steps, true
}

// matches reports whether media type mt (parsed: lower case, no
// parameters) matches pattern (schemas.TypeMatches without the parsing).
func matches(pattern, mt string) bool {
	switch {
	case pattern == "*/*" || pattern == mt:
		return true
	case strings.HasSuffix(pattern, "/*"):
		return strings.HasPrefix(mt, pattern[:len(pattern)-1])
	}
	return false
}

func matchesAny(patterns []string, mt string) bool {
	for _, p := range patterns {
		if matches(p, mt) {
			return true
		}
	}
	return false
}

// noRoute is route's answer when no live gateway that fits can take content
// of type ctype, directly or through a chain of live processors (PROTOCOL.md
// §6.3, §6.12): NO_ROUTE, retryable, while a gateway that fits and a chain
// to it exist among the parties heard, up now or not, or while the
// registry is still learning the fabric; UNSUPPORTED, final, when none
// does, with a reason for the sender that names the conversion missing.
func (b *Broker) noRoute(ctype string, fits func(*schemas.Announce) bool, now int64, detail string) error {
	retry := schemas.Errorf(schemas.CodeNoRoute, nil, detail)
	if !b.reg.settled() {
		return retry
	}
	gws := b.reg.known(func(a *schemas.Announce) bool { return a.Medium != schemas.MediumProcessor && fits(a) })
	if len(gws) == 0 {
		return retry
	}
	all := b.reg.conversions(now, false)
	var targets []string
	for _, gw := range gws {
		if len(gw.Accepts) == 0 || accepts(gw.Accepts, ctype) {
			return retry
		}
		if _, ok := cheapest(ctype, gw.Accepts, all); ok {
			return retry
		}
		for _, p := range gw.Accepts {
			if !slices.Contains(targets, p) {
				targets = append(targets, p)
			}
		}
	}
	return &reasonError{schemas.Errorf(schemas.CodeUnsupported, nil, missing(ctype, targets, b.reg.conversions(now, true)))}
}

// maxReason bounds a reason for the sender, in bytes (as an
// acknowledgement's reason, PROTOCOL.md §13.7).
const maxReason = 1024

// missing says which conversion a message would need, and what the live
// processors offer: "no conversion from image/png to text/plain (at most 4
// steps; live processors: proc: alternative multipart/alternative →
// text/html; charset=utf-8, …)".
func missing(ctype string, targets []string, live []offer) string {
	mt := schemas.MediaType(ctype)
	if mt == "" {
		mt = ctype
	}
	var s strings.Builder
	s.WriteString("no conversion from " + mt + " to " + strings.Join(targets, " or ") +
		" (at most " + strconv.Itoa(schemas.MaxChain) + " steps; ")
	if len(live) == 0 {
		s.WriteString("no live processor)")
		return oneLine(s.String(), maxReason)
	}
	byParty := slices.Clone(live)
	slices.SortStableFunc(byParty, func(a, b offer) int { return strings.Compare(a.proc, b.proc) })
	s.WriteString("live processors:")
	for i, o := range byParty {
		if i == 0 || byParty[i-1].proc != o.proc {
			if i > 0 {
				s.WriteString(";")
			}
			s.WriteString(" " + o.proc + ":")
		} else {
			s.WriteString(",")
		}
		s.WriteString(" " + o.Name + " " + o.From + " → " + o.To)
	}
	s.WriteString(")")
	return oneLine(s.String(), maxReason)
}

// oneLine makes s a header value: control characters become spaces, and
// it is cut at max bytes on a character boundary.
func oneLine(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
	if len(s) <= max {
		return s
	}
	cut := max - len("…")
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "…"
}

// reasonError is an error whose detail is meant for the sender: replyError
// sends it in Uims-Reason (PROTOCOL.md §9), and the originating gateway
// tells its client. Other errors keep their detail in the brokers' log.
type reasonError struct{ err *schemas.Error }

func (e *reasonError) Error() string  { return e.err.Error() }
func (e *reasonError) Unwrap() error  { return e.err }
func (e *reasonError) Reason() string { return e.err.Detail }
