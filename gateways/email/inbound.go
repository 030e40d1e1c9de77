package email

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/rs/zerolog"

	"github.com/uims/uims/gateways/email/mailaddr"
	"github.com/uims/uims/gateways/email/mailmsg"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/gateways/kit/authlimit"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// Bounds on what one received message puts into its meta information
// (the IMI is at most schemas.MaxIMI bytes).
const (
	maxMetaValue    = 512
	maxAttachList   = 20
	maxAttachName   = 120
	maxSubjectBytes = 998
	// maxParallelSends bounds the recipients of one message handed to the
	// fabric at the same time.
	maxParallelSends = 8
	// maxReceived is the hop count above which a message is taken to loop
	// (RFC 5321 §6.3).
	maxReceived = 50
)

// backend creates one session per SMTP connection.
type backend struct{ g *Gateway }

func (b *backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	_, isTLS := c.TLSConnectionState()
	remote := c.Conn().RemoteAddr()
	s := &session{g: b.g, conn: c.Conn(), addrKey: authlimit.AddrKey(remote), tls: isTLS, local: b.g.loopback(remote), helo: c.Hostname()}
	s.log = b.g.log.With().Str("remote", remote.String()).Bool("tls", isTLS).Logger()
	return s, nil
}

// recipient is one accepted RCPT.
type recipient struct {
	addr   string // the mailbox as accepted (normalised)
	to     string // IMI To: the address, or the client id when found by id
	client string // the client it resolved to, "" for an outside address
	notify string // RFC 3461 NOTIFY values, comma-separated
	// drop marks our own mailboxes (bounces, postmaster): read for
	// bounces, never routed.
	drop bool
}

// session is one SMTP connection (RFC 5321 §3).
type session struct {
	g       *Gateway
	conn    net.Conn // for engage
	addrKey string   // the client address as authlimit counts it
	tls     bool
	local   bool
	helo    string
	log     zerolog.Logger

	client *schemas.ClientInfo // after AUTH

	from  string // envelope sender, "" for <>
	envID string // RFC 3461 ENVID
	rcpts []recipient
}

func (s *session) Reset() {
	s.from, s.envID, s.rcpts = "", "", nil
}

func (s *session) Logout() error { return nil }

// AuthMechanisms offers AUTH PLAIN only over TLS or on loopback (RFC 4954
// §4: no clear-text passwords over an unprotected network).
func (s *session) AuthMechanisms() []string {
	if s.tls || s.local {
		return []string{sasl.Plain}
	}
	return nil
}

// Auth checks the client's SMTP credentials through the brokers.
func (s *session) Auth(mech string) (sasl.Server, error) {
	if !strings.EqualFold(mech, sasl.Plain) {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	if !s.tls && !s.local {
		return nil, reply(538, smtp.EnhancedCode{5, 7, 11}, "Encryption required for requested authentication mechanism (RFC 4954 section 6)")
	}
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		if identity != "" && identity != user { // RFC 4616 §2: no proxy authorisation
			return smtp.ErrAuthFailed
		}
		// Failures lock out the user name and the address (Config.AuthPerUser,
		// AuthPerAddr): a locked-out AUTH is refused without asking the
		// brokers, whose every query costs a nonce in the store.
		userKey := strings.ToLower(user)
		v, end := authlimit.BeginAll(authlimit.Key{L: s.g.authAddr, Key: s.addrKey}, authlimit.Key{L: s.g.authUser, Key: userKey})
		if !v.OK {
			s.log.Warn().Str("user", oneLine(user, 64)).Bool("security", true).Dur("retry", v.Retry).
				Msg("SMTP AUTH refused: too many failures for this user or address")
			time.Sleep(300 * time.Millisecond)
			return reply(454, smtp.EnhancedCode{4, 7, 0}, "Too many failed authentications, try again in %d minutes", int(v.Retry.Minutes())+1)
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.g.cfg.SendTimeout)
		defer cancel()
		ci, err := s.g.kit.Client(ctx, schemas.ClientQuery{Kind: schemas.CredentialSMTP, User: user,
			Hash: schemas.CredentialHash(schemas.CredentialSMTP, user, pass)})
		if err != nil {
			if miap.CodeOf(err).Retryable() {
				end(false)
				s.log.Warn().Err(err).Msg("SMTP AUTH: credential check unavailable")
				return reply(454, smtp.EnhancedCode{4, 7, 0}, "Temporary authentication failure, try again later")
			}
			locked := end(true)
			var out []string
			for _, k := range locked {
				out = append(out, k.Key)
			}
			s.log.Warn().Str("user", oneLine(user, 64)).Bool("security", true).Strs("locked_out", out).Msg("SMTP AUTH failed")
			time.Sleep(300 * time.Millisecond) // slows down password guessing
			return smtp.ErrAuthFailed
		}
		end(false)
		s.g.authUser.Reset(userKey)
		engage(s.conn)
		s.client = ci
		s.log = s.log.With().Str("client", ci.ID).Logger()
		s.log.Info().Msg("SMTP AUTH succeeded")
		return nil
	}), nil
}

