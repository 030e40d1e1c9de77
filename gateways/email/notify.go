package email

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/uims/uims/gateways/email/mailaddr"
	"github.com/uims/uims/gateways/email/mailmsg"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// Notify implements kit.Medium: the sender of a message that came in by
// SMTP hears what happened to it as mail — a delivery status notification
// (RFC 3464) for delivered and failed, a read notice (RFC 8098) for read —
// when it wants to: a client as its profile says, an outside sender as its
// RFC 3461 NOTIFY parameter (failures by default, successes on request)
// and its Disposition-Notification-To field say. It is idempotent: the
// notice's message id is derived from the event.
func (g *Gateway) Notify(ctx context.Context, ev *schemas.StatusEvent) error {
	switch ev.Status {
	case schemas.StatusDelivered, schemas.StatusFailed, schemas.StatusRead:
	default:
		return nil
	}
	if ev.From.Medium != schemas.MediumEmail || ev.Meta["email.auto"] == "1" {
		return nil // never a notice about a notice, a bounce or an auto-reply (RFC 3834 §2)
	}
	rec, err := g.store.getIn(ctx, ev.MsgID)
	if err != nil {
		return err
	}
	if rec != nil && ev.Status == schemas.StatusFailed {
		switch rec.State {
		case statePending:
			if time.Since(time.UnixMilli(rec.At)) < 2*g.cfg.SendTimeout {
				// The SMTP reply is not decided yet; ask again shortly.
				return fmt.Errorf("email: SMTP session of %s still open", ev.MsgID)
			}
			return nil // the session died without a reply: the MTA retries
		case stateRejected, stateBounced:
			return nil // the sender already heard it in the SMTP reply or our bounce
		}
	}
	want, err := g.wants(ctx, ev)
	if err != nil || !want {
		return err
	}
	raw, to, err := g.receipt(ev)
	if err != nil {
		g.log.Warn().Err(err).Str("msg_id", ev.MsgID).Str("status", ev.Status).Msg("cannot compose a receipt")
		return nil
	}
	return g.sendNotice(ctx, ev.Sender, to, raw, noticeID(ev.MsgID, ev.Status))
}

// wants reports whether the sender of ev wants a notice of its status.
func (g *Gateway) wants(ctx context.Context, ev *schemas.StatusEvent) (bool, error) {
	notify := strings.ToUpper(ev.Meta["email.notify"])
	never := strings.Contains(notify, "NEVER")
	if ev.Sender != "" {
		ci, err := g.kit.Client(ctx, schemas.ClientQuery{Kind: "id", User: ev.Sender})
		switch {
		case err == nil:
			p := ci.Receipts
			switch ev.Status {
			case schemas.StatusDelivered:
				return p.Delivery && !never, nil
			case schemas.StatusFailed:
				return p.Failure && !never, nil
			}
			return p.Read, nil
		case miap.CodeOf(err).Retryable():
			return false, err
		case !kit.IsCode(err, schemas.CodeUnknownRecipient):
			g.log.Warn().Err(err).Str("client", ev.Sender).Msg("cannot read receipt preferences")
			return false, nil
		}
	}
	switch ev.Status {
	case schemas.StatusDelivered:
		return strings.Contains(notify, "SUCCESS"), nil
	case schemas.StatusFailed:
		return !never, nil // RFC 3461 §4.1: failures are reported unless NEVER
	}
	return ev.Meta["email.dnt"] != "", nil
}

