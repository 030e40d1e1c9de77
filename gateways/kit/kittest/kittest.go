// Package kittest is the conformance suite every medium adapter of the
// gateway kit must pass, in the manner of Watermill's TestPubSub: Run
// starts a real fabric (embedded NATS, redis-server, a broker, an
// originating kit), starts the adapter's gateway through its Start
// function, and checks delivery, text fidelity, de-duplication by message
// id, concurrency, and the status reported back to the sender.
package kittest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/schemas"
)

// Probe looks at what the adapter's recipient received.
type Probe interface {
	// Received returns how many times the message msgID reached the
	// recipient, and its text as the recipient sees it.
	Received(t testing.TB, msgID string) (count int, text string)
}

// Features says what the medium supports; the suite skips what does not apply.
type Features struct {
	// Immediate: Deliver reports delivered (not transferred) when it returns.
	Immediate bool
	// MaxText is the longest text the medium carries whole (0: 64 KiB).
	MaxText int
	// ASCIIOnly: the medium cannot carry non-ASCII text.
	ASCIIOnly bool
}

// Adapter is a medium under test.
type Adapter struct {
	// Gateway is the party id its gateway runs as (it must be one of
	// fabrictest.Parties); Medium its medium name.
	Gateway, Medium string
	Features        Features
	// Address is the test recipient's address on the medium.
	Address string
	// Profile, if set, completes the test recipient's profile (a token, SMPP
	// credentials...) before it is stored.
	Profile func(p *schemas.Profile)
	// Start starts the adapter's gateway in f and returns its probe; the
	// gateway must stop when the test ends.
	Start func(t *testing.T, f *fabrictest.Fabric) Probe
}

type suite struct {
	a     Adapter
	f     *fabrictest.Fabric
	og    *kit.Kit
	notes *fabrictest.Inbox
	probe Probe
}

// Run runs the conformance suite against a.
func Run(t *testing.T, a Adapter) {
	tests := []struct {
		name string
		fn   func(*testing.T, *suite)
	}{
		{"Delivers", testDelivers},
		{"TextFidelity", testTextFidelity},
		{"SameMessageIDDeliveredOnce", testDuplicate},
		{"Concurrent", testConcurrent},
		{"StatusReachesSender", testStatus},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, start(t, a)) })
	}
}

func start(t *testing.T, a Adapter) *suite {
	f := fabrictest.New(t)
	f.StartDefaultBroker()
	s := &suite{a: a, f: f, notes: fabrictest.NewInbox()}
	rcpt := &schemas.Profile{ID: "suite-rcpt", Addresses: map[string]string{a.Medium: a.Address}, Prefer: []string{a.Medium}}
	if a.Profile != nil {
		a.Profile(rcpt)
	}
	f.PutProfiles(&schemas.Profile{ID: "suite-sender", Addresses: map[string]string{"test": "suite-sender"}}, rcpt)
	s.probe = a.Start(t, f)
	s.og, _ = f.StartKit(s.notes, kit.Config{Gateway: "test", Medium: "test"})
	// Wait until the adapter's gateway is routable.
	fabrictest.Eventually(t, 15*time.Second, "a route to the adapter", func() bool {
		_, err := s.send(t, kit.NewMsgID(), "warm-up")
		return err == nil
	})
	return s
}

func (s *suite) send(t testing.TB, id, text string) (*kit.Result, error) {
	return s.og.Send(context.Background(), &kit.Submission{MsgID: id, From: schemas.Endpoint{Medium: "test", Address: "suite-sender", Client: "suite-sender"},
		To: "suite-rcpt", Subject: "conformance", Type: "text/plain; charset=utf-8", Content: []byte(text)})
}

func (s *suite) mustSend(t testing.TB, text string) string {
	t.Helper()
	id := kit.NewMsgID()
	res, err := s.send(t, id, text)
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	if res.Status != schemas.StatusDelivered && res.Status != schemas.StatusTransferred {
		t.Fatalf("send status %q, want delivered or transferred", res.Status)
	}
	if s.a.Features.Immediate && res.Status != schemas.StatusDelivered {
		t.Fatalf("immediate medium answered %q", res.Status)
	}
	return id
}

func (s *suite) waitReceived(t testing.TB, id, want string) {
	t.Helper()
	var n int
	var got string
	fabrictest.Eventually(t, 15*time.Second, "message "+id+" at the recipient", func() bool {
		n, got = s.probe.Received(t, id)
		return n > 0
	})
	if got != want {
		t.Fatalf("recipient saw %q, want %q", got, want)
	}
}

func testDelivers(t *testing.T, s *suite) {
	id := s.mustSend(t, "hello from the conformance suite")
	s.waitReceived(t, id, "hello from the conformance suite")
}

func testTextFidelity(t *testing.T, s *suite) {
	texts := []string{"line one\nline two", "tabs\tand  spaces", "quotes \"'<&>"}
	if !s.a.Features.ASCIIOnly {
		texts = append(texts, "héllo wörld ✓ €", "emoji 🙂👍 and 日本語")
	}
	max := s.a.Features.MaxText
	if max == 0 {
		max = 64 << 10
	}
	long := make([]byte, min(max, 5000))
	for i := range long {
		long[i] = "abcdefghij"[i%10]
	}
	texts = append(texts, string(long))
	for _, text := range texts {
		id := s.mustSend(t, text)
		s.waitReceived(t, id, text)
	}
}

func testDuplicate(t *testing.T, s *suite) {
	id := kit.NewMsgID()
	for i := range 3 { // a client retrying with the same message id
		if _, err := s.send(t, id, "only once"); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	s.waitReceived(t, id, "only once")
	time.Sleep(300 * time.Millisecond)
	if n, _ := s.probe.Received(t, id); n != 1 {
		t.Fatalf("message delivered %d times", n)
	}
}

func testConcurrent(t *testing.T, s *suite) {
	const n = 20
	ids := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids[i] = kit.NewMsgID()
			if _, err := s.send(t, ids[i], fmt.Sprintf("concurrent %d", i)); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i, id := range ids {
		s.waitReceived(t, id, fmt.Sprintf("concurrent %d", i))
	}
}

func testStatus(t *testing.T, s *suite) {
	id := s.mustSend(t, "status please")
	s.waitReceived(t, id, "status please")
	fabrictest.Eventually(t, 15*time.Second, "a delivered notification at the sender", func() bool {
		for _, st := range s.notes.Statuses(id) {
			if st == schemas.StatusDelivered {
				return true
			}
		}
		return false
	})
	st, err := s.og.Query(context.Background(), id)
	if err != nil || (st.State != schemas.StatusDelivered && st.State != schemas.StatusRead) {
		t.Fatalf("state %v, %v", st, err)
	}
}
