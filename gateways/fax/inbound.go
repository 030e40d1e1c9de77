package fax

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"strings"

	"github.com/emersion/go-smtp"

	"github.com/uims/uims/gateways/email/mailmsg"
	"github.com/uims/uims/gateways/fax/faxaddr"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// newSMTPServer configures the onramp and report listener.
func (g *Gateway) newSMTPServer() *smtp.Server {
	s := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) { return &session{g: g}, nil }))
	s.Domain = g.cfg.Domain
	s.MaxMessageBytes = g.cfg.MaxSize
	s.MaxRecipients = 10
	s.EnableDSN = true
	return s
}

func reply(code int, enh smtp.EnhancedCode, format string, args ...any) *smtp.SMTPError {
	msg := strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, fmt.Sprintf(format, args...))
	if len(msg) > 400 {
		msg = msg[:400]
	}
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: msg}
}

// session is one SMTP transaction from an onramp or an offramp's reports.
type session struct {
	g     *Gateway
	from  string
	rcpts []string
}

func (s *session) Reset()        { s.from, s.rcpts = "", nil }
func (s *session) Logout() error { return nil }

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	s.from = from
	return nil
}

// Rcpt takes <client id or +number>@Domain and the gateway's bounce
// address; anything else is relaying.
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	i := strings.LastIndexByte(to, '@')
	if i <= 0 || !strings.EqualFold(to[i+1:], s.g.cfg.Domain) {
		return reply(550, smtp.EnhancedCode{5, 7, 1}, "Relaying denied: the fax gateway takes mail for @%s only", s.g.cfg.Domain)
	}
	s.rcpts = append(s.rcpts, to[:i])
	return nil
}

// Data tells reports (DSN, MDN) from faxes and handles each.
func (s *session) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return reply(552, smtp.EnhancedCode{5, 3, 4}, "Message too large: the limit is %d bytes", s.g.cfg.MaxSize)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.g.cfg.SendTimeout)
	defer cancel()
	if dsn, err := mailmsg.ParseDSN(bytes.NewReader(raw)); err == nil {
		return s.g.onDSN(ctx, dsn)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return reply(554, smtp.EnhancedCode{5, 6, 0}, "Malformed message: %v", err)
	}
	if mt, params, _ := mime.ParseMediaType(msg.Header.Get("Content-Type")); mt == "multipart/report" &&
		strings.EqualFold(params["report-type"], "disposition-notification") {
		return s.g.onMDN(ctx, msg, params["boundary"])
	}
	return s.g.onFax(ctx, s.from, msg, s.rcpts)
}

// onDSN turns an offramp's DSN into the acknowledgement: "delivered"
// means the fax was sent (RFC 3965 §2.3.1), "failed" that it was not.
func (g *Gateway) onDSN(ctx context.Context, d *mailmsg.DSNReport) error {
	msgID := d.OriginalEnvelopeID
	if msgID == "" || !isMsgID(msgID) {
		id, found, err := g.store.lookupMessageID(ctx, d.OriginalMessageID)
		if err != nil {
			return reply(451, smtp.EnhancedCode{4, 3, 0}, "Temporary failure, try again later")
		}
		if !found {
			g.log.Info().Str("message_id", d.OriginalMessageID).Msg("DSN for no fax of ours, dropped")
			return nil
		}
		msgID = id
	}
	for _, r := range d.Recipients {
		switch r.Action {
		case "delivered":
			return g.outcome(ctx, msgID, schemas.StatusDelivered, "", "")
		case "failed":
			reason := "the offramp could not send the fax"
			if r.DiagnosticCode != "" {
				reason += ": " + r.DiagnosticCode
			} else if d.Text != "" {
				reason += ": " + strings.TrimSpace(d.Text)
			}
			return g.outcome(ctx, msgID, schemas.StatusFailed, ackCode(r.Status).String(), reason)
		}
	}
	return nil // relayed, delayed, expanded: not an outcome
}

