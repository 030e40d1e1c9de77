package broker

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	json "github.com/goccy/go-json"
	"github.com/redis/go-redis/v9"

	"github.com/uims/uims/audit"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// Fallback across media (docs/ROUTING.md; PROTOCOL.md §6.15): an attempt
// that fails for good, or whose deadline passes, is not the message's
// outcome while the recipient has a medium left that was not tried. The
// brokers route the same transaction again, as the next attempt with a new
// ID, C_ack and ticket, and tell the originator, which keeps the content
// until the outcome and transfers it to the new destination.

// mediaOrder is the order in which a client's media are tried: its prefer
// list (or the default order), then its last resort if the list does not
// name it.
func mediaOrder(p *schemas.Profile) []string {
	order := p.Prefer
	if len(order) == 0 {
		order = defaultPrefer[:]
	}
	if p.Fallback != nil && p.Fallback.LastResort != "" && !contains(order, p.Fallback.LastResort) {
		order = append(append([]string(nil), order...), p.Fallback.LastResort)
	}
	return order
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// fallbackLeft reports whether a message for p may still move on to a
// medium not in tried: the rule does not say never, and p has an address on
// such a medium. Whether a gateway of it is live is decided at the time.
func fallbackLeft(p *schemas.Profile, tried map[string]bool) bool {
	if p == nil || p.Fallback.Off() {
		return false
	}
	for _, m := range mediaOrder(p) {
		if !tried[m] && p.Addresses[m] != "" {
			return true
		}
	}
	return false
}

// fallbackRoute sets the fallback flag of a routed attempt on medium (the
// originator then keeps the content, §6.15) and returns the attempt's limit
// on its medium (Unix ms, 0: none). tried are the media of the earlier
// attempts.
func fallbackRoute(p *schemas.Profile, routed *schemas.RoutedIMI, tried map[string]bool, now time.Time) int64 {
	all := map[string]bool{routed.Dest.Medium: true}
	for m := range tried {
		all[m] = true
	}
	routed.Fallback = fallbackLeft(p, all)
	if !routed.Fallback {
		return 0
	}
	if d := p.Fallback.AfterFor(routed.Dest.Medium); d > 0 {
		return now.Add(d).UnixMilli()
	}
	return 0
}

// score is an attempt's place on the deadline set: its deadline plus
// grace, or its limit if that comes first.
func (b *Broker) score(deadline, limit int64) int64 {
	s := deadline + b.cfg.Grace.Milliseconds()
	if limit > 0 && limit < s {
		return limit
	}
	return s
}

// tried returns the media of a transaction's attempts, the current one's
// included.
func (t *txRecord) tried() map[string]bool {
	m := map[string]bool{t.Medium: true}
	for _, a := range t.Attempts {
		m[a.Medium] = true
	}
	return m
}

func unsettled(state string) bool {
	return state == schemas.StatusRouted || state == schemas.StatusTransferred
}

// reroute is the next attempt of a transaction, ready to be stored.
type reroute struct {
	prev     schemas.Attempt // the attempt that ended
	routed   schemas.RoutedIMI
	bytes    []byte
	id, cack []byte
	kid2     string
	firstHop string
	limit    int64
	args     rerouteArgs
	receipt  []byte // the rerouted status event without the IMI′ (notifyReroute)
}

// planReroute decides whether the current attempt of t, which ended with
// code and reason (deadline: its deadline passed), moves on, and builds the
// next attempt: nil when it does not (the attempt was not routed with
// fallback, the recipient's rule says no, or no medium is left with a live
// gateway that can take the content). An error is a store that could not
// be read.
func (b *Broker) planReroute(ctx context.Context, msgID string, t *txRecord, code, reason string, deadline bool, who string, now time.Time) (*reroute, error) {
	if !unsettled(t.State) {
		return nil, nil
	}
	var cur schemas.RoutedIMI
	if err := json.Unmarshal(t.Routed, &cur); err != nil || !cur.Fallback || cur.Recipient == "" {
		return nil, nil
	}
	p, err := b.profiles.ByID(ctx, cur.Recipient)
	if errors.Is(err, ErrNoClient) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !p.Fallback.Moves(code, deadline) {
		return nil, nil
	}
	tried := t.tried()
	// the next medium as a first route would choose it, quiet hours
	// included (hold.go): a quiet one waits, or gives way to one that is
	// not (quiet: next). Sealed content goes only to a route whose every
	// hop announces an encryption key (PROTOCOL.md §14.1): the originator
	// cannot seal to the others, and its IMI binds the sealed bytes, so a
	// medium without keys is passed over like one without a live gateway.
	dec, h, passed, err := b.decideSealable(ctx, &cur.IMI, cur.Sender, tried, now)
	if len(passed) > 0 {
		b.log.Info().Str("msg_id", msgID).Strs("media", passed).Msg("fallback: sealed content, passed over media whose hops announce no encryption key")
	}
	if err != nil {
		if miap.CodeOf(err) == schemas.CodeStoreUnavailable {
			return nil, err
		}
		b.log.Info().Str("msg_id", msgID).Err(err).Msg("fallback: no medium left with a live gateway")
		return nil, nil
	}
	if dec.recipient == nil || dec.recipient.ID != p.ID || tried[dec.dest.Medium] {
		return nil, nil
	}
	outcome := schemas.OutcomeFailed
	if deadline {
		outcome = schemas.OutcomeExpired
	}
	rr := &reroute{prev: schemas.Attempt{Attempt: t.Attempt, Medium: t.Medium, Gateway: t.Dest, Address: cur.Dest.Address,
		Outcome: outcome, Code: code, Reason: truncate(reason, 1024), At: now.UnixMilli()}}
	rr.routed = cur
	rr.routed.Dest, rr.routed.Conversions = dec.dest, dec.steps
	rr.routed.RecipientName, rr.routed.Options = dec.recipient.Name, deliveryOptions(dec.recipient, dec.dest.Medium)
	rr.routed.Routed, rr.routed.Deadline = now.UnixMilli(), now.Add(b.cfg.Deadline).UnixMilli()
	rr.routed.Attempt = t.Attempt + 1
	rr.limit = fallbackRoute(dec.recipient, &rr.routed, tried, now)
	if h != nil {
		b.applyHold(&rr.routed, h)
		rr.limit = 0
	}
	if missing := b.sealKeys(&rr.routed, now.UnixMilli()); len(missing) > 0 {
		// The originator cannot seal to them: its transfer fails and the
		// deadline moves the message on (PROTOCOL.md §14.1).
		b.log.Warn().Str("msg_id", msgID).Strs("hops", missing).Msg("fallback: sealed content, and hops of the new route announce no encryption key")
	}
	if rr.bytes, err = json.Marshal(&rr.routed); err != nil {
		return nil, schemas.Errorf(schemas.CodeInternal, err, "encode routed imi")
	}
	if len(rr.bytes) > miap.MaxRouted {
		b.log.Warn().Str("msg_id", msgID).Msg("fallback: the new routed IMI is too large")
		return nil, nil
	}
	if rr.cack, err = b.guard.NewSessionKey(); err != nil {
		return nil, schemas.Errorf(schemas.CodeInternal, err, "session key")
	}
	if rr.id, rr.kid2, err = b.guard.MintID(rr.bytes, rr.cack); err != nil {
		return nil, schemas.Errorf(schemas.CodeInternal, err, "mint ID")
	}
	rr.firstHop = firstHop(&rr.routed)
	atts := append(append([]schemas.Attempt(nil), t.Attempts...), rr.prev)
	imi := &rr.routed.IMI
	note, _ := json.Marshal(schemas.StatusEvent{V: schemas.Version, Tx: rr.routed.Tx, MsgID: imi.MsgID, Sender: rr.routed.Sender,
		From: imi.From, To: imi.To, Dest: rr.routed.Dest, Subject: imi.Subject, Meta: imi.Meta, Attempt: rr.routed.Attempt, Earlier: atts})
	attsJSON, _ := json.Marshal(atts)
	failed, _ := json.Marshal(schemas.HistoryEntry{Status: schemas.HistoryAttemptFailed, At: now.UnixMilli(), Code: code,
		Reason: rr.prev.Reason, Party: who, Attempt: t.Attempt, Medium: t.Medium})
	routedEntry, _ := json.Marshal(schemas.HistoryEntry{Status: schemas.StatusRerouted, At: now.UnixMilli(),
		Reason: "to " + dec.dest.Gateway + ":" + dec.dest.Address, Party: b.cfg.Instance, Attempt: rr.routed.Attempt, Medium: dec.dest.Medium})
	state, score := schemas.StatusRouted, b.score(rr.routed.Deadline, rr.limit)
	if h != nil {
		// held on its next medium: no route for the originator until the
		// hold ends (the released notification brings it, hold.go)
		routedEntry, _ = json.Marshal(schemas.HistoryEntry{Status: schemas.StatusHeld, At: now.UnixMilli(), Reason: rr.routed.Held,
			Party: b.cfg.Instance, Attempt: rr.routed.Attempt, Medium: dec.dest.Medium, Until: rr.routed.HeldUntil})
		state, score = schemas.StatusHeld, rr.routed.HeldUntil
	}
	rr.args = rerouteArgs{IDHash: t.IDHash, Attempt: t.Attempt, Now: now.UnixMilli(), MsgID: msgID,
		Routed: rr.bytes, ID: miap.EncodeB64(rr.id), NewHash: idHash(rr.id), Kid2: rr.kid2, Session: miap.EncodeB64(rr.cack),
		DG: rr.firstHop, Dest: dec.dest.Gateway, Medium: dec.dest.Medium, Note: note, Deadline: rr.routed.Deadline,
		Limit: rr.limit, Next: rr.routed.Attempt, Attempts: attsJSON, After: afterPhrase(atts),
		Previous: strconv.Itoa(t.Attempt) + "|" + t.Dest + "|" + t.Medium + "|" + cur.Dest.Address,
		Failed:   string(failed), Rerouted: string(routedEntry), Score: score, State: state, Code: code, Outcome: outcome}
	return rr, nil
}

// describe is one attempt in a reason: "email failed: UNKNOWN_RECIPIENT
// 550 5.1.1 no such mailbox".
func describe(a schemas.Attempt) string {
	return a.Medium + " " + a.Outcome + ": " + truncate(strings.TrimSpace(a.Code+" "+a.Reason), 200)
}

// afterPhrase is what a later attempt's outcome says of the earlier
// ones: "after email failed: UNKNOWN_RECIPIENT 550 5.1.1 no such mailbox".
func afterPhrase(atts []schemas.Attempt) string {
	parts := make([]string, len(atts))
	for i, a := range atts {
		parts[i] = describe(a)
	}
	return truncate("after "+strings.Join(parts, "; "), 1024)
}

// everyAttempt is the reason of a final failure after a reroute: every
// attempt with its code and reason, "email: UNKNOWN_RECIPIENT 550 …; web:
// EXPIRED no acknowledgement …".
func everyAttempt(atts []schemas.Attempt, last schemas.Attempt) string {
	parts := make([]string, 0, len(atts)+1)
	for _, a := range append(append([]schemas.Attempt(nil), atts...), last) {
		parts = append(parts, a.Medium+": "+truncate(strings.TrimSpace(a.Code+" "+a.Reason), 200))
	}
	return truncate(strings.Join(parts, "; "), 1024)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// applyReroute stores a planned attempt (rerouteScript), claiming the
// acknowledgement's nonce in the same round trip when f is not nil. It
// returns the script's result: "rerouted", or "stale", "terminal", "gone"
// when another broker or acknowledgement changed the transaction first;
// and, apart, the claim's error: the script ran all the same (as
// ackScript does in the pipeline), so a reroute it made is told to the
// originator even then.
func (b *Broker) applyReroute(ctx context.Context, f *miap.Frame, rr *reroute) (result string, claimErr, err error) {
	var bodies []*audit.Body
	if rr.args.Mode == "ack" {
		bodies = append(bodies, &audit.Body{Tx: rr.args.MsgID, Kind: audit.KindAck, Attempt: rr.prev.Attempt, Gateway: rr.args.Party,
			Status: schemas.StatusFailed, Code: rr.prev.Code, IDHash: rr.args.IDHash, IDMatch: audit.IDMatch})
	}
	kind := audit.KindReroute
	if rr.routed.HeldUntil > 0 {
		kind = audit.KindHold
	}
	bodies = append(bodies, &audit.Body{Tx: rr.args.MsgID, Kind: kind, Attempt: rr.routed.Attempt, Gateway: rr.routed.Dest.Gateway,
		Medium: rr.routed.Dest.Medium, Chain: routeChain(rr.routed.Conversions), Code: rr.prev.Code, IDHash: rr.args.NewHash,
		Until: rr.routed.HeldUntil, Due: rr.args.Score})
	if rr.routed.HeldUntil == 0 {
		bodies = append(bodies, &audit.Body{Tx: rr.args.MsgID, Kind: audit.KindNotify, Attempt: rr.routed.Attempt, Status: schemas.StatusRerouted})
	}
	recs := b.auditBodies(rr.args.Now, bodies...)
	rr.args.AuditCount, rr.args.AuditHead = recs.args()
	keys, args := rr.args.keys(), rr.args.argv()
	res, claimErr, err := b.evalClaim(ctx, f, rerouteScript, keys, args)
	if err != nil {
		return "", claimErr, err
	}
	out, err := scriptReply(res)
	if err != nil {
		return "", claimErr, schemas.Errorf(schemas.CodeInternal, err, "reroute reply")
	}
	if out[0] == "rerouted" {
		b.metrics.outcomes.WithLabelValues(schemas.StatusRerouted).Inc()
		if len(out) >= 4 {
			b.account(out[3])
		}
		if len(out) >= 6 {
			b.auditAppend(recs, out[4], out[5])
		}
	}
	return out[0], claimErr, nil
}

// evalClaim runs script on the hot path's shared pipeline (batch.go), with
// the nonce claim of frame f in the same round trip when f is not nil, and
// waits for the replicas the configuration asks for. The claim's error
// (REPLAY, QUARANTINE, STORE_UNAVAILABLE) comes apart from the script's.
func (b *Broker) evalClaim(ctx context.Context, f *miap.Frame, script *redis.Script, keys []string, args []any) (res any, claimErr, err error) {
	var claim func() error
	var cmd *redis.Cmd
	werr := b.batch.do(ctx, func(pipe redis.Pipeliner) {
		if f != nil {
			claim = b.store.QueueClaim(ctx, pipe, f.Party, f.Nonce, b.guard.NonceTTL())
		}
		cmd = script.EvalSha(ctx, pipe, keys, args...)
	})
	if claim != nil {
		claimErr = b.guard.StoreResult(ctx, claim())
	}
	res, err = cmd.Result()
	if isNoScript(err) {
		res, err, werr = b.batch.runScript(ctx, script, keys, args)
	}
	if err == nil && werr != nil {
		// Not on enough replicas: the sender retries (a duplicate then,
		// or applied again after a failover).
		return nil, claimErr, schemas.Errorf(schemas.CodeStoreUnavailable, werr, "transition")
	}
	if err != nil {
		return nil, claimErr, schemas.Errorf(schemas.CodeStoreUnavailable, err, "transition")
	}
	return res, claimErr, nil
}

// notifyReroute tells the originator of a rerouted message where it goes
// now (PROTOCOL.md §6.15). It returns the event without the IMI′, the
// body of the acknowledgement's receipt.
func (b *Broker) notifyReroute(og string, rr *reroute) []byte {
	var earlier []schemas.Attempt
	json.Unmarshal(rr.args.Attempts, &earlier)
	rr.receipt = b.notifyRoute(og, schemas.StatusRerouted, rr.prev.Code, describe(rr.prev)+"; now "+rr.routed.Dest.Medium,
		&rr.routed, rr.bytes, rr.id, rr.firstHop, earlier, rr.routed.IMI.MsgID+":"+schemas.StatusRerouted+":"+strconv.Itoa(rr.routed.Attempt))
	imi := &rr.routed.IMI
	b.log.Info().Str("msg_id", imi.MsgID).Str("from_medium", rr.prev.Medium).Str("code", rr.prev.Code).
		Str("dest", rr.routed.Dest.Gateway).Str("medium", rr.routed.Dest.Medium).Int("attempt", rr.routed.Attempt).Msg("rerouted")
	b.trace("reroute", imi.MsgID, rr.routed.Tx, og, schemas.StatusRerouted, schemas.TraceEvent{Dest: rr.routed.Dest.Gateway,
		ID: miap.EncodeB64(rr.id)[:8], Code: rr.prev.Code, Recipient: rr.routed.Recipient})
	return rr.receipt
}

// tellReroute tells the originator of a reroute: the new route
// (notifyReroute), or, for a next attempt held in its medium's quiet
// hours, nothing yet — the released notification brings the route when
// the hold ends — but the receipt of the failed acknowledgement, which
// says rerouted and why it waits.
func (b *Broker) tellReroute(og string, rr *reroute) {
	if rr.routed.HeldUntil == 0 {
		b.notifyReroute(og, rr)
		return
	}
	imi := &rr.routed.IMI
	var earlier []schemas.Attempt
	json.Unmarshal(rr.args.Attempts, &earlier)
	rr.receipt, _ = json.Marshal(schemas.StatusEvent{V: schemas.Version, Tx: rr.routed.Tx, MsgID: imi.MsgID, Status: schemas.StatusRerouted,
		Code: rr.prev.Code, Reason: truncate(describe(rr.prev)+"; now "+rr.routed.Dest.Medium+", held: "+rr.routed.Held, 1024),
		At: rr.args.Now, Sender: rr.routed.Sender, From: imi.From, To: imi.To, Dest: rr.routed.Dest, Subject: imi.Subject,
		Meta: imi.Meta, Attempt: rr.routed.Attempt, Earlier: earlier})
	b.log.Info().Str("msg_id", imi.MsgID).Str("medium", rr.routed.Dest.Medium).Int("attempt", rr.routed.Attempt).
		Str("why", rr.routed.Held).Msg("rerouted, and held")
	b.trace("hold", imi.MsgID, rr.routed.Tx, og, schemas.StatusHeld, schemas.TraceEvent{Dest: rr.routed.Dest.Gateway, Code: rr.prev.Code})
}

// notifyRoute sends the originator a route by notification (PROTOCOL.md
// §6.15 rerouted, §6.16 released): a status event that carries the new
// IMI′, signed with its ID, and the ticket headers for its first hop, as
// the route reply of §6.3 does. It returns the event without the IMI′.
func (b *Broker) notifyRoute(og, status, code, reason string, routed *schemas.RoutedIMI, bytes, id []byte, hop string,
	earlier []schemas.Attempt, dedup string) []byte {
	imi := &routed.IMI
	ev := schemas.StatusEvent{V: schemas.Version, Tx: routed.Tx, MsgID: imi.MsgID, Status: status,
		Code: code, Reason: truncate(reason, 1024), At: routed.Routed,
		Sender: routed.Sender, From: imi.From, To: imi.To, Dest: routed.Dest, Subject: imi.Subject, Meta: imi.Meta,
		Attempt: routed.Attempt, Earlier: earlier}
	receipt, _ := json.Marshal(ev)
	ev.Routed = miap.EncodeB64(bytes)
	body, _ := json.Marshal(ev)
	ticket, err := b.ticket(hop, og, id, imi.Content, routed.Deadline, bytes)
	if err != nil {
		b.log.Error().Err(err).Str("msg_id", imi.MsgID).Msg("cannot sign the ticket of a route by notification")
		return receipt
	}
	b.notifyWith(og, imi.MsgID, routed.Tx, status, dedup, body, id, ticket)
	return receipt
}

// ackFallback handles a failed acknowledgement of the current attempt of a
// message routed with fallback: it reroutes it when the recipient has a
// medium left (handled true, the reply sent), or returns the reason the
// final failure gives when the message was routed more than once.
// claimed says the acknowledgement's nonce was claimed.
type ackFallback struct {
	handled, claimed bool
	final            string // the reason of the final failure, naming every attempt; "" for a message routed once
}

func (b *Broker) ackReroute(ctx context.Context, reply func(*miap.Frame, map[string][]string) error, f *miap.Frame, ack *schemas.Ack, now time.Time) (ackFallback, error) {
	var out ackFallback
	pipe := b.rdb.Pipeline()
	load := queueLoad(ctx, pipe, ack.MsgID)
	pipe.Exec(ctx)
	t, err := load()
	if err != nil {
		return out, schemas.Errorf(schemas.CodeStoreUnavailable, err, "load tx")
	}
	if t == nil || t.IDHash != idHash(f.ID) || t.DG != f.Party || !unsettled(t.State) {
		return out, nil // not the current attempt: ackScript decides
	}
	code, reason := ack.Code, ack.Reason
	rr, err := b.planReroute(ctx, ack.MsgID, t, code, reason, false, f.Party, now)
	if err != nil {
		return out, schemas.Errorf(schemas.CodeStoreUnavailable, err, "fallback")
	}
	if rr == nil {
		if t.Attempt > 1 {
			out.final = everyAttempt(t.Attempts, schemas.Attempt{Medium: t.Medium, Code: code, Reason: reason})
		}
		return out, nil
	}
	rr.args.Mode, rr.args.Party = "ack", f.Party
	res, claimErr, err := b.applyReroute(ctx, f, rr)
	if res == "rerouted" {
		b.tellReroute(t.OG, rr)
	}
	if claimErr != nil {
		return out, claimErr
	}
	if err != nil {
		return out, err
	}
	out.claimed = true
	if res != "rerouted" {
		return out, nil // raced: ackScript decides on the transaction as it is now
	}
	out.handled = true
	evBody := rr.receipt
	receipt := &miap.Frame{Purpose: miap.PurposeReceipt, Party: t.OG, Nonce: f.Nonce, ID: f.ID, Peer: f.Party, Body: evBody}
	if err := b.guard.Sign(receipt); err != nil {
		return out, schemas.Errorf(schemas.CodeInternal, err, "receipt")
	}
	body, _ := json.Marshal(schemas.AckReply{V: schemas.Version, Tx: ack.Tx, State: schemas.StatusFailed, Rerouted: true})
	return out, reply(&miap.Frame{Purpose: miap.PurposeAckReply, Party: f.Party, Nonce: f.Nonce, ID: f.ID, Body: body},
		map[string][]string{miap.HdrReceipt: {miap.EncodeB64(miap.AppendCompact(nil, receipt))}})
}

// expireReroute is the sweeper's side (docs/RELIABILITY.md): a deadline
// or a medium's limit that passed moves the message on instead of failing
// it. It reports whether it handled the transaction (rerouted, or left for
// a deadline still to come), or the reason of the final failure for a
// message routed more than once.
func (b *Broker) expireReroute(ctx context.Context, msgID string, now time.Time) (handled bool, final string, attempt int, medium string) {
	pipe := b.rdb.Pipeline()
	load := queueLoad(ctx, pipe, msgID)
	pipe.Exec(ctx)
	t, err := load()
	if err != nil {
		b.log.Warn().Err(err).Str("msg_id", msgID).Msg("sweep: cannot read the transaction")
		return true, "", 0, ""
	}
	if t == nil || !unsettled(t.State) {
		return false, "", 0, ""
	}
	reason := "no acknowledgement from the destination before the deadline (" + t.Dest + ")"
	if t.Limit > 0 && t.Limit <= now.UnixMilli() {
		reason = "no outcome from the destination within the time its medium may take (" + t.Dest + ")"
	}
	rr, err := b.planReroute(ctx, msgID, t, schemas.CodeExpired.String(), reason, true, b.cfg.Instance, now)
	if err != nil {
		b.log.Warn().Err(err).Str("msg_id", msgID).Msg("sweep: cannot decide the fallback; next sweep")
		return true, "", 0, ""
	}
	if rr != nil {
		rr.args.Mode = "sweep"
		res, _, err := b.applyReroute(ctx, nil, rr)
		if err != nil {
			b.log.Warn().Err(err).Str("msg_id", msgID).Msg("sweep: reroute")
			return true, "", 0, ""
		}
		if res == "rerouted" {
			b.tellReroute(t.OG, rr)
		}
		return true, "", 0, ""
	}
	// Nothing to move on to: a limit that came before the attempt's own
	// deadline gives way to it.
	natural := t.Dlv
	if t.State == schemas.StatusRouted {
		var cur schemas.RoutedIMI
		if json.Unmarshal(t.Routed, &cur) == nil {
			natural = cur.Deadline + b.cfg.Grace.Milliseconds()
		}
	}
	if natural > now.UnixMilli() {
		b.rdb.ZAddXX(ctx, keyDeadlines, redis.Z{Score: float64(natural), Member: msgID})
		return true, "", 0, ""
	}
	if t.Attempt > 1 {
		final = everyAttempt(t.Attempts, schemas.Attempt{Medium: t.Medium, Code: schemas.CodeExpired.String(), Reason: reason})
	}
	return false, final, t.Attempt, t.Medium
}

// ackEvent is the status event of an applied acknowledgement (ackScript's
// reply out): the transaction's template filled in. For a message routed
// more than once it names the acknowledged attempt: the current one's
// outcome says what became of the earlier ones (docs/ROUTING.md, "What
// the sender sees"); an earlier attempt's late success carries that
// attempt's destination and number.
func (b *Broker) ackEvent(out []string, ack *schemas.Ack, final string, now int64) []byte {
	note := out[3]
	var att, fb, cur string
	if len(out) >= 7 {
		att, fb, cur = out[4], out[5], out[6]
	}
	if att == "" {
		return eventJSON(note, ack.Status, ack.Code, ack.Reason, now) // routed once
	}
	n, gw, medium, addr := splitAttempt(att)
	reason := ack.Reason
	if strconv.Itoa(n) == cur {
		switch {
		case ack.Status == schemas.StatusFailed && final != "":
			reason = final
		case ack.Status != schemas.StatusFailed && reason == "" && fb != "":
			reason = ack.Status + " (" + medium + ", " + fb + ")"
		}
		return eventJSON(note, ack.Status, ack.Code, reason, now)
	}
	var ev schemas.StatusEvent
	json.Unmarshal([]byte(note), &ev)
	moved := ev.Dest.Medium
	ev.Status, ev.Code, ev.At, ev.Attempt = ack.Status, ack.Code, now, n
	ev.Dest = schemas.Hop{Gateway: gw, Medium: medium, Address: addr}
	var earlier []schemas.Attempt
	for _, a := range ev.Earlier {
		if a.Attempt < n {
			earlier = append(earlier, a)
		}
	}
	ev.Earlier = earlier
	ev.Reason = truncate(ack.Status+" ("+medium+", attempt "+strconv.Itoa(n)+", acknowledged late: the message had moved on to "+moved+")", 1024)
	body, _ := json.Marshal(&ev)
	return body
}

// splitAttempt parses an attempt as ackScript returns it:
// "<n>|<gateway>|<medium>|<address>".
func splitAttempt(s string) (n int, gw, medium, addr string) {
	parts := strings.SplitN(s, "|", 4)
	for len(parts) < 4 {
		parts = append(parts, "")
	}
	n, _ = strconv.Atoi(parts[0])
	return n, parts[1], parts[2], parts[3]
}

// record keeps an acknowledgement that changed nothing, because another
// attempt decided the outcome, in the history (docs/ROUTING.md, "Late
// acknowledgements").
func (b *Broker) record(ctx context.Context, ack *schemas.Ack, att, party string, now int64) {
	n, _, medium, _ := splitAttempt(att)
	e, _ := json.Marshal(schemas.HistoryEntry{Status: schemas.HistoryRecorded, At: now, Code: ack.Code,
		Reason: truncate(strings.TrimSpace(ack.Status+": "+ack.Reason), 1024), Party: party, Attempt: n, Medium: medium})
	if err := b.rdb.RPush(ctx, keyTxHistory+ack.MsgID, e).Err(); err != nil {
		b.log.Warn().Err(err).Str("msg_id", ack.MsgID).Msg("late acknowledgement not recorded")
	}
	b.log.Info().Str("msg_id", ack.MsgID).Str("status", ack.Status).Int("attempt", n).Str("medium", medium).
		Msg("acknowledgement of an attempt that no longer decides the outcome: recorded")
}
