package broker_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/internal/tracing"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

func profiles(f *fabrictest.Fabric) {
	f.PutProfiles(&schemas.Profile{ID: "alice", Addresses: map[string]string{"test": "alice"}},
		&schemas.Profile{ID: "bob", Addresses: map[string]string{"web": "bob"}})
}

func submission(text string) *kit.Submission {
	return &kit.Submission{From: schemas.Endpoint{Medium: "test", Address: "alice", Client: "alice"}, To: "bob", Content: []byte(text)}
}

// waitRoute sends one message until the fabric routes it (heartbeats arrive).
func waitRoute(t *testing.T, k *kit.Kit) *kit.Result {
	var res *kit.Result
	fabrictest.Eventually(t, 10*time.Second, "a route to bob", func() bool {
		var err error
		res, err = k.Send(context.Background(), submission("warm-up"))
		return err == nil
	})
	return res
}

// Two brokers share the load, and stopping one mid-run loses no transaction.
func TestTwoBrokersShareLoadAndOneStops(t *testing.T) {
	f := fabrictest.New(t)
	_, r1 := f.StartBroker(broker.Config{Instance: "b1"})
	f.StartBroker(broker.Config{Instance: "b2"})
	profiles(f)
	og, dg := fabrictest.NewInbox(), fabrictest.NewInbox()
	ogKit, _ := f.StartKit(og, kit.Config{Gateway: "test", Medium: "test"})
	f.StartKit(dg, kit.Config{Gateway: "peer", Medium: "web"})
	waitRoute(t, ogKit)

	// Count which broker routed each message, from the trace events.
	var mu sync.Mutex
	by := map[string]int{}
	sub, _ := f.Conn("observer").Subscribe(schemas.TraceBatchSubject("broker"), func(m *nats.Msg) {
		var evs []struct{ Step, By string }
		if _, err := tracing.Decode(m.Data, &evs); err != nil {
			t.Errorf("trace batch: %v", err)
		}
		mu.Lock()
		for _, ev := range evs {
			if ev.Step == "imi" {
				by[ev.By]++
			}
		}
		mu.Unlock()
	})
	defer sub.Unsubscribe()

	var sent sync.Map
	var n, retries atomic.Int64
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				s := submission("m")
				s.MsgID = kit.NewMsgID()
				for {
					res, err := ogKit.Send(context.Background(), s)
					if err == nil {
						sent.Store(res.MsgID, true)
						break
					}
					if !miap.CodeOf(err).Retryable() {
						t.Errorf("worker %d msg %d: %v", w, i, err)
						return
					}
					retries.Add(1) // the client retries with the same message id
					time.Sleep(50 * time.Millisecond)
				}
				if n.Add(1) == 150 {
					r1.Stop() // drains its in-flight requests
				}
			}
		}()
	}
	wg.Wait()
	// Trace events come in batches, within tracing.DefaultDelay.
	shared := func() bool { mu.Lock(); defer mu.Unlock(); return by["b1"] > 0 && by["b2"] > 0 }
	for deadline := time.Now().Add(5 * time.Second); !shared() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	routed := fmt.Sprint(by) // the subscription still counts: read it under the lock
	mu.Unlock()
	if !shared() {
		t.Fatalf("load not shared: %s", routed)
	}
	count := 0
	sent.Range(func(k, _ any) bool {
		count++
		if dg.Get(k.(string)) == nil {
			t.Errorf("accepted message %s not delivered", k)
		}
		return true
	})
	if count != 400 {
		t.Fatalf("%d messages accepted, want 400", count)
	}
	t.Logf("routed per broker: %s; client retries: %d", routed, retries.Load())
}