// onMDN reads an RFC 8098 MDN (RFC 4142 full mode): "processed" means the
// offramp sent the fax; failed, deleted or denied that it did not.
func (g *Gateway) onMDN(ctx context.Context, m *mail.Message, boundary string) error {
	mr := multipart.NewReader(m.Body, boundary)
	for {
		p, err := mr.NextPart()
		if err != nil {
			return nil
		}
		mt, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		if mt != "message/disposition-notification" {
			continue
		}
		body, _ := io.ReadAll(io.LimitReader(p, 64<<10))
		fields, err := mail.ReadMessage(bytes.NewReader(append(body, "\r\n\r\n"...)))
		if err != nil {
			return reply(554, smtp.EnhancedCode{5, 6, 0}, "Malformed disposition notification: %v", err)
		}
		orig := strings.Trim(strings.TrimSpace(fields.Header.Get("Original-Message-ID")), "<>")
		msgID, found, err := g.store.lookupMessageID(ctx, orig)
		if err != nil {
			return reply(451, smtp.EnhancedCode{4, 3, 0}, "Temporary failure, try again later")
		}
		if !found {
			return nil
		}
		disp := strings.ToLower(fields.Header.Get("Disposition"))
		if i := strings.IndexByte(disp, ';'); i >= 0 {
			disp = strings.TrimSpace(disp[i+1:])
		}
		switch {
		case strings.HasPrefix(disp, "processed"), strings.HasPrefix(disp, "displayed"):
			return g.outcome(ctx, msgID, schemas.StatusDelivered, "", "")
		case strings.HasPrefix(disp, "failed"), strings.HasPrefix(disp, "deleted"), strings.HasPrefix(disp, "denied"):
			return g.outcome(ctx, msgID, schemas.StatusFailed, schemas.CodeRejected.String(), "the offramp reports "+disp)
		}
		return nil
	}
}

// outcome acknowledges an outgoing T.37 fax once.
func (g *Gateway) outcome(ctx context.Context, msgID, status, code, reason string) error {
	rec, err := g.store.getOut(ctx, msgID)
	if err != nil {
		return reply(451, smtp.EnhancedCode{4, 3, 0}, "Temporary failure, try again later")
	}
	if rec == nil || rec.Outcome != "" {
		return nil
	}
	if err := g.kit.Ack(ctx, rec.Ref, status, code, reason); err != nil {
		return reply(451, smtp.EnhancedCode{4, 3, 0}, "Temporary failure, try again later")
	}
	rec.Outcome = status
	if err := g.store.putOut(ctx, rec); err != nil {
		g.log.Warn().Err(err).Str("msg_id", msgID).Msg("outcome acknowledged but not recorded")
	}
	g.log.Info().Str("msg_id", msgID).Str("status", status).Str("reason", reason).Msg("T.37 outcome")
	return nil
}

