package email

import (
	"context"
	"errors"
	"net/mail"
	"slices"
	"strings"
	"time"

	"github.com/uims/uims/gateways/email/mailaddr"
	"github.com/uims/uims/gateways/email/mailmsg"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/schemas"
)

// ReasonNoRelay is the reason given for mail to outside addresses when no
// smarthost is configured.
const ReasonNoRelay = "no SMTP relay configured for outside addresses"

// Deliver implements kit.Medium: a message for an e-mail address is
// composed (RFC 5322, MIME) and queued durably for the smarthost; the
// outcome follows later with Kit.Ack (patent step S9; docs/RELIABILITY.md,
// Ownership).
func (g *Gateway) Deliver(ctx context.Context, d *kit.Delivery) (string, error) {
	imi := &d.Routed.IMI
	if g.cfg.Relay == "" {
		// No gateway is set up to reach outside addresses: permanent, so
		// the kit acknowledges the failure with this reason and the sender
		// hears it at once (not NO_ROUTE, which means "no live gateway now").
		return "", schemas.Errorf(schemas.CodeUnreachable, nil, ReasonNoRelay)
	}
	rcpt, err := mailaddr.Parse(d.Routed.Dest.Address)
	if err != nil || rcpt.Domain == "" {
		return "", schemas.Errorf(schemas.CodeUnknownRecipient, err, "not a deliverable e-mail address")
	}
	if mailaddr.IsLocalDomain(rcpt.Domain, g.cfg.Domains) {
		// Our own domain: sending it to the smarthost would loop back here.
		if d.Routed.Recipient != "" {
			return "", schemas.Errorf(schemas.CodeUnsupported, nil, "the e-mail address of client "+d.Routed.Recipient+" is local to this gateway and has no mailbox")
		}
		return "", schemas.Errorf(schemas.CodeUnknownRecipient, nil, "no such user: "+rcpt.String())
	}
	// Idempotent per message id (kit.Medium): queued once, first outcome.
	if rec, err := g.store.getOut(ctx, imi.MsgID); err != nil {
		return "", schemas.Errorf(schemas.CodeBusy, err, "outbound state")
	} else if rec != nil {
		if rec.Outcome == schemas.StatusDelivered {
			return schemas.StatusDelivered, nil
		}
		return schemas.StatusTransferred, nil
	}
	raw, messageID, err := g.compose(ctx, d, rcpt)
	if err != nil {
		return "", err
	}
	now := time.Now().UnixMilli()
	ref := d.Ref
	job := &outJob{MsgID: imi.MsgID, Ref: &ref, From: g.bounceAddress(imi.MsgID), To: rcpt.String(), EnvID: imi.MsgID, Raw: raw, Queued: now}
	if err := g.store.queue(ctx, job, imi.MsgID); err != nil {
		return "", schemas.Errorf(schemas.CodeBusy, err, "outbound queue")
	}
	rec := &outRecord{Ref: d.Ref, Sender: d.Routed.Sender, To: rcpt.String(), Subject: imi.Subject, MessageID: messageID, Queued: now}
	if err := g.store.putOut(ctx, imi.MsgID, rec); err != nil {
		return "", schemas.Errorf(schemas.CodeBusy, err, "outbound state")
	}
	g.log.Info().Str("msg_id", imi.MsgID).Str("to", rcpt.String()).Int("bytes", len(raw)).Msg("mail queued for the relay")
	return schemas.StatusTransferred, nil
}