// receipt composes the notice for ev and returns it with its recipient.
func (g *Gateway) receipt(ev *schemas.StatusEvent) ([]byte, string, error) {
	rcpt := ev.Meta["email.rcpt"]
	if rcpt == "" {
		rcpt = ev.To
	}
	origID := ev.Meta["email.message_id"]
	at := time.UnixMilli(ev.At)
	id := noticeID(ev.MsgID, ev.Status) + "@" + g.cfg.Hostname
	if ev.Status == schemas.StatusRead {
		to := ev.Meta["email.dnt"]
		if to == "" {
			to = ev.From.Address
		}
		m := mailmsg.MDN{ReportingUA: g.cfg.Hostname + "; UIMS", From: mailAddress(rcpt), To: mailAddress(to),
			MessageID: id, Date: at, FinalRecipient: rcpt, OriginalMessageID: origID, OriginalSubject: ev.Subject}
		raw, err := mailmsg.ComposeMDN(m)
		if err != nil { // a value mail cannot carry: without the optional ones
			m.OriginalMessageID, m.OriginalSubject = "", ""
			raw, err = mailmsg.ComposeMDN(m)
		}
		return raw, to, err
	}
	to := ev.Meta["email.mail_from"]
	if to == "" {
		to = ev.From.Address
	}
	r := mailmsg.DSNRecipient{FinalRecipient: rcpt, Action: mailmsg.ActionDelivered, Status: "2.0.0", LastAttemptDate: at}
	var text strings.Builder
	fmt.Fprintf(&text, "This is the mail system at %s.\r\n\r\n", g.cfg.Hostname)
	if ev.Status == schemas.StatusFailed {
		r.Action, r.Status = mailmsg.ActionFailed, dsnStatus(ev.Code)
		reason := oneLine(ev.Reason, 500)
		if reason == "" {
			reason = "unknown reason"
		}
		r.DiagnosticCode = "X-UIMS; " + ev.Code + " " + reason
		fmt.Fprintf(&text, "Your message to <%s> could not be delivered.\r\n\r\nReason: %s (%s)\r\n", rcpt, reason, ev.Code)
	} else {
		medium := ev.Dest.Medium
		if medium == "" {
			medium = "UIMS"
		}
		fmt.Fprintf(&text, "Your message to <%s> was delivered (%s).\r\n", rcpt, medium)
	}
	if ev.Subject != "" {
		fmt.Fprintf(&text, "\r\nSubject of your message: %s\r\n", oneLine(ev.Subject, 200))
	}
	d := mailmsg.DSN{ReportingMTA: g.cfg.Hostname, To: mailAddress(to), MessageID: id, Date: at,
		OriginalMessageID: origID, OriginalEnvelopeID: ev.Meta["email.envid"], Recipients: []mailmsg.DSNRecipient{r}, Text: text.String()}
	raw, err := mailmsg.ComposeDSN(d)
	if err != nil {
		d.OriginalMessageID, d.OriginalEnvelopeID = "", ""
		raw, err = mailmsg.ComposeDSN(d)
	}
	return raw, to, err
}

// noticeID is the message id of a notice about msgID: the same event gives
// the same id, so a repeated notification sends one notice.
func noticeID(msgID, what string) string {
	h := sha256.Sum256([]byte("notice\x00" + msgID + "\x00" + what))
	return hex.EncodeToString(h[:16])
}

// sendNotice sends a notice (DSN, MDN, bounce) to an e-mail sender: through
// the fabric when the sender is a local client (its address is ours, or
// there is no relay), else by mail through the relay with the null
// envelope sender (RFC 5321 §4.5.5).
func (g *Gateway) sendNotice(ctx context.Context, client, to string, raw []byte, id string) error {
	local := false
	if a, err := mailaddr.Parse(to); err == nil {
		local = mailaddr.IsLocalDomain(a.Domain, g.cfg.Domains)
		to = a.String()
	} else if client == "" {
		g.log.Warn().Str("to", oneLine(to, 256)).Msg("notice dropped: no valid address")
		return nil
	}
	if client != "" && (local || g.cfg.Relay == "") {
		return g.noticeToClient(ctx, client, raw, id)
	}
	if g.cfg.Relay == "" {
		g.log.Warn().Str("to", to).Msg("notice dropped: " + ReasonNoRelay)
		return nil
	}
	job := &outJob{MsgID: id, From: mailmsg.NullReversePath, To: to, Raw: raw, Queued: time.Now().UnixMilli()}
	if err := g.store.queue(ctx, job, "notice-"+id); err != nil {
		return err
	}
	g.log.Info().Str("to", to).Str("notice", id).Msg("notice queued for the relay")
	return nil
}