func isMsgID(s string) bool {
	if len(s) != 32 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

// onFax takes a fax from an onramp: the sender's number from the FAX=
// mailbox of the envelope or of From, the first image/tiff part, checked,
// and one kit.Send per recipient. 250 only once the fabric took it.
func (g *Gateway) onFax(ctx context.Context, envFrom string, m *mail.Message, rcpts []string) error {
	number := ""
	if a, _, err := faxaddr.ParseMailbox(envFrom); err == nil {
		number = a.Number
	} else if addr, err := mail.ParseAddress(m.Header.Get("From")); err == nil {
		if a, _, err := faxaddr.ParseMailbox(addr.Address); err == nil {
			number = a.Number
		}
	}
	if number == "" {
		return reply(550, smtp.EnhancedCode{5, 1, 7}, "The sender is not a fax mailbox (FAX=+number@onramp, RFC 3192)")
	}
	tiff, err := findTIFF(m, g.cfg.MaxSize)
	if err != nil {
		return reply(554, smtp.EnhancedCode{5, 6, 0}, "No fax: %v", err)
	}
	pages, err := g.checkFax(tiff)
	if err != nil {
		if kit.IsCode(err, schemas.CodeTooLarge) {
			return reply(552, smtp.EnhancedCode{5, 3, 4}, "%s", deliveryText(err))
		}
		return reply(554, smtp.EnhancedCode{5, 6, 0}, "%s", deliveryText(err))
	}
	for _, to := range rcpts {
		if _, err := g.receive(ctx, number, to, tiff, pages, m.Header.Get("Message-ID")); err != nil {
			code := miap.CodeOf(err)
			if code.Retryable() {
				return reply(451, smtp.EnhancedCode{4, 3, 0}, "<%s>: %s, try again later", to, deliveryText(err))
			}
			return reply(550, smtp.EnhancedCode{5, 1, 1}, "<%s>: %s (%s)", to, deliveryText(err), code)
		}
	}
	return nil
}

// receive hands one received fax to the fabric (T.37 or HylaFAX): from
// {fax, number}, content image/tiff. The message id is derived from the
// sender, recipient and content, so that a retry is the same message.
func (g *Gateway) receive(ctx context.Context, number, to string, tiff []byte, pages int, ref string) (*kit.Result, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00", g.cfg.Gateway, number, to, ref)
	h.Write(tiff)
	id := hex.EncodeToString(h.Sum(nil)[:16])
	res, err := g.kit.Send(ctx, &kit.Submission{
		MsgID:       id,
		From:        schemas.Endpoint{Medium: schemas.MediumFax, Address: number},
		To:          to,
		Subject:     fmt.Sprintf("Fax from %s (%s)", number, pageCount(pages)),
		Type:        ContentType,
		Content:     tiff,
		Attachments: []schemas.Attachment{{Name: "fax.tif", Type: ContentType, Length: int64(len(tiff))}},
		Meta:        map[string]string{"fax.pages": fmt.Sprint(pages)},
	})
	if kit.IsCode(err, schemas.CodeSettled) {
		return res, nil
	}
	if err == nil {
		g.log.Info().Str("msg_id", id).Str("from", number).Str("to", to).Int("pages", pages).Msg("fax received")
	}
	return res, err
}

// deliveryText is the part of an error meant for the sender.
func deliveryText(err error) string {
	var se *schemas.Error
	if errors.As(err, &se) && se.Detail != "" {
		return se.Detail
	}
	return err.Error()
}

// findTIFF returns the decoded first image/tiff part of a message (the
// whole body when the message itself is image/tiff).
func findTIFF(m *mail.Message, max int64) ([]byte, error) {
	return findTIFFPart(m.Header.Get("Content-Type"), m.Header.Get("Content-Transfer-Encoding"), m.Body, max, 0)
}

func findTIFFPart(ctype, cte string, body io.Reader, max int64, depth int) ([]byte, error) {
	if depth > 8 {
		return nil, errors.New("MIME nesting deeper than 8")
	}
	mt, params, err := mime.ParseMediaType(ctype)
	if err != nil {
		mt = "text/plain"
	}
	switch {
	case mt == ContentType:
		var r io.Reader = body
		switch strings.ToLower(strings.TrimSpace(cte)) {
		case "base64":
			r = base64.NewDecoder(base64.StdEncoding, &crlfStripper{r: body})
		case "quoted-printable":
			r = quotedprintable.NewReader(body)
		}
		b, err := io.ReadAll(io.LimitReader(r, max+1))
		if err != nil {
			return nil, fmt.Errorf("the TIFF part does not decode: %w", err)
		}
		return b, nil
	case strings.HasPrefix(mt, "multipart/"):
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if err == io.EOF {
				return nil, errors.New("the message has no image/tiff attachment")
			}
			if err != nil {
				return nil, fmt.Errorf("broken MIME structure: %w", err)
			}
			b, err := findTIFFPart(p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"), p, max, depth+1)
			if err == nil {
				return b, nil
			}
			if !strings.Contains(err.Error(), "no image/tiff") {
				return nil, err
			}
		}
	}
	return nil, errors.New("the message has no image/tiff attachment")
}

// crlfStripper drops line breaks and spaces from base64 text.
type crlfStripper struct{ r io.Reader }

func (c *crlfStripper) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	j := 0
	for _, b := range p[:n] {
		if b != '\r' && b != '\n' && b != ' ' && b != '\t' {
			p[j] = b
			j++
		}
	}
	return j, err
}
