package broker

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/uims/uims/internal/redistest"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// conv is an offer for the planner's tests.
func conv(proc, name, from, to string, cost int) offer {
	return offer{Conversion: schemas.Conversion{Name: name, From: from, To: to, Cost: cost}, proc: proc}
}

// names renders a chain as "name@proc>name@proc".
func names(steps []schemas.Step) string {
	var s []string
	for _, st := range steps {
		s = append(s, st.Conversion+"@"+st.Processor)
	}
	return strings.Join(s, ">")
}

// sorted puts offers in the registry's order (conversions), which the
// tie-break relies on.
func sorted(os ...offer) []offer {
	r := newRegistry()
	byProc := map[string][]schemas.Conversion{}
	for _, o := range os {
		byProc[o.proc] = append(byProc[o.proc], o.Conversion)
	}
	now := time.Now().UnixMilli()
	for p, cs := range byProc {
		r.add(&schemas.Announce{V: 1, Gateway: p, Medium: schemas.MediumProcessor, Instance: p + "-1", Conversions: cs, TTL: 60_000, At: now})
	}
	return r.conversions(now, true)
}

func TestCheapestChain(t *testing.T) {
	std := []offer{
		conv("proc", "alternative", "multipart/alternative", "text/html; charset=utf-8", 0),
		conv("proc", "html2text", "text/html", "text/plain; charset=utf-8", 0),
	}
	for _, c := range []struct {
		name   string
		ctype  string
		target []string
		offers []offer
		want   string // "" for no chain
	}{
		{"one step", "text/html; charset=utf-8", []string{"text/plain"}, std, "html2text@proc"},
		{"two steps", "multipart/alternative; boundary=x", []string{"text/plain"}, std, "alternative@proc>html2text@proc"},
		{"the first step is enough", "multipart/alternative; boundary=x", []string{"text/html"}, std, "alternative@proc"},
		{"target pattern", "multipart/alternative; boundary=x", []string{"text/*"}, std, "alternative@proc"},
		{"from pattern", "text/enriched", []string{"text/plain"},
			sorted(conv("p", "anytext", "text/*", "text/plain", 1)), "anytext@p"},
		{"any type", "image/png", []string{"text/plain"},
			sorted(conv("p", "describe", "*/*", "text/plain", 1)), "describe@p"},
		{"no chain", "image/png", []string{"text/plain"}, std, ""},
		{"content type that does not parse", "text/", []string{"text/plain"}, std, ""},
		{"cheapest, not shortest", "a/a", []string{"z/z"}, sorted(
			conv("p", "direct", "a/a", "z/z", 10),
			conv("p", "ab", "a/a", "b/b", 2),
			conv("p", "bz", "b/b", "z/z", 3)), "ab@p>bz@p"},
		{"equal cost: the shorter", "a/a", []string{"z/z"}, sorted(
			conv("p", "direct", "a/a", "z/z", 2),
			conv("p", "ab", "a/a", "b/b", 1),
			conv("p", "bz", "b/b", "z/z", 1)), "direct@p"},
		{"equal cost and length: by conversion name", "a/a", []string{"z/z"}, sorted(
			conv("p", "zeta", "a/a", "z/z", 1),
			conv("p", "alpha", "a/a", "z/z", 1)), "alpha@p"},
		{"same conversion from two processors: by party", "a/a", []string{"z/z"}, sorted(
			conv("p2", "az", "a/a", "z/z", 1),
			conv("p1", "az", "a/a", "z/z", 1)), "az@p1"},
		{"equal chains: the first step decides", "a/a", []string{"z/z"}, sorted(
			conv("p", "a1", "a/a", "b/b", 1), conv("p", "a2", "a/a", "c/c", 1),
			conv("p", "b1", "b/b", "z/z", 1), conv("p", "c0", "c/c", "z/z", 1)), "a1@p>b1@p"},
		{"four steps", "a/a", []string{"e/e"}, sorted(
			conv("p", "ab", "a/a", "b/b", 1), conv("p", "bc", "b/b", "c/c", 1),
			conv("p", "cd", "c/c", "d/d", 1), conv("p", "de", "d/d", "e/e", 1)), "ab@p>bc@p>cd@p>de@p"},
		{"five steps is too long", "a/a", []string{"f/f"}, sorted(
			conv("p", "ab", "a/a", "b/b", 1), conv("p", "bc", "b/b", "c/c", 1),
			conv("p", "cd", "c/c", "d/d", 1), conv("p", "de", "d/d", "e/e", 1), conv("p", "ef", "e/e", "f/f", 1)), ""},
		{"a longer cheaper chain past the bound loses to a dearer one within it", "a/a", []string{"f/f"}, sorted(
			conv("p", "ab", "a/a", "b/b", 1), conv("p", "bc", "b/b", "c/c", 1),
			conv("p", "cd", "c/c", "d/d", 1), conv("p", "de", "d/d", "e/e", 1), conv("p", "ef", "e/e", "f/f", 1),
			conv("p", "bf", "b/b", "f/f", 100)), "ab@p>bf@p"},
		{"a cycle is never taken", "a/a", []string{"z/z"}, sorted(
			conv("p", "ab", "a/a", "b/b", 1), conv("p", "ba", "b/b", "a/a", 1),
			conv("p", "bz", "b/b", "z/z", 1)), "ab@p>bz@p"},
		{"the cheapest way to a type may be too long to go on from", "a/a", []string{"z/z"}, sorted(
			// d/d costs 3 in three steps or 10 in one; from d/d, z/z is two
			// more steps, so only the dear way stays within the bound.
			conv("p", "ab", "a/a", "b/b", 1), conv("p", "bc", "b/b", "c/c", 1), conv("p", "cd", "c/c", "d/d", 1),
			conv("p", "ad", "a/a", "d/d", 10), conv("p", "de", "d/d", "e/e", 1), conv("p", "ez", "e/e", "z/z", 1)), "ad@p>de@p>ez@p"},
	} {
		t.Run(c.name, func(t *testing.T) {
			steps, ok := cheapest(c.ctype, c.target, c.offers)
			if got := names(steps); got != c.want || ok != (c.want != "") {
				t.Fatalf("cheapest = %q, %v; want %q", got, ok, c.want)
			}
			for i, st := range steps {
				if st.To == "" || st.Processor == "" {
					t.Errorf("step %d %+v", i, st)
				}
			}
		})
	}
}

