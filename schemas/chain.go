package schemas

import (
	"mime"
	"strings"
)

// MediumProcessor is the medium a processor announces (PROTOCOL.md §6.12):
// only announcements of this medium offer conversions to the brokers.
const MediumProcessor = "processor"

// MaxChain is the most conversion steps a route carries (PROTOCOL.md §6.12,
// "Chains").
const MaxChain = 4

// MediaType returns a content type's media type, its parameters dropped and
// lower-cased ("text/plain" for "Text/Plain; charset=utf-8"), or "" when it
// does not parse (RFC 2045 syntax, Go mime.ParseMediaType).
func MediaType(ctype string) string {
	mt, _, err := mime.ParseMediaType(ctype)
	if err != nil {
		return ""
	}
	return mt
}

// TypeMatches reports whether content type ctype matches one of patterns,
// as announcements' accepts and conversions' from (PROTOCOL.md §6.12,
// "Matching"): "type/subtype", "type/*" or "*/*". A content type that does
// not parse matches nothing.
func TypeMatches(patterns []string, ctype string) bool {
	mt := MediaType(ctype)
	if mt == "" {
		return false
	}
	for _, p := range patterns {
		switch {
		case p == "*/*" || p == mt:
			return true
		case strings.HasSuffix(p, "/*") && strings.HasPrefix(mt, strings.TrimSuffix(p, "*")):
			return true
		}
	}
	return false
}

// CostOrDefault returns the conversion's cost: 1 when absent (0).
func (c Conversion) CostOrDefault() int {
	if c.Cost <= 0 {
		return 1
	}
	return c.Cost
}

// NextStep returns where content goes after step n of a route's conversions
// produced content of type ctype (PROTOCOL.md §6.7): the step after the last
// step j ≥ n whose output has ctype's media type; len(steps) is the
// destination. Content of the type step n announced goes to step n+1; a step
// that produced what a later step would produce skips the steps in between
// (the alternative conversion picks the part the rest of the route can use
// best). ok is false when ctype is the output of no step from n on: the
// content has no place on this route.
func NextStep(steps []Step, n int, ctype string) (next int, ok bool) {
	mt := MediaType(ctype)
	if mt == "" || n < 0 || n >= len(steps) {
		return 0, false
	}
	for j := len(steps) - 1; j >= n; j-- {
		if MediaType(steps[j].To) == mt {
			return j + 1, true
		}
	}
	return 0, false
}

// Targets returns the media types that step n of a route may produce, best
// first: the outputs of the route's later steps from the destination's end,
// then step n's own (NextStep's order). A conversion that can produce
// several types (the alternative conversion) produces the first it can.
func Targets(steps []Step, n int) []string {
	var out []string
	for j := len(steps) - 1; j >= n && j >= 0; j-- {
		if mt := MediaType(steps[j].To); mt != "" && !contains(out, mt) {
			out = append(out, mt)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
