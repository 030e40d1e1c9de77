package kit

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	json "github.com/goccy/go-json"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/uims/uims/miap"
	"github.com/uims/uims/miap/miapnats"
	"github.com/uims/uims/schemas"
)

// Submission is a message a gateway's client sent (patent step S1).
type Submission struct {
	// SendAt, Expires and Urgent are the IMI's (PROTOCOL.md §6.16):
	// deliver not before SendAt, not after Expires (Unix ms, 0: none),
	// and pass the recipient's quiet hours if the recipient allows it.
	SendAt, Expires int64
	Urgent          bool
	// MsgID is the message id, 32 lowercase hex; a retry of the same
	// message must reuse it. Empty: the kit chooses one.
	MsgID   string
	From    schemas.Endpoint
	To      string
	Subject string
	// Type and Content are the content (decoded body) and its MIME type.
	Type        string
	Content     []byte
	Attachments []schemas.Attachment
	InReplyTo   string
	Meta        map[string]string
}

// Result is what happened to a submission once the destination took it.
type Result struct {
	MsgID string
	Tx    string
	Dest  schemas.Hop
	// Status is transferred or delivered; for a message routed with
	// fallback whose destination refused it for good, rerouted (the
	// brokers sent it on to the next medium, Dest) or routed (they will at
	// its deadline): accepted either way, the outcome follows as a
	// notification (PROTOCOL.md §6.15).
	Status string
	// Receipt is the broker-signed status relayed by the destination, when
	// the destination acknowledged at once.
	Receipt *schemas.StatusEvent
	// HeldUntil and Held, for Status held: the brokers hold the message
	// until then (Unix ms), and why (PROTOCOL.md §6.16).
	HeldUntil int64
	Held      string
}