// The chosen chain does not depend on the order offers were heard in (nor
// on map order): every broker picks the same.
func TestCheapestChainDeterministic(t *testing.T) {
	os := []offer{conv("p3", "x", "a/a", "b/b", 1), conv("p1", "x", "a/a", "b/b", 1), conv("p2", "y", "a/a", "c/c", 1),
		conv("p2", "bz", "b/b", "z/z", 1), conv("p1", "cz", "c/c", "z/z", 1)}
	for i := range 50 {
		rot := append(append([]offer(nil), os[i%len(os):]...), os[:i%len(os)]...)
		steps, ok := cheapest("a/a", []string{"z/z"}, sorted(rot...))
		if got := names(steps); !ok || got != "x@p1>bz@p2" {
			t.Fatalf("run %d: %q, %v; want x@p1>bz@p2", i, got, ok)
		}
	}
}

// The registry offers a party's conversions once, from live processors
// only (or every processor heard), never a gateway's.
func TestRegistryConversions(t *testing.T) {
	r := newRegistry()
	now := time.Now().UnixMilli()
	r.add(&schemas.Announce{V: 1, Gateway: "proc", Medium: schemas.MediumProcessor, Instance: "proc-1", TTL: 3000, At: now - 1000,
		Conversions: []schemas.Conversion{{Name: "html2text", From: "text/html", To: "text/plain", Cost: 5}}})
	r.add(&schemas.Announce{V: 1, Gateway: "proc", Medium: schemas.MediumProcessor, Instance: "proc-2", TTL: 3000, At: now,
		Conversions: []schemas.Conversion{{Name: "html2text", From: "text/html", To: "text/plain", Cost: 2}, {Name: "alternative", From: "multipart/alternative", To: "text/html"}}})
	r.add(&schemas.Announce{V: 1, Gateway: "old", Medium: schemas.MediumProcessor, Instance: "old-1", TTL: 3000, At: now - 10_000,
		Conversions: []schemas.Conversion{{Name: "png2text", From: "image/png", To: "text/plain"}}})
	r.add(&schemas.Announce{V: 1, Gateway: "web", Medium: schemas.MediumWeb, Instance: "web-1", TTL: 3000, At: now,
		Conversions: []schemas.Conversion{{Name: "steal", From: "*/*", To: "text/plain"}}})
	got := r.conversions(now, true)
	if len(got) != 2 || got[0].Name != "alternative" || got[1].Name != "html2text" || got[1].Cost != 2 || got[1].proc != "proc" {
		t.Fatalf("live conversions %+v", got)
	}
	all := r.conversions(now, false)
	if len(all) != 3 || all[2].Name != "png2text" || all[2].proc != "old" {
		t.Fatalf("known conversions %+v", all)
	}
	// The cached live offers follow expiries and announcements.
	if got := r.conversions(now+2001, true); len(got) != 2 || got[1].Cost != 2 {
		t.Fatalf("proc-1 expired: %+v", got)
	}
	if got := r.conversions(now+3001, true); len(got) != 0 {
		t.Fatalf("every processor expired: %+v", got)
	}
	r.add(&schemas.Announce{V: 1, Gateway: "old", Medium: schemas.MediumProcessor, Instance: "old-1", TTL: 3000, At: now + 3000,
		Conversions: []schemas.Conversion{{Name: "png2text", From: "image/png", To: "text/plain"}}})
	if got := r.conversions(now+3001, true); len(got) != 1 || got[0].Name != "png2text" {
		t.Fatalf("old announced again: %+v", got)
	}
	r.forget(func(party string) bool { return party != "old" })
	if got := r.conversions(now+3001, true); len(got) != 0 {
		t.Fatalf("old removed: %+v", got)
	}
}

