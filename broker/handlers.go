package broker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	json "github.com/goccy/go-json"
	"github.com/nats-io/nats.go/micro"
	"github.com/redis/go-redis/v9"

	"github.com/uims/uims/miap"
	"github.com/uims/uims/miap/miapnats"
	"github.com/uims/uims/schemas"
)

// frame parses and verifies the MIAP frame of a request as purpose want,
// and claims its nonce unless the caller claims it in its own pipeline.
func (b *Broker) frame(ctx context.Context, req micro.Request, want miap.Purpose, claim bool) (*miap.Frame, error) {
	f, err := miap.ParseHeader(req.Headers(), req.Data())
	if err != nil {
		return nil, err
	}
	if err := b.guard.Verify(f, want); err != nil {
		return nil, err
	}
	if claim {
		if err := b.guard.Claim(ctx, f); err != nil {
			return nil, err
		}
	}
	return f, nil
}

func decodeJSON(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return schemas.Errorf(schemas.CodeMalformed, err, "json")
	}
	return nil
}

// handleLogin is the strict-mode TSCS login (PROTOCOL.md §6.1): the login
// key C is the frame itself; the answer carries a single-use session key.
func (b *Broker) handleLogin(ctx context.Context, req micro.Request) error {
	f, err := b.frame(ctx, req, miap.PurposeLogin, true)
	if err != nil {
		return err
	}
	key, err := b.guard.IssueSession(ctx, f.Party)
	if err != nil {
		return err
	}
	b.trace("login", "", "", f.Party, "ok", schemas.TraceEvent{})
	return b.reply(req, &miap.Frame{Purpose: miap.PurposeLoginAck, Party: f.Party, Nonce: f.Nonce, Session: key}, nil)
}