// Mail takes the envelope sender. An authenticated client sends as itself.
func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	s.Reset()
	if s.client != nil {
		own := s.client.Addresses[schemas.MediumEmail]
		if own == "" {
			return reply(550, smtp.EnhancedCode{5, 7, 1}, "Client %s has no e-mail address to send from", s.client.ID)
		}
		if !strings.EqualFold(from, own) {
			return reply(550, smtp.EnhancedCode{5, 7, 1}, "Sender <%s> is not your address; send as <%s>", from, own)
		}
	}
	if from != "" {
		a, err := mailaddr.Parse(from)
		if err != nil {
			return reply(553, smtp.EnhancedCode{5, 1, 7}, "Bad sender address syntax")
		}
		if s.client == nil && a.Domain != "" && mailaddr.IsLocalDomain(a.Domain, s.g.cfg.Domains) {
			return spoofed(a.String())
		}
		from = a.String()
	}
	s.from = from
	if opts != nil {
		s.envID = opts.EnvelopeID
	}
	engage(s.conn)
	return nil
}

// Rcpt accepts a recipient: a known client at a local domain (or our own
// mailboxes); anything else only after AUTH. Relay tricks are refused
// whoever asks.
func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.g.cfg.SendTimeout)
	defer cancel()
	r, err := s.recipient(ctx, to)
	if err != nil {
		s.log.Info().Str("rcpt", oneLine(to, 256)).Str("reply", err.Error()).Msg("recipient refused")
		return err
	}
	if opts != nil {
		var n []string
		for _, v := range opts.Notify {
			n = append(n, string(v))
		}
		r.notify = strings.Join(n, ",")
	}
	for _, x := range s.rcpts {
		if x.addr == r.addr {
			return nil // the same recipient twice gets the message once
		}
	}
	s.rcpts = append(s.rcpts, r)
	return nil
}

func (s *session) recipient(ctx context.Context, to string) (recipient, error) {
	auth := s.client != nil
	a, err := mailaddr.Classify(to, s.g.cfg.Domains)
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), "mailaddr: ")
		if errors.Is(err, mailaddr.ErrInvalidAddress) {
			return recipient{}, reply(553, smtp.EnhancedCode{5, 1, 3}, "Bad recipient address syntax: %s", msg)
		}
		return recipient{}, relayDenied(msg)
	}
	addr := a.String()
	if a.IsLocal && (a.IsPostmaster() || s.g.bounceID(a) != "" || strings.EqualFold(a.Local, s.g.cfg.BounceLocal)) {
		return recipient{addr: addr, drop: true}, nil
	}
	if !a.IsLocal {
		if !auth {
			return recipient{}, relayDenied(a.Domain + " is not a local domain")
		}
		return recipient{addr: addr, to: addr}, nil
	}
	ci, rcptTo, err := s.g.resolveLocal(ctx, a)
	switch {
	case err == nil:
		return recipient{addr: addr, to: rcptTo, client: ci.ID}, nil
	case kit.IsCode(err, schemas.CodeUnknownRecipient):
		if auth && isPhone(a.Local) { // <phone number>@<local domain>: an SMS for a client
			return recipient{addr: addr, to: a.Local}, nil
		}
		return recipient{}, reply(550, smtp.EnhancedCode{5, 1, 1}, "<%s>: no such user here", addr)
	case miap.CodeOf(err).Retryable():
		return recipient{}, tempLookup()
	}
	// Refused for good (the gateway's keys or grants, say): a 5xx by the
	// code's class, so the MTA does not retry what fails again.
	code := miap.CodeOf(err)
	s.log.Error().Err(err).Str("code", code.String()).Msg("recipient lookup refused")
	n, enh := smtpStatus(code)
	return recipient{}, reply(n, enh, "<%s>: recipient lookup refused (%s)", addr, code)
}

