package bot

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// Endpoint is a sender or recipient: its medium and address there, and
// the client id when UIMS knows the person.
type Endpoint = schemas.Endpoint

// Hop is where a message went: the gateway, its medium and the address.
type Hop = schemas.Hop

// Attachment describes an attached part (name, type, size).
type Attachment = schemas.Attachment

// Message is a message for the bot.
type Message struct {
	// ID is the message id (32 hex digits); Tx the brokers' transaction.
	ID string
	Tx string
	// From is the sender; To the bot address it was sent to; Recipient the
	// client id that address belongs to, if any.
	From      Endpoint
	To        string
	Recipient string
	Subject   string
	// Type and Content are the content after conversions (Conversions
	// names them in order).
	Type        string
	Content     []byte
	Attachments []Attachment
	Conversions []string
	// InReplyTo is the id of the message this one answers, if the sender
	// said so.
	InReplyTo string
	// Receipts lists the receipts the sender wants: delivery, read, failure.
	Receipts []string
	// Meta carries medium hints that travel end to end.
	Meta map[string]string
	// Sent is when the originating gateway accepted the message.
	Sent time.Time
	// Ref identifies the message for Delivered, Read and Failed, also after
	// a restart (Ref.String, ParseRef).
	Ref Ref
}

// Text returns the content as text when it is text, else "".
func (m *Message) Text() string {
	if strings.HasPrefix(m.Type, "text/") || m.Type == "" {
		return string(m.Content)
	}
	return ""
}

// Ref identifies a received message to the brokers: its id, transaction
// and the inner digest ID that proves the bot took part in the broker's
// transaction.
type Ref kit.AckRef

// String encodes the reference in one URL-safe token, for a bot that keeps
// it outside the process (in a chat message id, a database).
func (r Ref) String() string {
	b, _ := json.Marshal(kit.AckRef(r))
	return base64.RawURLEncoding.EncodeToString(b)
}

// ParseRef decodes a reference String made.
func ParseRef(s string) (Ref, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	var r kit.AckRef
	if err == nil {
		err = json.Unmarshal(raw, &r)
	}
	if err == nil && (!schemas.ValidMsgID(r.MsgID) || r.Tx == "" || r.ID == "") {
		err = errors.New("incomplete")
	}
	if err != nil {
		return Ref{}, fmt.Errorf("bot: reference %.40q: %w", s, err)
	}
	return Ref(r), nil
}

// Status is what became of a message the bot sent.
type Status struct {
	// ID is the message id Send returned; Tx its transaction.
	ID string
	Tx string
	// Status is transferred, delivered, read or failed; Code and Reason
	// say why a message failed (PROTOCOL.md §9).
	Status string
	Code   string
	Reason string
	At     time.Time
	// From is the sender as sent; To the recipient as written; Dest where
	// the message went.
	From    Endpoint
	To      string
	Dest    Hop
	Subject string
	Meta    map[string]string
}

// Deliver hands a message to the handler (kit.Medium). The same message
// again gets the first outcome without a second call of the handler.
func (b *Bot) Deliver(ctx context.Context, d *kit.Delivery) (string, error) {
	e, first := b.seen.begin(d.Ref.MsgID, Ref(d.Ref))
	if !first {
		select {
		case <-e.done:
			return e.status, e.err
		case <-ctx.Done():
			return "", schemas.Errorf(schemas.CodeBusy, ctx.Err(), "the first delivery of this message is still in the bot's hands")
		}
	}
	status, err := b.handle(ctx, newMessage(d))
	if status == schemas.StatusDelivered && b.seen.readDuring(e) {
		status = schemas.StatusRead // the kit acknowledges delivered, then read
	}
	b.seen.end(e, status, err)
	return status, err
}

func newMessage(d *kit.Delivery) *Message {
	r := d.Routed
	m := &Message{ID: r.IMI.MsgID, Tx: r.Tx, From: r.IMI.From, To: r.Dest.Address, Recipient: r.Recipient,
		Subject: r.IMI.Subject, Type: d.Type, Content: d.Content, Attachments: r.IMI.Content.Attachments,
		InReplyTo: r.IMI.InReplyTo, Receipts: r.Receipts, Meta: r.IMI.Meta, Sent: time.UnixMilli(r.IMI.Created), Ref: Ref(d.Ref)}
	for _, s := range r.Conversions {
		m.Conversions = append(m.Conversions, s.Conversion)
	}
	return m
}