// Content no chain converts for any gateway that could take the message is
// UNSUPPORTED with a reason naming the conversion; a chain whose processor
// is down, a gateway that is down, or a registry still learning the fabric
// is NO_ROUTE.
func TestNoChainIsUnsupported(t *testing.T) {
	_, rdb := redistest.Run(t)
	ctx := context.Background()
	b := &Broker{cfg: Config{Now: time.Now}, profiles: NewProfiles(rdb, nil), reg: newRegistry()}
	if err := b.profiles.Put(ctx, &schemas.Profile{ID: "bob", Addresses: map[string]string{schemas.MediumSMS: "+15550101"}}); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	b.reg.add(&schemas.Announce{V: 1, Gateway: "sms", Medium: schemas.MediumSMS, Instance: "s1", Accepts: []string{"text/plain"}, Reach: []string{"+1"}, TTL: 60_000, At: now})
	b.reg.add(&schemas.Announce{V: 1, Gateway: "proc", Medium: schemas.MediumProcessor, Instance: "p1", TTL: 60_000, At: now,
		Conversions: []schemas.Conversion{{Name: "html2text", From: "text/html", To: "text/plain; charset=utf-8"}}})
	route := func(to, ctype string) error {
		_, err := b.route(ctx, &schemas.IMI{To: to, Content: schemas.Content{Type: ctype}}, nil)
		return err
	}

	if err := route("bob", "image/png"); miap.CodeOf(err) != schemas.CodeNoRoute {
		t.Fatalf("while learning: %v, want NO_ROUTE", err)
	}
	b.reg.learn = 0
	for _, to := range []string{"bob", "+15550199"} {
		err := route(to, "image/png")
		var reason interface{ Reason() string }
		if miap.CodeOf(err) != schemas.CodeUnsupported || !errors.As(err, &reason) {
			t.Fatalf("to %s: %v, want UNSUPPORTED with a reason", to, err)
		}
		want := "no conversion from image/png to text/plain (at most 4 steps; live processors: proc: html2text text/html → text/plain; charset=utf-8)"
		if reason.Reason() != want {
			t.Fatalf("reason %q\nwant   %q", reason.Reason(), want)
		}
	}
	if err := route("bob", "text/html"); err != nil {
		t.Fatalf("html: %v", err)
	}

	// A processor that converts images, heard but down now: NO_ROUTE.
	b.reg.add(&schemas.Announce{V: 1, Gateway: "ocr", Medium: schemas.MediumProcessor, Instance: "o1", TTL: 1000, At: now - 5000,
		Conversions: []schemas.Conversion{{Name: "ocr", From: "image/*", To: "text/plain"}}})
	if err := route("bob", "image/png"); miap.CodeOf(err) != schemas.CodeNoRoute {
		t.Fatalf("with the processor down: %v, want NO_ROUTE", err)
	}
	// Up again: routed through it.
	b.reg.add(&schemas.Announce{V: 1, Gateway: "ocr", Medium: schemas.MediumProcessor, Instance: "o1", TTL: 60_000, At: now,
		Conversions: []schemas.Conversion{{Name: "ocr", From: "image/*", To: "text/plain"}}})
	if d, err := b.route(ctx, &schemas.IMI{To: "bob", Content: schemas.Content{Type: "image/png"}}, nil); err != nil || names(d.steps) != "ocr@ocr" {
		t.Fatalf("with the processor up: %+v, %v", d, err)
	}

	// No processor at all for a gateway that takes only text: the reason
	// says so. A second gateway of the medium that is down and takes
	// images makes it NO_ROUTE.
	b.reg = newRegistry()
	b.reg.learn = 0
	b.reg.add(&schemas.Announce{V: 1, Gateway: "sms", Medium: schemas.MediumSMS, Instance: "s1", Accepts: []string{"text/plain"}, TTL: 60_000, At: now})
	err := route("bob", "multipart/alternative; boundary=x")
	if miap.CodeOf(err) != schemas.CodeUnsupported || !strings.Contains(err.Error(), "no conversion from multipart/alternative to text/plain (at most 4 steps; no live processor)") {
		t.Fatalf("no processor: %v", err)
	}
	b.reg.add(&schemas.Announce{V: 1, Gateway: "mms", Medium: schemas.MediumSMS, Instance: "m1", Accepts: []string{"image/*", "text/plain"}, TTL: 1000, At: now - 5000})
	if err := route("bob", "image/png"); miap.CodeOf(err) != schemas.CodeNoRoute {
		t.Fatalf("with an image-taking gateway down: %v, want NO_ROUTE", err)
	}
}