// resolveLocal finds the client a local address belongs to: by its e-mail
// address, else by <client id>@<local domain>. It returns the client and
// the IMI To that the brokers resolve to it.
func (g *Gateway) resolveLocal(ctx context.Context, a mailaddr.Address) (*schemas.ClientInfo, string, error) {
	ci, err := g.kit.Client(ctx, schemas.ClientQuery{Kind: "address", Medium: schemas.MediumEmail, User: a.String()})
	if err == nil {
		return ci, a.String(), nil
	}
	id := strings.ToLower(a.Local)
	if !kit.IsCode(err, schemas.CodeUnknownRecipient) || !miap.ValidName(id) {
		return nil, "", err
	}
	ci, err = g.kit.Client(ctx, schemas.ClientQuery{Kind: "id", User: id})
	if err != nil {
		return nil, "", err
	}
	return ci, ci.ID, nil
}

// isPhone reports whether s is a phone number in international form
// (E.164: at most 15 digits).
func isPhone(s string) bool {
	s = strings.TrimPrefix(s, "+")
	if len(s) < 3 || len(s) > 15 {
		return false
	}
	return strings.Trim(s, "0123456789") == ""
}

// Data receives the message and hands it to the fabric, one kit.Send per
// recipient; the reply is 250 only once every destination took it.
func (s *session) Data(r io.Reader) error {
	raw, err := io.ReadAll(r) // bounded by the server's MaxMessageBytes (552)
	if err != nil {
		var se *smtp.SMTPError
		if errors.Is(err, smtp.ErrTooLongLine) {
			return reply(500, smtp.EnhancedCode{5, 5, 6}, "Line too long (RFC 5321 section 4.5.3.1.6)")
		}
		if errors.As(err, &se) {
			s.log.Info().Int("code", se.Code).Msg("message refused: " + se.Message)
			return se
		}
		return reply(451, smtp.EnhancedCode{4, 3, 0}, "Error reading the message, try again later")
	}
	// go-smtp ends DATA only at <CRLF>.<CRLF>. A bare LF or CR inside the
	// data is what SMTP smuggling hides a second message behind (an MTA
	// that ends data at <LF>.<LF> would see two): refuse it.
	if i := bareNewline(raw); i >= 0 {
		s.log.Warn().Int("at", i).Bool("security", true).Msg("message with bare CR or LF refused (SMTP smuggling)")
		return reply(554, smtp.EnhancedCode{5, 6, 0}, "Message refused: bare CR or LF at octet %d; lines must end with CRLF (RFC 5321 section 2.3.8)", i)
	}
	if n := countReceived(raw); n > maxReceived {
		return reply(554, smtp.EnhancedCode{5, 4, 6}, "Mail loop detected: %d Received fields (RFC 5321 section 6.3)", n)
	}
	ctx := context.Background()

	var live []recipient
	drop := false
	for _, rc := range s.rcpts {
		if rc.drop {
			drop = true
		} else {
			live = append(live, rc)
		}
	}
	if drop || s.from == "" {
		// Reports about mail we sent: bounces (RFC 3464) and read notices
		// (RFC 8098) become the original message's acknowledgements.
		done, err := s.g.handleBounce(ctx, raw, s.rcpts)
		if err == nil && !done {
			done, err = s.g.handleReadNotice(ctx, raw, s.rcpts)
		}
		if err != nil {
			// Could not look whether it reports on a mail of ours: not
			// "unknown", so the MTA sends it again later.
			s.log.Warn().Err(err).Msg("report not matched: store unavailable")
			return reply(451, smtp.EnhancedCode{4, 3, 0}, "Message store unavailable, try again later")
		}
		if done {
			return nil
		}
	}
	if drop {
		s.log.Info().Str("from", s.from).Int("bytes", len(raw)).Msg("mail for a gateway mailbox accepted and discarded")
	}
	if len(live) == 0 {
		return nil
	}

	m, err := mailmsg.Extract(bytes.NewReader(raw), s.g.cfg.Limits)
	if err != nil {
		s.log.Info().Err(err).Msg("message refused")
		return extractReply(err)
	}
	if s.client == nil && s.g.isLocalAddress(m.From.Address) {
		return spoofed(m.From.Address)
	}
	if s.client != nil { // submission: the From must be the client's own (RFC 6409 §8.1)
		own := s.client.Addresses[schemas.MediumEmail]
		if !strings.EqualFold(m.From.Address, own) {
			return reply(550, smtp.EnhancedCode{5, 7, 1}, "From: <%s> is not your address; send as <%s>", m.From.Address, own)
		}
	}
	return s.send(ctx, raw, m, live)
}

