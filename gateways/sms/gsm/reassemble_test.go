package gsm

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time          { return c.t }
func (c *fakeClock) Advance(d time.Duration) { c.t = c.t.Add(d) }

func newTestReassembler() (*Reassembler, *fakeClock) {
	clk := &fakeClock{t: time.Date(2024, 1, 2, 15, 4, 5, 0, time.UTC)}
	return &Reassembler{Now: clk.Now, Timeout: time.Minute, MaxPending: 4}, clk
}

// partsOf splits text and turns the segments into Parts as a receiver
// would, through ParseUDH.
func partsOf(t *testing.T, text string, ref uint8) []Part {
	t.Helper()
	segs, c := Split(text, ref)
	var out []Part
	for _, s := range segs {
		p := Part{Source: "447700900123", Dest: "UIMS", Coding: c, Total: 1, Seq: 1, Payload: s.Payload}
		if s.UDH != nil {
			u, payload, err := ParseUDH(s.ShortMessage())
			if err != nil {
				t.Fatal(err)
			}
			p.Ref, p.Total, p.Seq, p.Payload = u.Concat.Ref, u.Concat.Total, u.Concat.Seq, payload
		}
		out = append(out, p)
	}
	return out
}

func addAll(t *testing.T, r *Reassembler, parts []Part, order ...int) []*Message {
	t.Helper()
	var got []*Message
	for _, i := range order {
		m, err := r.Add(parts[i])
		if err != nil {
			t.Fatalf("Add part %d: %v", i+1, err)
		}
		if m != nil {
			got = append(got, m)
		}
	}
	return got
}

var longText = strings.Repeat("Reassemble me, please; ", 20) // 460 septets, 4 parts

func TestReassembleInOrder(t *testing.T) {
	r, _ := newTestReassembler()
	parts := partsOf(t, longText, 77)
	if len(parts) != 4 {
		t.Fatalf("%d parts", len(parts))
	}
	got := addAll(t, r, parts, 0, 1, 2, 3)
	if len(got) != 1 || got[0].Partial || got[0].Missing != nil || got[0].Total != 4 || got[0].Ref != 77 {
		t.Fatalf("got %+v", got)
	}
	if txt, err := got[0].Text(); err != nil || txt != longText {
		t.Fatalf("text %q %v", txt, err)
	}
	if r.Pending() != 0 || r.Stats().Completed != 1 {
		t.Fatalf("pending %d stats %+v", r.Pending(), r.Stats())
	}
}

func TestReassembleOutOfOrderWithDuplicates(t *testing.T) {
	r, clk := newTestReassembler()
	parts := partsOf(t, longText, 5)
	got := addAll(t, r, parts, 3, 1, 3, 0, 1, 2)
	if len(got) != 1 {
		t.Fatalf("%d messages", len(got))
	}
	if txt, _ := got[0].Text(); txt != longText {
		t.Fatalf("text %q", txt)
	}
	// Retransmissions after completion are duplicates, not a new message.
	clk.Advance(30 * time.Second)
	if again := addAll(t, r, parts, 2, 0, 1, 3); len(again) != 0 {
		t.Fatalf("second delivery: %+v", again)
	}
	if s := r.Stats(); s.Duplicates != 6 || s.Completed != 1 || r.Pending() != 0 {
		t.Fatalf("stats %+v pending %d", s, r.Pending())
	}
	if exp := r.Expire(clk.t.Add(time.Hour)); len(exp) != 0 {
		t.Fatalf("expired %+v", exp)
	}
}

func TestReassembleMissingPart(t *testing.T) {
	r, clk := newTestReassembler()
	parts := partsOf(t, longText, 9)
	addAll(t, r, parts, 0, 2)
	clk.Advance(10 * time.Second)
	addAll(t, r, parts, 3)
	if exp := r.Expire(clk.t.Add(49 * time.Second)); len(exp) != 0 {
		t.Fatalf("expired early: %+v", exp)
	}
	exp := r.Expire(clk.t.Add(50 * time.Second))
	if len(exp) != 1 {
		t.Fatalf("expired %d", len(exp))
	}
	m := exp[0]
	if !m.Partial || !slices.Equal(m.Missing, []uint8{2}) || m.Total != 4 || m.Ref != 9 {
		t.Fatalf("partial %+v", m)
	}
	want := string(parts[0].Payload) + string(parts[2].Payload) + string(parts[3].Payload)
	if string(m.Payload) != want {
		t.Fatal("partial payload")
	}
	// Exactly once: neither a second Expire nor the late part delivers.
	if exp := r.Expire(clk.t.Add(55 * time.Second)); len(exp) != 0 {
		t.Fatalf("expired twice: %+v", exp)
	}
	clk.Advance(55 * time.Second)
	if got := addAll(t, r, parts, 1, 0); len(got) != 0 {
		t.Fatalf("late part delivered: %+v", got)
	}
	if s := r.Stats(); s.Late != 1 || s.Duplicates != 1 || s.Expired != 1 || r.Pending() != 0 {
		t.Fatalf("stats %+v pending %d", s, r.Pending())
	}
	if exp := r.Expire(clk.t.Add(time.Hour)); len(exp) != 0 {
		t.Fatalf("expired again: %+v", exp)
	}
}

