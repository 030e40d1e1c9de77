// Package miapnats binds MIAP to NATS (../PROTOCOL.md §4): signed requests
// with verified replies, instant message transfers with the strict-mode
// destination login, and the error reply convention. Gateways and
// processors share it; the core package miap stays free of NATS.
package miapnats

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// Ticket headers on a broker reply that authorises a transfer (§6.3): the
// party and key of the ticket, its time and its MAC. The rest of the ticket
// is the routed IMI and the content the sender already has.
const (
	HdrTicketParty = "Miap-Ticket-Party"
	HdrTicketKid   = "Miap-Ticket-Kid"
	HdrTicketTS    = "Miap-Ticket-Ts"
	HdrTicketMAC   = "Miap-Ticket-Mac"
)

// Clock is the local clock corrected by the offset the brokers report with
// CLOCK_SKEW (§7.1), as AWS SDKs correct from ServerTime.
type Clock struct {
	offset atomic.Int64
	// Base is the clock corrected; nil: time.Now.
	Base func() time.Time
}

// Now returns the corrected time.
func (c *Clock) Now() time.Time {
	base := time.Now
	if c.Base != nil {
		base = c.Base
	}
	return base().Add(time.Duration(c.offset.Load()) * time.Millisecond)
}

// Correct sets the offset so that Now matches serverMS.
func (c *Clock) Correct(serverMS int64) { c.offset.Add(serverMS - c.Now().UnixMilli()) }

// Offset returns the current correction.
func (c *Clock) Offset() time.Duration { return time.Duration(c.offset.Load()) * time.Millisecond }

// Client sends MIAP-signed requests for one party.
type Client struct {
	NC      *nats.Conn
	Eng     *miap.Engine
	Clock   *Clock
	Party   string
	Timeout time.Duration
	// Content, if set, carries content too large for a NATS message.
	Content *ContentStore
}

// headroom is what an instant message needs besides the content: headers
// and the routed IMI's framing.
const headroom = 32 << 10

// Request signs f (fresh time and nonce) and sends it to subject. The reply
// must be a frame of purpose want, for this party, echoing the request's
// nonce (§6). A CLOCK_SKEW answer corrects the clock and retries once.
// Errors are *schemas.Error.
func (c *Client) Request(ctx context.Context, subject string, f *miap.Frame, want miap.Purpose, extra map[string][]string) (*miap.Frame, *nats.Msg, error) {
	for attempt := 0; ; attempt++ {
		f.TS, f.Nonce, f.MAC = 0, [miap.NonceSize]byte{}, nil
		if err := c.Eng.Sign(f); err != nil {
			return nil, nil, schemas.Errorf(schemas.CodeInternal, err, "sign")
		}
		m := nats.NewMsg(subject)
		f.PutHeader(m.Header)
		for key, v := range extra {
			m.Header[key] = v
		}
		m.Data = f.Body
		rctx, cancel := context.WithTimeout(ctx, c.Timeout)
		reply, err := c.NC.RequestMsgWithContext(rctx, m)
		cancel()
		if err != nil {
			return nil, nil, NATSError(err, "broker")
		}
		if e := schemas.ErrorFromHeader(reply.Header); e != nil {
			if e.Code == schemas.CodeClockSkew && attempt == 0 && c.Clock != nil {
				if st, err := strconv.ParseInt(reply.Header.Get(schemas.HdrServerTime), 10, 64); err == nil {
					c.Clock.Correct(st)
					continue
				}
			}
			return nil, reply, e
		}
		rf, err := miap.ParseHeader(reply.Header, reply.Data)
		if err == nil {
			err = c.Eng.Verify(rf, want)
		}
		if err == nil && (rf.Party != c.Party || rf.Nonce != f.Nonce) {
			err = fmt.Errorf("%w: reply not bound to our request", miap.ErrBadMAC)
		}
		if err != nil {
			return nil, reply, schemas.Errorf(miap.CodeOf(err), err, "reply")
		}
		return rf, reply, nil
	}
}

// Transfer sends an instant message to subject (§6.6); in strict mode it
// first logs in to the destination on loginSubject with the ticket and
// binds the message to the session token it returns (§6.5). It returns the
// destination's reply; an error reply is returned as *schemas.Error.
func (c *Client) Transfer(ctx context.Context, subject, loginSubject string, strict bool, ticket *miap.Frame, content []byte) (*nats.Msg, error) {
	return c.TransferWith(ctx, subject, loginSubject, strict, ticket, content, nil)
}

