package kit

import (
	"context"
	"errors"
	"fmt"
	"time"

	json "github.com/goccy/go-json"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// handleLogin is the destination's side of the strict-mode login (§6.5):
// the originator presents the broker's ticket (without content) and gets a
// single-transfer session token.
func (k *Kit) handleLogin(req micro.Request) {
	f, err := miap.ParseHeader(req.Headers(), req.Data())
	if err == nil {
		err = k.eng.VerifyTicket(k.cfg.Gateway, f) // BAD_TICKET as at the transfer (§6.6)
	}
	if err != nil {
		k.log.Warn().Err(err).Bool("security", true).Msg("transfer login refused")
		k.count.code(miap.CodeOf(err).String())
		respondError(req, miap.CodeOf(err), "")
		return
	}
	tok, err := k.eng.SessionToken(k.cfg.Gateway, f.ID)
	if err != nil {
		respondError(req, schemas.CodeInternal, "")
		return
	}
	r := nats.NewMsg(req.Reply())
	r.Header.Set(miap.HdrGwSess, miap.EncodeB64(tok))
	respond(req, r)
}

// handleIM receives an instant message (patent steps S8 to S10; §6.6):
// ticket, content digest and expiry are checked, the medium delivers, and
// the outcome is acknowledged to the brokers before the originator is told.
func (k *Kit) handleIM(ctx context.Context, req micro.Request) {
	tr, routed, err := k.openIM(header(req), req.Data())
	if err != nil {
		code := miap.CodeOf(err)
		k.log.Warn().Err(err).Str("code", code.String()).Bool("security", true).Msg("transfer refused")
		k.trace("receive", "", "", code.String(), schemas.TraceEvent{})
		k.count.refused.Add(1)
		k.count.code(code.String())
		respondError(req, code, "")
		return
	}
	ref := AckRef{MsgID: routed.IMI.MsgID, Tx: routed.Tx, ID: miap.EncodeB64(tr.Ticket.ID)}
	d := &Delivery{Routed: routed, Ref: ref, Type: tr.Ticket.CType, Content: tr.Content}
	dctx, cancel := context.WithTimeout(ctx, k.cfg.TransferTimeout)
	status, err := k.medium.Deliver(dctx, d)
	cancel()
	if err != nil {
		code := miap.CodeOf(err)
		k.log.Warn().Err(err).Str("msg_id", ref.MsgID).Str("code", code.String()).Msg("delivery failed")
		k.trace("deliver", ref.MsgID, ref.Tx, code.String(), schemas.TraceEvent{})
		reason := deliveryReason(err)
		k.count.failed.Add(1)
		k.count.code(code.String())
		if !code.Retryable() {
			// A permanent failure is the destination's to report (§6.8).
			k.Ack(ctx, ref, schemas.StatusFailed, code.String(), reason)
		}
		respondError(req, code, reason)
		return
	}
	k.log.Info().Str("msg_id", ref.MsgID).Str("tx", ref.Tx).Str("status", status).Msg("delivered")
	k.trace("deliver", ref.MsgID, ref.Tx, status, schemas.TraceEvent{})
	read := status == schemas.StatusRead
	if read { // delivered first: the receipts a sender's medium has are for delivery
		status = schemas.StatusDelivered
	}
	if status == schemas.StatusDelivered {
		k.count.delivered.Add(1)
	} else {
		k.count.transferred.Add(1)
	}
	r := nats.NewMsg(req.Reply())
	r.Header.Set(schemas.HdrStatus, status)
	receipt, err := k.ackNow(ctx, ref, status, "", "", true)
	switch {
	case err == nil:
		r.Header.Set(miap.HdrReceipt, receipt)
	case miap.CodeOf(err).Retryable():
		k.queueAck(ctx, ref, status, "", "") // the outbox delivers it later
	default:
		k.log.Warn().Err(err).Str("msg_id", ref.MsgID).Msg("broker refused the acknowledgement")
	}
	respond(req, r)
	if read {
		if err := k.Ack(ctx, ref, schemas.StatusRead, "", ""); err != nil {
			k.log.Warn().Err(err).Str("msg_id", ref.MsgID).Msg("read acknowledgement failed")
		}
	}
}

func (k *Kit) openIM(h nats.Header, data []byte) (*miap.Transfer, *schemas.RoutedIMI, error) {
	tr, err := k.eng.OpenTransfer(k.cfg.Gateway, h, data, k.content.Fetch(context.Background()))
	if err != nil {
		return nil, nil, err
	}
	var routed schemas.RoutedIMI
	if err := json.Unmarshal(tr.Routed(), &routed); err != nil {
		return nil, nil, fmt.Errorf("%w: routed imi: %w", miap.ErrMalformed, err)
	}
	if routed.Dest.Gateway != k.cfg.Gateway {
		return nil, nil, fmt.Errorf("%w: routed to %q", miap.ErrBadTicket, routed.Dest.Gateway)
	}
	if k.cfg.Strict || h.Get(miap.HdrGwSess) != "" {
		// Without a token, a strict destination answers BAD_SESSION: the
		// originator's cue to log in first (§6.5).
		tok, err := miap.DecodeB64(h.Get(miap.HdrGwSess))
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %v", miap.ErrBadSession, err)
		}
		if err := k.eng.CheckSessionToken(k.cfg.Gateway, tr.Ticket.ID, tok); err != nil {
			return nil, nil, err
		}
	}
	// Sealed content opens here, and only here (PROTOCOL.md §14.5).
	want := routed.IMI.Content.Sealed != "" && routed.Seal[k.cfg.Gateway] != ""
	if err := k.eng.Unseal(k.cfg.Gateway, h, tr, want); err != nil {
		return nil, nil, err
	}
	return tr, &routed, nil
}