func TestReassembleReferenceReuse(t *testing.T) {
	r, clk := newTestReassembler()
	a := partsOf(t, longText, 1)
	b := partsOf(t, strings.ToUpper(longText), 1)
	if got := addAll(t, r, a, 0, 1, 2, 3); len(got) != 1 {
		t.Fatal("first message")
	}
	clk.Advance(time.Second)
	got := addAll(t, r, b, 1, 0, 3, 2)
	if len(got) != 1 {
		t.Fatalf("second message with reused reference: %d", len(got))
	}
	if txt, _ := got[0].Text(); txt != strings.ToUpper(longText) {
		t.Fatal("second text")
	}
	// After the memory window the same parts form a new message again.
	clk.Advance(2 * time.Minute)
	if got := addAll(t, r, a, 0, 1, 2, 3); len(got) != 1 {
		t.Fatal("after window")
	}
}

func TestReassembleLimits(t *testing.T) {
	r, _ := newTestReassembler()
	for i := range 4 {
		if _, err := r.Add(Part{Source: "s", Dest: "d", Ref: uint16(i), Total: 2, Seq: 1}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := r.Add(Part{Source: "s", Dest: "d", Ref: 99, Total: 2, Seq: 1})
	if !errors.Is(err, ErrPendingFull) || r.Stats().Rejected != 1 {
		t.Fatalf("full: %v", err)
	}
	// A part of a held message is still accepted.
	if m, err := r.Add(Part{Source: "s", Dest: "d", Ref: 3, Total: 2, Seq: 2}); err != nil || m == nil {
		t.Fatalf("completing while full: %v %v", m, err)
	}
	for _, p := range []Part{{Total: 0, Seq: 0}, {Total: 2, Seq: 0}, {Total: 2, Seq: 3}} {
		if _, err := r.Add(p); !errors.Is(err, ErrBadConcat) {
			t.Errorf("%+v: %v", p, err)
		}
	}
	r.MaxParts = 10
	if _, err := r.Add(Part{Total: 11, Seq: 1}); !errors.Is(err, ErrPartsLimit) {
		t.Errorf("parts limit: %v", err)
	}
	// Total 255 is the ceiling of the format and accepted by default.
	r2, _ := newTestReassembler()
	var last *Message
	for seq := 255; seq >= 1; seq-- {
		m, err := r2.Add(Part{Ref: 1, Total: 255, Seq: uint8(seq), Payload: []byte{byte(seq)}})
		if err != nil {
			t.Fatal(err)
		}
		if m != nil {
			last = m
		}
	}
	if last == nil || len(last.Payload) != 255 || last.Payload[0] != 1 || last.Payload[254] != 255 {
		t.Fatalf("255 parts: %+v", last)
	}
	// Single part messages pass straight through.
	m, err := r2.Add(Part{Total: 1, Seq: 1, Payload: []byte("x")})
	if err != nil || m == nil || string(m.Payload) != "x" || m.Partial {
		t.Fatalf("single: %+v %v", m, err)
	}
}

func TestReassembleDoneMemoryBounded(t *testing.T) {
	r, _ := newTestReassembler()
	for i := range 100 {
		addAll(t, r, []Part{{Ref: uint16(i), Total: 2, Seq: 1}, {Ref: uint16(i), Total: 2, Seq: 2}}, 0, 1)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.done) > r.MaxPending || len(r.doneQ) > 2*r.MaxPending {
		t.Fatalf("done %d queue %d", len(r.done), len(r.doneQ))
	}
}

// A key completed again and again after its memory window, with Expire
// never called, must not grow the eviction queue without bound.
func TestReassembleDoneQueueBounded(t *testing.T) {
	r, clk := newTestReassembler()
	for range 100 {
		addAll(t, r, []Part{{Ref: 1, Total: 2, Seq: 1}, {Ref: 1, Total: 2, Seq: 2}}, 0, 1)
		clk.Advance(2 * time.Minute)
	}
	if s := r.Stats(); s.Completed != 100 || s.Duplicates != 0 {
		t.Fatalf("stats %+v", s)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.done) > 1 || len(r.doneQ) > 2 {
		t.Fatalf("done %d queue %d", len(r.done), len(r.doneQ))
	}
}

func TestReassembleConcurrent(t *testing.T) {
	r := &Reassembler{}
	parts := partsOf(t, longText, 3)
	var wg sync.WaitGroup
	results := make(chan *Message, 64)
	for w := range 8 {
		wg.Go(func() {
			for i := range parts {
				p := parts[(i+w)%len(parts)]
				m, err := r.Add(p)
				if err != nil {
					t.Error(err)
				}
				if m != nil {
					results <- m
				}
			}
		})
	}
	wg.Wait()
	close(results)
	n := 0
	for m := range results {
		n++
		if txt, _ := m.Text(); txt != longText {
			t.Error("text")
		}
	}
	if n != 1 || r.Stats().Duplicates != uint64(8*len(parts)-len(parts)) {
		t.Fatalf("%d deliveries, stats %+v", n, r.Stats())
	}
}