// noticeToClient delivers a notice to a client through the fabric, in the
// client's preferred medium, as a message from the mail system.
func (g *Gateway) noticeToClient(ctx context.Context, client string, raw []byte, id string) error {
	m, err := mailmsg.Extract(bytes.NewReader(raw), g.cfg.Limits)
	if err != nil {
		g.log.Warn().Err(err).Msg("notice dropped: unreadable")
		return nil
	}
	meta := map[string]string{"email.auto": "1"}
	if m.MessageID != "" && len(m.MessageID) <= maxMetaValue {
		meta["email.message_id"] = m.MessageID
	}
	sub := &kit.Submission{MsgID: id, To: client, Subject: oneLine(m.Subject, maxSubjectBytes),
		From: schemas.Endpoint{Medium: schemas.MediumEmail, Address: "MAILER-DAEMON@" + g.cfg.Hostname, Name: "Mail Delivery System"},
		Type: m.ContentType, Content: m.Content, Attachments: attachmentList(m), Meta: meta}
	sctx, cancel := context.WithTimeout(ctx, g.cfg.SendTimeout)
	defer cancel()
	_, err = g.kit.Send(sctx, sub)
	switch {
	case err == nil, kit.IsCode(err, schemas.CodeDuplicate):
		g.log.Info().Str("client", client).Str("notice", id).Msg("notice sent through the fabric")
		return nil
	case miap.CodeOf(err).Retryable():
		return err
	}
	g.log.Warn().Err(err).Str("client", client).Msg("notice not delivered")
	return nil
}

// handleBounce takes a delivery status notification about a mail we sent
// (matched by our VERP bounce address, the original Message-ID or the
// ENVID) and turns a failure into the original message's non-delivery
// report. It reports whether the mail was such a bounce; an error means
// the store could not be read, and the sending MTA should try again.
func (g *Gateway) handleBounce(ctx context.Context, raw []byte, rcpts []recipient) (bool, error) {
	rep, err := mailmsg.ParseDSN(bytes.NewReader(raw))
	if err != nil {
		return false, nil
	}
	id := g.verpID(rcpts)
	if id == "" {
		if id, _, err = g.store.lookupMessageID(ctx, rep.OriginalMessageID); err != nil {
			return false, err
		}
	}
	if id == "" && schemas.ValidMsgID(rep.OriginalEnvelopeID) {
		id = rep.OriginalEnvelopeID
	}
	if id == "" {
		return false, nil
	}
	rec, err := g.store.getOut(ctx, id)
	if err != nil {
		return false, err
	}
	if rec == nil {
		return false, nil
	}
	var failed *mailmsg.DSNRecipientStatus
	for i := range rep.Recipients {
		if rep.Recipients[i].Action == mailmsg.ActionFailed {
			failed = &rep.Recipients[i]
			break
		}
	}
	log := g.log.With().Str("msg_id", id).Str("reporting_mta", rep.ReportingMTA).Logger()
	if failed == nil {
		log.Info().Msg("delivery status notification without a failure")
		return true, nil
	}
	mta := rep.ReportingMTA
	if mta == "" {
		mta = "a remote mail server"
	}
	reason := oneLine(fmt.Sprintf("bounced by %s: %s %s", mta, failed.Status, failed.DiagnosticCode), 1000)
	code := ackCode(failed.Status)
	st, qerr := g.kit.Query(ctx, id)
	if qerr == nil && (st.State == schemas.StatusDelivered || st.State == schemas.StatusRead) {
		// The brokers keep one terminal outcome and the relay's acceptance
		// already counted as delivered: the sender gets the bounce itself.
		log.Info().Str("reason", reason).Msg("late bounce for a delivered message")
		if rec.Sender != "" {
			if err := g.noticeToClient(ctx, rec.Sender, raw, noticeID(id, "bounce")); err != nil {
				log.Warn().Err(err).Msg("cannot pass the bounce on")
			}
		}
	} else {
		log.Info().Str("reason", reason).Msg("bounce: non-delivery report")
		if err := g.kit.Ack(ctx, rec.Ref, schemas.StatusFailed, code.String(), reason); err != nil {
			log.Warn().Err(err).Msg("failure acknowledgement refused")
		}
	}
	rec.Outcome, rec.LastError = schemas.StatusFailed, reason
	g.store.put(ctx, g.store.key("out", id), rec)
	return true, nil
}

// verpID returns the message id named by a VERP bounce address among the
// recipients, "" when there is none.
func (g *Gateway) verpID(rcpts []recipient) string {
	for _, r := range rcpts {
		if a, err := mailaddr.Parse(r.addr); err == nil && r.drop {
			if v := g.bounceID(a); v != "" {
				return v
			}
		}
	}
	return ""
}
