package mailmsg

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"mime"
	"net/mail"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-message"
	// Register every charset golang.org/x/text knows with go-message, so
	// that RFC 2047 encoded words in any charset decode.
	_ "github.com/emersion/go-message/charset"
	gomail "github.com/emersion/go-message/mail"
)

// Message is the result of Extract. Every string field is cleaned as
// described in the package documentation; RawHeader is the only raw data.
type Message struct {
	From    mail.Address // first address of From (zero when absent)
	ReplyTo []mail.Address
	To      []mail.Address
	Cc      []mail.Address

	Subject    string    // decoded from RFC 2047
	MessageID  string    // without angle brackets
	InReplyTo  string    // first identifier of In-Reply-To, no brackets
	References []string  // without angle brackets
	Date       time.Time // zero when absent or unparseable

	// AutoSubmitted is the lower-cased Auto-Submitted value (RFC 3834),
	// "" when absent. Anything but "" and "no" must not be answered
	// automatically.
	AutoSubmitted string
	// DispositionNotificationTo lists where the sender asks an MDN to be
	// sent (RFC 8098).
	DispositionNotificationTo []mail.Address

	// ContentType and Content follow the package's content convention.
	ContentType   string
	Content       []byte
	ContentSHA256 string // hex SHA-256 of Content

	// Text is the text body: the first inline text/plain part, or the
	// first inline text/html part when there is none. TextType says which
	// ("text/plain", "text/html" or "" when there is no text).
	Text     string
	TextType string
	// HTML is the first inline text/html part, "" when there is none.
	HTML string
	// Attachments lists every other leaf part in document order.
	Attachments []Attachment

	Size      int64    // size of the whole message as received
	RawHeader []byte   // the top-level header block, raw, without the blank line
	Warnings  []string // best-effort repairs made while parsing
}

// Attachment summarises one leaf MIME part that is not the text or HTML
// body.
type Attachment struct {
	Filename    string // sanitised with SanitizeFilename, may be empty
	ContentType string // lower-case media type without parameters
	Disposition string // "attachment", "inline" or "" when absent
	ContentID   string // without angle brackets
	Part        string // IMAP-style part number ("1", "2.1"); "1" for a single-part message
	Size        int64  // size after transfer decoding
	SHA256      string // hex SHA-256 after transfer decoding
}

// Extract reads one RFC 5322 message from r and returns its fields, its
// content in the UIMS convention and a summary.
//
// At most lim.MaxBytes+1 bytes are read; the limits are enforced while
// parsing, before anything proportional to the parts or headers is
// allocated, and reported with ErrTooLarge, ErrTooDeep, ErrTooManyParts or
// ErrTooManyHeaders. A message that cannot be parsed safely fails with an
// error wrapping ErrMalformed (unparseable header, From that is not an
// address list, multipart body without or with broken delimiters, unknown
// top-level transfer encoding, a multipart body that Go's mime/multipart
// would reject or split differently, so that Content always parses for
// consumers, or one with no part at all). Bad base64 or quoted-printable,
// unknown charsets, bad To/Cc/Date/Message-ID fields are repaired
// best-effort and reported in Message.Warnings.
func Extract(r io.Reader, lim Limits) (*Message, error) {
	lim = lim.withDefaults()
	raw, err := readLimited(r, lim.MaxBytes)
	if err != nil {
		return nil, err
	}
	p := newParser(lim)
	root, err := p.parseMessage(raw)
	if err != nil {
		return nil, err
	}
	m := &Message{Size: int64(len(raw)), RawHeader: root.rawHeader}
	if err := p.fillHeader(m, gomail.Header{Header: root.header}); err != nil {
		return nil, err
	}
	if err := p.fillContent(m, root); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(m.Content)
	m.ContentSHA256 = hex.EncodeToString(sum[:])
	m.Warnings = p.warn.list
	return m, nil
}

