package mailmsg

import (
	"bytes"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-message"
	gomail "github.com/emersion/go-message/mail"
)

// DSNReport is an incoming delivery status notification as read by
// ParseDSN. Every string is cleaned (see the package documentation).
type DSNReport struct {
	// MessageID is the identifier of the report itself.
	MessageID string
	// OriginalMessageID is the Message-ID of the message the report is
	// about, from the returned headers (text/rfc822-headers or
	// message/rfc822 part) or, when they are missing, the
	// Original-Envelope-Id. It is empty when neither is present.
	OriginalMessageID string
	// OriginalEnvelopeID is the decoded Original-Envelope-Id (RFC 3461
	// ENVID), if any.
	OriginalEnvelopeID string
	ReportingMTA       string // without the "dns;" type
	ArrivalDate        time.Time
	// OriginalSubject is the Subject of the returned headers, if any.
	OriginalSubject string
	// Text is the human-readable part, if any.
	Text       string
	Recipients []DSNRecipientStatus
}

// DSNRecipientStatus is one per-recipient block of an incoming DSN.
type DSNRecipientStatus struct {
	OriginalRecipient string // address, without the "rfc822;" type
	FinalRecipient    string // address, without the "rfc822;" type
	Action            Action // lower case as received ("failed", ...)
	// Status is the RFC 3463 code ("5.1.1"); empty when the field is
	// missing or not a valid code.
	Status         string
	DiagnosticCode string // as received, including its type ("smtp; 550 ...")
	RemoteMTA      string // without the "dns;" type
	LastAttempt    time.Time
}

// maxDSNRecipients bounds the per-recipient groups ParseDSN reads.
const maxDSNRecipients = 1000

// ParseDSN reads a message and, if it is a delivery status notification (a
// multipart/report with report-type=delivery-status, at the top level or
// nested, RFC 3464 and RFC 6522; RFC 6533 global variants included),
// returns its per-message and per-recipient fields. Any other message
// gives ErrNotDSN. The default Limits apply; a message exceeding them
// fails as with Extract.
func ParseDSN(r io.Reader) (*DSNReport, error) {
	lim := DefaultLimits()
	raw, err := readLimited(r, lim.MaxBytes)
	if err != nil {
		return nil, err
	}
	p := newParser(lim)
	root, err := p.parseMessage(raw)
	if err != nil {
		return nil, err
	}
	report := findReport(root)
	if report == nil {
		return nil, ErrNotDSN
	}
	h := gomail.Header{Header: root.header}
	d := &DSNReport{}
	if v := h.Get("Message-Id"); v != "" {
		id, err := h.MessageID()
		if err != nil || id == "" {
			id = firstOrEmpty(lenientIDs(v))
		}
		d.MessageID = cleanID(id)
	}

	var status *entity
	for _, c := range report.children {
		switch c.mediaType {
		case "message/delivery-status", "message/global-delivery-status":
			if status == nil {
				status = c
			}
		case "text/rfc822-headers", "message/rfc822", "message/global-headers", "message/global":
			if d.OriginalMessageID == "" {
				if err := p.readReturned(d, c); err != nil {
					return nil, err
				}
			}
		case "text/plain":
			if d.Text == "" {
				if text, err := p.decodeText(c); err == nil {
					d.Text = text
				}
			}
		}
	}
	if status == nil {
		return nil, malformed("delivery-status report without a message/delivery-status part")
	}
	if err := p.readStatus(d, status); err != nil {
		return nil, err
	}
	if d.OriginalMessageID == "" && d.OriginalEnvelopeID != "" {
		d.OriginalMessageID = cleanID(d.OriginalEnvelopeID)
	}
	return d, nil
}

// findReport returns the first multipart/report entity with
// report-type=delivery-status in document order.
func findReport(e *entity) *entity {
	if !e.isMultipart() {
		return nil
	}
	if e.mediaType == "multipart/report" && strings.EqualFold(e.params["report-type"], "delivery-status") {
		return e
	}
	for _, c := range e.children {
		if r := findReport(c); r != nil {
			return r
		}
	}
	return nil
}

// decodedBody returns the transfer-decoded body of a leaf.
func (p *parser) decodedBody(e *entity) ([]byte, error) {
	var buf bytes.Buffer
	if err := p.decodeTransfer(&buf, transferEncoding(e.header), e.body); err != nil {
		return nil, malformed("%w", err)
	}
	return buf.Bytes(), nil
}

