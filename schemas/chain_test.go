package schemas_test

import (
	"slices"
	"testing"

	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

func TestTypeMatches(t *testing.T) {
	for _, c := range []struct {
		patterns []string
		ctype    string
		want     bool
	}{
		{[]string{"text/plain"}, "text/plain; charset=utf-8", true},
		{[]string{"text/plain"}, "Text/Plain", true},
		{[]string{"text/*"}, "text/html", true},
		{[]string{"text/*"}, "textual/html", false},
		{[]string{"*/*"}, "image/png", true},
		{[]string{"text/html"}, "text/plain", false},
		{[]string{"*/*"}, "not a type", false},
		{nil, "text/plain", false},
	} {
		if got := schemas.TypeMatches(c.patterns, c.ctype); got != c.want {
			t.Errorf("TypeMatches(%q, %q) = %v", c.patterns, c.ctype, got)
		}
	}
}

func TestNextStepAndTargets(t *testing.T) {
	steps := []schemas.Step{
		{Conversion: "alternative", Processor: "proc", To: "text/html; charset=utf-8"},
		{Conversion: "html2text", Processor: "proc", To: "text/plain; charset=utf-8"},
	}
	for _, c := range []struct {
		n     int
		ctype string
		next  int
		ok    bool
	}{
		{0, "text/html; charset=utf-8", 1, true},       // as planned
		{0, "text/plain; charset=iso-8859-1", 2, true}, // skips html2text: the destination takes it
		{1, "text/plain", 2, true},
		{1, "text/html", 0, false}, // html2text producing HTML: not on the route
		{0, "image/png", 0, false},
		{2, "text/plain", 0, false}, // no step 2
		{-1, "text/plain", 0, false},
		{0, "", 0, false},
	} {
		next, ok := schemas.NextStep(steps, c.n, c.ctype)
		if next != c.next || ok != c.ok {
			t.Errorf("NextStep(%d, %q) = %d, %v; want %d, %v", c.n, c.ctype, next, ok, c.next, c.ok)
		}
	}
	if got := schemas.Targets(steps, 0); !slices.Equal(got, []string{"text/plain", "text/html"}) {
		t.Errorf("Targets(0) = %q", got)
	}
	if got := schemas.Targets(steps, 1); !slices.Equal(got, []string{"text/plain"}) {
		t.Errorf("Targets(1) = %q", got)
	}
	if got := schemas.Targets(steps, 2); got != nil {
		t.Errorf("Targets(2) = %q", got)
	}
}

func TestConversionCost(t *testing.T) {
	if c := (schemas.Conversion{}).CostOrDefault(); c != 1 {
		t.Errorf("absent cost = %d, want 1", c)
	}
	if c := (schemas.Conversion{Cost: 7}).CostOrDefault(); c != 7 {
		t.Errorf("cost 7 = %d", c)
	}
	a := schemas.Announce{V: 1, Gateway: "proc", Medium: "processor", Instance: "p1", TTL: 3000,
		Conversions: []schemas.Conversion{{Name: "x", From: "a/b", To: "c/d", Cost: schemas.MaxConversionCost}}}
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, cost := range []int{-1, schemas.MaxConversionCost + 1} {
		a.Conversions[0].Cost = cost
		if err := a.Validate(); miap.CodeOf(err) != schemas.CodeMalformed {
			t.Errorf("cost %d: %v, want MALFORMED", cost, err)
		}
	}
}