// NewMsgID returns a fresh 128-bit message id.
func NewMsgID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Send originates a message (patent steps S2 to S8; PROTOCOL.md §6.1 to
// §6.6): it extracts the IMI, asks the brokers for a route, checks the
// outer digest, and transfers the content to the destination (through the
// processors the route names). It returns once the destination took the
// message. Errors are *schemas.Error; Code.Retryable() tells the caller
// whether its client should retry.
func (k *Kit) Send(ctx context.Context, s *Submission) (*Result, error) {
	res, err := k.send(ctx, s)
	if err != nil {
		k.count.sendFailed.Add(1)
		k.count.code(errCode(err))
	} else {
		k.count.sent.Add(1)
	}
	return res, err
}

func (k *Kit) send(ctx context.Context, s *Submission) (*Result, error) {
	if s.MsgID == "" {
		s.MsgID = NewMsgID()
	}
	// Sealed from hop to hop (PROTOCOL.md §14) when we can: the IMI then
	// describes the sealed bytes, which every ticket binds.
	var sealed *miap.Sealed
	if k.cfg.Seal != miap.SealOff && k.eng.CanSeal(k.cfg.Gateway) {
		var err error
		if sealed, err = k.eng.Seal(k.cfg.Gateway, s.MsgID, s.Content); err != nil {
			return nil, schemas.Errorf(schemas.CodeInternal, err, "seal content")
		}
	}
	o, err := k.newIMI(s, sealed)
	if err != nil {
		return nil, err
	}
	k.trace("accepted", s.MsgID, "", "ok", schemas.TraceEvent{})

	mode := map[string][]string{miap.HdrMode: {modeName(k.cfg.Strict)}}
	rf, reply, err := k.askRoute(ctx, o, mode, true)
	if o.sealed != nil && miap.CodeOf(err) == schemas.CodeDuplicate {
		// A retry whose first try was sealed before our encryption key
		// rotated (§14.3, "Retries across a rotation").
		o, rf, reply, err = k.routeSealedEarlier(ctx, s, o, mode, err)
	}
	if o.sealed != nil && k.cfg.Seal == miap.SealAuto && (miap.CodeOf(err) == schemas.CodeSealUnavailable || miap.CodeOf(err) == schemas.CodeDuplicate) {
		// A hop announces no encryption key (§14.1), or this message went
		// unsealed before (a retry): unsealed, as to an implementation
		// that does not seal.
		k.log.Info().Err(err).Str("msg_id", s.MsgID).Msg("content goes unsealed")
		if o, err = k.newIMI(s, nil); err != nil {
			return nil, err
		}
		rf, reply, err = k.askRoute(ctx, o, mode, false)
	}
	imi, sum, wire, sealed := &o.imi, o.sum, o.wire, o.sealed
	if miap.CodeOf(err) == schemas.CodeSettled {
		return k.settled(ctx, imi.MsgID)
	}
	if err != nil {
		k.trace("imi", imi.MsgID, "", errCode(err), schemas.TraceEvent{})
		return nil, err
	}
	// The outer digest verified; the routed IMI must carry our IMI (§6.3).
	var routed schemas.RoutedIMI
	if err := json.Unmarshal(rf.Body, &routed); err != nil {
		return nil, schemas.Errorf(schemas.CodeMalformed, err, "routed imi")
	}
	if routed.IMI.MsgID != imi.MsgID || routed.IMI.Content.SHA256 != imi.Content.SHA256 || routed.IMI.Gateway != k.cfg.Gateway || len(rf.ID) != miap.MACSize {
		return nil, schemas.Errorf(schemas.CodeBadMAC, nil, "routed imi is not for our message")
	}
	k.log.Info().Str("msg_id", imi.MsgID).Str("tx", routed.Tx).Str("dest", routed.Dest.Gateway).Msg("route verified")
	k.trace("route", imi.MsgID, routed.Tx, "verified", schemas.TraceEvent{Dest: routed.Dest.Gateway})

	if k.cfg.Strict { // the originator acknowledges the broker IMI (§6.4)
		ack, _ := json.Marshal(map[string]any{"v": 1, "tx": routed.Tx})
		if _, _, err := k.request(ctx, schemas.SubjectBrokerRouteAck, &miap.Frame{Purpose: miap.PurposeRouteAck, Party: k.cfg.Gateway, ID: rf.ID, Body: ack}, miap.PurposeQueryReply, nil); err != nil {
			return nil, err
		}
	}
	if routed.HeldUntil > 0 {
		// Held (§6.16): no ticket yet; the content waits here for the
		// released notification, kept before the client hears that the
		// message was accepted.
		if err := k.keepContent(ctx, &routed, s.Content); err != nil {
			return nil, err
		}
		k.trace("held", imi.MsgID, routed.Tx, "held", schemas.TraceEvent{Dest: routed.Dest.Gateway})
		return &Result{MsgID: imi.MsgID, Tx: routed.Tx, Dest: routed.Dest, Status: schemas.StatusHeld, HeldUntil: routed.HeldUntil, Held: routed.Held}, nil
	}
	ticket, err := miapnats.TicketFrom(reply.Header, rf.ID, k.cfg.Gateway, imi.Content.Type, imi.Content.Length, sum[:], routed.Deadline, rf.Body)
	if err != nil {
		return nil, err
	}
	res, err := k.transfer(ctx, &routed, ticket, wire, sealed)
	if routed.Fallback && !(err == nil && res.Receipt != nil && schemas.Terminal(res.Status)) {
		// The brokers may route it again: the content stays here until
		// the outcome (PROTOCOL.md §6.15), kept before the client hears
		// what became of the message — also when it is told to try again
		// (a destination that hangs is passed at the deadline). A message
		// delivered at once needs nothing kept.
		if kerr := k.keepContent(ctx, &routed, s.Content); kerr != nil {
			return nil, kerr
		}
	}
	if err != nil {
		k.trace("transfer", imi.MsgID, routed.Tx, errCode(err), schemas.TraceEvent{})
		if routed.Fallback && !miap.CodeOf(err).Retryable() {
			return k.movedOn(ctx, &routed, err)
		}
		return nil, err
	}
	k.trace("transfer", imi.MsgID, routed.Tx, res.Status, schemas.TraceEvent{})
	return res, nil
}

// outIMI is an IMI ready to go: the document and its encoding, the content
// as it travels (sealed or not) with its SHA-256, and its seal (nil:
// unsealed).
type outIMI struct {
	imi    schemas.IMI
	body   []byte
	sum    [32]byte
	wire   []byte
	sealed *miap.Sealed
}

// newIMI extracts the IMI of a submission (patent step S2), describing the
// sealed bytes when sealed is not nil and the content as it is otherwise.
func (k *Kit) newIMI(s *Submission, sealed *miap.Sealed) (*outIMI, error) {
	ctype := s.Type
	if ctype == "" {
		ctype = "text/plain; charset=utf-8"
	}
	o := &outIMI{wire: s.Content, sealed: sealed}
	how := ""
	if sealed != nil {
		o.wire, o.sum, how = sealed.Content, sealed.SHA256, miap.SealScheme
	} else {
		o.sum = sha256.Sum256(s.Content) // only unsealed: the plaintext's digest
	}
	o.imi = schemas.IMI{V: schemas.Version, MsgID: s.MsgID, Gateway: k.cfg.Gateway, Instance: k.cfg.Instance,
		From: s.From, To: s.To, Subject: s.Subject, InReplyTo: s.InReplyTo, Meta: s.Meta,
		Content: schemas.Content{Type: ctype, Length: int64(len(o.wire)), SHA256: hex.EncodeToString(o.sum[:]), Attachments: s.Attachments, Sealed: how},
		Created: k.now().UnixMilli(), SendAt: s.SendAt, Expires: s.Expires, Urgent: s.Urgent}
	if o.imi.From.Medium == "" {
		o.imi.From.Medium = k.cfg.Medium
	}
	if err := o.imi.Validate(); err != nil {
		return nil, err
	}
	body, err := json.Marshal(&o.imi)
	if err != nil {
		return nil, schemas.Errorf(schemas.CodeInternal, err, "encode imi")
	}
	if len(body) > schemas.MaxIMI {
		return nil, schemas.Errorf(schemas.CodeTooLarge, nil, fmt.Sprintf("meta information of %d bytes", len(body)))
	}
	o.body = body
	return o, nil
}

// askRoute sends an IMI to the brokers and returns their verified route
// reply (§6.2, §6.3); in strict mode after a TSCS login, since every
// session key serves one request (§6.1). first traces the login, once per
// message.
func (k *Kit) askRoute(ctx context.Context, o *outIMI, mode map[string][]string, first bool) (*miap.Frame, *nats.Msg, error) {
	var session []byte
	if k.cfg.Strict {
		lf, _, err := k.request(ctx, schemas.SubjectBrokerLogin, &miap.Frame{Purpose: miap.PurposeLogin, Party: k.cfg.Gateway}, miap.PurposeLoginAck, nil)
		if err != nil {
			return nil, nil, err
		}
		session = lf.Session
		if first {
			k.trace("login", o.imi.MsgID, "", "ok", schemas.TraceEvent{})
		}
	}
	return k.request(ctx, schemas.SubjectBrokerIMI, &miap.Frame{Purpose: miap.PurposeIMI, Party: k.cfg.Gateway, Session: session, Body: o.body}, miap.PurposeRoute, mode)
}

// routeSealedEarlier answers a sealed IMI the brokers called DUPLICATE
// (dup, refused with dupErr). Our content key derives from our current
// encryption key, so a retry whose first try was sealed before that key
// rotated is other bytes, another fingerprint: sealed again with each of
// our earlier keys, newest first, the first try's key gives its bytes
// again, and the brokers the same transaction (§14.3, "Retries across a
// rotation"). It returns the first IMI that is not DUPLICATE with its
// answer, or dup and dupErr when none: another message under this id, or
// the first try's key is no longer in our key file (then the caller tries
// unsealed, in mode auto, as before).
func (k *Kit) routeSealedEarlier(ctx context.Context, s *Submission, dup *outIMI, mode map[string][]string, dupErr error) (*outIMI, *miap.Frame, *nats.Msg, error) {
	prev := dup.sealed
	for {
		next, err := k.eng.SealEarlier(k.cfg.Gateway, s.MsgID, s.Content, prev)
		if err != nil {
			return dup, nil, nil, schemas.Errorf(schemas.CodeInternal, err, "seal content with an earlier key")
		}
		if next == nil {
			return dup, nil, nil, dupErr
		}
		o, err := k.newIMI(s, next)
		if err != nil {
			return dup, nil, nil, err
		}
		rf, reply, err := k.askRoute(ctx, o, mode, false)
		if miap.CodeOf(err) != schemas.CodeDuplicate {
			k.log.Info().Err(err).Str("msg_id", s.MsgID).Msg("retry sealed again with an earlier encryption key")
			return o, rf, reply, err
		}
		prev = next
	}
}

// settled answers a retry of a message the brokers call settled (it has
// its outcome, or its deadline passed): with its status from the signed
// status query (§6.10), so that a client's retry always gets an answer —
// the status, or the final failure with its code — never a perpetual
// "try again" (docs/RELIABILITY.md, retries).
func (k *Kit) settled(ctx context.Context, msgID string) (*Result, error) {
	st, err := k.Query(ctx, msgID)
	if err != nil {
		return nil, err
	}
	k.trace("imi", msgID, st.Tx, "settled:"+st.State, schemas.TraceEvent{})
	if schemas.Terminal(st.State) {
		k.forget(ctx, msgID, -1)
	}
	switch st.State {
	case schemas.StatusFailed:
	case schemas.StatusRouted:
		// Routed, but no hop took it before its deadline (the transfer
		// failed, or the store stalled while routing it): nobody accepted
		// it, so the client is not told it was (docs/RELIABILITY.md,
		// Hand-over). The brokers fail it at the deadline check; until then
		// a temporary answer, then the final failure.
		return nil, schemas.Errorf(schemas.CodeBusy, nil, "routed but not transferred before its deadline")
	default:
		return &Result{MsgID: msgID, Tx: st.Tx, Dest: st.Dest, Status: st.State}, nil
	}
	code, reason := schemas.CodeExpired, ""
	for i := len(st.History) - 1; i >= 0; i-- {
		if h := st.History[i]; h.Status == schemas.StatusFailed {
			if c, ok := schemas.ParseCode(h.Code); ok && !c.Retryable() {
				code = c // a retryable cause is final now: the deadline passed
			}
			reason = strings.TrimSpace(h.Code + " " + h.Reason)
			break
		}
	}
	return nil, schemas.Errorf(code, nil, reason)
}

func modeName(strict bool) string {
	if strict {
		return "strict"
	}
	return "fast"
}

func errCode(err error) string { return miap.CodeOf(err).String() }

// transfer sends the instant message to the first hop (§6.5, §6.6);
// sealed content with its key wrapped to that hop (§14.4).
func (k *Kit) transfer(ctx context.Context, routed *schemas.RoutedIMI, ticket *miap.Frame, content []byte, sealed *miap.Sealed) (*Result, error) {
	subject := schemas.GatewayIM(routed.Dest.Gateway)
	login := schemas.GatewayLogin(routed.Dest.Gateway)
	hop := routed.Dest.Gateway
	if len(routed.Conversions) > 0 {
		subject = schemas.ProcessorIM(routed.Conversions[0].Conversion)
		login = schemas.ProcessorLogin(routed.Conversions[0].Conversion)
		hop = routed.Conversions[0].Processor
	}
	var wrap map[string][]string
	if sealed != nil {
		wrap = map[string][]string{}
		if err := k.eng.Wrap(wrap, sealed, routed.Seal[hop], ticket.ID); err != nil {
			return nil, schemas.Errorf(schemas.CodeSealUnavailable, err, "no encryption key of "+hop+" in the route")
		}
	}
	deadline := time.UnixMilli(routed.Deadline)
	tctx, cancel := context.WithDeadline(ctx, minTime(deadline, time.Now().Add(k.cfg.TransferTimeout)))
	defer cancel()
	reply, err := k.client.TransferWith(tctx, subject, login, k.cfg.Strict, ticket, content, wrap)
	if err != nil {
		return nil, err
	}
	res := &Result{MsgID: routed.IMI.MsgID, Tx: routed.Tx, Dest: routed.Dest, Status: reply.Header.Get(schemas.HdrStatus)}
	if res.Status == "" {
		res.Status = schemas.StatusTransferred
	}
	// The destination relays the broker's receipt; we check it ourselves
	// and tell our medium, since the brokers store no notification for a
	// relayed status (§6.8).
	if r := reply.Header.Get(miap.HdrReceipt); r != "" {
		ev, f, err := k.openReceipt(r, ticket.ID)
		if err != nil {
			k.log.Warn().Err(err).Str("msg_id", res.MsgID).Bool("security", true).Msg("receipt does not verify; the status query still answers")
		} else {
			res.Receipt = ev
			res.Status = ev.Status
			k.notifyReceipt(ctx, ev, f)
		}
	}
	return res, nil
}

// notifyReceipt hands a relayed receipt to the medium; if the medium cannot
// take it now, the receipt is stored in our own status stream and retried
// like any notification.
func (k *Kit) notifyReceipt(ctx context.Context, ev *schemas.StatusEvent, f *miap.Frame) {
	if err := k.medium.Notify(ctx, ev); err == nil {
		k.trace("notified", ev.MsgID, ev.Tx, ev.Status, schemas.TraceEvent{})
		return
	}
	m := nats.NewMsg(schemas.StatusFor(k.cfg.Gateway))
	f.PutHeader(m.Header)
	m.Data = f.Body
	pctx, cancel := context.WithTimeout(context.Background(), k.cfg.RequestTimeout)
	defer cancel()
	if _, err := k.js.PublishMsg(pctx, m, jetstream.WithMsgID(ev.MsgID+":"+ev.Status)); err != nil {
		k.log.Error().Err(err).Str("msg_id", ev.MsgID).Msg("receipt neither notified nor stored; the status query still answers")
	}
}

func (k *Kit) openReceipt(b64 string, id []byte) (*schemas.StatusEvent, *miap.Frame, error) {
	raw, err := miap.DecodeB64(b64)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: receipt: %w", miap.ErrMalformed, err)
	}
	f, err := miap.ParseCompact(raw)
	if err != nil {
		return nil, nil, err
	}
	if f.Party != k.cfg.Gateway || !miap.EqualID(f.ID, id) {
		return nil, nil, fmt.Errorf("%w: receipt for another transfer", miap.ErrBadMAC)
	}
	if err := k.eng.Verify(f, miap.PurposeReceipt); err != nil {
		return nil, nil, err
	}
	var ev schemas.StatusEvent
	if err := json.Unmarshal(f.Body, &ev); err != nil {
		return nil, nil, fmt.Errorf("%w: receipt body: %w", miap.ErrMalformed, err)
	}
	return &ev, f, nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