// outcome is the result of one recipient's kit.Send.
type outcome struct {
	rc    recipient
	msgID string
	err   error
}

// send hands the message to the fabric for each recipient and decides the
// SMTP reply: 451 if any recipient failed temporarily (the MTA retries with
// the same message ids, so the others are not duplicated); the error when
// all failed permanently; else 250, and a bounce for the recipients that
// failed (RFC 5321 §6.1: once we said 250, we report failures ourselves).
func (s *session) send(ctx context.Context, raw []byte, m *mailmsg.Message, rcpts []recipient) error {
	sum := sha256.Sum256(raw)
	inReplyTo, err := s.g.inReplyTo(ctx, m.InReplyTo)
	if err != nil {
		s.log.Warn().Err(err).Msg("In-Reply-To not resolved: store unavailable")
		return reply(451, smtp.EnhancedCode{4, 3, 0}, "Message store unavailable, try again later")
	}
	outs := make([]outcome, len(rcpts))
	sem := make(chan struct{}, maxParallelSends)
	var wg sync.WaitGroup
	for i, rc := range rcpts {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			outs[i] = s.sendOne(ctx, m, rc, sum[:], inReplyTo)
		}()
	}
	wg.Wait()
	var temp, perm, ok []outcome
	for _, o := range outs {
		switch {
		case o.err == nil:
			ok = append(ok, o)
		case miap.CodeOf(o.err).Retryable():
			temp = append(temp, o)
		default:
			perm = append(perm, o)
		}
	}
	mark := func(list []outcome, state string) {
		for _, o := range list {
			if err := s.g.store.putIn(ctx, o.msgID, inRecord{State: state, At: time.Now().UnixMilli(), MessageID: m.MessageID}); err != nil {
				s.log.Warn().Err(err).Str("msg_id", o.msgID).Msg("cannot record the SMTP outcome")
			}
		}
	}
	mark(ok, stateAccepted)
	mark(temp, stateRejected)
	switch {
	case len(temp) > 0:
		mark(perm, stateRejected)
		return sendReply(temp[0].rc.addr, temp[0].err)
	case len(perm) > 0 && len(ok) == 0:
		mark(perm, stateRejected)
		return sendReply(perm[0].rc.addr, perm[0].err)
	case len(perm) > 0:
		mark(perm, stateBounced)
		s.g.bounceNow(ctx, s, m, perm)
	}
	return nil
}

// sendOne hands one recipient's copy to the fabric.
func (s *session) sendOne(ctx context.Context, m *mailmsg.Message, rc recipient, sum []byte, inReplyTo string) outcome {
	sub := s.submission(m, rc)
	sub.MsgID = msgIDFor(s.g.cfg.Gateway, s.from, rc.addr, sum)
	sub.InReplyTo = inReplyTo
	o := outcome{rc: rc, msgID: sub.MsgID}
	if err := s.g.store.putIn(ctx, sub.MsgID, inRecord{State: statePending, At: time.Now().UnixMilli(), MessageID: m.MessageID}); err != nil {
		o.err = schemas.Errorf(schemas.CodeBusy, err, "message state")
		return o
	}
	sctx, cancel := context.WithTimeout(ctx, s.g.cfg.SendTimeout)
	res, err := s.g.kit.Send(sctx, sub)
	cancel()
	o.err = err
	ev := s.log.Info().Str("msg_id", sub.MsgID).Str("rcpt", rc.addr).Str("from", s.from)
	if err != nil {
		ev.Str("code", miap.CodeOf(err).String()).Err(err).Msg("message not taken")
	} else {
		ev.Str("dest", res.Dest.Gateway).Str("status", res.Status).Msg("message taken by the destination")
	}
	return o
}