// handleIMI routes one message (PROTOCOL.md §6.2, §6.3).
func (b *Broker) handleIMI(ctx context.Context, req micro.Request) error {
	f, err := b.frame(ctx, req, miap.PurposeIMI, false)
	if err != nil {
		return err
	}
	strict := len(f.Session) > 0
	if !strict && b.cfg.Strict {
		return schemas.Errorf(schemas.CodeStrictRequired, nil, "session-less IMI")
	}
	if strict {
		if err := b.guard.TakeSession(ctx, f.Party, f.Session); err != nil {
			return err
		}
	}
	var imi schemas.IMI
	if err := decodeJSON(f.Body, &imi); err != nil {
		return err
	}
	if err := imi.Validate(); err != nil {
		return err
	}
	if imi.Gateway != f.Party {
		return schemas.Errorf(schemas.CodeNotAllowed, nil, fmt.Sprintf("imi names gateway %q, signed by %q", imi.Gateway, f.Party))
	}
	// The sender binding (§6.2): the signer speaks for this medium, and a
	// client it names owns the sender address.
	grant, err := checkGrant(b.guard.Keys(), f.Party, &imi.From)
	if err != nil {
		return b.refuseSender(f.Party, &imi, err)
	}
	var sender *schemas.Profile
	if imi.From.Client != "" {
		if sender, err = b.profiles.ByID(ctx, imi.From.Client); err != nil {
			if errors.Is(err, ErrNoClient) {
				return schemas.Errorf(schemas.CodeUnknownSender, nil, imi.From.Client)
			}
			return schemas.Errorf(schemas.CodeStoreUnavailable, err, "sender profile")
		}
		if grant.Role != miap.RoleClient {
			if err := checkOwner(sender, &imi.From); err != nil {
				return b.refuseSender(f.Party, &imi, err)
			}
		}
	} else if p, err := b.profiles.ByAddress(ctx, imi.From.Medium, imi.From.Address); err == nil {
		sender = p
	} else if !errors.Is(err, ErrNoClient) {
		// Could not look: an outside sender would lose the client's
		// receipt preferences and statistics, so try again later.
		return schemas.Errorf(schemas.CodeStoreUnavailable, err, "sender profile")
	}
	dec, err := b.route(ctx, &imi)
	if err != nil {
		return err
	}
	now := b.cfg.Now()
	routed := schemas.RoutedIMI{V: schemas.Version, IMI: imi, Tx: imi.MsgID, Dest: dec.dest, Conversions: dec.steps,
		Routed: now.UnixMilli(), Deadline: now.Add(b.cfg.Deadline).UnixMilli(), Attempt: 1}
	receipts := schemas.ReceiptPrefs{Delivery: true, Read: true, Failure: true}
	if sender != nil {
		routed.Sender = sender.ID
		receipts = sender.ReceiptsOrDefault()
	}
	routed.Receipts = receiptList(receipts)
	if dec.recipient != nil {
		routed.Recipient = dec.recipient.ID
		routed.RecipientName = dec.recipient.Name
		routed.Options = dec.recipient.Options
	}
	routedBytes, err := json.Marshal(&routed)
	if err != nil {
		return schemas.Errorf(schemas.CodeInternal, err, "encode routed imi")
	}
	if len(routedBytes) > miap.MaxRouted {
		return schemas.Errorf(schemas.CodeTooLarge, nil, "routed imi")
	}
	cack := f.Session
	if !strict {
		if cack, err = b.guard.NewSessionKey(); err != nil {
			return schemas.Errorf(schemas.CodeInternal, err, "session key")
		}
	}
	id, kid2, err := b.guard.MintID(routedBytes, cack)
	if err != nil {
		return schemas.Errorf(schemas.CodeInternal, err, "mint ID")
	}
	firstHop := dec.dest.Gateway
	if len(dec.steps) > 0 {
		firstHop = dec.steps[0].Processor
	}
	note, _ := json.Marshal(schemas.StatusEvent{V: schemas.Version, Tx: routed.Tx, MsgID: imi.MsgID, Sender: routed.Sender,
		From: imi.From, To: imi.To, Dest: dec.dest, Subject: imi.Subject, Meta: imi.Meta})
	fp := imi.Gateway + "|" + imi.Content.SHA256 + "|" + strconv.FormatInt(imi.Content.Length, 10)
	quota, quotaKey := int64(0), keyQuota+"-"
	if sender != nil && sender.Quota > 0 {
		quota, quotaKey = sender.Quota, keyQuota+sender.ID+":"+day(now)
	}
	accepted := historyJSON(schemas.StatusAccepted, imi.Created, "", "", imi.Gateway)
	routedH := historyJSON(schemas.StatusRouted, now.UnixMilli(), "", "to "+dec.dest.Gateway+":"+dec.dest.Address, b.cfg.Instance)
	// createScript's arguments, by position (tx.go).
	args := []any{fp, imi.MsgID, routed.Deadline + b.cfg.Grace.Milliseconds(), quota, int64(b.cfg.Retention.Seconds()), accepted, routedH,
		routedBytes, miap.EncodeB64(id), idHash(id), kid2, miap.EncodeB64(cack), imi.Gateway, firstHop, dec.dest.Gateway,
		schemas.StatusRouted, routed.Sender, routed.Recipient, dec.dest.Medium, note, routed.Deadline, now.UnixMilli()}
	keys := []string{keyTx + imi.MsgID, keyTxHistory + imi.MsgID, keyDeadlines, quotaKey}

	// One round trip: the nonce claim and the transaction (§8 step 6e).
	var claim func() error
	var create *redis.Cmd
	b.batch.do(ctx, func(pipe redis.Pipeliner) {
		claim = b.store.QueueClaim(ctx, pipe, f.Party, f.Nonce, b.guard.NonceTTL())
		create = createScript.EvalSha(ctx, pipe, keys, args...)
	})
	if err := b.guard.StoreResult(ctx, claim()); err != nil {
		return err
	}
	res, err := create.Result()
	if isNoScript(err) {
		res, err = createScript.Run(ctx, b.rdb, keys, args...).Result()
	}
	if err != nil {
		return schemas.Errorf(schemas.CodeStoreUnavailable, err, "store transaction")
	}
	out, err := scriptReply(res)
	if err != nil {
		return schemas.Errorf(schemas.CodeInternal, err, "store transaction")
	}
	switch out[0] {
	case "quota":
		return schemas.Errorf(schemas.CodeQuotaExceeded, nil, routed.Sender)
	case "exists":
		// A retry of a message already routed: the same route again, if it is
		// the same message (§6.3).
		if out[1] != fp {
			return schemas.Errorf(schemas.CodeDuplicate, nil, "msg_id "+imi.MsgID+" names another message")
		}
		routedBytes = []byte(out[2])
		if id, err = miap.DecodeB64(out[3]); err != nil {
			return schemas.Errorf(schemas.CodeInternal, err, "stored ID")
		}
		if cack, err = miap.DecodeB64(out[4]); err != nil {
			return schemas.Errorf(schemas.CodeInternal, err, "stored session")
		}
		if err := json.Unmarshal(routedBytes, &routed); err != nil {
			return schemas.Errorf(schemas.CodeInternal, err, "stored routed imi")
		}
		if state := out[5]; schemas.Terminal(state) || routed.Deadline <= now.UnixMilli() {
			// Routing it again could only fail at the next hop (an expired
			// ticket) or deliver it twice: the originator asks its status
			// and tells its client that (docs/RELIABILITY.md, retries).
			b.log.Info().Str("msg_id", imi.MsgID).Str("tx", routed.Tx).Str("state", state).Msg("imi retry of a settled message")
			return schemas.Errorf(schemas.CodeSettled, nil, "msg_id "+imi.MsgID+" is "+state)
		}
		firstHop = routed.Dest.Gateway
		if len(routed.Conversions) > 0 {
			firstHop = routed.Conversions[0].Processor
		}
		b.log.Info().Str("msg_id", imi.MsgID).Str("tx", routed.Tx).Str("state", out[5]).Msg("imi retry: same route again")
	}
	ticket, err := b.ticket(firstHop, imi.Gateway, id, imi.Content, routed.Deadline, routedBytes)
	if err != nil {
		return schemas.Errorf(schemas.CodeInternal, err, "ticket")
	}
	b.log.Info().Str("msg_id", imi.MsgID).Str("tx", routed.Tx).Str("og", imi.Gateway).Str("dest", routed.Dest.Gateway).
		Str("to", routed.Dest.Address).Bool("strict", strict).Msg("imi routed")
	b.trace("imi", imi.MsgID, routed.Tx, f.Party, "routed", schemas.TraceEvent{Dest: routed.Dest.Gateway, ID: miap.EncodeB64(id)[:8],
		Sender: routed.Sender, Recipient: routed.Recipient, To: imi.To})
	return b.reply(req, &miap.Frame{Purpose: miap.PurposeRoute, Party: imi.Gateway, Nonce: f.Nonce, Session: cack, ID: id, Body: routedBytes}, ticket)
}

