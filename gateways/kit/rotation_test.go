package kit_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// rotationFabric is a fabric whose originating gateway "test" has two keys:
// test-1, current until rotateAt, and test-2 from then on, each with its
// own encryption key (PROTOCOL.md §3.4, §14.2). Every party runs on one
// settable clock, so that the test moves the fabric past the rotation
// without waiting for it.
type rotationFabric struct {
	f        *fabrictest.Fabric
	clock    *fabrictest.Clock
	rotateAt time.Time
	og, dg   *fabrictest.Inbox
	ogKit    *kit.Kit
	ogEng    *miap.Engine // the originator's keys on the fabric's clock: what it seals with
}

func newRotationFabric(t *testing.T, strict bool) *rotationFabric {
	t.Helper()
	start := time.Now()
	x := &rotationFabric{f: fabrictest.New(t), clock: fabrictest.NewClock(start), rotateAt: start.Add(10 * time.Minute),
		og: fabrictest.NewInbox(), dg: fabrictest.NewInbox()}
	next, err := miap.NewKeyEntry(rand.Reader, "test", "test-2", x.rotateAt)
	if err != nil {
		t.Fatal(err)
	}
	for i := range x.f.Keys.Keys {
		if e := &x.f.Keys.Keys[i]; e.Party == "test" {
			e.NotAfter = x.rotateAt.Add(24 * time.Hour) // the overlap: the old key still opens
			next.Role, next.Media = e.Role, e.Media
		}
	}
	x.f.Keys.Keys = append(x.f.Keys.Keys, next)
	// a deadline past the rotation: the first try is still on its way then
	x.f.StartBroker(broker.Config{Now: x.clock.Now, Deadline: time.Hour})
	x.f.PutProfiles(&schemas.Profile{ID: "alice", Addresses: map[string]string{"test": "alice"}},
		&schemas.Profile{ID: "bob", Addresses: map[string]string{"web": "bob"}})
	x.f.StartKit(x.dg, kit.Config{Gateway: "peer", Medium: schemas.MediumWeb, Strict: strict, Now: x.clock.Now})
	x.ogKit, _ = x.f.StartKit(x.og, kit.Config{Gateway: "test", Medium: "test", Strict: strict, Now: x.clock.Now,
		TransferTimeout: 2 * time.Second})
	if x.ogEng, err = miap.New(miap.Config{Keys: x.f.Keyring("test"), Now: x.clock.Now}); err != nil {
		t.Fatal(err)
	}
	x.waitRoute(t)
	return x
}

// waitRoute sends fresh messages until one is routed: the gateways'
// announcements reached the brokers (at the start, after the clock moved).
func (x *rotationFabric) waitRoute(t *testing.T) {
	t.Helper()
	fabrictest.Eventually(t, 10*time.Second, "a route to bob", func() bool {
		_, err := x.ogKit.Send(context.Background(), rotationSubmission("", "warm-up"))
		return err == nil
	})
}

func rotationSubmission(msgID, text string) *kit.Submission {
	return &kit.Submission{MsgID: msgID, From: schemas.Endpoint{Medium: "test", Address: "alice", Client: "alice"}, To: "bob",
		Content: []byte(text)}
}

// rotate moves the fabric past the rotation and checks that the
// originator seals with another key from then on.
func (x *rotationFabric) rotate(t *testing.T) {
	t.Helper()
	before := x.ogEng.SealPublic("test")
	x.clock.Set(x.rotateAt.Add(time.Minute))
	if after := x.ogEng.SealPublic("test"); after == before || after == "" {
		t.Fatalf("the originator's encryption key did not rotate: %q before, %q after", before, after)
	}
	x.waitRoute(t) // the announcements before the move are stale now
}

// imiTap records the IMI requests of the originator on the wire, as anyone
// on NATS sees them.
type imiTap struct {
	mu   sync.Mutex
	msgs []*nats.Msg
}

