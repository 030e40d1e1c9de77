package broker

import (
	"context"
	"fmt"
	"strconv"
	"time"

	json "github.com/goccy/go-json"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/uims/uims/audit"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// handleAnnounce records a gateway or processor heartbeat (PROTOCOL.md
// §6.12). Every broker hears every heartbeat (no queue group); the frame is
// verified but its nonce is not claimed, since all brokers see the same
// frame: the registry ignores announcements not newer than the last one.
func (b *Broker) handleAnnounce(m *nats.Msg) {
	f, err := miap.ParseHeader(m.Header, m.Data)
	if err == nil {
		err = b.guard.Verify(f, miap.PurposeAnnounce)
	}
	var a schemas.Announce
	if err == nil {
		err = json.Unmarshal(f.Body, &a)
	}
	if err == nil {
		err = a.Validate()
	}
	if err == nil && a.Gateway != f.Party {
		err = fmt.Errorf("broker: announcement of %q signed by %q", a.Gateway, f.Party)
	}
	if err == nil {
		err = checkAnnounced(b.guard.Keys(), f.Party, a.Medium)
	}
	if err != nil {
		b.log.Warn().Err(err).Bool("security", true).Msg("announce refused")
		return
	}
	b.reg.add(&a)
}

// notify publishes a signed status notification for originating gateway og
// into the status stream, where it waits until the gateway takes it
// (PROTOCOL.md §6.9). Notifications go through one queue per broker and are
// published asynchronously in order, so a message's statuses reach the
// stream in the order they happened.
func (b *Broker) notify(og, msgID, tx, status string, body []byte, id []byte) {
	b.notifyWith(og, msgID, tx, status, msgID+":"+status, body, id, nil)
}

// notifyWith publishes a notification as notify does, de-duplicated by
// dedup, with extra headers outside the frame (a reroute's ticket, §6.15).
func (b *Broker) notifyWith(og, msgID, tx, status, dedup string, body []byte, id []byte, extra map[string][]string) {
	if og == schemas.SystemParty {
		return // the brokers' own message (system.go): nobody to tell
	}
	f := &miap.Frame{Purpose: miap.PurposeNotify, Party: og, ID: id, Body: body}
	if err := b.guard.Sign(f); err != nil {
		b.log.Error().Err(err).Str("og", og).Msg("cannot sign notification")
		return
	}
	msg := nats.NewMsg(schemas.StatusFor(og))
	f.PutHeader(msg.Header)
	for k, v := range extra {
		msg.Header[k] = v
	}
	msg.Data = body
	b.notes <- note{msg: msg, dedup: dedup, msgID: msgID, status: status}
	b.trace("notify", msgID, tx, og, status, schemas.TraceEvent{Status: status})
}

type note struct {
	msg           *nats.Msg
	dedup         string
	msgID, status string
}

// publishNotes publishes queued notifications in order until the queue is
// closed. A publish the server does not acknowledge is retried
// synchronously; one that keeps failing is logged (the status query still
// answers, and the originator sees the outcome there).
func (b *Broker) publishNotes(done chan<- struct{}) {
	defer close(done)
	for n := range b.notes {
		fut, err := b.js.PublishMsgAsync(n.msg, jetstream.WithMsgID(n.dedup))
		if err != nil {
			b.retryNote(n, err)
			continue
		}
		go func() {
			select {
			case <-fut.Ok():
			case err := <-fut.Err():
				b.retryNote(n, err)
			}
		}()
	}
	select {
	case <-b.js.PublishAsyncComplete():
	case <-time.After(5 * time.Second):
	}
}

func (b *Broker) retryNote(n note, err error) {
	for attempt := 1; attempt <= 5; attempt++ {
		time.Sleep(time.Duration(attempt) * 200 * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = b.js.PublishMsg(ctx, n.msg, jetstream.WithMsgID(n.dedup))
		cancel()
		if err == nil {
			return
		}
	}
	b.log.Error().Err(err).Str("msg_id", n.msgID).Str("status", n.status).Msg("notification not stored; the status query still answers")
}

// sweep turns transactions whose deadline passed into non-delivery reports
// (docs/RELIABILITY.md, One outcome). ZREM in the sweep script makes exactly one replica act on
// each transaction.
func (b *Broker) sweep(ctx context.Context) {
	t := time.NewTicker(b.cfg.SweepInterval)
	defer t.Stop()
	var lastAcct int64
	for first := true; ; first = false {
		if !first { // the first sweep at once: a broker that lives less than an interval still keeps the clock
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
		now := b.cfg.Now().UnixMilli()
		if !b.tick(ctx, now) {
			continue
		}
		b.releaseHolds(ctx, time.UnixMilli(now))
		if now-lastAcct >= time.Second.Milliseconds() {
			lastAcct = now
			b.sweepAccounting(ctx, now)
		}
		ids, err := b.rdb.ZRangeByScore(ctx, keyDeadlines, &redis.ZRangeBy{Min: "-inf", Max: strconv.FormatInt(now, 10), Count: 500}).Result()
		if err != nil {
			if ctx.Err() == nil {
				b.log.Warn().Err(err).Msg("sweep: cannot read deadlines")
			}
			continue
		}
		for _, id := range ids {
			if !b.heldByDestination(ctx, id, now) {
				b.expire(ctx, id, now)
			}
		}
	}
}

// heldByDestination asks the destination of a routed message whose
// deadline passed whether it holds it (PROTOCOL.md §6.14): a gateway that
// stored the message and died before its acknowledgement left acknowledges
// it now, and the message is not failed while it sits with its recipient.
// A destination that cannot look now moves the deadline on by Grace, and
// a store that cannot be read leaves it for the next sweep. No
// answer (no gateway, no responders, a timeout of 1 s) lets the deadline
// fail the message as before.
func (b *Broker) heldByDestination(ctx context.Context, msgID string, now int64) bool {
	v, err := b.rdb.HMGet(ctx, keyTx+msgID, fState, fDG, fDest, fRecipient, fRouted).Result()
	if err != nil {
		// Could not read the transaction: not a reason to fail it; the
		// next sweep looks again.
		b.log.Warn().Err(err).Str("msg_id", msgID).Msg("sweep: cannot read the transaction")
		return true
	}
	if len(v) != 5 {
		return false
	}
	state, _ := v[0].(string)
	dg, _ := v[1].(string)
	dest, _ := v[2].(string)
	if state != schemas.StatusRouted || dg == "" || dg != dest {
		return false // a processor holds it, or it already ended
	}
	q := schemas.HeldQuery{V: schemas.Version, MsgID: msgID, Tx: msgID}
	q.Recipient, _ = v[3].(string)
	var deadline int64
	if raw, ok := v[4].(string); ok {
		var routed schemas.RoutedIMI
		if json.Unmarshal([]byte(raw), &routed) == nil {
			q.Tx, q.Dest, deadline = routed.Tx, routed.Dest, routed.Deadline
		}
	}
	if deadline > 0 && now > deadline+HeldLimit*b.cfg.Grace.Milliseconds() {
		// a destination that answers "later" for ever does not keep the
		// message from its non-delivery report
		b.log.Warn().Str("msg_id", msgID).Str("dg", dg).Bool("security", true).Msg("deadline check: the destination put the outcome off too long; the message fails")
		return false
	}
	body, _ := json.Marshal(q)
	m, err := b.nc.Request(schemas.GatewayHeld(dg), body, time.Second)
	if err != nil {
		return false
	}
	var r schemas.HeldReply
	if json.Unmarshal(m.Data, &r) != nil {
		return false
	}
	if r.Later {
		b.rdb.ZAddXX(ctx, keyDeadlines, redis.Z{Score: float64(now + b.cfg.Grace.Milliseconds()), Member: msgID})
		return true
	}
	if !r.Held {
		return false
	}
	// "held" means the destination acknowledged the message before it
	// answered (§6.14): a destination that says so without doing it would
	// keep the message open for ever.
	if st, err := b.rdb.HGet(ctx, keyTx+msgID, fState).Result(); err == nil && st == schemas.StatusRouted {
		b.log.Warn().Str("msg_id", msgID).Str("dg", dg).Bool("security", true).Msg("deadline check: the destination says it holds the message but did not acknowledge it; the message fails")
		return false
	}
	b.log.Warn().Str("msg_id", msgID).Str("dg", dg).Msg("deadline passed, but the destination holds the message: it acknowledged it now")
	return true
}

// HeldLimit bounds, in Grace periods past a message's deadline, how long
// a destination's deadline-check answers may put its outcome off.
const HeldLimit = 10

// tick advances the fabric's clock (clockScript) and reports whether this
// broker may sweep now: it must hear acknowledgements (NATS connected) and
// reach the store. After an outage the first tick moves the open deadlines
// on by its length.
func (b *Broker) tick(ctx context.Context, now int64) bool {
	if !b.nc.IsConnected() {
		return false
	}
	gap := 4 * b.cfg.SweepInterval.Milliseconds()
	res, err := clockScript.Run(ctx, b.rdb, []string{keyAlive, keyDeadlines}, now, max(gap, 2000), b.cfg.Grace.Milliseconds()).Result()
	if err != nil {
		if ctx.Err() == nil {
			b.log.Warn().Err(err).Msg("sweep: store unavailable; no deadline passes while it is")
		}
		return false
	}
	if out, err := scriptReply(res); err == nil && out[0] == "shifted" {
		b.log.Warn().Str("transactions", out[1]).Str("by_ms", out[2]).
			Msg("the fabric could not hear acknowledgements for a while: open deadlines moved on by that time")
	}
	return true
}

func (b *Broker) expire(ctx context.Context, msgID string, now int64) {
	// A route the originator got by notification while it was down
	// waits for it (hold.go); a message routed with fallback moves on
	// instead of failing (fallback.go).
	if b.reissue(ctx, msgID, b.cfg.Now()) {
		return
	}
	handled, final, attempt, medium := b.expireReroute(ctx, msgID, b.cfg.Now()) // now: the sweep may have taken a while
	if handled {
		return
	}
	reason := "no acknowledgement from the destination before the deadline"
	entry := historyJSON(schemas.StatusFailed, now, schemas.CodeExpired.String(), reason, b.cfg.Instance)
	if attempt > 1 {
		e, _ := json.Marshal(schemas.HistoryEntry{Status: schemas.StatusFailed, At: now, Code: schemas.CodeExpired.String(),
			Reason: reason, Party: b.cfg.Instance, Attempt: attempt, Medium: medium})
		entry = string(e)
	}
	recs := b.auditBodies(now, &audit.Body{Tx: msgID, Kind: audit.KindExpire, Attempt: attempt, Code: schemas.CodeExpired.String()},
		&audit.Body{Tx: msgID, Kind: audit.KindNotify, Attempt: attempt, Status: schemas.StatusFailed, Code: schemas.CodeExpired.String()})
	an, ah := recs.args()
	res, err := sweepScript.Run(ctx, b.rdb, []string{keyTx + msgID, keyTxHistory + msgID, keyDeadlines},
		msgID, entry, keyAcct, now, an, ah).Result()
	if err != nil {
		b.log.Warn().Err(err).Str("msg_id", msgID).Msg("sweep")
		return
	}
	out, err := scriptReply(res)
	if err != nil || out[0] != "failed" || len(out) < 5 {
		return
	}
	if len(out) >= 6 {
		b.account(out[5])
	}
	if len(out) >= 8 {
		b.auditAppend(recs, out[6], out[7])
	}
	reason += " (" + out[4] + ")"
	if final != "" {
		reason = final // every attempt of a message routed more than once
	}
	body := eventJSON(out[2], schemas.StatusFailed, schemas.CodeExpired.String(), reason, now)
	b.log.Info().Str("msg_id", msgID).Str("was", out[1]).Str("dg", out[4]).Msg("deadline passed: non-delivery report")
	b.metrics.outcomes.WithLabelValues("expired").Inc()
	b.notify(out[3], msgID, msgID, schemas.StatusFailed, body, nil)
}

// checkAnnounced refuses a heartbeat for a medium its party was not
// provisioned for (PROTOCOL.md §3.5): a gateway that announced itself for
// another medium would be sent that medium's messages.
func checkAnnounced(kr *miap.Keyring, party, medium string) error {
	g, ok := kr.Grant(party)
	switch {
	case !ok:
		return fmt.Errorf("broker: %q announced itself but was provisioned for no medium", party)
	case medium == "processor" && g.Role == miap.RoleProcessor:
		return nil
	case medium != "processor" && g.Role != miap.RoleProcessor && g.Speaks(medium):
		return nil
	}
	return fmt.Errorf("broker: %q announced itself for medium %q, provisioned as %s for %v", party, medium, g.Role, g.Media)
}