// hungGateway announces itself as "peer" but never answers: a destination
// that went down without saying goodbye.
func hungGateway(t *testing.T, f *fabrictest.Fabric, ctx context.Context) {
	nc := f.Conn("hung")
	eng, _ := miap.New(miap.Config{Keys: f.Keyring("peer")})
	nc.Subscribe(schemas.GatewayIM("peer"), func(*nats.Msg) {}) // swallows transfers
	announce := func() {
		body, _ := json.Marshal(schemas.Announce{V: 1, Gateway: "peer", Medium: "web", Instance: "hung", TTL: 3000, At: time.Now().UnixMilli()})
		fr := &miap.Frame{Purpose: miap.PurposeAnnounce, Party: "peer", Body: body}
		eng.Sign(fr)
		m := nats.NewMsg(schemas.SubjectBrokerAnnounce)
		fr.PutHeader(m.Header)
		m.Data = body
		nc.PublishMsg(m)
	}
	announce()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
				announce()
			}
		}
	}()
}

// A destination gateway that is down: the sender gets a non-delivery
// report when the deadline passes, from exactly one of two broker replicas.
func TestDeadDestinationNonDeliveryReport(t *testing.T) {
	f := fabrictest.New(t)
	for _, name := range []string{"b1", "b2"} {
		f.StartBroker(broker.Config{Instance: name, Deadline: 2 * time.Second, Grace: 500 * time.Millisecond, SweepInterval: 50 * time.Millisecond})
	}
	profiles(f)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hungGateway(t, f, ctx)
	og := fabrictest.NewInbox()
	ogKit, _ := f.StartKit(og, kit.Config{Gateway: "test", Medium: "test", TransferTimeout: time.Second})
	s := submission("into the void")
	s.MsgID = kit.NewMsgID()
	var err error
	fabrictest.Eventually(t, 5*time.Second, "the route to the hung gateway", func() bool {
		_, err = ogKit.Send(ctx, s)
		return err != nil && miap.CodeOf(err) == schemas.CodeBusy // routed, then the transfer timed out
	})
	start := time.Now()
	fabrictest.Eventually(t, 10*time.Second, "the non-delivery report", func() bool {
		n := og.Note(s.MsgID)
		return n != nil && n.Status == schemas.StatusFailed
	})
	n := og.Note(s.MsgID)
	if n.Code != schemas.CodeExpired.String() || n.Reason == "" {
		t.Fatalf("report %+v", n)
	}
	t.Logf("non-delivery report %v after the transfer failed: %s", time.Since(start).Round(time.Millisecond), n.Reason)
	st, err := ogKit.Query(ctx, s.MsgID)
	if err != nil {
		t.Fatal(err)
	}
	failed := 0
	for _, h := range st.History {
		if h.Status == schemas.StatusFailed {
			failed++
		}
	}
	if failed != 1 || st.State != schemas.StatusFailed {
		t.Fatalf("%d failures recorded (state %s), want exactly one", failed, st.State)
	}
}

// rawIMI signs an IMI as party with f's keys and returns the request.
func rawIMI(t *testing.T, f *fabrictest.Fabric, party string, imi schemas.IMI) *nats.Msg {
	eng, _ := miap.New(miap.Config{Keys: f.Keyring(party)})
	body, _ := json.Marshal(imi)
	fr := &miap.Frame{Purpose: miap.PurposeIMI, Party: party, Body: body}
	if err := eng.Sign(fr); err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(schemas.SubjectBrokerIMI)
	fr.PutHeader(m.Header)
	m.Data = body
	return m
}

func newIMI(gateway string) schemas.IMI {
	sum := sha256.Sum256([]byte("hello"))
	return schemas.IMI{V: 1, MsgID: kit.NewMsgID(), Gateway: gateway, From: schemas.Endpoint{Medium: "test", Address: "alice", Client: "alice"},
		To: "bob", Content: schemas.Content{Type: "text/plain", Length: 5, SHA256: hex.EncodeToString(sum[:])}, Created: time.Now().UnixMilli()}
}