// refuseSender logs a refused sender binding with what the signer claimed.
func (b *Broker) refuseSender(party string, imi *schemas.IMI, err error) error {
	b.log.Warn().Bool("security", true).Str("party", party).Str("medium", imi.From.Medium).Str("client", imi.From.Client).
		Str("address", imi.From.Address).Str("msg_id", imi.MsgID).Err(err).Msg("imi refused: the signer may not speak for this sender")
	return err
}

func receiptList(r schemas.ReceiptPrefs) []string {
	var out []string
	if r.Delivery {
		out = append(out, "delivery")
	}
	if r.Read {
		out = append(out, "read")
	}
	if r.Failure {
		out = append(out, "failure")
	}
	return out
}

// idHash is the hex SHA-256 of an ID, as stored with the transaction.
func idHash(id []byte) string {
	sum := sha256.Sum256(id)
	return hex.EncodeToString(sum[:])
}

func isNoScript(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") }

// ticket signs the authorisation of one transfer for party (PROTOCOL.md
// §6.3): a MAC under party's own key over the routed IMI, the ID, the sender
// and the exact content it will receive, valid until expiry.
func (b *Broker) ticket(party, peer string, id []byte, c schemas.Content, expiry int64, routed []byte) (map[string][]string, error) {
	sha, err := hex.DecodeString(c.SHA256)
	if err != nil {
		return nil, err
	}
	t := &miap.Frame{Purpose: miap.PurposeTicket, Party: party, ID: id, Peer: peer, CType: c.Type, CLen: c.Length, CSHA: sha, Expiry: expiry, Body: routed}
	if err := b.guard.Sign(t); err != nil {
		return nil, err
	}
	return miapnats.TicketHeader(t), nil
}

// handleRouteAck records the originator's acknowledgement of a routed IMI
// (strict mode, PROTOCOL.md §6.4).
func (b *Broker) handleRouteAck(ctx context.Context, req micro.Request) error {
	f, err := b.frame(ctx, req, miap.PurposeRouteAck, true)
	if err != nil {
		return err
	}
	var body struct {
		Tx string `json:"tx"`
	}
	if err := decodeJSON(f.Body, &body); err != nil {
		return err
	}
	pipe := b.rdb.Pipeline()
	load := queueLoad(ctx, pipe, body.Tx)
	pipe.Exec(ctx)
	tx, err := load()
	if err != nil {
		return schemas.Errorf(schemas.CodeStoreUnavailable, err, "load tx")
	}
	if err := b.checkParty(tx, f, func(t *txRecord) string { return t.OG }); err != nil {
		return err
	}
	b.rdb.RPush(ctx, keyTxHistory+body.Tx, historyJSON("route-acknowledged", b.cfg.Now().UnixMilli(), "", "", f.Party))
	b.trace("routeack", body.Tx, body.Tx, f.Party, "ok", schemas.TraceEvent{})
	return b.reply(req, &miap.Frame{Purpose: miap.PurposeQueryReply, Party: f.Party, Nonce: f.Nonce, ID: f.ID, Body: []byte(`{"v":1}`)}, nil)
}

// checkParty checks that a transaction exists, that the frame comes from
// the party who(tx) names, and that it carries the transaction's ID.
func (b *Broker) checkParty(tx *txRecord, f *miap.Frame, who func(*txRecord) string) error {
	if tx == nil {
		return schemas.Errorf(schemas.CodeUnknownTx, nil, "")
	}
	if who(tx) != f.Party {
		return schemas.Errorf(schemas.CodeNotAllowed, nil, fmt.Sprintf("frame from %q for a transaction of %q", f.Party, who(tx)))
	}
	stored, err := miap.DecodeB64(tx.ID)
	if err != nil || !miap.EqualID(f.ID, stored) {
		return schemas.Errorf(schemas.CodeIDMismatch, miap.ErrIDMismatch, "returned ID differs from the stored one")
	}
	return nil
}

// handleAck applies a destination's delivered / read / failed
// acknowledgement after comparing its ID with the stored one (patent fig. 5;
// PROTOCOL.md §6.8), notifies the originator, and returns a receipt that
// the destination relays to the originator.
func (b *Broker) handleAck(ctx context.Context, req micro.Request) error {
	f, err := b.frame(ctx, req, miap.PurposeAck, false)
	if err != nil {
		return err
	}
	if len(f.Session) > 0 {
		if err := b.guard.TakeSession(ctx, f.Party, f.Session); err != nil {
			return err
		}
	} else if b.cfg.Strict {
		return schemas.Errorf(schemas.CodeStrictRequired, nil, "session-less acknowledgement")
	}
	var ack schemas.Ack
	if err := decodeJSON(f.Body, &ack); err != nil {
		return err
	}
	if err := ack.Validate(); err != nil {
		return err
	}
	if ack.Gateway != f.Party {
		return schemas.Errorf(schemas.CodeNotAllowed, nil, "ack names another gateway")
	}
	// One round trip: the nonce claim, and the ID check with the transition.
	now := b.cfg.Now().UnixMilli()
	keys := []string{keyTx + ack.MsgID, keyTxHistory + ack.MsgID, keyDeadlines}
	args := []any{f.Party, idHash(f.ID), ack.Status, now, historyJSON(ack.Status, now, ack.Code, ack.Reason, f.Party), ack.MsgID,
		now + b.cfg.DeliveryDeadline.Milliseconds(), keyUsage}
	var claim func() error
	var apply *redis.Cmd
	b.batch.do(ctx, func(pipe redis.Pipeliner) {
		claim = b.store.QueueClaim(ctx, pipe, f.Party, f.Nonce, b.guard.NonceTTL())
		apply = ackScript.EvalSha(ctx, pipe, keys, args...)
	})
	if err := b.guard.StoreResult(ctx, claim()); err != nil {
		return err
	}
	res, err := apply.Result()
	if isNoScript(err) {
		res, err = ackScript.Run(ctx, b.rdb, keys, args...).Result()
	}
	if err != nil {
		return schemas.Errorf(schemas.CodeStoreUnavailable, err, "transition")
	}
	out, err := scriptReply(res)
	if err != nil || len(out) < 2 {
		return schemas.Errorf(schemas.CodeInternal, err, "transition reply")
	}
	state := ack.Status
	switch out[0] {
	case "unknown":
		return schemas.Errorf(schemas.CodeUnknownTx, nil, "")
	case "party":
		b.trace("ack", ack.MsgID, ack.Tx, f.Party, schemas.CodeNotAllowed.String(), schemas.TraceEvent{})
		return schemas.Errorf(schemas.CodeNotAllowed, nil, fmt.Sprintf("ack from %q for a transaction at %q", f.Party, out[1]))
	case "id":
		b.trace("ack", ack.MsgID, ack.Tx, f.Party, schemas.CodeIDMismatch.String(), schemas.TraceEvent{})
		return schemas.Errorf(schemas.CodeIDMismatch, miap.ErrIDMismatch, "returned ID differs from the stored one")
	case "refused":
		if out[1] == schemas.StatusFailed {
			return schemas.Errorf(schemas.CodeExpired, nil, "transaction already failed")
		}
		return schemas.Errorf(schemas.CodeNotAllowed, nil, fmt.Sprintf("%s after %s", ack.Status, out[1]))
	}
	og := out[2]
	evBody := eventJSON(out[3], ack.Status, ack.Code, ack.Reason, now)
	if out[0] == "duplicate" {
		state = out[1]
	}
	if out[0] == "applied" {
		b.metrics.outcomes.WithLabelValues(ack.Status).Inc()
	}
	// A relayed status reaches the originator with the receipt (§6.8). A
	// repeated acknowledgement notifies again (the stream de-duplicates), in
	// case the first one was applied but not answered.
	if !ack.Relayed && (out[0] == "applied" || out[1] == ack.Status) {
		b.notify(og, ack.MsgID, ack.Tx, ack.Status, evBody, f.ID)
	}
	b.log.Info().Str("msg_id", ack.MsgID).Str("tx", ack.Tx).Str("dg", f.Party).Str("status", ack.Status).
		Str("result", out[0]).Msg("ack: ID matches")
	b.trace("ack", ack.MsgID, ack.Tx, f.Party, out[0], schemas.TraceEvent{Status: ack.Status, IDMatch: true})
	receipt := &miap.Frame{Purpose: miap.PurposeReceipt, Party: og, Nonce: f.Nonce, ID: f.ID, Peer: f.Party, Body: evBody}
	if err := b.guard.Sign(receipt); err != nil {
		return schemas.Errorf(schemas.CodeInternal, err, "receipt")
	}
	body, _ := json.Marshal(schemas.AckReply{V: schemas.Version, Tx: ack.Tx, State: state, Duplicate: out[0] == "duplicate"})
	return b.reply(req, &miap.Frame{Purpose: miap.PurposeAckReply, Party: f.Party, Nonce: f.Nonce, ID: f.ID, Body: body},
		map[string][]string{miap.HdrReceipt: {miap.EncodeB64(miap.AppendCompact(nil, receipt))}})
}

// noteHole is where a transaction's notification template (the JSON of a
// schemas.StatusEvent with no status, code, reason and time, stored at
// routing) takes a status: json.Marshal writes the fields in struct order,
// and the fields before them (v, tx, msg_id) are digits and hex, so the
// first occurrence is the field itself.
const noteHole = `"status":"","at":0`

// eventJSON returns the StatusEvent JSON of a status from the template,
// without decoding it (TestEventJSON checks it against json.Marshal).
func eventJSON(note, status, code, reason string, at int64) []byte {
	i := strings.Index(note, noteHole)
	if i < 0 {
		var ev schemas.StatusEvent
		json.Unmarshal([]byte(note), &ev)
		ev.Status, ev.Code, ev.Reason, ev.At = status, code, reason, at
		b, _ := json.Marshal(&ev)
		return b
	}
	out := make([]byte, 0, len(note)+len(status)+len(code)+len(reason)+48)
	out = append(out, note[:i]...)
	out = append(out, `"status":`...)
	out = schemas.AppendJSONString(out, status)
	if code != "" {
		out = append(out, `,"code":`...)
		out = schemas.AppendJSONString(out, code)
	}
	if reason != "" {
		out = append(out, `,"reason":`...)
		out = schemas.AppendJSONString(out, reason)
	}
	out = append(out, `,"at":`...)
	out = strconv.AppendInt(out, at, 10)
	return append(out, note[i+len(noteHole):]...)
}

// handleConv takes a processor's report of converted content and signs the
// ticket for the next hop (PROTOCOL.md §6.7). The broker still sees only
// meta information: the new type, length and digest.
func (b *Broker) handleConv(ctx context.Context, req micro.Request) error {
	f, err := b.frame(ctx, req, miap.PurposeConv, false)
	if err != nil {
		return err
	}
	var rep schemas.ConvReport
	if err := decodeJSON(f.Body, &rep); err != nil {
		return err
	}
	pipe := b.rdb.Pipeline()
	claim := b.store.QueueClaim(ctx, pipe, f.Party, f.Nonce, b.guard.NonceTTL())
	load := queueLoad(ctx, pipe, rep.MsgID)
	pipe.Exec(ctx)
	if err := b.guard.StoreResult(ctx, claim()); err != nil {
		return err
	}
	tx, err := load()
	if err != nil {
		return schemas.Errorf(schemas.CodeStoreUnavailable, err, "load tx")
	}
	if err := b.checkParty(tx, f, func(t *txRecord) string { return t.DG }); err != nil {
		return err
	}
	var routed schemas.RoutedIMI
	if err := json.Unmarshal(tx.Routed, &routed); err != nil {
		return schemas.Errorf(schemas.CodeInternal, err, "stored routed imi")
	}
	if rep.Step < 0 || rep.Step >= len(routed.Conversions) || routed.Conversions[rep.Step].Processor != f.Party ||
		routed.Conversions[rep.Step].Conversion != rep.Conversion {
		return schemas.Errorf(schemas.CodeNotAllowed, nil, fmt.Sprintf("step %d %q is not on the route", rep.Step, rep.Conversion))
	}
	if rep.Content.Type != f.CType || rep.Content.Length != f.CLen || rep.Content.SHA256 != hex.EncodeToString(f.CSHA) {
		return schemas.Errorf(schemas.CodeMalformed, nil, "report and frame disagree on the content")
	}
	next := routed.Dest.Gateway
	if rep.Step+1 < len(routed.Conversions) {
		next = routed.Conversions[rep.Step+1].Processor
	}
	if err := b.rdb.HSet(ctx, keyTx+rep.MsgID, fDG, next).Err(); err != nil {
		return schemas.Errorf(schemas.CodeStoreUnavailable, err, "next hop")
	}
	b.rdb.RPush(ctx, keyTxHistory+rep.MsgID, historyJSON("converted", b.cfg.Now().UnixMilli(), "", rep.Conversion+" → "+rep.Content.Type, f.Party))
	ticket, err := b.ticket(next, f.Party, f.ID, rep.Content, routed.Deadline, tx.Routed)
	if err != nil {
		return schemas.Errorf(schemas.CodeInternal, err, "ticket")
	}
	b.trace("conv", rep.MsgID, routed.Tx, f.Party, "ok", schemas.TraceEvent{Conversion: rep.Conversion, Next: next})
	return b.reply(req, &miap.Frame{Purpose: miap.PurposeConvReply, Party: f.Party, Nonce: f.Nonce, ID: f.ID, Body: tx.Routed}, ticket)
}

// handleStatus answers a status query from the originator or the destination.
func (b *Broker) handleStatus(ctx context.Context, req micro.Request) error {
	f, err := b.frame(ctx, req, miap.PurposeQuery, true)
	if err != nil {
		return err
	}
	var q schemas.StatusQuery
	if err := decodeJSON(f.Body, &q); err != nil {
		return err
	}
	if !schemas.ValidMsgID(q.MsgID) {
		return schemas.Errorf(schemas.CodeMalformed, nil, "msg_id")
	}
	tx, st, err := b.txStatus(ctx, q.MsgID)
	if err != nil {
		return err
	}
	if f.Party != tx.OG && f.Party != tx.Dest {
		return schemas.Errorf(schemas.CodeUnknownTx, nil, "not a party of this transaction")
	}
	body, _ := json.Marshal(st)
	return b.reply(req, &miap.Frame{Purpose: miap.PurposeQueryReply, Party: f.Party, Nonce: f.Nonce, Body: body}, nil)
}

// TxStatus returns the state and history of a transaction.
func (b *Broker) TxStatus(ctx context.Context, msgID string) (*schemas.TxStatus, error) {
	_, st, err := b.txStatus(ctx, msgID)
	return st, err
}

func (b *Broker) txStatus(ctx context.Context, msgID string) (*txRecord, *schemas.TxStatus, error) {
	pipe := b.rdb.Pipeline()
	load := queueLoad(ctx, pipe, msgID)
	hist := pipe.LRange(ctx, keyTxHistory+msgID, 0, -1)
	pipe.Exec(ctx)
	tx, err := load()
	if err != nil {
		return nil, nil, schemas.Errorf(schemas.CodeStoreUnavailable, err, "load tx")
	}
	if tx == nil {
		return nil, nil, schemas.Errorf(schemas.CodeUnknownTx, nil, msgID)
	}
	var routed schemas.RoutedIMI
	json.Unmarshal(tx.Routed, &routed)
	raw, err := hist.Result()
	if err != nil {
		return nil, nil, schemas.Errorf(schemas.CodeStoreUnavailable, err, "history")
	}
	h := make([]schemas.HistoryEntry, 0, len(raw))
	for _, s := range raw {
		var e schemas.HistoryEntry
		if json.Unmarshal([]byte(s), &e) == nil {
			h = append(h, e)
		}
	}
	return tx, &schemas.TxStatus{V: schemas.Version, Tx: msgID, MsgID: msgID, State: tx.State, Sender: tx.Sender, To: routed.IMI.To, Dest: routed.Dest, History: h}, nil
}

// handleClient resolves a client credential or address for a gateway
// (PROTOCOL.md §6.11). Credentials arrive as hashes, are compared here in
// constant time and are never returned.
func (b *Broker) handleClient(ctx context.Context, req micro.Request) error {
	f, err := b.frame(ctx, req, miap.PurposeQuery, true)
	if err != nil {
		return err
	}
	var q schemas.ClientQuery
	if err := decodeJSON(f.Body, &q); err != nil {
		return err
	}
	var p *schemas.Profile
	switch q.Kind {
	case schemas.CredentialToken:
		p, err = b.profiles.ByToken(ctx, q.Hash)
	case schemas.CredentialSMPP:
		p, err = b.profiles.BySMPP(ctx, q.User, q.Hash)
	case schemas.CredentialSMTP:
		p, err = b.profiles.BySMTP(ctx, q.User, q.Hash)
	case "address":
		p, err = b.profiles.ByAddress(ctx, q.Medium, q.User)
	case "id":
		p, err = b.profiles.ByID(ctx, q.User)
	default:
		return schemas.Errorf(schemas.CodeMalformed, nil, "query kind "+q.Kind)
	}
	if errors.Is(err, ErrNoClient) {
		if q.Kind == "address" || q.Kind == "id" {
			return schemas.Errorf(schemas.CodeUnknownRecipient, nil, q.User)
		}
		return schemas.Errorf(schemas.CodeUnauthorized, nil, q.Kind)
	}
	if err != nil {
		return schemas.Errorf(schemas.CodeStoreUnavailable, err, "profile lookup")
	}
	body, _ := json.Marshal(Info(p))
	return b.reply(req, &miap.Frame{Purpose: miap.PurposeQueryReply, Party: f.Party, Nonce: f.Nonce, Body: body}, nil)
}