// A reason is one line of at most maxReason bytes.
func TestOneLine(t *testing.T) {
	if got := oneLine("a\r\nb\x00c", 100); got != "a  b c" {
		t.Errorf("oneLine = %q", got)
	}
	long := strings.Repeat("é", 600)
	got := oneLine(long, maxReason)
	if len(got) > maxReason || !strings.HasSuffix(got, "…") || !strings.HasPrefix(got, "éé") {
		t.Errorf("cut: %d bytes", len(got))
	}
	if strings.ContainsRune(got[:len(got)-len("…")], '\uFFFD') {
		t.Error("cut inside a character")
	}
}

// BenchmarkPlan is the routing cost of a chain: multipart/alternative to a
// text-only gateway over the standard conversions and 20 others.
func BenchmarkPlan(b *testing.B) {
	br := &Broker{reg: newRegistry()}
	now := time.Now().UnixMilli()
	convs := []schemas.Conversion{{Name: "alternative", From: "multipart/alternative", To: "text/html; charset=utf-8"},
		{Name: "html2text", From: "text/html", To: "text/plain; charset=utf-8"}}
	for i := range 20 {
		convs = append(convs, schemas.Conversion{Name: "x" + strconv.Itoa(i), From: "image/*", To: "image/t" + strconv.Itoa(i), Cost: 2})
	}
	br.reg.add(&schemas.Announce{V: 1, Gateway: "proc", Medium: schemas.MediumProcessor, Instance: "p1", Conversions: convs, TTL: 60_000, At: now})
	gw := &schemas.Announce{Gateway: "sms", Accepts: []string{"text/plain"}}
	b.ReportAllocs()
	for b.Loop() {
		if steps, ok := br.plan("multipart/alternative; boundary=x", gw, now); !ok || len(steps) != 2 {
			b.Fatal(steps)
		}
	}
}
