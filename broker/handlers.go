package broker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	json "github.com/goccy/go-json"
	"github.com/nats-io/nats.go/micro"
	"github.com/redis/go-redis/v9"

	"github.com/uims/uims/audit"
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

// decodeJSON decodes a document: a JSON object (PROTOCOL.md §13.1), else
// MALFORMED (null, a list or a string would decode to an empty document).
func decodeJSON(body []byte, v any) error {
	if b := bytes.TrimLeft(body, " \t\r\n"); len(b) == 0 || b[0] != '{' {
		return schemas.Errorf(schemas.CodeMalformed, nil, "not a JSON object")
	}
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

// handleIMI routes one message (PROTOCOL.md §6.2, §6.3): it verifies the
// request, routes the message, stores the transaction and answers with the
// route.
func (b *Broker) handleIMI(ctx context.Context, req micro.Request) error {
	in, err := b.verifyIMI(ctx, req)
	if err != nil {
		return err
	}
	r, err := b.routeIMI(ctx, in)
	if err != nil {
		return err
	}
	if err := b.storeIMI(ctx, in, r); err != nil {
		return err
	}
	return b.replyIMI(req, in, r)
}

// imiRequest is a verified IMI request.
type imiRequest struct {
	f      *miap.Frame
	imi    schemas.IMI
	strict bool             // the frame carries a session (§6.1)
	sender *schemas.Profile // nil: the sender is no client
}

// imiRoute is a routed message as the reply carries it.
type imiRoute struct {
	now      time.Time
	routed   schemas.RoutedIMI
	bytes    []byte // routed, encoded: what the ID and the ticket cover
	id       []byte
	kid2     string
	cack     []byte // C_ack, the session of the reply
	firstHop string // the party the ticket is for
	limit    int64  // Unix ms the attempt's medium may take (fallback.go); 0: none
	held     bool   // the transaction is held (hold.go): the reply carries no ticket
}

// verifyIMI checks an IMI request: its frame (the nonce is claimed by
// storeIMI), the session in strict mode, the body, and the sender binding.
func (b *Broker) verifyIMI(ctx context.Context, req micro.Request) (*imiRequest, error) {
	f, err := b.frame(ctx, req, miap.PurposeIMI, false)
	if err != nil {
		return nil, err
	}
	in := &imiRequest{f: f, strict: len(f.Session) > 0}
	if !in.strict && b.cfg.Strict {
		return nil, schemas.Errorf(schemas.CodeStrictRequired, nil, "session-less IMI")
	}
	if in.strict {
		if err := b.guard.TakeSession(ctx, f.Party, f.Session); err != nil {
			return nil, err
		}
	}
	if err := decodeJSON(f.Body, &in.imi); err != nil {
		return nil, err
	}
	if err := in.imi.Validate(); err != nil {
		return nil, err
	}
	if in.imi.Gateway != f.Party {
		return nil, schemas.Errorf(schemas.CodeNotAllowed, nil, fmt.Sprintf("imi names gateway %q, signed by %q", in.imi.Gateway, f.Party))
	}
	if in.sender, err = b.bindSender(ctx, f.Party, &in.imi); err != nil {
		return nil, err
	}
	return in, nil
}

// bindSender checks the sender binding (§6.2): the signer speaks for this
// medium, and a client it names owns the sender address. It returns the
// sender's profile, or nil for a sender who is no client.
func (b *Broker) bindSender(ctx context.Context, party string, imi *schemas.IMI) (*schemas.Profile, error) {
	grant, err := checkGrant(b.guard.Keys(), party, &imi.From)
	if err != nil {
		return nil, b.refuseSender(party, imi, err)
	}
	if imi.From.Client == "" {
		p, err := b.profiles.ByAddress(ctx, imi.From.Medium, imi.From.Address)
		switch {
		case err == nil:
			return p, nil
		case errors.Is(err, ErrNoClient):
			return nil, nil // an outside sender
		}
		// Could not look: an outside sender would lose the client's
		// receipt preferences and statistics, so try again later.
		return nil, schemas.Errorf(schemas.CodeStoreUnavailable, err, "sender profile")
	}
	sender, err := b.profiles.ByID(ctx, imi.From.Client)
	if err != nil {
		if errors.Is(err, ErrNoClient) {
			return nil, schemas.Errorf(schemas.CodeUnknownSender, nil, imi.From.Client)
		}
		return nil, schemas.Errorf(schemas.CodeStoreUnavailable, err, "sender profile")
	}
	if grant.Role != miap.RoleClient {
		if err := checkOwner(sender, &imi.From); err != nil {
			return nil, b.refuseSender(party, imi, err)
		}
	}
	return sender, nil
}

// routeIMI decides the route (patent phase 2) and mints the ID over the
// routed IMI and the reply's session key.
func (b *Broker) routeIMI(ctx context.Context, in *imiRequest) (*imiRoute, error) {
	imi := &in.imi
	now := b.cfg.Now()
	var sender string
	if in.sender != nil {
		sender = in.sender.ID
	}
	dec, h, err := b.decide(ctx, imi, sender, nil, now)
	if err != nil {
		return nil, err
	}
	r := &imiRoute{now: now, routed: schemas.RoutedIMI{V: schemas.Version, IMI: *imi, Tx: imi.MsgID, Dest: dec.dest, Conversions: dec.steps,
		Routed: now.UnixMilli(), Deadline: now.Add(b.cfg.Deadline).UnixMilli(), Attempt: 1}}
	receipts := schemas.ReceiptPrefs{Delivery: true, Read: true, Failure: true}
	if in.sender != nil {
		r.routed.Sender = in.sender.ID
		receipts = in.sender.ReceiptsOrDefault()
	}
	r.routed.Receipts = receiptList(receipts)
	if dec.recipient != nil {
		r.routed.Recipient = dec.recipient.ID
		r.routed.RecipientName = dec.recipient.Name
		r.routed.Options = deliveryOptions(dec.recipient, dec.dest.Medium)
		r.limit = fallbackRoute(dec.recipient, &r.routed, nil, now)
	}
	if h != nil {
		b.applyHold(&r.routed, h)
	}
	if missing := b.sealKeys(&r.routed, now.UnixMilli()); len(missing) > 0 {
		return nil, sealRefusal(missing)
	}
	if r.bytes, err = json.Marshal(&r.routed); err != nil {
		return nil, schemas.Errorf(schemas.CodeInternal, err, "encode routed imi")
	}
	if len(r.bytes) > miap.MaxRouted {
		return nil, schemas.Errorf(schemas.CodeTooLarge, nil, "routed imi")
	}
	r.cack = in.f.Session
	if !in.strict {
		if r.cack, err = b.guard.NewSessionKey(); err != nil {
			return nil, schemas.Errorf(schemas.CodeInternal, err, "session key")
		}
	}
	if r.id, r.kid2, err = b.guard.MintID(r.bytes, r.cack); err != nil {
		return nil, schemas.Errorf(schemas.CodeInternal, err, "mint ID")
	}
	r.firstHop = firstHop(&r.routed)
	return r, nil
}

// firstHop is the party the first ticket of a route is for: the first
// processor, or the destination.
func firstHop(routed *schemas.RoutedIMI) string {
	if len(routed.Conversions) > 0 {
		return routed.Conversions[0].Processor
	}
	return routed.Dest.Gateway
}

// createArgs are the arguments of the transaction of a routed message.
func (b *Broker) createArgs(in *imiRequest, r *imiRoute) createArgs {
	imi, routed, now := &in.imi, &r.routed, r.now
	note, _ := json.Marshal(schemas.StatusEvent{V: schemas.Version, Tx: routed.Tx, MsgID: imi.MsgID, Sender: routed.Sender,
		From: imi.From, To: imi.To, Dest: routed.Dest, Subject: imi.Subject, Meta: imi.Meta})
	a := createArgs{
		Fingerprint: imi.Gateway + "|" + imi.Content.SHA256 + "|" + strconv.FormatInt(imi.Content.Length, 10),
		MsgID:       imi.MsgID,
		Expiry:      b.score(routed.Deadline, r.limit),
		QuotaKey:    keyQuota + "-",
		Retention:   int64(b.cfg.Retention.Seconds()),
		Accepted:    historyJSON(schemas.StatusAccepted, imi.Created, "", "", imi.Gateway),
		RoutedEntry: historyJSON(schemas.StatusRouted, now.UnixMilli(), "", "to "+routed.Dest.Gateway+":"+routed.Dest.Address, b.cfg.Instance),
		Routed:      r.bytes,
		ID:          miap.EncodeB64(r.id),
		IDHash:      idHash(r.id),
		Kid2:        r.kid2,
		Session:     miap.EncodeB64(r.cack),
		OG:          imi.Gateway,
		DG:          r.firstHop,
		Dest:        routed.Dest.Gateway,
		Sender:      routed.Sender,
		Recipient:   routed.Recipient,
		Medium:      routed.Dest.Medium,
		Note:        note,
		Deadline:    routed.Deadline,
		Created:     now.UnixMilli(),
		Limit:       r.limit,
		State:       schemas.StatusRouted,
	}
	if routed.HeldUntil > 0 {
		a.State, a.Set, a.Expiry = schemas.StatusHeld, keyHolds, routed.HeldUntil
		a.RoutedEntry = heldEntry(routed, b.cfg.Instance, now)
	}
	if in.sender != nil && in.sender.Quota > 0 {
		a.Quota, a.QuotaKey = in.sender.Quota, keyQuota+in.sender.ID+":"+day(now)
	}
	return a
}

// quotaCount is what createScript's "created" reply says of the sender's
// messages accepted today (0 without a quota).
func quotaCount(out []string) int64 {
	if len(out) < 2 {
		return 0
	}
	n, _ := strconv.ParseInt(out[1], 10, 64)
	return n
}

// storeIMI claims the request's nonce and creates the transaction, in one
// round trip (§8 step 6e). A retry of a message still on its way finds its
// transaction and takes the stored route into r (§6.3); a retry of a
// settled message is answered SETTLED.
func (b *Broker) storeIMI(ctx context.Context, in *imiRequest, r *imiRoute) error {
	a := b.createArgs(in, r)
	kind := audit.KindRoute
	if r.routed.HeldUntil > 0 {
		kind = audit.KindHold
	}
	recs := b.auditBodies(a.Created, &audit.Body{Tx: a.MsgID, Kind: kind, Attempt: 1, OG: a.OG, Gateway: a.Dest, Medium: a.Medium,
		Chain: routeChain(r.routed.Conversions), IDHash: a.IDHash, Until: r.routed.HeldUntil, Due: a.Expiry})
	n, head := recs.args()
	a.AuditCount, a.AuditHead = int64(n), head
	keys, args := a.keys(), a.argv()
	var claim func() error
	var create *redis.Cmd
	werr := b.batch.do(ctx, func(pipe redis.Pipeliner) {
		claim = b.store.QueueClaim(ctx, pipe, in.f.Party, in.f.Nonce, b.guard.NonceTTL())
		create = createScript.EvalSha(ctx, pipe, keys, args...)
	})
	if err := b.guard.StoreResult(ctx, claim()); err != nil {
		return err
	}
	res, err := create.Result()
	if isNoScript(err) {
		res, err, werr = b.batch.runScript(ctx, createScript, keys, args)
	}
	if err == nil && werr != nil {
		// Not on enough replicas: a failover could lose it. The client's
		// retry (same message id) finds it, or makes it again.
		return schemas.Errorf(schemas.CodeStoreUnavailable, werr, "store transaction")
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
		return schemas.Errorf(schemas.CodeQuotaExceeded, nil, r.routed.Sender)
	case "exists":
		return b.storedRoute(in, r, a.Fingerprint, out)
	}
	if len(out) >= 4 {
		b.auditAppend(recs, out[2], out[3])
	}
	r.held = r.routed.HeldUntil > 0
	if a.Quota > 0 {
		b.checkQuota(in.sender, quotaCount(out), r.now) // system.go
	}
	return nil
}

// storedRoute takes the route of a retried message from its transaction
// (the "exists" reply of createScript): the same route again, if it is the
// same message and it is still on its way (§6.3).
func (b *Broker) storedRoute(in *imiRequest, r *imiRoute, fp string, out []string) error {
	msgID := in.imi.MsgID
	if out[1] != fp {
		return schemas.Errorf(schemas.CodeDuplicate, nil, "msg_id "+msgID+" names another message")
	}
	var err error
	r.bytes = []byte(out[2])
	if r.id, err = miap.DecodeB64(out[3]); err != nil {
		return schemas.Errorf(schemas.CodeInternal, err, "stored ID")
	}
	if r.cack, err = miap.DecodeB64(out[4]); err != nil {
		return schemas.Errorf(schemas.CodeInternal, err, "stored session")
	}
	if err := json.Unmarshal(r.bytes, &r.routed); err != nil {
		return schemas.Errorf(schemas.CodeInternal, err, "stored routed imi")
	}
	if state := out[5]; schemas.Terminal(state) || r.routed.Deadline <= r.now.UnixMilli() {
		// Routing it again could only fail at the next hop (an expired
		// ticket) or deliver it twice: the originator asks its status
		// and tells its client that (docs/RELIABILITY.md, retries).
		b.log.Info().Str("msg_id", msgID).Str("tx", r.routed.Tx).Str("state", state).Msg("imi retry of a settled message")
		return schemas.Errorf(schemas.CodeSettled, nil, "msg_id "+msgID+" is "+state)
	}
	r.firstHop = firstHop(&r.routed)
	r.held = out[5] == schemas.StatusHeld
	b.log.Info().Str("msg_id", msgID).Str("tx", r.routed.Tx).Str("state", out[5]).Msg("imi retry: same route again")
	return nil
}

// replyIMI answers with the route and the ticket for its first hop.
func (b *Broker) replyIMI(req micro.Request, in *imiRequest, r *imiRoute) error {
	imi, routed := &in.imi, &r.routed
	var ticket map[string][]string
	if r.held {
		// held (§6.16): no ticket; the released notification brings one
		b.log.Info().Str("msg_id", imi.MsgID).Str("og", imi.Gateway).Str("why", routed.Held).Msg("imi held")
		b.trace("imi", imi.MsgID, routed.Tx, in.f.Party, schemas.StatusHeld, schemas.TraceEvent{Dest: routed.Dest.Gateway,
			ID: miap.EncodeB64(r.id)[:8], Sender: routed.Sender, Recipient: routed.Recipient, To: imi.To})
		return b.reply(req, &miap.Frame{Purpose: miap.PurposeRoute, Party: imi.Gateway, Nonce: in.f.Nonce, Session: r.cack, ID: r.id, Body: r.bytes}, nil)
	}
	ticket, err := b.ticket(r.firstHop, imi.Gateway, r.id, imi.Content, routed.Deadline, r.bytes)
	if err != nil {
		return schemas.Errorf(schemas.CodeInternal, err, "ticket")
	}
	b.log.Info().Str("msg_id", imi.MsgID).Str("tx", routed.Tx).Str("og", imi.Gateway).Str("dest", routed.Dest.Gateway).
		Str("to", routed.Dest.Address).Bool("strict", in.strict).Msg("imi routed")
	b.trace("imi", imi.MsgID, routed.Tx, in.f.Party, "routed", schemas.TraceEvent{Dest: routed.Dest.Gateway, ID: miap.EncodeB64(r.id)[:8],
		Sender: routed.Sender, Recipient: routed.Recipient, To: imi.To})
	return b.reply(req, &miap.Frame{Purpose: miap.PurposeRoute, Party: imi.Gateway, Nonce: in.f.Nonce, Session: r.cack, ID: r.id, Body: r.bytes}, ticket)
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
	t, err := b.ticketFrame(party, peer, id, c, expiry, routed)
	if err != nil {
		return nil, err
	}
	return miapnats.TicketHeader(t), nil
}

// ticketFrame is the signed ticket itself, for a transfer the brokers make
// (system.go).
func (b *Broker) ticketFrame(party, peer string, id []byte, c schemas.Content, expiry int64, routed []byte) (*miap.Frame, error) {
	sha, err := hex.DecodeString(c.SHA256)
	if err != nil {
		return nil, err
	}
	t := &miap.Frame{Purpose: miap.PurposeTicket, Party: party, ID: id, Peer: peer, CType: c.Type, CLen: c.Length, CSHA: sha, Expiry: expiry, Body: routed}
	if err := b.guard.Sign(t); err != nil {
		return nil, err
	}
	b.noteContent(id, c.Length, expiry)
	return t, nil
}

// handleRouteAck records the originator's acknowledgement of a routed IMI
// (strict mode, PROTOCOL.md §6.4).
func (b *Broker) handleRouteAck(ctx context.Context, req micro.Request) error {
	f, err := b.frame(ctx, req, miap.PurposeRouteAck, true)
	if err != nil {
		return err
	}
	var body schemas.RouteAck
	if err := decodeJSON(f.Body, &body); err != nil {
		return err
	}
	if err := body.Validate(); err != nil {
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
	now := b.cfg.Now()
	claim := f
	var final string
	if ack.Status == schemas.StatusFailed {
		// A failure of an attempt routed with fallback moves the message
		// on to the recipient's next medium (PROTOCOL.md §6.15).
		fb, err := b.ackReroute(ctx, func(rf *miap.Frame, extra map[string][]string) error { return b.reply(req, rf, extra) }, f, &ack, now)
		if err == nil && fb.handled {
			b.contentDone(f.ID) // the attempt ended; the next one has its own objects
		}
		if err != nil || fb.handled {
			return err
		}
		if fb.claimed {
			claim = nil
		}
		final = fb.final
	}
	// One round trip: the nonce claim, and the ID check with the transition.
	nowMS := now.UnixMilli()
	keys := []string{keyTx + ack.MsgID, keyTxHistory + ack.MsgID, keyDeadlines}
	okRecs, badRecs := b.ackAudit(f, &ack, nowMS)
	okN, okHead := okRecs.args()
	badN, badHead := badRecs.args()
	args := []any{f.Party, idHash(f.ID), ack.Status, nowMS, historyJSON(ack.Status, nowMS, ack.Code, ack.Reason, f.Party), ack.MsgID,
		nowMS + b.cfg.DeliveryDeadline.Milliseconds(), ack.Code, keyAcct, okN, okHead, badN, badHead}
	res, claimErr, err := b.evalClaim(ctx, claim, ackScript, keys, args)
	if claimErr != nil {
		return claimErr
	}
	if err != nil {
		return err
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
		if len(out) >= 4 {
			b.auditAppend(badRecs, out[2], out[3])
		}
		b.trace("ack", ack.MsgID, ack.Tx, f.Party, schemas.CodeIDMismatch.String(), schemas.TraceEvent{})
		return schemas.Errorf(schemas.CodeIDMismatch, miap.ErrIDMismatch, "returned ID differs from the stored one")
	case "refused":
		if out[1] == schemas.StatusFailed {
			return schemas.Errorf(schemas.CodeExpired, nil, "transaction already failed")
		}
		return schemas.Errorf(schemas.CodeNotAllowed, nil, fmt.Sprintf("%s after %s", ack.Status, out[1]))
	}
	og := out[2]
	if len(out) >= 8 {
		b.account(out[7])
	}
	evBody := b.ackEvent(out, &ack, final, nowMS)
	switch out[0] {
	case "duplicate":
		state = out[1]
	case "applied", "late":
		if len(out) >= 10 {
			b.auditAppend(okRecs, out[8], out[9])
		}
		b.metrics.outcomes.WithLabelValues(ack.Status).Inc()
		if ack.Status == schemas.StatusTransferred || ack.Status == schemas.StatusDelivered || ack.Status == schemas.StatusFailed {
			b.contentDone(f.ID)
		}
	case "recorded":
		// Another attempt decided the outcome (docs/ROUTING.md, "Late
		// acknowledgements"): kept in the history, nothing else.
		state = out[1]
		b.record(ctx, &ack, out[4], f.Party, nowMS)
	}
	// A relayed status reaches the originator with the receipt (§6.8). A
	// repeated acknowledgement notifies again (the stream de-duplicates), in
	// case the first one was applied but not answered.
	if !ack.Relayed && (out[0] == "applied" || out[0] == "late" || (out[0] == "duplicate" && out[1] == ack.Status)) {
		b.notify(og, ack.MsgID, ack.Tx, ack.Status, evBody, f.ID)
	}
	b.log.Info().Str("msg_id", ack.MsgID).Str("tx", ack.Tx).Str("dg", f.Party).Str("status", ack.Status).
		Str("result", out[0]).Msg("ack: ID matches")
	b.trace("ack", ack.MsgID, ack.Tx, f.Party, out[0], schemas.TraceEvent{Status: ack.Status, IDMatch: true})
	extra := map[string][]string{}
	if out[0] != "recorded" && og != schemas.SystemParty { // the brokers' own messages have no originator to tell (system.go)
		// no receipt for what changed nothing: the originator must not
		// take another attempt's late failure for the outcome
		receipt := &miap.Frame{Purpose: miap.PurposeReceipt, Party: og, Nonce: f.Nonce, ID: f.ID, Peer: f.Party, Body: evBody}
		if err := b.guard.Sign(receipt); err != nil {
			return schemas.Errorf(schemas.CodeInternal, err, "receipt")
		}
		extra[miap.HdrReceipt] = []string{miap.EncodeB64(miap.AppendCompact(nil, receipt))}
	}
	body, _ := json.Marshal(schemas.AckReply{V: schemas.Version, Tx: ack.Tx, State: state, Duplicate: out[0] == "duplicate" || out[0] == "recorded"})
	return b.reply(req, &miap.Frame{Purpose: miap.PurposeAckReply, Party: f.Party, Nonce: f.Nonce, ID: f.ID, Body: body}, extra)
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
	if err := q.Validate(); err != nil {
		return err
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
	st := &schemas.TxStatus{V: schemas.Version, Tx: msgID, MsgID: msgID, State: tx.State, Sender: tx.Sender, To: routed.IMI.To, Dest: routed.Dest, History: h}
	if tx.Attempt > 1 {
		st.Attempt = tx.Attempt
	}
	if tx.State == schemas.StatusHeld {
		st.HeldUntil = routed.HeldUntil
	}
	return tx, st, nil
}

// lookupClient finds a client by a credential hash (token, SMPP, SMTP),
// an address on medium, or an id; the error is the wire's: UNAUTHORIZED
// for a credential that matches no client, UNKNOWN_RECIPIENT for an
// address or id, STORE_UNAVAILABLE when the store cannot be read.
func (b *Broker) lookupClient(ctx context.Context, kind, medium, user, hash string) (*schemas.Profile, error) {
	var p *schemas.Profile
	var err error
	switch kind {
	case schemas.CredentialToken:
		p, err = b.profiles.ByToken(ctx, hash)
	case schemas.CredentialSMPP:
		p, err = b.profiles.BySMPP(ctx, user, hash)
	case schemas.CredentialSMTP:
		p, err = b.profiles.BySMTP(ctx, user, hash)
	case schemas.ClientByAddress:
		p, err = b.profiles.ByAddress(ctx, medium, user)
	default: // schemas.ClientByID
		p, err = b.profiles.ByID(ctx, user)
	}
	if errors.Is(err, ErrNoClient) {
		if kind == schemas.ClientByAddress || kind == schemas.ClientByID {
			return nil, schemas.Errorf(schemas.CodeUnknownRecipient, nil, user)
		}
		return nil, schemas.Errorf(schemas.CodeUnauthorized, nil, kind)
	}
	if err != nil {
		return nil, schemas.Errorf(schemas.CodeStoreUnavailable, err, "profile lookup")
	}
	return p, nil
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
	if err := q.Validate(); err != nil {
		return err
	}
	p, err := b.lookupClient(ctx, q.Kind, q.Medium, q.User, q.Hash)
	if err != nil {
		return err
	}
	info := Info(p)
	if q.Kind != schemas.ClientByAddress && q.Kind != schemas.ClientByID {
		info = OwnerInfo(p) // the client authenticated: its groups too
	}
	body, _ := json.Marshal(info)
	return b.reply(req, &miap.Frame{Purpose: miap.PurposeQueryReply, Party: f.Party, Nonce: f.Nonce, Body: body}, nil)
}