// submission builds the kit submission of a received message for one
// recipient.
func (s *session) submission(m *mailmsg.Message, rc recipient) *kit.Submission {
	fromAddr := m.From.Address
	if fromAddr == "" {
		fromAddr = s.from
	}
	if fromAddr == "" {
		fromAddr = "MAILER-DAEMON"
	}
	ep := schemas.Endpoint{Medium: schemas.MediumEmail, Address: oneLine(fromAddr, 320), Name: oneLine(m.From.Name, 256)}
	if s.client != nil {
		ep.Client = s.client.ID
		if ep.Name == "" {
			ep.Name = s.client.Name
		}
	}
	meta := map[string]string{}
	add := func(k, v string) {
		if v != "" && len(v) <= maxMetaValue && oneLine(v, maxMetaValue) == v {
			meta[k] = v
		}
	}
	add("email.message_id", m.MessageID)
	add("email.in_reply_to", m.InReplyTo)
	add("email.mail_from", s.from)
	add("email.rcpt", rc.addr)
	add("email.notify", rc.notify)
	add("email.envid", s.envID)
	if len(m.DispositionNotificationTo) > 0 {
		add("email.dnt", m.DispositionNotificationTo[0].Address)
	}
	if s.from == "" || (m.AutoSubmitted != "" && m.AutoSubmitted != "no") {
		meta["email.auto"] = "1" // never answered automatically (RFC 3834 §2, RFC 3464 §2)
	}
	if m.Size > 0 {
		meta["email.size"] = strconv.FormatInt(m.Size, 10)
	}
	sub := &kit.Submission{From: ep, To: rc.to, Subject: oneLine(m.Subject, maxSubjectBytes),
		Type: m.ContentType, Content: m.Content, Attachments: attachmentList(m), Meta: meta}
	fit(sub)
	return sub
}

// imiBudget bounds the JSON of the meta information built from a mail
// (schemas.MaxIMI, less room for the ids and times the kit adds).
const imiBudget = schemas.MaxIMI - 1024

// fit trims what the IMI says about a mail until it fits imiBudget: the
// content type's inessential parameters, the attachment list, optional
// meta entries, then the subject. The content itself is never changed.
func fit(sub *kit.Submission) {
	size := func() int {
		b, _ := json.Marshal(schemas.IMI{From: sub.From, To: sub.To, Subject: sub.Subject, Meta: sub.Meta,
			Content: schemas.Content{Type: sub.Type, Attachments: sub.Attachments}})
		return len(b)
	}
	if size() <= imiBudget {
		return
	}
	if mt, params, err := mime.ParseMediaType(sub.Type); err == nil && len(sub.Type) > 256 {
		keep := map[string]string{}
		// The parameters that say how to read the content.
		for _, k := range []string{"boundary", "charset", "report-type", "type", "protocol", "micalg", "format", "delsp"} {
			if v, ok := params[k]; ok && len(v) <= 200 {
				keep[k] = v
			}
		}
		if t := mime.FormatMediaType(mt, keep); t != "" {
			sub.Type = t
		}
	}
	for size() > imiBudget && len(sub.Attachments) > 0 {
		sub.Attachments = sub.Attachments[:len(sub.Attachments)-1]
	}
	for _, k := range []string{"email.in_reply_to", "email.dnt", "email.envid", "email.message_id", "email.notify"} {
		if size() <= imiBudget {
			return
		}
		delete(sub.Meta, k)
	}
	for size() > imiBudget && sub.Subject != "" {
		sub.Subject = oneLine(sub.Subject, len(sub.Subject)/2)
	}
}

// attachmentList lists a message's attachments for the IMI (bounded).
func attachmentList(m *mailmsg.Message) []schemas.Attachment {
	var out []schemas.Attachment
	for _, a := range m.Attachments {
		if len(out) == maxAttachList {
			break
		}
		name := a.Filename
		if name == "" {
			name = "part-" + a.Part
		}
		out = append(out, schemas.Attachment{Name: oneLine(name, maxAttachName), Type: a.ContentType, Length: a.Size})
	}
	return out
}

