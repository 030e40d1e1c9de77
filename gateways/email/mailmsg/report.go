package mailmsg

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"time"

	"github.com/emersion/go-message/textproto"
)

// Action is the per-recipient action of a DSN (RFC 3464 section 2.3.3).
type Action string

// Actions defined by RFC 3464.
const (
	ActionFailed    Action = "failed"
	ActionDelayed   Action = "delayed"
	ActionDelivered Action = "delivered"
	ActionRelayed   Action = "relayed"
	ActionExpanded  Action = "expanded"
)

// DSN describes a delivery status notification for ComposeDSN.
type DSN struct {
	// ReportingMTA is the DNS name of the reporting gateway (required).
	ReportingMTA string
	// From defaults to "Mail Delivery System <MAILER-DAEMON@ReportingMTA>".
	From mail.Address
	// To is the original envelope sender (required).
	To mail.Address
	// Subject defaults to a text that depends on the actions.
	Subject   string
	MessageID string    // generated when empty
	Date      time.Time // now when zero

	// OriginalMessageID, when known, is referenced in In-Reply-To and
	// References.
	OriginalMessageID string
	// OriginalEnvelopeID is the ENVID of the original transaction (RFC
	// 3461), written xtext-encoded as Original-Envelope-Id.
	OriginalEnvelopeID string
	ArrivalDate        time.Time

	// Recipients has one entry per reported recipient (at least one).
	Recipients []DSNRecipient

	// OriginalHeaders is the header block of the original message (the
	// body, if any, is cut off), returned as text/rfc822-headers.
	OriginalHeaders []byte
	// Text is the human-readable explanation; generated when empty.
	Text string
}

// DSNRecipient is one per-recipient block of a DSN.
type DSNRecipient struct {
	OriginalRecipient string // ORCPT address, optional
	FinalRecipient    string // required
	Action            Action // required
	// Status is the RFC 3463 status code ("5.1.1"); defaults to 5.0.0 for
	// failed, 4.0.0 for delayed and 2.0.0 otherwise. Its class must match
	// the action: 2 for delivered/relayed/expanded, 4 for delayed, 4 or 5
	// for failed.
	Status string
	// DiagnosticCode is the remote server's answer, as "smtp; 550 5.1.1
	// unknown user" (the "smtp; " type is added when missing).
	DiagnosticCode  string
	RemoteMTA       string // DNS name, optional
	LastAttemptDate time.Time
	WillRetryUntil  time.Time
}

// ComposeDSN builds an RFC 3464 delivery status notification: a
// multipart/report (RFC 6522) with report-type=delivery-status holding a
// human-readable text/plain part, a message/delivery-status part and, when
// OriginalHeaders is set, a text/rfc822-headers part. When an address or
// diagnostic is not ASCII the machine-readable part is
// message/global-delivery-status (RFC 6533).
//
// The message carries "Auto-Submitted: auto-replied" and must be sent with
// the null envelope sender (NullReversePath, MAIL FROM:<>). Values with CR,
// LF or NUL are refused with ErrHeaderInjection.
func ComposeDSN(d DSN) ([]byte, error) {
	if err := checkDNSName("Reporting-MTA", d.ReportingMTA); err != nil {
		return nil, err
	}
	if len(d.Recipients) == 0 {
		return nil, fmt.Errorf("%w: DSN without recipients", ErrInvalidHeader)
	}
	global := false
	if err := checkText("Original-Envelope-Id", d.OriginalEnvelopeID); err != nil {
		return nil, err
	}
	rcpts := make([]DSNRecipient, len(d.Recipients))
	for i, r := range d.Recipients {
		var err error
		if rcpts[i], err = checkRecipient(r); err != nil {
			return nil, err
		}
		for _, s := range []string{r.OriginalRecipient, r.FinalRecipient, r.DiagnosticCode} {
			if !isASCII([]byte(s)) {
				global = true
			}
		}
	}

	// Per-message fields, then one group per recipient (RFC 3464 2.2, 2.3).
	var status bytes.Buffer
	msgFields := []Field{}
	if d.OriginalEnvelopeID != "" {
		msgFields = append(msgFields, Field{"Original-Envelope-Id", xtext(d.OriginalEnvelopeID)})
	}
	msgFields = append(msgFields, Field{"Reporting-MTA", "dns; " + d.ReportingMTA})
	if !d.ArrivalDate.IsZero() {
		msgFields = append(msgFields, Field{"Arrival-Date", d.ArrivalDate.Format(dateLayout)})
	}
	if err := writeFields(&status, msgFields); err != nil {
		return nil, err
	}
	addrType := "rfc822; "
	if global {
		addrType = "utf-8; "
	}
	for _, r := range rcpts {
		var f []Field
		if r.OriginalRecipient != "" {
			f = append(f, Field{"Original-Recipient", addrType + r.OriginalRecipient})
		}
		f = append(f,
			Field{"Final-Recipient", addrType + r.FinalRecipient},
			Field{"Action", string(r.Action)},
			Field{"Status", r.Status})
		if r.RemoteMTA != "" {
			f = append(f, Field{"Remote-MTA", "dns; " + r.RemoteMTA})
		}
		if r.DiagnosticCode != "" {
			f = append(f, Field{"Diagnostic-Code", r.DiagnosticCode})
		}
		if !r.LastAttemptDate.IsZero() {
			f = append(f, Field{"Last-Attempt-Date", r.LastAttemptDate.Format(dateLayout)})
		}
		if !r.WillRetryUntil.IsZero() {
			f = append(f, Field{"Will-Retry-Until", r.WillRetryUntil.Format(dateLayout)})
		}
		if err := writeFields(&status, f); err != nil {
			return nil, err
		}
	}

	text := d.Text
	if text == "" {
		text = dsnText(d.ReportingMTA, rcpts)
	}
	statusType, statusCTE := "message/delivery-status", "7bit"
	if global {
		statusType, statusCTE = "message/global-delivery-status", "8bit"
	}
	parts := []reportPart{
		{contentType: "text/plain; charset=utf-8", text: []byte(text)},
		{contentType: statusType, raw: status.Bytes(), cte: statusCTE},
	}
	if len(d.OriginalHeaders) > 0 {
		parts = append(parts, headersPart(d.OriginalHeaders))
	}

	from := d.From
	if from.Address == "" {
		from = mail.Address{Name: "Mail Delivery System", Address: "MAILER-DAEMON@" + d.ReportingMTA}
	}
	subject := d.Subject
	if subject == "" {
		subject = dsnSubject(rcpts)
	}
	return composeReport(Outgoing{
		From: from, To: []mail.Address{d.To}, Subject: subject,
		MessageID: d.MessageID, Date: d.Date,
	}, d.OriginalMessageID, "delivery-status", parts)
}