// handleHeld answers a broker's deadline check (§6.14): when the medium
// holds the message, the kit sends its acknowledgement now (the one that
// was lost) and answers held; otherwise not held, and the deadline fails
// the message.
func (k *Kit) handleHeld(ctx context.Context, req micro.Request) {
	var q schemas.HeldQuery
	reply := schemas.HeldReply{V: schemas.Version}
	h, ok := k.medium.(Holder)
	if ok && json.Unmarshal(req.Data(), &q) == nil && schemas.ValidMsgID(q.MsgID) {
		ref, err := h.Held(ctx, &q)
		switch {
		case err != nil:
			reply.Later = true
			k.log.Warn().Err(err).Str("msg_id", q.MsgID).Msg("deadline check: cannot look now")
		case ref != nil:
			if _, err := k.ackNow(ctx, *ref, schemas.StatusDelivered, "", "", false); err != nil {
				reply.Later = miap.CodeOf(err).Retryable()
				k.log.Warn().Err(err).Str("msg_id", q.MsgID).Msg("deadline check: held, but the acknowledgement failed")
			} else {
				reply.Held = true
				k.log.Warn().Str("msg_id", q.MsgID).Msg("deadline check: the message was stored but not acknowledged; acknowledged now")
			}
		}
	}
	b, _ := json.Marshal(reply)
	req.Respond(b)
}

// Ack reports a delivered, read or failed message to the brokers (§6.8).
// If no broker can take it now, it waits in the durable ack outbox and is
// retried until one does.
func (k *Kit) Ack(ctx context.Context, ref AckRef, status, code, reason string) error {
	_, err := k.ackNow(ctx, ref, status, code, reason, false)
	if err != nil && miap.CodeOf(err).Retryable() {
		return k.queueAck(ctx, ref, status, code, reason)
	}
	return err
}