// msgIDFor derives the message id of one recipient's copy of a received
// message from the envelope and the exact bytes, so that an MTA's retry of
// the same message reuses the same ids and every hop de-duplicates it
// (docs/RELIABILITY.md, Hand-over).
func msgIDFor(gw, from, rcpt string, sum []byte) string {
	h := sha256.New()
	for _, s := range []string{gw, from, rcpt} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	h.Write(sum)
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// inReplyTo maps an In-Reply-To field to the UIMS message it answers, if
// it is one we know (a mail we sent, or one with our id in its
// Message-ID). An error means the store could not be read.
func (g *Gateway) inReplyTo(ctx context.Context, messageID string) (string, error) {
	if messageID == "" {
		return "", nil
	}
	id, _, err := g.store.lookupMessageID(ctx, messageID)
	if err != nil {
		return "", err
	}
	if schemas.ValidMsgID(id) {
		return id, nil
	}
	if id, host, ok := strings.Cut(messageID, "@"); ok && strings.EqualFold(host, g.cfg.Hostname) && schemas.ValidMsgID(id) {
		return id, nil
	}
	return "", nil
}

// bareNewline returns the offset of the first CR not followed by LF or LF
// not preceded by CR, or -1.
func bareNewline(b []byte) int {
	for i, c := range b {
		switch c {
		case '\r':
			if i+1 >= len(b) || b[i+1] != '\n' {
				return i
			}
		case '\n':
			if i == 0 || b[i-1] != '\r' {
				return i
			}
		}
	}
	return -1
}

// countReceived counts the Received fields of the top-level header.
func countReceived(raw []byte) int {
	n := 0
	for len(raw) > 0 {
		line := raw
		if i := bytes.Index(raw, []byte("\r\n")); i >= 0 {
			line, raw = raw[:i], raw[i+2:]
		} else {
			raw = nil
		}
		if len(line) == 0 {
			break // end of the header
		}
		if len(line) >= 9 && bytes.EqualFold(line[:9], []byte("received:")) {
			n++
		}
	}
	return n
}

// bounceNow sends a non-delivery report for recipients that failed after
// the others were accepted.
func (g *Gateway) bounceNow(ctx context.Context, s *session, m *mailmsg.Message, failed []outcome) {
	if s.from == "" || (m.AutoSubmitted != "" && m.AutoSubmitted != "no") {
		return // never a bounce for a bounce or an auto-reply
	}
	var rcpts []mailmsg.DSNRecipient
	var text strings.Builder
	fmt.Fprintf(&text, "This is the mail system at %s.\r\n\r\nYour message could not be delivered to the following recipients:\r\n\r\n", g.cfg.Hostname)
	for _, o := range failed {
		se := sendReply(o.rc.addr, o.err)
		rcpts = append(rcpts, mailmsg.DSNRecipient{FinalRecipient: o.rc.addr, Action: mailmsg.ActionFailed,
			Status: enhanced(se.EnhancedCode), DiagnosticCode: fmt.Sprintf("smtp; %d %s", se.Code, se.Message)})
		fmt.Fprintf(&text, "  <%s>: %s\r\n", o.rc.addr, se.Message)
	}
	id := noticeID(failed[0].msgID, "bounce")
	d := mailmsg.DSN{ReportingMTA: g.cfg.Hostname, To: mailAddress(s.from),
		MessageID: id + "@" + g.cfg.Hostname, OriginalMessageID: m.MessageID, OriginalEnvelopeID: s.envID,
		ArrivalDate: time.Now(), Recipients: rcpts, Text: text.String(), OriginalHeaders: m.RawHeader}
	raw, err := mailmsg.ComposeDSN(d)
	if err != nil { // a value mail cannot carry: without the optional ones
		d.OriginalMessageID, d.OriginalEnvelopeID, d.OriginalHeaders = "", "", nil
		raw, err = mailmsg.ComposeDSN(d)
	}
	if err != nil {
		g.log.Warn().Err(err).Msg("cannot compose a bounce")
		return
	}
	sender := ""
	if s.client != nil {
		sender = s.client.ID
	}
	if err := g.sendNotice(ctx, sender, s.from, raw, id); err != nil {
		g.log.Warn().Err(err).Msg("cannot send a bounce")
	}
}

// spoofed is the answer to an unauthenticated sender that claims one of
// our own addresses: our clients submit with AUTH.
func spoofed(addr string) *smtp.SMTPError {
	return reply(550, smtp.EnhancedCode{5, 7, 1}, "Sender <%s> is in a local domain: authenticate to send as it", addr)
}

// isLocalAddress reports whether addr is a mailbox in a local domain.
func (g *Gateway) isLocalAddress(addr string) bool {
	a, err := mailaddr.Parse(addr)
	return err == nil && a.Domain != "" && mailaddr.IsLocalDomain(a.Domain, g.cfg.Domains)
}