// checkRecipient validates a DSN recipient and fills in defaults.
func checkRecipient(r DSNRecipient) (DSNRecipient, error) {
	for _, f := range []struct{ name, v string }{
		{"Original-Recipient", r.OriginalRecipient},
		{"Final-Recipient", r.FinalRecipient},
		{"Status", r.Status},
		{"Diagnostic-Code", r.DiagnosticCode},
		{"Remote-MTA", r.RemoteMTA},
	} {
		if err := checkText(f.name, f.v); err != nil {
			return r, err
		}
	}
	if r.FinalRecipient == "" || strings.ContainsAny(r.FinalRecipient+r.OriginalRecipient, " \t;") {
		return r, fmt.Errorf("%w: bad Final-Recipient %q", ErrInvalidHeader, r.FinalRecipient)
	}
	if r.RemoteMTA != "" {
		if err := checkDNSName("Remote-MTA", r.RemoteMTA); err != nil {
			return r, err
		}
	}
	var want string
	switch r.Action {
	case ActionFailed:
		want = "45"
	case ActionDelayed:
		want = "4"
	case ActionDelivered, ActionRelayed, ActionExpanded:
		want = "2"
	default:
		return r, fmt.Errorf("%w: unknown DSN action %q", ErrInvalidHeader, r.Action)
	}
	if r.Status == "" {
		r.Status = want[len(want)-1:] + ".0.0"
	}
	if !isStatusCode(r.Status) || !strings.ContainsRune(want, rune(r.Status[0])) {
		return r, fmt.Errorf("%w: status %q does not fit action %s", ErrInvalidHeader, r.Status, r.Action)
	}
	if r.DiagnosticCode != "" && !strings.Contains(r.DiagnosticCode, ";") {
		r.DiagnosticCode = "smtp; " + r.DiagnosticCode
	}
	return r, nil
}

// isStatusCode checks an RFC 3463 code: class "." subject "." detail.
func isStatusCode(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || !strings.Contains("245", parts[0]) {
		return false
	}
	for _, p := range parts[1:] {
		if p == "" || len(p) > 3 || strings.Trim(p, "0123456789") != "" {
			return false
		}
	}
	return true
}

// checkDNSName validates a host name used in a report field.
func checkDNSName(field, s string) error {
	if err := checkText(field, s); err != nil {
		return err
	}
	if s == "" || len(s) > 253 || strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") != "" {
		return fmt.Errorf("%w: bad host name %q in %s", ErrInvalidHeader, s, field)
	}
	return nil
}