// fillHeader decodes the top-level header fields.
func (p *parser) fillHeader(m *Message, h gomail.Header) error {
	from, err := h.AddressList("From")
	if err != nil {
		return malformed("From: %w", err)
	}
	if len(from) > 0 {
		if m.From, err = cleanAddress(*from[0]); err != nil {
			return err
		}
	}
	for _, f := range []struct {
		key string
		dst *[]mail.Address
	}{
		{"Reply-To", &m.ReplyTo},
		{"To", &m.To},
		{"Cc", &m.Cc},
		{"Disposition-Notification-To", &m.DispositionNotificationTo},
	} {
		*f.dst, err = p.addressList(h, f.key)
		if err != nil {
			return err
		}
	}

	subject, err := h.Subject()
	if err != nil {
		p.warn.add("Subject: %v", err)
		subject = h.Get("Subject")
	}
	m.Subject = cleanValue(subject)

	if v := h.Get("Message-Id"); v != "" {
		id, err := h.MessageID()
		if err != nil || id == "" {
			p.warn.add("Message-ID not in RFC 5322 syntax")
			id = firstOrEmpty(lenientIDs(v))
		}
		m.MessageID = cleanID(id)
	}
	m.InReplyTo = firstOrEmpty(p.msgIDList(h, "In-Reply-To"))
	m.References = p.msgIDList(h, "References")

	if d, err := h.Date(); err != nil {
		p.warn.add("Date: %v", err)
	} else {
		m.Date = d
	}
	m.AutoSubmitted = strings.ToLower(strings.TrimSpace(cleanValue(h.Get("Auto-Submitted"))))
	if i := strings.IndexAny(m.AutoSubmitted, " \t;("); i >= 0 {
		m.AutoSubmitted = m.AutoSubmitted[:i]
	}
	return nil
}