// ackNow sends one acknowledgement and returns the receipt for the
// originator. relayed says the receipt goes to the originator in the
// transfer reply (§6.8).
func (k *Kit) ackNow(ctx context.Context, ref AckRef, status, code, reason string, relayed bool) (string, error) {
	id, err := miap.DecodeB64(ref.ID)
	if err != nil || len(id) != miap.MACSize {
		return "", schemas.Errorf(schemas.CodeMalformed, err, "ack reference")
	}
	body, _ := json.Marshal(schemas.Ack{V: schemas.Version, Tx: ref.Tx, MsgID: ref.MsgID, Gateway: k.cfg.Gateway,
		Status: status, Code: code, Reason: truncate(reason, 1024), At: k.now().UnixMilli(), Relayed: relayed})
	var session []byte
	if k.cfg.Strict {
		lf, _, err := k.request(ctx, schemas.SubjectBrokerLogin, &miap.Frame{Purpose: miap.PurposeLogin, Party: k.cfg.Gateway}, miap.PurposeLoginAck, nil)
		if err != nil {
			return "", err
		}
		session = lf.Session
	}
	_, reply, err := k.request(ctx, schemas.SubjectBrokerAck, &miap.Frame{Purpose: miap.PurposeAck, Party: k.cfg.Gateway, ID: id, Session: session, Body: body}, miap.PurposeAckReply, nil)
	if err != nil {
		return "", err
	}
	k.trace("ack", ref.MsgID, ref.Tx, status, schemas.TraceEvent{})
	k.count.acks.Add(1)
	return reply.Header.Get(miap.HdrReceipt), nil
}

// deliveryReason is the part of a medium's delivery error meant for the
// sender: the detail of a *schemas.Error, else the error text.
func deliveryReason(err error) string {
	var se *schemas.Error
	if errors.As(err, &se) && se.Detail != "" {
		return se.Detail
	}
	return err.Error()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

type queuedAck struct {
	Ref    AckRef `json:"ref"`
	Status string `json:"status"`
	Code   string `json:"code,omitempty"`
	Reason string `json:"reason,omitempty"`
}

func (k *Kit) queueAck(ctx context.Context, ref AckRef, status, code, reason string) error {
	b, _ := json.Marshal(queuedAck{Ref: ref, Status: status, Code: code, Reason: reason})
	pctx, cancel := context.WithTimeout(context.Background(), k.cfg.RequestTimeout)
	defer cancel()
	if _, err := k.js.Publish(pctx, ackSubject(k.cfg.Gateway), b, jetstream.WithMsgID(ref.MsgID+":"+status)); err != nil {
		k.holdAck(queuedAck{Ref: ref, Status: status, Code: code, Reason: reason})
		k.log.Error().Err(err).Str("msg_id", ref.MsgID).Msg("cannot queue acknowledgement: held in memory until NATS takes it")
		return schemas.Errorf(schemas.CodeBusy, err, "ack outbox")
	}
	k.log.Warn().Str("msg_id", ref.MsgID).Str("status", status).Msg("acknowledgement queued for retry")
	return nil
}

// holdAck keeps an acknowledgement that neither a broker nor the outbox
// took: NATS itself is down. retryHeld tries again until one does; only
// the end of this process loses it (logged as an error then). A message
// the medium stored is thus reported delivered once NATS is back
// (docs/RELIABILITY.md, "Acknowledgements").
func (k *Kit) holdAck(q queuedAck) {
	k.heldMu.Lock()
	defer k.heldMu.Unlock()
	if k.held == nil {
		k.held = map[string]queuedAck{}
	}
	k.held[q.Ref.MsgID+":"+q.Status] = q
}

// retryHeld hands held acknowledgements to a broker, or else to the
// outbox, every 2 s until ctx is done.
func (k *Kit) retryHeld(ctx context.Context) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			k.heldMu.Lock()
			for key := range k.held {
				k.log.Error().Str("ack", key).Msg("acknowledgement lost: the gateway stops before NATS took it")
			}
			k.heldMu.Unlock()
			return
		case <-t.C:
		}
		k.heldMu.Lock()
		var todo []queuedAck
		for _, q := range k.held {
			todo = append(todo, q)
		}
		k.heldMu.Unlock()
		for _, q := range todo {
			_, err := k.ackNow(ctx, q.Ref, q.Status, q.Code, q.Reason, false)
			if err != nil && miap.CodeOf(err).Retryable() {
				b, _ := json.Marshal(q)
				pctx, cancel := context.WithTimeout(ctx, k.cfg.RequestTimeout)
				_, err = k.js.Publish(pctx, ackSubject(k.cfg.Gateway), b, jetstream.WithMsgID(q.Ref.MsgID+":"+q.Status))
				cancel()
			}
			if err == nil || !miap.CodeOf(err).Retryable() {
				k.heldMu.Lock()
				delete(k.held, q.Ref.MsgID+":"+q.Status)
				k.heldMu.Unlock()
				k.log.Info().Str("msg_id", q.Ref.MsgID).Str("status", q.Status).Msg("held acknowledgement handed on")
			}
		}
	}
}