// compose builds the outgoing mail. Header values come only through
// mailmsg.Compose, which refuses CR, LF and NUL (no header injection,
// CWE-93); a value mail cannot carry is dropped rather than the message.
func (g *Gateway) compose(ctx context.Context, d *kit.Delivery, rcpt mailaddr.Address) ([]byte, string, error) {
	imi := &d.Routed.IMI
	from, replyTo := g.fromAddress(d.Routed)
	o := mailmsg.Outgoing{
		From: from, ReplyTo: replyTo,
		To:          []mail.Address{{Name: d.Routed.RecipientName, Address: rcpt.String()}},
		Subject:     imi.Subject,
		MessageID:   imi.Meta["email.message_id"],
		InReplyTo:   imi.Meta["email.in_reply_to"],
		Date:        time.UnixMilli(imi.Created),
		ContentType: d.Type, Content: d.Content,
		Headers: []mailmsg.Field{{Key: "X-UIMS-Message-Id", Value: imi.MsgID}},
	}
	if o.MessageID == "" {
		o.MessageID = imi.MsgID + "@" + g.cfg.Hostname
	}
	if !g.cfg.NoReadRequests && slices.Contains(d.Routed.Receipts, "read") {
		// The sender wants to know when it is read: ask the recipient's
		// mail program for a read notice to our VERP address (RFC 8098 §2.1).
		o.Headers = append(o.Headers, mailmsg.Field{Key: "Disposition-Notification-To", Value: "<" + g.bounceAddress(imi.MsgID) + ">"})
	}
	if o.InReplyTo == "" && imi.InReplyTo != "" {
		o.InReplyTo = g.messageIDOf(ctx, imi.InReplyTo)
	}
	if o.InReplyTo != "" {
		o.References = []string{o.InReplyTo}
	}
	raw, err := mailmsg.Compose(o)
	if errors.Is(err, mailmsg.ErrInvalidHeader) || errors.Is(err, mailmsg.ErrHeaderInjection) {
		g.log.Warn().Err(err).Str("msg_id", imi.MsgID).Bool("security", true).Msg("header value dropped from outgoing mail")
		o.From.Name, o.To[0].Name, o.ReplyTo = "", "", nil
		o.Subject = oneLine(o.Subject, maxSubjectBytes)
		o.MessageID, o.InReplyTo, o.References = imi.MsgID+"@"+g.cfg.Hostname, "", nil
		raw, err = mailmsg.Compose(o)
	}
	switch {
	case errors.Is(err, mailmsg.ErrInvalidContent):
		return nil, "", schemas.Errorf(schemas.CodeUnsupported, err, "content cannot be sent by e-mail")
	case err != nil:
		return nil, "", schemas.Errorf(schemas.CodeMalformed, err, "cannot compose the mail")
	}
	return raw, o.MessageID, nil
}

// fromAddress chooses From (and Reply-To) of an outgoing mail: the sender's
// own address when it is in a local domain; for a client on another
// medium <client id>@<local domain>, which routes replies back to it;
// otherwise the gateway's no-reply address with the sender's name, and the
// sender's outside address as Reply-To (we do not send as foreign domains).
func (g *Gateway) fromAddress(r *schemas.RoutedIMI) (mail.Address, []mail.Address) {
	f := r.IMI.From
	if f.Medium == schemas.MediumEmail && f.Address != "" {
		if a, err := mailaddr.Parse(f.Address); err == nil && a.Domain != "" {
			if mailaddr.IsLocalDomain(a.Domain, g.cfg.Domains) {
				return mail.Address{Name: f.Name, Address: a.String()}, nil
			}
			name := f.Name
			if name == "" {
				name = a.String()
			}
			return mail.Address{Name: name + " via " + g.cfg.Hostname, Address: g.cfg.NoReply},
				[]mail.Address{{Name: f.Name, Address: a.String()}}
		}
	}
	client := r.Sender
	if client == "" {
		client = f.Client
	}
	if client != "" && len(g.cfg.Domains) > 0 {
		name := f.Name
		if name == "" {
			name = client
		}
		return mail.Address{Name: name, Address: client + "@" + g.cfg.Domains[0]}, nil
	}
	name := f.Name
	if name == "" {
		name = f.Address
	}
	return mail.Address{Name: oneLine(name, 200), Address: g.cfg.NoReply}, nil
}

// bounceAddress is the envelope sender of an outgoing mail: bounces come
// back to our own mailbox with the message id in it (VERP).
func (g *Gateway) bounceAddress(msgID string) string {
	return g.cfg.BounceLocal + "+" + msgID + "@" + g.cfg.mailDomain()
}

// bounceID returns the message id of a VERP bounce address, "".
func (g *Gateway) bounceID(a mailaddr.Address) string {
	id, ok := strings.CutPrefix(a.Local, g.cfg.BounceLocal+"+")
	if !ok || !schemas.ValidMsgID(id) {
		return ""
	}
	return id
}

// messageIDOf returns the RFC 5322 Message-ID of a UIMS message that came
// in or went out by e-mail, "" when unknown.
func (g *Gateway) messageIDOf(ctx context.Context, msgID string) string {
	if r, err := g.store.getIn(ctx, msgID); err == nil && r != nil && r.MessageID != "" {
		return r.MessageID
	}
	if r, err := g.store.getOut(ctx, msgID); err == nil && r != nil {
		return r.MessageID
	}
	return ""
}

// mailAddress wraps a bare address.
func mailAddress(addr string) mail.Address { return mail.Address{Address: addr} }
