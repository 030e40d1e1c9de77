package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/miap/miapnats"
	"github.com/uims/uims/schemas"
)

// FlowBrokers is the broker tier alone (issue 19, "scale-out shown, not
// assumed"): per message, the IMI request to uims.broker.imi and the
// destination's acknowledgement to uims.broker.ack, signed, with fresh
// nonces and the ID of the route reply, as the web gateway's kit sends
// them (miapnats.Client, the kit's own request path), and nothing else:
// no transfer, no content, no inbox write. The brokers do all their work
// (verify, nonce, profiles, route, transaction in Redis, sign the route
// and the ticket; then the ID check, the outcome, accounting and the
// receipt), so the cell measures what the broker processes, Redis and
// NATS carry, with 1, 2, 4... broker processes in the queue group.
const FlowBrokers = "brokers"

// brokersInstance is the web gateway instance the brokers flow announces.
const brokersInstance = "web-bench-brokers"

// brokersContentSize is the content length the flow's IMIs declare; no
// content travels.
const brokersContentSize = 100

// brokersFlow sends IMI + acknowledgement pairs as the web gateway, both
// originator and destination of a message from alice to bob. sent counts
// the pairs acknowledged (each makes an accounting record, accounting.go).
type brokersFlow struct {
	c    *miapnats.Client
	sum  [sha256.Size]byte
	sent *atomic.Int64
}

func newBrokersFlow(nc *nats.Conn, eng *miap.Engine, sent *atomic.Int64) *brokersFlow {
	return &brokersFlow{c: &miapnats.Client{NC: nc, Eng: eng, Clock: &miapnats.Clock{}, Party: schemas.MediumWeb, Timeout: 15 * time.Second},
		sum: sha256.Sum256(Content(brokersContentSize)), sent: sent}
}

func (f *brokersFlow) send(ctx context.Context, _ []byte) error {
	routed, id, err := f.imi(ctx)
	if err != nil {
		return err
	}
	if err := f.ack(ctx, routed, id); err != nil {
		return err
	}
	f.sent.Add(1)
	return nil
}

// imi asks the brokers for a route, as kit.Send does (PROTOCOL.md §6.2,
// §6.3): the reply's outer digest is checked by the client, its routed IMI
// here.
func (f *brokersFlow) imi(ctx context.Context) (*schemas.RoutedIMI, []byte, error) {
	imi := schemas.IMI{V: schemas.Version, MsgID: kit.NewMsgID(), Gateway: f.c.Party, Instance: brokersInstance,
		From: schemas.Endpoint{Medium: schemas.MediumWeb, Address: "alice", Client: "alice", Name: "Alice Example"}, To: "bob",
		Content: schemas.Content{Type: contentType, Length: brokersContentSize, SHA256: hex.EncodeToString(f.sum[:])},
		Created: f.c.Clock.Now().UnixMilli()}
	body, err := json.Marshal(&imi)
	if err != nil {
		return nil, nil, fmt.Errorf("bench: encode imi: %w", err)
	}
	mode := map[string][]string{miap.HdrMode: {"fast"}}
	rf, _, err := f.c.Request(ctx, schemas.SubjectBrokerIMI, &miap.Frame{Purpose: miap.PurposeIMI, Party: f.c.Party, Body: body}, miap.PurposeRoute, mode)
	if err != nil {
		return nil, nil, err
	}
	var routed schemas.RoutedIMI
	if err := json.Unmarshal(rf.Body, &routed); err != nil {
		return nil, nil, schemas.Errorf(schemas.CodeMalformed, err, "routed imi")
	}
	if routed.IMI.MsgID != imi.MsgID || routed.Dest.Gateway != f.c.Party || len(rf.ID) != miap.MACSize {
		return nil, nil, schemas.Errorf(schemas.CodeBadMAC, nil, "routed imi is not for our message")
	}
	return &routed, rf.ID, nil
}

// ack reports the message delivered, as the destination's kit does once
// its medium stored it (§6.8): the ID of the route, the status relayed to
// the originator in the transfer reply (so no notification is stored).
func (f *brokersFlow) ack(ctx context.Context, routed *schemas.RoutedIMI, id []byte) error {
	body, err := json.Marshal(schemas.Ack{V: schemas.Version, Tx: routed.Tx, MsgID: routed.IMI.MsgID, Gateway: f.c.Party,
		Status: schemas.StatusDelivered, At: f.c.Clock.Now().UnixMilli(), Relayed: true})
	if err != nil {
		return fmt.Errorf("bench: encode ack: %w", err)
	}
	rf, reply, err := f.c.Request(ctx, schemas.SubjectBrokerAck, &miap.Frame{Purpose: miap.PurposeAck, Party: f.c.Party, ID: id, Body: body}, miap.PurposeAckReply, nil)
	if err != nil {
		return err
	}
	var ar schemas.AckReply
	if err := json.Unmarshal(rf.Body, &ar); err != nil {
		return schemas.Errorf(schemas.CodeMalformed, err, "ack reply")
	}
	if ar.State != schemas.StatusDelivered || ar.Duplicate || reply.Header.Get(miap.HdrReceipt) == "" {
		return fmt.Errorf("bench: ack answered %s (duplicate %v)", ar.State, ar.Duplicate)
	}
	return nil
}

