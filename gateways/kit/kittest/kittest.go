// Package kittest is the conformance suite every medium adapter of the
// gateway kit must pass, in the manner of Watermill's TestPubSub: Run
// starts a real fabric (embedded NATS, redis-server, a broker, an
// originating kit), starts the adapter's gateway through its Start
// function, and checks delivery, text fidelity, de-duplication by message
// id, concurrency, and the status reported back to the sender; guarded by
// Features, also a recipient's refusal reported as failed with its reason,
// a temporary refusal retried into exactly one delivery, and content larger
// than one JetStream message.
package kittest

import (
	"context"
	"errors"
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

// Expecter is implemented by a Probe whose recipient never sees the
// message id (an SMS carries none): before each send the suite tells it the
// text of the message id, and the probe counts the arrivals of that text.
// Texts are unique within a test, except a message sent again under the
// same id.
type Expecter interface {
	Expect(msgID, text string)
}

// Refuser is implemented by a Probe whose recipient can be told to refuse
// what arrives (Features.Refusal, Features.Retry).
type Refuser interface {
	// Refuse makes the recipient refuse every message from now on, for a
	// while (temporary: the medium should try again) or for good.
	Refuse(t testing.TB, temporary bool)
	// Accept ends the refusal.
	Accept(t testing.TB)
	// Refused returns how many deliveries the recipient has refused.
	Refused(t testing.TB) int
}

// Features says what the medium supports; the suite skips what does not apply.
type Features struct {
	// Immediate: Deliver reports delivered (not transferred) when it returns.
	Immediate bool
	// MaxText is the longest text the medium carries whole (0: 64 KiB).
	MaxText int
	// ASCIIOnly: the medium cannot carry non-ASCII text.
	ASCIIOnly bool
	// Refusal: the recipient can refuse a message for good (the probe is a
	// Refuser), and the medium then reports it failed, with a reason, to
	// the sender (an Immediate medium: the send fails with the reason).
	Refusal bool
	// Retry: after a temporary refusal (the probe is a Refuser) the medium
	// tries again by itself (an Immediate medium: the send answers a
	// retryable code and the sender tries again under the same message
	// id), and the recipient gets the message once.
	Retry bool
	// LargeContent: the medium carries content larger than one JetStream
	// message (LargeSize), as the e-mail gateway does through the object
	// store.
	LargeContent bool
}

// Subject is the subject of every message the suite sends; a medium
// without a subject field may show it in the text (SMS: on its own line).
const Subject = "conformance"

// LargeSize is the text size of the LargeContent case: above the 1 MiB a
// JetStream stream message holds by default.
const LargeSize = 1536 << 10

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
		{"RefusalReportedFailed", testRefused},
		{"RetriedDeliveredOnce", testRetried},
		{"LargeContent", testLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if reason := a.skip(tc.name); reason != "" {
				t.Skip(reason)
			}
			tc.fn(t, start(t, a))
		})
	}
}