// xtext encodes s as RFC 3461 xtext.
func xtext(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 33 || c > 126 || c == '+' || c == '=' {
			fmt.Fprintf(&b, "+%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

func dsnSubject(rcpts []DSNRecipient) string {
	worst := ""
	for _, r := range rcpts {
		switch {
		case r.Action == ActionFailed:
			worst = "failed"
		case r.Action == ActionDelayed && worst != "failed":
			worst = "delayed"
		}
	}
	switch worst {
	case "failed":
		return "Delivery Status Notification (Failure)"
	case "delayed":
		return "Delivery Status Notification (Delay)"
	}
	return "Delivery Status Notification (Success)"
}

func dsnText(mta string, rcpts []DSNRecipient) string {
	var b strings.Builder
	fmt.Fprintf(&b, "This is the mail system at %s.\r\n\r\n", mta)
	sections := []struct {
		match func(Action) bool
		intro string
	}{
		{func(a Action) bool { return a == ActionFailed },
			"Your message could not be delivered to the following recipients:"},
		{func(a Action) bool { return a == ActionDelayed },
			"Delivery of your message to the following recipients has been delayed.\r\nThe system will keep trying; you do not need to resend it yet:"},
		{func(a Action) bool { return a != ActionFailed && a != ActionDelayed },
			"Your message was successfully delivered to the following recipients:"},
	}
	for _, s := range sections {
		first := true
		for _, r := range rcpts {
			if !s.match(r.Action) {
				continue
			}
			if first {
				b.WriteString(s.intro + "\r\n\r\n")
				first = false
			}
			fmt.Fprintf(&b, "  <%s>: %s", r.FinalRecipient, r.Status)
			if r.DiagnosticCode != "" {
				fmt.Fprintf(&b, " (%s)", r.DiagnosticCode)
			}
			b.WriteString("\r\n")
		}
		if !first {
			b.WriteString("\r\n")
		}
	}
	b.WriteString("The technical details are attached below.\r\n")
	return b.String()
}

// reportPart is one part of a multipart/report: either text to encode or
// raw bytes with a given transfer encoding.
type reportPart struct {
	contentType string
	text        []byte
	raw         []byte
	cte         string
}

// headersPart returns the text/rfc822-headers part for the header block of
// an original message.
func headersPart(orig []byte) reportPart {
	hdr := normalizeCRLF(orig)
	if i := bytes.Index(hdr, []byte("\r\n\r\n")); i >= 0 {
		hdr = hdr[:i+2]
	} else if bytes.HasPrefix(hdr, []byte("\r\n")) {
		hdr = nil
	}
	if len(hdr) > 0 && !bytes.HasSuffix(hdr, []byte("\r\n")) {
		hdr = append(hdr[:len(hdr):len(hdr)], '\r', '\n')
	}
	if is7bit(hdr) {
		return reportPart{contentType: "text/rfc822-headers", raw: hdr, cte: "7bit"}
	}
	var buf bytes.Buffer
	qw := quotedprintable.NewWriter(&buf)
	qw.Write(hdr)
	qw.Close()
	return reportPart{contentType: "text/rfc822-headers", raw: buf.Bytes(), cte: "quoted-printable"}
}

// composeReport assembles a multipart/report and composes it.
func composeReport(o Outgoing, origID, reportType string, parts []reportPart) ([]byte, error) {
	if origID != "" {
		if err := checkMsgID("Original-Message-ID", origID); err != nil {
			return nil, err
		}
		o.InReplyTo = origID
		o.References = []string{origID}
	}
	var rb [12]byte
	if _, err := rand.Read(rb[:]); err != nil {
		return nil, fmt.Errorf("mailmsg: boundary: %w", err)
	}
	boundary := "=_uims_report_" + hex.EncodeToString(rb[:])
	var body bytes.Buffer
	mw := textproto.NewMultipartWriter(&body)
	if err := mw.SetBoundary(boundary); err != nil {
		return nil, err
	}
	for _, p := range parts {
		ct, cte, data := p.contentType, p.cte, p.raw
		if p.text != nil {
			var err error
			if ct, cte, data, err = encodeContent(p.contentType, p.text); err != nil {
				return nil, err
			}
		}
		var h textproto.Header
		h.Add("Content-Transfer-Encoding", cte)
		h.Add("Content-Type", ct)
		w, err := mw.CreatePart(h)
		if err != nil {
			return nil, err
		}
		if _, err := w.Write(data); err != nil {
			return nil, err
		}
	}
	if err := mw.Close(); err != nil {
		return nil, err
	}
	o.ContentType = mime.FormatMediaType("multipart/report", map[string]string{
		"report-type": reportType,
		"boundary":    boundary,
	})
	o.Content = body.Bytes()
	o.Headers = append(o.Headers, Field{"Auto-Submitted", "auto-replied"})
	return Compose(o)
}

// MDN describes a message disposition notification for ComposeMDN.
type MDN struct {
	// ReportingUA names the gateway: "host; product" (RFC 8098 3.2.1).
	ReportingUA string
	// From is the recipient whose user displayed the message (required).
	From mail.Address
	// To is the address from the original Disposition-Notification-To
	// field (required).
	To        mail.Address
	Subject   string    // defaults to "Read: " + OriginalSubject
	MessageID string    // generated when empty
	Date      time.Time // now when zero

	OriginalRecipient string // optional
	FinalRecipient    string // defaults to From.Address
	OriginalMessageID string // recommended; referenced in In-Reply-To too
	OriginalSubject   string
	// Text is the human-readable part; generated when empty.
	Text string
	// OriginalHeaders, when set, is returned as a text/rfc822-headers
	// part.
	OriginalHeaders []byte
}

// MDNDisposition is the disposition ComposeMDN reports (RFC 8098 3.2.6):
// the user displayed the message and the MDN is sent on the user's
// explicit request.
const MDNDisposition = "manual-action/MDN-sent-manually; displayed"

// ComposeMDN builds an RFC 8098 read notice: a multipart/report with
// report-type=disposition-notification holding a human-readable text/plain
// part, a message/disposition-notification part with Disposition:
// manual-action/MDN-sent-manually; displayed and, when OriginalHeaders is
// set, a text/rfc822-headers part.
//
// The message carries "Auto-Submitted: auto-replied" and must be sent with
// the null envelope sender (NullReversePath, MAIL FROM:<>). Values with CR,
// LF or NUL are refused with ErrHeaderInjection.
func ComposeMDN(m MDN) ([]byte, error) {
	for _, f := range []struct{ name, v string }{
		{"Reporting-UA", m.ReportingUA},
		{"Original-Recipient", m.OriginalRecipient},
		{"Final-Recipient", m.FinalRecipient},
		{"Subject", m.OriginalSubject},
	} {
		if err := checkText(f.name, f.v); err != nil {
			return nil, err
		}
	}
	if m.To.Address == "" || m.From.Address == "" {
		return nil, fmt.Errorf("%w: MDN needs From and To", ErrInvalidHeader)
	}
	final := m.FinalRecipient
	if final == "" {
		final = m.From.Address
	}
	if strings.ContainsAny(final+m.OriginalRecipient, " \t;") {
		return nil, fmt.Errorf("%w: bad recipient in MDN", ErrInvalidHeader)
	}
	addrType := "rfc822; "
	if !isASCII([]byte(final + m.OriginalRecipient + m.ReportingUA)) {
		return nil, fmt.Errorf("%w: MDN fields must be ASCII", ErrInvalidHeader)
	}
	var f []Field
	if m.ReportingUA != "" {
		f = append(f, Field{"Reporting-UA", m.ReportingUA})
	}
	if m.OriginalRecipient != "" {
		f = append(f, Field{"Original-Recipient", addrType + m.OriginalRecipient})
	}
	f = append(f, Field{"Final-Recipient", addrType + final})
	if m.OriginalMessageID != "" {
		if err := checkMsgID("Original-Message-ID", m.OriginalMessageID); err != nil {
			return nil, err
		}
		f = append(f, Field{"Original-Message-ID", "<" + m.OriginalMessageID + ">"})
	}
	f = append(f, Field{"Disposition", MDNDisposition})
	var notif bytes.Buffer
	if err := writeFields(&notif, f); err != nil {
		return nil, err
	}

	text := m.Text
	if text == "" {
		var b strings.Builder
		b.WriteString("This is a read notice for the message you sent")
		if m.OriginalSubject != "" {
			fmt.Fprintf(&b, " with the subject \"%s\"", m.OriginalSubject)
		}
		fmt.Fprintf(&b, " to %s.\r\n\r\nThe message has been displayed. This is no guarantee that it has been read or understood.\r\n", final)
		text = b.String()
	}
	parts := []reportPart{
		{contentType: "text/plain; charset=utf-8", text: []byte(text)},
		{contentType: "message/disposition-notification", raw: notif.Bytes(), cte: "7bit"},
	}
	if len(m.OriginalHeaders) > 0 {
		parts = append(parts, headersPart(m.OriginalHeaders))
	}
	subject := m.Subject
	if subject == "" {
		subject = "Read: " + m.OriginalSubject
		if m.OriginalSubject == "" {
			subject = "Read notice"
		}
	}
	return composeReport(Outgoing{
		From: m.From, To: []mail.Address{m.To}, Subject: subject,
		MessageID: m.MessageID, Date: m.Date,
	}, m.OriginalMessageID, "disposition-notification", parts)
}