func request(t *testing.T, nc *nats.Conn, m *nats.Msg) (*nats.Msg, schemas.Code) {
	r, err := nc.RequestMsg(m, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if e := schemas.ErrorFromHeader(r.Header); e != nil {
		return r, e.Code
	}
	return r, schemas.CodeOK
}

// Replayed, forged and tampered IMIs, an IMI in another gateway's name, and
// transfers without a valid ticket are refused with their code, and
// nothing is delivered.
func TestForgeriesRefused(t *testing.T) {
	f := fabrictest.New(t)
	f.StartBroker(broker.Config{})
	profiles(f)
	og, dg := fabrictest.NewInbox(), fabrictest.NewInbox()
	ogKit, _ := f.StartKit(og, kit.Config{Gateway: "test", Medium: "test"})
	f.StartKit(dg, kit.Config{Gateway: "peer", Medium: "web"})
	waitRoute(t, ogKit)
	before := dg.Len()
	nc := f.Conn("attacker")

	m := rawIMI(t, f, "test", newIMI("test"))
	route, code := request(t, nc, m)
	if code != schemas.CodeOK {
		t.Fatalf("genuine IMI: %v", code)
	}
	if _, code := request(t, nc, m); code != schemas.CodeReplay {
		t.Errorf("replayed IMI: %v", code)
	}
	tampered := rawIMI(t, f, "test", newIMI("test"))
	tampered.Data = []byte(string(tampered.Data[:len(tampered.Data)-2]) + " }")
	if _, code := request(t, nc, tampered); code != schemas.CodeBadMAC {
		t.Errorf("tampered IMI: %v", code)
	}
	forged := rawIMI(t, f, "email", newIMI("test")) // email's key, test's name in the IMI
	if _, code := request(t, nc, forged); code != schemas.CodeNotAllowed {
		t.Errorf("IMI in another gateway's name: %v", code)
	}
	claimed := rawIMI(t, f, "email", newIMI("email"))
	claimed.Header.Set(miap.HdrParty, "test") // claims to be test, signed by email
	claimed.Header.Set(miap.HdrKid, "test-1")
	if _, code := request(t, nc, claimed); code != schemas.CodeBadMAC {
		t.Errorf("frame of email claiming test: %v", code)
	}

	// Transfers to the destination without a valid ticket.
	rf, _ := miap.ParseHeader(route.Header, route.Data)
	ticket := &miap.Frame{Purpose: miap.PurposeTicket, Party: "peer", ID: rf.ID, Peer: "test", CType: "text/plain", CLen: 5,
		CSHA: func() []byte { s := sha256.Sum256([]byte("hello")); return s[:] }(), Expiry: time.Now().Add(time.Minute).UnixMilli(), Body: rf.Body}
	self, _ := miap.New(miap.Config{Keys: f.Keyring("test")})
	if err := self.Sign(ticket); err == nil { // the originator has no key of peer's
		t.Fatal("an originator could sign a ticket for another party")
	}
	ticket.Kid, ticket.TS, ticket.MAC = "peer-1", time.Now().UnixMilli(), make([]byte, 32)
	im := nats.NewMsg(schemas.GatewayIM("peer"))
	im.Data = miap.AppendTransfer(im.Header, ticket, []byte("hello"), "")
	if _, code := request(t, nc, im); code != schemas.CodeBadTicket {
		t.Errorf("transfer with a forged ticket: %v", code)
	}
	// The genuine ticket with swapped content.
	tk, _ := routeTicket(route, rf)
	im = nats.NewMsg(schemas.GatewayIM("peer"))
	im.Data = miap.AppendTransfer(im.Header, tk, []byte("HELLO"), "")
	if _, code := request(t, nc, im); code != schemas.CodeDigestMismatch {
		t.Errorf("content swapped under a valid ticket: %v", code)
	}
	// A ticket for peer presented to another gateway's subject.
	im = nats.NewMsg(schemas.GatewayIM("test"))
	im.Data = miap.AppendTransfer(im.Header, tk, []byte("hello"), "")
	if _, code := request(t, nc, im); code != schemas.CodeBadTicket {
		t.Errorf("ticket for peer presented to test: %v", code)
	}
	if dg.Len() != before {
		t.Fatalf("%d messages delivered by forgeries", dg.Len()-before)
	}
	// The genuine transfer still works afterwards.
	im = nats.NewMsg(schemas.GatewayIM("peer"))
	im.Data = miap.AppendTransfer(im.Header, tk, []byte("hello"), "")
	if _, code := request(t, nc, im); code != schemas.CodeOK || dg.Len() != before+1 {
		t.Fatalf("genuine transfer after the forgeries: %v", code)
	}
}

func routeTicket(route *nats.Msg, rf *miap.Frame) (*miap.Frame, error) {
	var routed schemas.RoutedIMI
	json.Unmarshal(rf.Body, &routed)
	sha, _ := hex.DecodeString(routed.IMI.Content.SHA256)
	t := &miap.Frame{Purpose: miap.PurposeTicket, Party: route.Header.Get("Miap-Ticket-Party"), Kid: route.Header.Get("Miap-Ticket-Kid"),
		ID: rf.ID, Peer: routed.IMI.Gateway, CType: routed.IMI.Content.Type, CLen: routed.IMI.Content.Length, CSHA: sha, Expiry: routed.Deadline, Body: rf.Body}
	var err error
	if t.TS, err = parseInt(route.Header.Get("Miap-Ticket-Ts")); err != nil {
		return nil, err
	}
	t.MAC, err = miap.DecodeB64(route.Header.Get("Miap-Ticket-Mac"))
	return t, err
}

func parseInt(s string) (int64, error) { return strconv.ParseInt(s, 10, 64) }

// A forged or foreign ID in an acknowledgement changes nothing; the same
// acknowledgement twice has one effect.
func TestAcknowledgementID(t *testing.T) {
	f := fabrictest.New(t)
	f.StartBroker(broker.Config{})
	profiles(f)
	og, dg := fabrictest.NewInbox(), fabrictest.NewInbox()
	ogKit, _ := f.StartKit(og, kit.Config{Gateway: "test", Medium: "test"})
	dgKit, _ := f.StartKit(dg, kit.Config{Gateway: "peer", Medium: "web"})
	res := waitRoute(t, ogKit)
	other, err := ogKit.Send(context.Background(), submission("second"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ref := dg.Get(res.MsgID).Ref
	forged := ref
	forged.ID = dg.Get(other.MsgID).Ref.ID // another transaction's genuine ID
	if err := dgKit.Ack(ctx, forged, schemas.StatusRead, "", ""); miap.CodeOf(err) != schemas.CodeIDMismatch {
		t.Fatalf("foreign ID: %v", err)
	}
	random := ref
	random.ID = miap.EncodeB64(make([]byte, 32))
	if err := dgKit.Ack(ctx, random, schemas.StatusRead, "", ""); miap.CodeOf(err) != schemas.CodeIDMismatch {
		t.Fatalf("forged ID: %v", err)
	}
	st, _ := ogKit.Query(ctx, res.MsgID)
	if st.State != schemas.StatusDelivered {
		t.Fatalf("state after forged acks: %s", st.State)
	}
	for range 2 {
		if err := dgKit.Ack(ctx, ref, schemas.StatusRead, "", ""); err != nil {
			t.Fatal(err)
		}
	}
	fabrictest.Eventually(t, 5*time.Second, "the read notification", func() bool {
		s := og.Statuses(res.MsgID)
		return len(s) > 0 && s[len(s)-1] == schemas.StatusRead
	})
	time.Sleep(300 * time.Millisecond)
	reads := 0
	for _, s := range og.Statuses(res.MsgID) {
		if s == schemas.StatusRead {
			reads++
		}
	}
	st, _ = ogKit.Query(ctx, res.MsgID)
	n := 0
	for _, h := range st.History {
		if h.Status == schemas.StatusRead {
			n++
		}
	}
	if reads != 1 || n != 1 {
		t.Fatalf("read acknowledged twice: %d notifications, %d history entries", reads, n)
	}
	// A failure after delivery is refused: one terminal outcome.
	if err := dgKit.Ack(ctx, dg.Get(other.MsgID).Ref, schemas.StatusFailed, "X", "late"); miap.CodeOf(err) != schemas.CodeNotAllowed {
		t.Fatalf("failed after delivered: %v", err)
	}
}