// consumeAcks retries queued acknowledgements until a broker takes them.
func (k *Kit) consumeAcks(ctx context.Context) error {
	cons, err := k.js.CreateOrUpdateConsumer(ctx, AckStream, jetstream.ConsumerConfig{
		Durable: "acks-" + k.cfg.Gateway, FilterSubject: ackSubject(k.cfg.Gateway),
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second, MaxDeliver: -1,
		BackOff: nil,
	})
	if err != nil {
		return fmt.Errorf("kit: ack consumer: %w", err)
	}
	return k.consume(ctx, cons, func(msg jetstream.Msg) {
		var q queuedAck
		if err := json.Unmarshal(msg.Data(), &q); err != nil {
			msg.Term()
			return
		}
		_, err := k.ackNow(ctx, q.Ref, q.Status, q.Code, q.Reason, false)
		switch {
		case err == nil:
			msg.Ack()
		case miap.CodeOf(err).Retryable():
			msg.NakWithDelay(2 * time.Second)
		default:
			k.log.Warn().Err(err).Str("msg_id", q.Ref.MsgID).Msg("queued acknowledgement refused")
			msg.Term()
		}
	})
}

// consumeStatus hands the brokers' status notifications for messages this
// gateway originated to the medium (§6.9); the JetStream ack is the
// originator's final acknowledgement.
func (k *Kit) consumeStatus(ctx context.Context) error {
	cons, err := k.js.CreateOrUpdateConsumer(ctx, schemas.StatusStream, jetstream.ConsumerConfig{
		Durable: "status-" + k.cfg.Gateway, FilterSubject: schemas.StatusFor(k.cfg.Gateway),
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second, MaxDeliver: -1,
	})
	if err != nil {
		return fmt.Errorf("kit: status consumer: %w", err)
	}
	return k.consume(ctx, cons, func(msg jetstream.Msg) {
		f, err := miap.ParseHeader(msg.Headers(), msg.Data())
		if err == nil && f.Party != k.cfg.Gateway {
			err = fmt.Errorf("%w: notification for %q", miap.ErrBadMAC, f.Party)
		}
		if err == nil && f.Purpose == miap.PurposeReceipt {
			// A receipt the originator stored for itself (originate.go).
			err = k.eng.VerifySigned(f, miap.PurposeReceipt)
		} else if err == nil {
			err = k.eng.Verify(f, miap.PurposeNotify)
		}
		var ev schemas.StatusEvent
		if err == nil {
			err = json.Unmarshal(f.Body, &ev)
		}
		if err != nil {
			k.log.Warn().Err(err).Bool("security", true).Msg("notification refused")
			msg.Term()
			return
		}
		if (ev.Status == schemas.StatusRerouted || ev.Status == schemas.StatusReleased) && f.Purpose == miap.PurposeNotify && ev.Routed != "" {
			// the message goes on to another medium (§6.15), or its hold
			// ended (§6.16): send it there
			var seq uint64
			if md, err := msg.Metadata(); err == nil {
				seq = md.Sequence.Stream
			}
			switch k.handleReroute(ctx, msg.Headers(), seq, f, &ev) {
			case streamAck:
				msg.Ack()
			case streamNak:
				msg.NakWithDelay(time.Second)
			case streamSoon:
				msg.NakWithDelay(200 * time.Millisecond)
			default:
				msg.Term()
			}
			return
		}
		if err := k.medium.Notify(ctx, &ev); err != nil {
			k.log.Warn().Err(err).Str("msg_id", ev.MsgID).Msg("notify failed; will retry")
			msg.NakWithDelay(time.Second)
			return
		}
		k.trace("notified", ev.MsgID, ev.Tx, ev.Status, schemas.TraceEvent{})
		k.count.notified.Add(1)
		if ev.Status == schemas.StatusDelivered || ev.Status == schemas.StatusFailed {
			k.forget(ctx, ev.MsgID, -1) // kept for a reroute (§6.15), if it was
		}
		msg.Ack() // the originator's final acknowledgement (§6.9)
	})
}