// skip says why a case does not apply to the adapter's features, "".
func (a Adapter) skip(name string) string {
	switch {
	case name == "RefusalReportedFailed" && !a.Features.Refusal:
		return "Features.Refusal is off: the recipient cannot refuse a message"
	case name == "RetriedDeliveredOnce" && !a.Features.Retry:
		return "Features.Retry is off: the medium does not retry a refused message"
	case name == "LargeContent" && !a.Features.LargeContent:
		return "Features.LargeContent is off"
	}
	return ""
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
	if e, ok := s.probe.(Expecter); ok {
		e.Expect(id, text)
	}
	return s.og.Send(context.Background(), &kit.Submission{MsgID: id, From: schemas.Endpoint{Medium: "test", Address: "suite-sender", Client: "suite-sender"},
		To: "suite-rcpt", Subject: Subject, Type: "text/plain; charset=utf-8", Content: []byte(text)})
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

// refuser returns the probe as a Refuser, which the feature requires.
func (s *suite) refuser(t *testing.T) Refuser {
	t.Helper()
	r, ok := s.probe.(Refuser)
	if !ok {
		t.Fatalf("the adapter's Features ask for refusals, but its probe %T is not a kittest.Refuser", s.probe)
	}
	return r
}

// A recipient's refusal for good reaches the sender as failed, with a
// reason (an immediate medium's refusal as the error of the send), and the
// message is not delivered.
func testRefused(t *testing.T, s *suite) {
	r := s.refuser(t)
	r.Refuse(t, false)
	id := kit.NewMsgID()
	res, err := s.send(t, id, "refuse me")
	switch {
	case err != nil && s.a.Features.Immediate:
		t.Logf("refused at once: %v", err)
	case err != nil:
		t.Fatalf("send: %v", err)
	case res.Status == schemas.StatusDelivered:
		t.Fatalf("refused message answered %q", res.Status)
	default:
		var note *schemas.StatusEvent
		deadline := time.Now().Add(20 * time.Second)
		for note == nil {
			if note = s.notes.NoteOf(id, schemas.StatusFailed); note == nil && time.Now().After(deadline) {
				st, err := s.og.Query(context.Background(), id)
				t.Fatalf("no failed notification at the sender: notified %v; state %+v, %v", s.notes.Statuses(id), st, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if note.Reason == "" {
			t.Fatalf("failed without a reason: %+v", note)
		}
		// Notifications may arrive in any order (failed before transferred).
		t.Logf("reason: %s %s; notified %v", note.Code, note.Reason, s.notes.Statuses(id))
	}
	fabrictest.Eventually(t, 10*time.Second, "state failed", func() bool {
		st, err := s.og.Query(context.Background(), id)
		return err == nil && st.State == schemas.StatusFailed
	})
	if n, _ := s.probe.Received(t, id); n != 0 {
		t.Fatalf("refused message received %d times", n)
	}
	if r.Refused(t) == 0 {
		t.Fatal("the recipient refused nothing")
	}
}

// After a temporary refusal the message is tried again, by the medium
// (its queue) or, for an immediate medium, by the sender, which was told to
// try again (a retryable code) and does so under the same message id: the
// recipient gets the message exactly once and the sender hears delivered,
// never failed.
func testRetried(t *testing.T, s *suite) {
	r := s.refuser(t)
	r.Refuse(t, true)
	id := kit.NewMsgID()
	res, err := s.send(t, id, "try me again")
	var se *schemas.Error
	switch {
	case err != nil && s.a.Features.Immediate && errors.As(err, &se) && se.Code.Retryable():
		r.Accept(t)
		if res, err = s.send(t, id, "try me again"); err != nil || res.Status != schemas.StatusDelivered {
			t.Fatalf("send again: %v, %v", res, err)
		}
	case err != nil:
		t.Fatalf("send: %v", err)
	case res.Status != schemas.StatusTransferred:
		t.Fatalf("temporarily refused message answered %q", res.Status)
	default:
		fabrictest.Eventually(t, 20*time.Second, "a refused attempt", func() bool { return r.Refused(t) > 0 })
		r.Accept(t)
	}
	s.waitReceived(t, id, "try me again")
	fabrictest.Eventually(t, 20*time.Second, "a delivered notification at the sender", func() bool {
		for _, st := range s.notes.Statuses(id) {
			if st == schemas.StatusFailed {
				t.Fatalf("retried message reported failed: %+v", s.notes.NoteOf(id, st))
			}
			if st == schemas.StatusDelivered {
				return true
			}
		}
		return false
	})
	time.Sleep(500 * time.Millisecond)
	if n, _ := s.probe.Received(t, id); n != 1 {
		t.Fatalf("retried message received %d times", n)
	}
}

// Content larger than one JetStream message arrives whole.
func testLarge(t *testing.T, s *suite) {
	line := "all work and no play makes jack a dull boy\n"
	big := make([]byte, 0, LargeSize+len(line))
	for len(big) < LargeSize {
		big = append(big, line...)
	}
	big = big[:len(big)-1] // no text of the suite ends with a line break
	id := s.mustSend(t, string(big))
	var n int
	var got string
	fabrictest.Eventually(t, 30*time.Second, "the large message at the recipient", func() bool {
		n, got = s.probe.Received(t, id)
		return n > 0
	})
	if got != string(big) {
		t.Fatalf("recipient saw %d bytes, want %d", len(got), len(big))
	}
}