// readReturned reads the Message-ID and Subject of the returned headers or
// message.
func (p *parser) readReturned(d *DSNReport, e *entity) error {
	b, err := p.decodedBody(e)
	if err != nil {
		return err
	}
	hdr, _, err := p.splitHeader(b, false)
	if err != nil {
		return err
	}
	mh, err := readHeader(hdr)
	if err != nil {
		// Truncated or mangled returned headers are common in bounces;
		// they only cost us the correlation.
		p.warn.add("returned headers: %v", err)
		return nil
	}
	h := gomail.Header{Header: mh}
	if v := h.Get("Message-Id"); v != "" {
		id, err := h.MessageID()
		if err != nil || id == "" {
			id = firstOrEmpty(lenientIDs(v))
		}
		d.OriginalMessageID = cleanID(id)
	}
	if s, err := h.Subject(); err == nil {
		d.OriginalSubject = cleanValue(s)
	} else {
		d.OriginalSubject = cleanValue(h.Get("Subject"))
	}
	return nil
}

// readStatus parses the per-message group and the per-recipient groups of
// a message/delivery-status body.
func (p *parser) readStatus(d *DSNReport, e *entity) error {
	b, err := p.decodedBody(e)
	if err != nil {
		return err
	}
	var groups []message.Header
	for len(b) > 0 {
		// Skip blank lines between groups.
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line = b[:i+1]
		}
		if len(bytes.TrimRight(line, "\r\n \t")) == 0 {
			b = b[len(line):]
			continue
		}
		if len(groups) > maxDSNRecipients {
			return malformed("more than %d recipient groups in delivery status", maxDSNRecipients)
		}
		hdr, rest, err := p.splitHeader(b, false)
		if err != nil {
			return err
		}
		h, err := readHeader(hdr)
		if err != nil {
			return err
		}
		groups = append(groups, h)
		b = rest
	}
	if len(groups) == 0 {
		return malformed("empty delivery status")
	}
	msg := groups[0]
	d.OriginalEnvelopeID = cleanValue(unxtext(strings.TrimSpace(msg.Get("Original-Envelope-Id"))))
	d.ReportingMTA = typedValue(msg.Get("Reporting-Mta"))
	if t, err := parseDate(msg.Get("Arrival-Date")); err == nil {
		d.ArrivalDate = t
	}
	for _, g := range groups[1:] {
		r := DSNRecipientStatus{
			OriginalRecipient: typedValue(g.Get("Original-Recipient")),
			FinalRecipient:    typedValue(g.Get("Final-Recipient")),
			Action:            Action(strings.ToLower(strings.TrimSpace(cleanValue(g.Get("Action"))))),
			DiagnosticCode:    strings.TrimSpace(cleanValue(g.Get("Diagnostic-Code"))),
			RemoteMTA:         typedValue(g.Get("Remote-Mta")),
		}
		if i := strings.IndexAny(string(r.Action), " \t("); i >= 0 {
			r.Action = r.Action[:i]
		}
		st := strings.TrimSpace(g.Get("Status"))
		if i := strings.IndexAny(st, " \t("); i >= 0 {
			st = st[:i]
		}
		if isStatusCode(st) {
			r.Status = st
		}
		if t, err := parseDate(g.Get("Last-Attempt-Date")); err == nil {
			r.LastAttempt = t
		}
		d.Recipients = append(d.Recipients, r)
	}
	if len(d.Recipients) == 0 {
		return malformed("delivery status without recipients")
	}
	return nil
}

// typedValue returns the part after "type;" of a typed DSN field, cleaned
// and trimmed.
func typedValue(v string) string {
	if i := strings.IndexByte(v, ';'); i >= 0 {
		v = v[i+1:]
	}
	return strings.TrimSpace(cleanValue(v))
}

// unxtext decodes RFC 3461 xtext ("+XX" hexchar sequences).
func unxtext(s string) string {
	if !strings.Contains(s, "+") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '+' && i+2 < len(s) {
			if hi, ok := unhex(s[i+1]); ok {
				if lo, ok := unhex(s[i+2]); ok {
					b.WriteByte(hi<<4 | lo)
					i += 2
					continue
				}
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// parseDate parses an RFC 5322 date via go-message's header helper.
func parseDate(v string) (time.Time, error) {
	var h gomail.Header
	h.Set("Date", v)
	return h.Date()
}
