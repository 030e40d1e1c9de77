package fax

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/uims/uims/gateways/fax/faxaddr"
	"github.com/uims/uims/gateways/fax/hylafax"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/schemas"
)

// bounceAddr is the envelope sender of T.37 mail: DSNs come back there.
func (g *Gateway) bounceAddr() string { return "fax-bounces@" + g.cfg.Domain }

// composeT37 builds the RFC 3965 §2 simple-mode message: multipart/mixed
// with a short text part and the TIFF-F as image/tiff;
// application=faxbw (RFC 3302), base64 (RFC 2045 §6.8), to the RFC 3192
// mailbox; Disposition-Notification-To asks the offramp for an MDN
// (RFC 4142 §3).
// pageCount is "1 page", "3 pages".
func pageCount(n int) string {
	if n == 1 {
		return "1 page"
	}
	return fmt.Sprintf("%d pages", n)
}

func (g *Gateway) composeT37(d *kit.Delivery, to, messageID string, pages int) []byte {
	var rnd [12]byte
	rand.Read(rnd[:])
	boundary := "uims-fax-" + hex.EncodeToString(rnd[:])
	from := g.bounceAddr()
	var b bytes.Buffer
	h := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	h("From", "<"+from+">")
	h("To", "<"+to+">")
	h("Subject", "Fax from UIMS ("+pageCount(pages)+")")
	h("Date", time.Now().UTC().Format("Mon, 02 Jan 2006 15:04:05 -0700"))
	h("Message-ID", "<"+messageID+">")
	h("Disposition-Notification-To", "<"+from+">")
	h("MIME-Version", "1.0")
	h("Content-Type", `multipart/mixed; boundary="`+boundary+`"`)
	b.WriteString("\r\n--" + boundary + "\r\n")
	b.WriteString("Content-Type: text/plain; charset=us-ascii\r\n\r\n")
	fmt.Fprintf(&b, "A fax of %s, message %s.\r\n", pageCount(pages), d.Ref.MsgID)
	b.WriteString("\r\n--" + boundary + "\r\n")
	b.WriteString("Content-Type: image/tiff; application=faxbw\r\n")
	b.WriteString("Content-Transfer-Encoding: base64\r\n")
	b.WriteString("Content-Disposition: attachment; filename=\"fax.tif\"\r\n\r\n")
	enc := base64.StdEncoding.EncodeToString(d.Content)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	b.WriteString("--" + boundary + "--\r\n")
	return b.Bytes()
}

// deliverT37 mails the fax to the offramp. The record is stored first, so
// that a quick DSN finds it. The relay's 4xx (or no answer) is BUSY, the
// originator retries; its 5xx fails the message with the relay's text.
func (g *Gateway) deliverT37(ctx context.Context, d *kit.Delivery, number string, pages int) (string, error) {
	to := faxaddr.Address{Number: number}.Mailbox(g.cfg.T37Domain)
	messageID := d.Ref.MsgID + ".fax@" + g.cfg.Domain
	rec := &outRecord{Ref: d.Ref, Path: pathT37, Number: number, Pages: pages, MessageID: messageID, Submitted: time.Now().UnixMilli()}
	if err := g.store.putOut(ctx, rec); err != nil {
		return "", schemas.Errorf(schemas.CodeStoreUnavailable, err, "")
	}
	raw := g.composeT37(d, to, messageID, pages)
	if err := g.relay(ctx, d.Ref.MsgID, to, raw); err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) && se.Code >= 500 {
			code := ackCode(enhanced(se.EnhancedCode))
			g.store.kv.Delete(ctx, g.store.key("out", d.Ref.MsgID))
			return "", schemas.Errorf(code, err, fmt.Sprintf("the fax relay refused %s: %d %s", to, se.Code, se.Message))
		}
		g.store.kv.Delete(ctx, g.store.key("out", d.Ref.MsgID))
		return "", schemas.Errorf(schemas.CodeBusy, err, "the fax relay cannot take the fax now: "+err.Error())
	}
	g.log.Info().Str("msg_id", d.Ref.MsgID).Str("to", to).Int("pages", pages).Msg("fax mailed to the offramp (T.37)")
	return schemas.StatusTransferred, nil
}

// relay sends one mail with DSN NOTIFY=SUCCESS,FAILURE and ENVID.
func (g *Gateway) relay(ctx context.Context, envID, to string, raw []byte) error {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.SendTimeout)
	defer cancel()
	var dl net.Dialer
	conn, err := dl.DialContext(ctx, "tcp", g.cfg.T37Relay)
	if err != nil {
		return fmt.Errorf("fax: connect to the relay: %w", err)
	}
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello(g.cfg.Domain); err != nil {
		return err
	}
	opts := &smtp.MailOptions{EnvelopeID: envID, Return: smtp.DSNReturnHeaders}
	if ok, _ := c.Extension("DSN"); !ok {
		opts = nil
	}
	if err := c.Mail(g.bounceAddr(), opts); err != nil {
		return err
	}
	var ropts *smtp.RcptOptions
	if ok, _ := c.Extension("DSN"); ok {
		ropts = &smtp.RcptOptions{Notify: []smtp.DSNNotify{smtp.DSNNotifySuccess, smtp.DSNNotifyFailure}}
	}
	if err := c.Rcpt(to, ropts); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(raw); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