// TransferWith is Transfer with extra headers on the transfer: the wrap of
// sealed content (miap.Engine.Wrap, PROTOCOL.md §14.4).
func (c *Client) TransferWith(ctx context.Context, subject, loginSubject string, strict bool, ticket *miap.Frame, content []byte, extra map[string][]string) (*nats.Msg, error) {
	m := nats.NewMsg(subject)
	for k, v := range extra {
		m.Header[k] = v
	}
	ref := ""
	hopSealed := len(extra[miap.HdrSealKey]) > 0
	if c.Content != nil && (c.Content.ByReference(len(content)) || len(content)+len(ticket.Body)+headroom > int(c.NC.MaxPayload())) {
		// Large: by reference through the object store, sealed (§10):
		// content sealed to the next hop (§14) is ciphertext already and
		// goes as it is; other content under the transfer's key.
		ref = miap.ContentName(ticket.ID, int64(len(content)))
		object := content
		if !hopSealed {
			var err error
			if object, err = miap.SealContent(ticket.ID, ticket.CSHA, content); err != nil {
				return nil, schemas.Errorf(schemas.CodeInternal, err, "seal content")
			}
		}
		if err := c.Content.Put(ctx, ref, object); err != nil {
			return nil, schemas.Errorf(schemas.CodeBusy, err, "content store")
		}
	}
	m.Data = miap.AppendTransfer(m.Header, ticket, content, ref)
	if ref != "" && hopSealed {
		delete(m.Header, miap.HdrContentEnc) // the object is the hop's ciphertext (§10, §14)
	}
	if strict {
		lm := nats.NewMsg(loginSubject)
		ticket.PutHeader(lm.Header)
		lm.Data = ticket.Body
		lr, err := c.NC.RequestMsgWithContext(ctx, lm)
		if err != nil {
			return nil, NATSError(err, "destination")
		}
		if e := schemas.ErrorFromHeader(lr.Header); e != nil {
			return nil, e
		}
		m.Header.Set(miap.HdrGwSess, lr.Header.Get(miap.HdrGwSess))
	}
	reply, err := c.NC.RequestMsgWithContext(ctx, m)
	if err != nil {
		return nil, NATSError(err, "destination")
	}
	if e := schemas.ErrorFromHeader(reply.Header); e != nil {
		return reply, e
	}
	return reply, nil
}

// TicketFrom rebuilds the ticket a broker reply authorises (§6.3): its
// headers give party, key id, time and MAC; id, peer, the content binding,
// the expiry and the routed IMI come from the caller.
func TicketFrom(h nats.Header, id []byte, peer string, ctype string, clen int64, csha []byte, expiry int64, routed []byte) (*miap.Frame, error) {
	ts, err := strconv.ParseInt(h.Get(HdrTicketTS), 10, 64)
	if err != nil {
		return nil, schemas.Errorf(schemas.CodeMalformed, err, "ticket time")
	}
	mac, err := miap.DecodeB64(h.Get(HdrTicketMAC))
	if err != nil || len(mac) != miap.MACSize {
		return nil, schemas.Errorf(schemas.CodeMalformed, err, "ticket MAC")
	}
	return &miap.Frame{Purpose: miap.PurposeTicket, Party: h.Get(HdrTicketParty), Kid: h.Get(HdrTicketKid), TS: ts,
		ID: id, Peer: peer, CType: ctype, CLen: clen, CSHA: csha, Expiry: expiry, Body: routed, MAC: mac}, nil
}

// TicketHeader returns the headers that carry a signed ticket (§6.3).
func TicketHeader(t *miap.Frame) map[string][]string {
	return map[string][]string{
		HdrTicketParty: {t.Party},
		HdrTicketKid:   {t.Kid},
		HdrTicketTS:    {strconv.FormatInt(t.TS, 10)},
		HdrTicketMAC:   {miap.EncodeB64(t.MAC)},
	}
}

// NATSError maps a request failure to a retryable code.
func NATSError(err error, who string) *schemas.Error {
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return schemas.Errorf(schemas.CodeBusy, err, "no "+who+" available")
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return schemas.Errorf(schemas.CodeBusy, err, who+" did not answer in time")
	}
	return schemas.Errorf(schemas.CodeBusy, err, who)
}

// RespondError answers a request with an error code (§9).
func RespondError(m *nats.Msg, c schemas.Code) {
	if m.Reply == "" {
		return
	}
	r := nats.NewMsg(m.Reply)
	for k, v := range schemas.ErrorHeader(c) {
		r.Header[k] = v
	}
	m.RespondMsg(r)
}

// Respond answers a request with a signed frame and extra headers.
func Respond(m *nats.Msg, eng *miap.Engine, f *miap.Frame, extra map[string][]string) error {
	if err := eng.Sign(f); err != nil {
		return err
	}
	r := nats.NewMsg(m.Reply)
	f.PutHeader(r.Header)
	for k, v := range extra {
		r.Header[k] = v
	}
	r.Data = f.Body
	return m.RespondMsg(r)
}
