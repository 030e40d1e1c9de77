package sms

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/gateways/sms/gsm"
	"github.com/uims/uims/gateways/sms/pdu"
	"github.com/uims/uims/schemas"
)

// item is a message or a delivery receipt waiting in the queue stream for
// an application.
type item struct {
	Kind  string      `json:"kind"` // kindMT or kindReceipt
	MsgID string      `json:"msg_id"`
	Ref   *kit.AckRef `json:"ref,omitempty"`
	// Src, Dst, Text and Long describe a message: addresses of the
	// deliver_sm, the text and the recipient's "sms.long" option.
	Src     address  `json:"src"`
	Dst     address  `json:"dst"`
	Text    string   `json:"text,omitempty"`
	Long    string   `json:"long,omitempty"`
	Receipt *receipt `json:"receipt,omitempty"`
}

const (
	kindMT      = "mt"
	kindReceipt = "dlr"
)

// queue delivers what waits for applications: one durable JetStream
// consumer per client, consumed by every instance where that client is
// bound as receiver or transceiver, so that nothing depends on which
// instance received it.
type queue struct {
	g     *Gateway
	mu    sync.Mutex // held across consumer creation, which is short
	feeds map[string]*feed
}

// feed is the consumption of one client's queue on this instance.
type feed struct {
	client   string
	sessions []*session
	next     int
	cc       jetstream.ConsumeContext
	sem      chan struct{}
}

func newQueue(g *Gateway) *queue {
	return &queue{g: g, feeds: make(map[string]*feed)}
}

func (q *queue) publish(ctx context.Context, client string, it *item, dedup string) error {
	b, err := json.Marshal(it)
	if err != nil {
		return schemas.Errorf(schemas.CodeInternal, err, "encode queue item")
	}
	pctx, cancel := context.WithTimeout(ctx, q.g.cfg.ResponseTimeout)
	defer cancel()
	if _, err := q.g.js.Publish(pctx, q.g.store.queueSubject(client), b, jetstream.WithMsgID(dedup)); err != nil {
		return schemas.Errorf(schemas.CodeBusy, err, "SMS queue")
	}
	return nil
}

// enqueueMT keeps a message for an application durably and reports it
// transferred; the deliver_sm_resp of the application acknowledges it.
func (q *queue) enqueueMT(ctx context.Context, client string, d *kit.Delivery, text string) (string, error) {
	from := d.Routed.IMI.From
	name := from.Address
	if from.Medium != schemas.MediumSMS && d.Routed.Sender != "" {
		name = d.Routed.Sender
	}
	// A text beyond MaxParts parts is shortened at delivery to a prefix:
	// keep no more than that can use (a long e-mail stays out of the queue).
	text = truncateRunes(text, q.g.cfg.MaxParts*gsm.MaxSingleSeptets+100)
	ref := d.Ref
	it := &item{Kind: kindMT, MsgID: ref.MsgID, Ref: &ref, Src: smppAddress(name, 20),
		Dst: smppAddress(d.Routed.Dest.Address, 20), Text: text, Long: d.Routed.Options["sms.long"]}
	if err := q.publish(ctx, client, it, kindMT+":"+ref.MsgID); err != nil {
		return "", err
	}
	return schemas.StatusTransferred, nil
}

// enqueueReceipt keeps a receipt for an application until it is bound.
func (q *queue) enqueueReceipt(ctx context.Context, client string, ev *schemas.StatusEvent, r *receipt) error {
	it := &item{Kind: kindReceipt, MsgID: ev.MsgID, Receipt: r}
	return q.publish(ctx, client, it, kindReceipt+":"+ev.MsgID+":"+ev.Status)
}

// attach starts delivering client's queue to s (bound as receiver or
// transceiver).
func (q *queue) attach(s *session) {
	client := s.clientInfo().ID
	q.mu.Lock()
	defer q.mu.Unlock()
	f := q.feeds[client]
	if f == nil {
		f = &feed{client: client, sem: make(chan struct{}, q.g.cfg.Window)}
		q.feeds[client] = f
	}
	f.sessions = append(f.sessions, s)
	if f.cc == nil {
		if err := q.start(f); err != nil {
			q.g.log.Error().Err(err).Str("client", client).Msg("cannot consume the SMS queue; retrying")
			go q.retryStart(f)
		}
	}
}

func (q *queue) retryStart(f *feed) {
	for {
		time.Sleep(2 * time.Second)
		q.mu.Lock()
		if q.feeds[f.client] != f || f.cc != nil {
			q.mu.Unlock()
			return
		}
		err := q.start(f)
		q.mu.Unlock()
		if err == nil {
			return
		}
	}
}