func tapIMI(t *testing.T, nc *nats.Conn) *imiTap {
	tap := &imiTap{}
	sub, err := nc.Subscribe(schemas.SubjectBrokerIMI, func(m *nats.Msg) {
		tap.mu.Lock()
		defer tap.mu.Unlock()
		tap.msgs = append(tap.msgs, m)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	nc.Flush()
	return tap
}

// last returns the last sealed IMI request of msgID seen.
func (tap *imiTap) last(msgID string) *nats.Msg {
	tap.mu.Lock()
	defer tap.mu.Unlock()
	for i := len(tap.msgs) - 1; i >= 0; i-- {
		var imi schemas.IMI
		if json.Unmarshal(tap.msgs[i].Data, &imi) == nil && imi.MsgID == msgID && imi.Content.Sealed != "" {
			return tap.msgs[i]
		}
	}
	return nil
}

// A client's retry of a message first sent before the originator's
// encryption key rotated (PROTOCOL.md §14.3, "Retries across a rotation")
// is a retry like any other: a message still on its way gets its route
// again and is delivered once, sealed; a delivered one answers with its
// status and is not delivered again. A replay of the retry's frame is
// refused (REPLAY; BAD_SESSION in strict mode).
func TestRetryAcrossSealKeyRotation(t *testing.T) {
	for _, strict := range []bool{false, true} {
		t.Run(map[bool]string{false: "fast", true: "strict"}[strict], func(t *testing.T) { testRetryAcrossSealKeyRotation(t, strict) })
	}
}

func testRetryAcrossSealKeyRotation(t *testing.T, strict bool) {
	x := newRotationFabric(t, strict)
	ctx := context.Background()
	tap := tapIMI(t, x.f.Conn("observer"))

	// open: the destination is busy at the first try, so the client hears
	// "try again" while the brokers keep the message routed
	open := rotationSubmission(kit.NewMsgID(), "sealed before the rotation, retried after it")
	x.dg.Fail = &schemas.Error{Code: schemas.CodeBusy}
	if _, err := x.ogKit.Send(ctx, open); !miap.CodeOf(err).Retryable() {
		t.Fatalf("first try with the destination busy: %v, want a temporary failure", err)
	}
	x.dg.Fail = nil
	first, err := x.ogKit.Query(ctx, open.MsgID)
	if err != nil || first.State != schemas.StatusRouted {
		t.Fatalf("after the first try: %+v %v, want routed", first, err)
	}
	// done: delivered at the first try
	done := rotationSubmission(kit.NewMsgID(), "delivered before the rotation")
	if res, err := x.ogKit.Send(ctx, done); err != nil || res.Status != schemas.StatusDelivered {
		t.Fatalf("first send: %+v %v", res, err)
	}
	firstIMI := tap.last(open.MsgID)

	x.rotate(t)
	res, err := x.ogKit.Send(ctx, open)
	if err != nil {
		t.Fatalf("retry after the rotation: %v (%s), want the route of the first try", err, miap.CodeOf(err))
	}
	if res.Status != schemas.StatusDelivered || res.Tx != first.Tx || res.Dest != first.Dest {
		t.Fatalf("retry after the rotation: %+v, want delivered on the first try's route %+v", res, first)
	}
	d := x.dg.Get(open.MsgID)
	if d == nil || string(d.Content) != string(open.Content) || d.Routed.IMI.Content.Sealed == "" {
		t.Fatalf("delivered %+v, want the content, sealed", d)
	}
	var sent schemas.IMI
	if err := json.Unmarshal(firstIMI.Data, &sent); err != nil || d.Routed.IMI.Content.SHA256 != sent.Content.SHA256 {
		t.Fatalf("delivered under digest %s, the first try's was %s (%v)", d.Routed.IMI.Content.SHA256, sent.Content.SHA256, err)
	}
	res, err = x.ogKit.Send(ctx, done)
	if err != nil || res.Status != schemas.StatusDelivered || res.Tx != done.MsgID {
		t.Fatalf("retry of a delivered message after the rotation: %+v %v, want its status delivered", res, err)
	}
	for _, s := range []*kit.Submission{open, done} {
		if n := x.dg.Deliveries(s.MsgID); n != 1 {
			t.Errorf("%s delivered %d times, want once", s.Content, n)
		}
	}

	// an attacker replays the retry's sealed frame
	retry := tap.last(open.MsgID)
	if retry == nil {
		t.Fatal("no sealed IMI of the retry on the wire")
	}
	replay := nats.NewMsg(schemas.SubjectBrokerIMI)
	replay.Header, replay.Data = retry.Header, retry.Data
	reply, err := x.f.Conn("attacker").RequestMsg(replay, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// in strict mode its session key was used up first (PROTOCOL.md §8, 6b)
	want := map[bool]schemas.Code{false: schemas.CodeReplay, true: schemas.CodeBadSession}[strict]
	if code := reply.Header.Get(miap.HdrError); code != want.String() {
		t.Fatalf("replayed IMI frame: %q, want %s", code, want)
	}
}

// A retry after the rotation whose content is not the first try's is
// still DUPLICATE, for a message on its way and for a delivered one,
// whatever key the originator seals it with; nothing more is delivered.
func TestRetryAcrossSealKeyRotationChangedContent(t *testing.T) {
	x := newRotationFabric(t, false)
	ctx := context.Background()
	open := rotationSubmission(kit.NewMsgID(), "the first content")
	x.dg.Fail = &schemas.Error{Code: schemas.CodeBusy}
	if _, err := x.ogKit.Send(ctx, open); !miap.CodeOf(err).Retryable() {
		t.Fatalf("first try with the destination busy: %v, want a temporary failure", err)
	}
	x.dg.Fail = nil
	done := rotationSubmission(kit.NewMsgID(), "delivered before the rotation")
	if _, err := x.ogKit.Send(ctx, done); err != nil {
		t.Fatal(err)
	}

	x.rotate(t)
	for _, s := range []*kit.Submission{open, done} {
		changed := rotationSubmission(s.MsgID, string(s.Content)+", changed")
		if _, err := x.ogKit.Send(ctx, changed); miap.CodeOf(err) != schemas.CodeDuplicate {
			t.Fatalf("retry of %q with other content after the rotation: %v, want DUPLICATE", s.Content, err)
		}
	}
	if n := x.dg.Deliveries(open.MsgID); n != 0 {
		t.Errorf("the message with changed content was delivered %d times", n)
	}
	if n := x.dg.Deliveries(done.MsgID); n != 1 {
		t.Errorf("the delivered message was delivered %d times, want once", n)
	}
}