// announcer keeps the web gateway announced to the brokers (§6.12) while
// the brokers flow runs without the web gateway's kit: a signed heartbeat
// every second, valid for three.
type announcer struct {
	nc   *nats.Conn
	eng  *miap.Engine
	stop context.CancelFunc
	done chan struct{}
}

const announceEvery = time.Second

func startAnnouncer(ctx context.Context, nc *nats.Conn, eng *miap.Engine) (*announcer, error) {
	a := &announcer{nc: nc, eng: eng, done: make(chan struct{})}
	if err := a.announce(3 * announceEvery); err != nil {
		return nil, err
	}
	ctx, a.stop = context.WithCancel(ctx)
	go func() {
		defer close(a.done)
		t := time.NewTicker(announceEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				a.announce(0) // goodbye
				return
			case <-t.C:
				a.announce(3 * announceEvery)
			}
		}
	}()
	return a, nil
}

// announce publishes one heartbeat valid for ttl and flushes it, so that
// a broker that just started has it before it is asked for a route.
func (a *announcer) announce(ttl time.Duration) error {
	an := schemas.Announce{V: schemas.Version, Gateway: schemas.MediumWeb, Medium: schemas.MediumWeb, Instance: brokersInstance,
		TTL: ttl.Milliseconds(), At: time.Now().UnixMilli()}
	if err := miapnats.Announce(a.nc, a.eng, &an); err != nil {
		return err
	}
	return a.nc.Flush()
}

func (a *announcer) close() {
	a.stop()
	<-a.done
}

// brokerRequests asks every broker instance for its micro service stats
// ($SRV.STATS.uims-broker) and returns, by instance, the IMI and
// acknowledgement requests it served. It waits for want answers, or
// 500 ms.
func brokerRequests(nc *nats.Conn, want int) (map[string]int64, error) {
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, fmt.Errorf("bench: broker stats: %w", err)
	}
	defer sub.Unsubscribe()
	subject, err := micro.ControlSubject(micro.StatsVerb, schemas.BrokerService, "")
	if err != nil {
		return nil, fmt.Errorf("bench: broker stats: %w", err)
	}
	if err := nc.PublishRequest(subject, inbox, nil); err != nil {
		return nil, fmt.Errorf("bench: broker stats: %w", err)
	}
	out := map[string]int64{}
	deadline := time.Now().Add(500 * time.Millisecond)
	for len(out) < want {
		m, err := sub.NextMsg(time.Until(deadline))
		if errors.Is(err, nats.ErrTimeout) {
			break
		}
		if err != nil {
			return out, fmt.Errorf("bench: broker stats: %w", err)
		}
		var st micro.Stats
		if err := json.Unmarshal(m.Data, &st); err != nil {
			return out, fmt.Errorf("bench: broker stats: %w", err)
		}
		var n int64
		for _, e := range st.Endpoints {
			if e.Name == "imi" || e.Name == "ack" {
				n += int64(e.NumRequests)
			}
		}
		out[st.Metadata["instance"]] = n
	}
	return out, nil
}

// runBrokers measures the brokers flow with each number of broker
// processes of Config.Brokers and every sender count, then goes back to
// one broker process.
func (r *runner) runBrokers(ctx context.Context) error {
	f := r.f
	nc, err := nats.Connect(f.natsURL, f.connOpts("bench-brokers-web", schemas.MediumWeb)...)
	if err != nil {
		return fmt.Errorf("bench: brokers flow: %w", err)
	}
	defer nc.Close()
	f.brokersNC = nc
	defer func() { f.brokersNC = nil }()
	eng := mustEngine(f)
	ann, err := startAnnouncer(ctx, nc, eng)
	if err != nil {
		return fmt.Errorf("bench: brokers flow: %w", err)
	}
	defer ann.close()
	fl := newBrokersFlow(nc, eng, &f.kitSent)
	for _, n := range r.cfg.Brokers {
		if err := r.scale(ctx, n); err != nil {
			return err
		}
		if err := ann.announce(3 * announceEvery); err != nil {
			return fmt.Errorf("bench: brokers flow: %w", err)
		}
		if err := awaitRoute(ctx, fl); err != nil {
			return err
		}
		for _, s := range r.cfg.Senders {
			if err := r.cell(ctx, FlowBrokers, "fast", 0, s, fl); err != nil {
				return err
			}
		}
	}
	return r.scale(ctx, 1)
}

// scale runs n broker processes. Before some stop, the accounting records
// of the messages so far are awaited: a broker process that stops leaves
// those it has not published to the others' sweepers.
func (r *runner) scale(ctx context.Context, n int) error {
	if n < r.f.side.Count() {
		if _, err := r.f.checkAccounting(ctx, r.acctBase, r.f.kitSent.Load(), 30*time.Second); err != nil {
			return err
		}
	}
	return r.f.side.Scale(n)
}

// awaitRoute sends until a message goes through (the brokers heard the
// announcement), for up to 20 s.
func awaitRoute(ctx context.Context, fl flow) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := fl.send(ctx, nil)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("bench: brokers flow: no route: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