// deliverHylaFAX submits a job; the follower reports its outcome.
func (g *Gateway) deliverHylaFAX(ctx context.Context, d *kit.Delivery, number string, pages int) (string, error) {
	sctx, cancel := context.WithTimeout(ctx, g.cfg.SendTimeout)
	defer cancel()
	id, err := g.hfax.Submit(sctx, hylafax.Job{Number: number, Document: d.Content, FromUser: "uims " + d.Routed.IMI.From.Address,
		MaxDials: g.cfg.HylaFAXMaxDials, KillAfter: 20 * time.Hour})
	if err != nil {
		var re *hylafax.ReplyError
		if errors.As(err, &re) && !re.Temporary() {
			return "", schemas.Errorf(schemas.CodeRejected, err, "HylaFAX refused the job: "+re.Reply.String())
		}
		return "", schemas.Errorf(schemas.CodeBusy, err, "HylaFAX cannot take the job now: "+err.Error())
	}
	rec := &outRecord{Ref: d.Ref, Path: pathHylaFAX, Number: number, Pages: pages, Job: id, Submitted: time.Now().UnixMilli()}
	if err := g.store.putOut(ctx, rec); err != nil {
		// the job runs; without its record no outcome would be reported
		g.hfax.Kill(context.WithoutCancel(ctx), id)
		return "", schemas.Errorf(schemas.CodeStoreUnavailable, err, "")
	}
	g.log.Info().Str("msg_id", d.Ref.MsgID).Str("job", id).Str("number", number).Int("pages", pages).Msg("fax job submitted to HylaFAX")
	return schemas.StatusTransferred, nil
}

// follow polls the followed HylaFAX jobs until ctx is done.
func (g *Gateway) follow(ctx context.Context) {
	t := time.NewTicker(g.cfg.Poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		jobs, err := g.store.jobs(ctx)
		if err != nil {
			g.log.Warn().Err(err).Msg("cannot list HylaFAX jobs")
			continue
		}
		for job, msgID := range jobs {
			g.checkJob(ctx, job, msgID)
		}
	}
}

// checkJob reports a finished job: delivered when HylaFAX sent every
// page, else failed with HylaFAX's reason.
func (g *Gateway) checkJob(ctx context.Context, job, msgID string) {
	st, err := g.hfax.Status(ctx, job)
	if err != nil {
		g.log.Warn().Err(err).Str("job", job).Msg("cannot read HylaFAX job")
		return
	}
	if !st.Done() {
		return
	}
	rec, err := g.store.getOut(ctx, msgID)
	if err != nil || rec == nil {
		if err == nil {
			g.store.dropJob(ctx, job)
		}
		return
	}
	status, code, reason := schemas.StatusDelivered, "", ""
	if !st.Sent() {
		status, code = schemas.StatusFailed, jobCode(st).String()
		reason = "HylaFAX job " + job + " to " + rec.Number + " failed: " + jobReason(st)
	}
	if err := g.kit.Ack(ctx, rec.Ref, status, code, reason); err != nil {
		g.log.Warn().Err(err).Str("msg_id", msgID).Msg("acknowledgement failed; retried at the next poll")
		return
	}
	rec.Outcome = status
	g.store.putOut(ctx, rec)
	g.store.dropJob(ctx, job)
	g.log.Info().Str("msg_id", msgID).Str("job", job).Str("status", status).Str("reason", reason).Msg("HylaFAX job finished")
}

func jobReason(st *hylafax.JobStatus) string {
	switch {
	case st.Gone:
		return "removed from the fax server"
	case st.Status != "":
		return st.Status
	}
	return strings.ToLower(st.State)
}

// jobCode maps HylaFAX's failure to a wire code: a removed job was
// cancelled at the fax server (REJECTED); busy, no answer, no carrier and
// the other failures to dial are UNREACHABLE; a bad number
// UNKNOWN_RECIPIENT; the rest REJECTED.
func jobCode(st *hylafax.JobStatus) schemas.Code {
	s := strings.ToLower(st.Status)
	switch {
	case st.Gone, strings.Contains(s, "aborted"), strings.Contains(s, "removed"):
		return schemas.CodeRejected
	case strings.Contains(s, "busy"), strings.Contains(s, "no answer"), strings.Contains(s, "no carrier"),
		strings.Contains(s, "no local dialtone"), strings.Contains(s, "kill time"), strings.Contains(s, "too many attempts"):
		return schemas.CodeUnreachable
	case strings.Contains(s, "invalid") && strings.Contains(s, "number"):
		return schemas.CodeUnknownRecipient
	}
	return schemas.CodeRejected
}

// ackCode maps an RFC 3463 status of a relay's 5xx or a failed DSN to a
// wire code (as the e-mail gateway does, smtperr.go).
func ackCode(status string) schemas.Code {
	switch {
	case strings.HasPrefix(status, "5.1."):
		return schemas.CodeUnknownRecipient
	case strings.HasPrefix(status, "5.3.4"), strings.HasPrefix(status, "5.2.3"):
		return schemas.CodeTooLarge
	case strings.HasPrefix(status, "5.4.7"):
		return schemas.CodeExpired
	case strings.HasPrefix(status, "5.4."):
		return schemas.CodeUnreachable
	case strings.HasPrefix(status, "5.6."):
		return schemas.CodeUnsupported
	case strings.HasPrefix(status, "5.7."):
		return schemas.CodeNotAllowed
	}
	return schemas.CodeRejected
}

func enhanced(e smtp.EnhancedCode) string {
	if e == smtp.EnhancedCodeNotSet || e == smtp.NoEnhancedCode {
		return ""
	}
	return fmt.Sprintf("%d.%d.%d", e[0], e[1], e[2])
}