// consume runs handle on every message of cons with bounded concurrency
// until ctx is done.
func (k *Kit) consume(ctx context.Context, cons jetstream.Consumer, handle func(jetstream.Msg)) error {
	sem := make(chan struct{}, 32)
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		sem <- struct{}{}
		go func() { defer func() { <-sem }(); handle(msg) }()
	}, jetstream.PullMaxMessages(64))
	if err != nil {
		return err
	}
	<-ctx.Done()
	cc.Drain()
	<-cc.Closed()
	for range cap(sem) {
		sem <- struct{}{}
	}
	return nil
}

// Query asks the brokers for a message's status and history (§6.10).
func (k *Kit) Query(ctx context.Context, msgID string) (*schemas.TxStatus, error) {
	body, _ := json.Marshal(schemas.StatusQuery{V: schemas.Version, MsgID: msgID})
	rf, _, err := k.request(ctx, schemas.SubjectBrokerStatus, &miap.Frame{Purpose: miap.PurposeQuery, Party: k.cfg.Gateway, Body: body}, miap.PurposeQueryReply, nil)
	if err != nil {
		return nil, err
	}
	var st schemas.TxStatus
	if err := json.Unmarshal(rf.Body, &st); err != nil {
		return nil, schemas.Errorf(schemas.CodeMalformed, err, "status reply")
	}
	return &st, nil
}

// Cancel cancels a message the brokers hold for this originator
// (PROTOCOL.md §6.16): it fails with CANCELLED, and the kept content goes.
// A message already on its way is NOT_ALLOWED; one that ended, SETTLED;
// one this gateway did not originate, UNKNOWN_TX.
func (k *Kit) Cancel(ctx context.Context, msgID string) (*schemas.TxStatus, error) {
	body, _ := json.Marshal(schemas.CancelRequest{V: schemas.Version, MsgID: msgID})
	rf, _, err := k.request(ctx, schemas.SubjectBrokerCancel, &miap.Frame{Purpose: miap.PurposeCancel, Party: k.cfg.Gateway, Body: body}, miap.PurposeQueryReply, nil)
	if err != nil {
		return nil, err
	}
	var st schemas.TxStatus
	if err := json.Unmarshal(rf.Body, &st); err != nil {
		return nil, schemas.Errorf(schemas.CodeMalformed, err, "cancel reply")
	}
	k.forget(ctx, msgID, -1)
	k.trace("cancel", msgID, st.Tx, st.State, schemas.TraceEvent{})
	return &st, nil
}

// Client resolves a client credential or address through the brokers (§6.11).
func (k *Kit) Client(ctx context.Context, q schemas.ClientQuery) (*schemas.ClientInfo, error) {
	q.V = schemas.Version
	body, _ := json.Marshal(q)
	rf, _, err := k.request(ctx, schemas.SubjectBrokerClient, &miap.Frame{Purpose: miap.PurposeQuery, Party: k.cfg.Gateway, Body: body}, miap.PurposeQueryReply, nil)
	if err != nil {
		return nil, err
	}
	var ci schemas.ClientInfo
	if err := json.Unmarshal(rf.Body, &ci); err != nil {
		return nil, schemas.Errorf(schemas.CodeMalformed, err, "client reply")
	}
	return &ci, nil
}

// IsCode reports whether err carries code c.
func IsCode(err error, c schemas.Code) bool {
	var se *schemas.Error
	return errors.As(err, &se) && se.Code == c
}