// addressList parses an optional address list leniently: a syntax error
// gives an empty list and a warning.
func (p *parser) addressList(h gomail.Header, key string) ([]mail.Address, error) {
	list, err := h.AddressList(key)
	if err != nil {
		p.warn.add("%s: %v", key, err)
		return nil, nil
	}
	var out []mail.Address
	for _, a := range list {
		c, err := cleanAddress(*a)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// cleanAddress cleans the display name; an addr-spec with a control
// character is refused.
func cleanAddress(a mail.Address) (mail.Address, error) {
	for i := 0; i < len(a.Address); i++ {
		if c := a.Address[i]; c < 0x20 || c == 0x7f {
			return mail.Address{}, malformed("control character in address %q", a.Address)
		}
	}
	a.Name = cleanValue(a.Name)
	return a, nil
}

// msgIDList parses In-Reply-To or References, leniently.
func (p *parser) msgIDList(h gomail.Header, key string) []string {
	v := h.Get(key)
	if v == "" {
		return nil
	}
	ids, err := h.MsgIDList(key)
	if err != nil {
		p.warn.add("%s not in RFC 5322 syntax", key)
		ids = lenientIDs(v)
	}
	var out []string
	for _, id := range ids {
		if id = cleanID(id); id != "" {
			out = append(out, id)
		}
	}
	return out
}

// lenientIDs extracts "<...>" tokens from v, or returns v itself when it
// has none.
func lenientIDs(v string) []string {
	var ids []string
	rest := v
	for {
		i := strings.IndexByte(rest, '<')
		if i < 0 {
			break
		}
		j := strings.IndexByte(rest[i:], '>')
		if j < 0 {
			break
		}
		ids = append(ids, rest[i+1:i+j])
		rest = rest[i+j+1:]
	}
	if len(ids) == 0 {
		if s := strings.TrimSpace(v); s != "" {
			ids = []string{s}
		}
	}
	return ids
}

func firstOrEmpty(l []string) string {
	if len(l) == 0 {
		return ""
	}
	return l[0]
}

// formatContentType formats mt and params, dropping parameters whose value
// contains a control character.
func formatContentType(mt string, params map[string]string) string {
	clean := make(map[string]string, len(params))
	for k, v := range params {
		if isCleanValue(v) && !strings.ContainsRune(v, '\t') {
			clean[k] = v
		}
	}
	if s := mime.FormatMediaType(mt, clean); s != "" {
		return s
	}
	keep := map[string]string{}
	for _, k := range []string{"boundary", "charset", "report-type"} {
		if v, ok := clean[k]; ok {
			keep[k] = v
		}
	}
	if s := mime.FormatMediaType(mt, keep); s != "" {
		return s
	}
	return "application/octet-stream"
}

// fillContent sets the content and the summary.
func (p *parser) fillContent(m *Message, root *entity) error {
	switch {
	case root.isMultipart():
		m.ContentType = formatContentType(root.mediaType, root.params)
		m.Content = root.content
	case strings.HasPrefix(root.mediaType, "text/"):
		cte := transferEncoding(root.header)
		var buf bytes.Buffer
		if err := p.decodeTransfer(&buf, cte, root.body); err != nil {
			return malformed("%w", err)
		}
		params := make(map[string]string, len(root.params))
		for k, v := range root.params {
			params[k] = v
		}
		params["charset"] = "utf-8"
		m.ContentType = formatContentType(root.mediaType, params)
		m.Content = []byte(p.toUTF8(buf.Bytes(), root.params["charset"]))
	default:
		cte := transferEncoding(root.header)
		var buf bytes.Buffer
		if err := p.decodeTransfer(&buf, cte, root.body); err != nil {
			return malformed("%w", err)
		}
		m.ContentType = formatContentType(root.mediaType, root.params)
		m.Content = buf.Bytes()
	}

	return walkLeaves(root, func(e *entity) error {
		disp, dparams := p.disposition(e.header)
		isText := strings.HasPrefix(e.mediaType, "text/")
		inline := disp == "inline" || disp != "attachment" && isText
		body := inline && filename(e, dparams) == ""
		switch {
		case body && e.mediaType == "text/plain" && m.TextType != "text/plain":
			text, err := p.leafText(m, root, e)
			if err != nil {
				return err
			}
			m.Text, m.TextType = text, "text/plain"
			return nil
		case body && e.mediaType == "text/html" && m.HTML == "":
			text, err := p.leafText(m, root, e)
			if err != nil {
				return err
			}
			m.HTML = text
			if m.TextType == "" {
				m.Text, m.TextType = text, "text/html"
			}
			return nil
		}
		a := Attachment{
			Filename:    SanitizeFilename(filename(e, dparams)),
			ContentType: e.mediaType,
			Disposition: disp,
			ContentID:   cleanID(e.header.Get("Content-Id")),
			Part:        partNumber(e.path),
		}
		h := &hashCounter{h: sha256.New()}
		if e == root {
			h.Write(m.Content)
		} else if err := p.decodeTransfer(h, transferEncoding(e.header), e.body); err != nil {
			var unk unknownEncodingError
			if !errors.As(err, &unk) {
				return err
			}
			p.warn.add("part %s: %v, kept undecoded", a.Part, err)
			h = &hashCounter{h: sha256.New()}
			h.Write(e.body)
		}
		a.Size = h.n
		a.SHA256 = hex.EncodeToString(h.h.Sum(nil))
		m.Attachments = append(m.Attachments, a)
		return nil
	})
}

// leafText decodes a text leaf, reusing the content for a single-part
// message.
func (p *parser) leafText(m *Message, root, e *entity) (string, error) {
	if e == root {
		return string(m.Content), nil
	}
	text, err := p.decodeText(e)
	if err != nil {
		var unk unknownEncodingError
		if !errors.As(err, &unk) {
			return "", err
		}
		p.warn.add("part %s: %v, kept undecoded", partNumber(e.path), err)
		return toValidUTF8(e.body), nil
	}
	return text, nil
}

// disposition returns the lower-case Content-Disposition and its
// parameters; an unparseable field counts as absent.
func (p *parser) disposition(h message.Header) (string, map[string]string) {
	v := h.Get("Content-Disposition")
	if strings.TrimSpace(v) == "" {
		return "", nil
	}
	d, params, err := mime.ParseMediaType(v)
	if err != nil && !errors.Is(err, mime.ErrInvalidMediaParameter) {
		p.warn.add("invalid Content-Disposition %q", truncateForWarning(v))
		return "", nil
	}
	return d, params
}

// filename returns the raw (decoded, unsanitised) file name of a part: the
// Content-Disposition filename (RFC 2231 decoded by mime.ParseMediaType),
// else the Content-Type name, RFC 2047 encoded words decoded.
func filename(e *entity, dparams map[string]string) string {
	name := dparams["filename"]
	if name == "" {
		name = e.params["name"]
	}
	if strings.Contains(name, "=?") {
		dec := mime.WordDecoder{CharsetReader: message.CharsetReader}
		if d, err := dec.DecodeHeader(name); err == nil {
			name = d
		}
	}
	return name
}

// partNumber formats an IMAP-style (1-based) part number.
func partNumber(path []int) string {
	if len(path) == 0 {
		return "1"
	}
	var b strings.Builder
	for i, n := range path {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(strconv.Itoa(n + 1))
	}
	return b.String()
}

// hashCounter hashes and counts what is written to it.
type hashCounter struct {
	h hash.Hash
	n int64
}

func (c *hashCounter) Write(b []byte) (int, error) {
	c.n += int64(len(b))
	return c.h.Write(b)
}