// handle runs the handler within HandlerTimeout and maps its answer.
func (b *Bot) handle(ctx context.Context, m *Message) (string, error) {
	b.mu.RLock()
	h := b.handler
	b.mu.RUnlock()
	if h == nil {
		b.log.Info().Str("msg_id", m.ID).Str("from", m.From.Address).Msg("message delivered to a bot without a handler")
		return schemas.StatusDelivered, nil
	}
	hctx, cancel := context.WithTimeout(ctx, b.cfg.HandlerTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- fmt.Errorf("the bot's handler panicked: %v", p)
			}
		}()
		done <- h(hctx, m)
	}()
	var err error
	select {
	case err = <-done:
	case <-hctx.Done():
		b.log.Warn().Str("msg_id", m.ID).Dur("timeout", b.cfg.HandlerTimeout).Msg("handler did not return in time; the message fails")
		return "", schemas.Errorf(schemas.CodeRejected, nil, fmt.Sprintf("the bot did not answer within %v", b.cfg.HandlerTimeout))
	}
	switch {
	case err == nil:
		return schemas.StatusDelivered, nil
	case errors.Is(err, ErrLater):
		return schemas.StatusTransferred, nil
	}
	var se *schemas.Error
	if errors.As(err, &se) {
		return "", err
	}
	return "", schemas.Errorf(schemas.CodeRejected, err, err.Error())
}

// Notify hands a status notification to the status handler (kit.Medium).
func (b *Bot) Notify(ctx context.Context, ev *schemas.StatusEvent) error {
	b.mu.RLock()
	h := b.onStatus
	b.mu.RUnlock()
	if h == nil {
		b.log.Info().Str("msg_id", ev.MsgID).Str("status", ev.Status).Str("code", ev.Code).Msg("status")
		return nil
	}
	return h(ctx, &Status{ID: ev.MsgID, Tx: ev.Tx, Status: ev.Status, Code: ev.Code, Reason: ev.Reason,
		At: time.UnixMilli(ev.At), From: ev.From, To: ev.To, Dest: ev.Dest, Subject: ev.Subject, Meta: ev.Meta})
}

// Held answers the brokers' deadline check (kit.Holder): a message this
// instance took whose acknowledgement was lost is acknowledged then.
func (b *Bot) Held(ctx context.Context, q *schemas.HeldQuery) (*kit.AckRef, error) {
	if ref, ok := b.seen.taken(q.MsgID); ok {
		r := kit.AckRef(ref)
		return &r, nil
	}
	return nil, nil
}

// seen remembers the recent messages of this instance, so that a message
// sent again (the originator's retry) is not handled twice.
type seen struct {
	mu    sync.Mutex
	byID  map[string]*seenEntry
	order []string
}

type seenEntry struct {
	ref    Ref
	done   chan struct{}
	status string
	err    error
	// read: the handler called Read while it ran
	read, ended bool
}

const seenMax = 8192

func (s *seen) begin(id string, ref Ref) (*seenEntry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.byID[id]; ok {
		return e, false
	}
	if s.byID == nil {
		s.byID = map[string]*seenEntry{}
	}
	e := &seenEntry{ref: ref, done: make(chan struct{})}
	s.byID[id] = e
	s.order = append(s.order, id)
	if len(s.order) > seenMax {
		delete(s.byID, s.order[0])
		s.order = s.order[1:]
	}
	return e, true
}

// readInHandler reports whether message id is in its handler now, and
// notes the read to be acknowledged after the delivery.
func (s *seen) readInHandler(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.byID[id]
	if !ok || e.ended {
		return false
	}
	e.read = true
	return true
}

func (s *seen) readDuring(e *seenEntry) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return e.read
}

func (s *seen) end(e *seenEntry, status string, err error) {
	s.mu.Lock()
	e.status, e.err, e.ended = status, err, true
	if status == schemas.StatusRead {
		e.status = schemas.StatusDelivered
	}
	s.mu.Unlock()
	close(e.done)
	if err != nil && miap.CodeOf(err).Retryable() {
		// a temporary refusal: the retry is handled afresh
		s.mu.Lock()
		if s.byID[e.ref.MsgID] == e {
			delete(s.byID, e.ref.MsgID)
		}
		s.mu.Unlock()
	}
}

// settle records an outcome reported later (Delivered, Failed).
func (s *seen) settle(id, status string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.byID[id]; ok && e.err == nil && status != schemas.StatusRead {
		e.status = status
	}
}

// taken returns the reference of a message this instance delivered (the
// kit acknowledges it as delivered: one still in the bot's hands is not).
func (s *seen) taken(id string) (Ref, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.byID[id]
	if !ok || e.err != nil || e.status != schemas.StatusDelivered {
		return Ref{}, false
	}
	return e.ref, true
}