// start consumes f's client queue; q.mu is held.
func (q *queue) start(f *feed) error {
	ctx, cancel := context.WithTimeout(context.Background(), q.g.cfg.ResponseTimeout)
	defer cancel()
	cfg := q.g.cfg
	cons, err := q.g.js.CreateOrUpdateConsumer(ctx, QueueStream, jetstream.ConsumerConfig{
		Durable:       "esme-" + cfg.Gateway + "-" + f.client,
		Description:   "SMS gateway: messages and receipts for application " + f.client,
		FilterSubject: q.g.store.queueSubject(f.client),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       max(30*time.Second, time.Duration(cfg.MaxParts+1)*cfg.ResponseTimeout),
		MaxDeliver:    -1,
		MaxAckPending: 4 * cfg.Window,
	})
	if err != nil {
		return err
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		f.sem <- struct{}{}
		go func() {
			defer func() { <-f.sem }()
			q.handle(f, msg)
		}()
	}, jetstream.PullMaxMessages(cfg.Window))
	if err != nil {
		return err
	}
	f.cc = cc
	return nil
}

// detach stops delivering to s; the last session of a client stops the
// consumption, and what was fetched goes back to the stream at once.
func (q *queue) detach(s *session) {
	client := s.clientInfo().ID
	q.mu.Lock()
	defer q.mu.Unlock()
	f := q.feeds[client]
	if f == nil {
		return
	}
	for i, x := range f.sessions {
		if x == s {
			f.sessions = append(f.sessions[:i], f.sessions[i+1:]...)
			break
		}
	}
	if len(f.sessions) == 0 {
		delete(q.feeds, client)
		if f.cc != nil {
			f.cc.Drain()
		}
	}
}

func (q *queue) stopAll() {
	q.mu.Lock()
	defer q.mu.Unlock()
	for c, f := range q.feeds {
		if f.cc != nil {
			f.cc.Drain()
		}
		delete(q.feeds, c)
	}
}

// pick returns the next bound session of f, round robin.
func (q *queue) pick(f *feed) *session {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(f.sessions) == 0 {
		return nil
	}
	f.next = (f.next + 1) % len(f.sessions)
	return f.sessions[f.next]
}

// handle delivers one queued message or receipt to a bound session.
func (q *queue) handle(f *feed, msg jetstream.Msg) {
	g := q.g
	var it item
	if err := json.Unmarshal(msg.Data(), &it); err != nil || (it.Kind == kindMT && it.Ref == nil) || (it.Kind == kindReceipt && it.Receipt == nil) {
		g.log.Error().Err(err).Msg("undecodable SMS queue item dropped")
		msg.Term()
		return
	}
	if it.Kind == kindReceipt {
		if wait := q.g.cfg.ReceiptDelay - time.Since(it.Receipt.Done); wait > 0 {
			msg.NakWithDelay(wait)
			return
		}
		if g.deciding.has(it.MsgID) { // the application has not heard of it yet
			msg.NakWithDelay(250 * time.Millisecond)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), g.cfg.ResponseTimeout)
		ok, err := g.given(ctx, it.MsgID, it.Receipt)
		cancel()
		switch {
		case err != nil:
			g.log.Warn().Err(err).Str("msg_id", it.MsgID).Msg("cannot check the receipt's message ids; will retry")
			msg.NakWithDelay(time.Second)
			return
		case !ok:
			g.log.Info().Str("msg_id", it.MsgID).Str("client", f.client).Msg("receipt dropped: the application was refused the message, not given its id")
			msg.Ack()
			return
		}
	}
	s := q.pick(f)
	if s == nil {
		msg.Nak()
		return
	}
	var pdus []*pdu.DeliverSM
	switch it.Kind {
	case kindMT:
		segs, c := segments(it.Text, it.Long, g.cfg.InboxURL, udhRef(it.MsgID), g.cfg.MaxParts)
		pdus = mtPDUs(it.Src, it.Dst, segs, c)
	case kindReceipt:
		pdus = it.Receipt.pdus()
	default:
		msg.Term()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(len(pdus)+1)*g.cfg.ResponseTimeout)
	defer cancel()
	status, err := s.deliver(ctx, pdus)
	log := s.logger().With().Str("msg_id", it.MsgID).Str("kind", it.Kind).Logger()
	switch {
	case err != nil:
		log.Info().Err(err).Msg("deliver_sm not acknowledged; will retry")
		msg.NakWithDelay(time.Second)
	case status == pdu.ESME_ROK:
		if it.Kind == kindMT {
			if err := g.kit.Ack(ctx, *it.Ref, schemas.StatusDelivered, "", ""); err != nil {
				log.Warn().Err(err).Msg("delivery acknowledgement refused")
			}
		}
		log.Info().Msg("delivered to application")
		msg.Ack()
	case temporary(status):
		log.Info().Stringer("status", status).Msg("application deferred deliver_sm; will retry")
		msg.NakWithDelay(5 * time.Second)
	default:
		log.Warn().Stringer("status", status).Msg("application rejected deliver_sm")
		if it.Kind == kindMT {
			if err := g.kit.Ack(ctx, *it.Ref, schemas.StatusFailed, "", "the application rejected the message: "+status.String()); err != nil {
				log.Warn().Err(err).Msg("failure acknowledgement refused")
			}
		}
		msg.Ack()
	}
}

// temporary reports whether an application's deliver_sm_resp status asks
// for a retry later (SMPP 3.4 §5.1.3).
func temporary(st pdu.Status) bool {
	switch st {
	case pdu.ESME_RX_T_APPN, pdu.ESME_RTHROTTLED, pdu.ESME_RMSGQFUL, pdu.ESME_RSYSERR:
		return true
	}
	return false
}
