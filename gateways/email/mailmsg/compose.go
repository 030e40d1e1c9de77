package mailmsg

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	nettextproto "net/textproto"
	"strings"
	"time"
	"unicode/utf8"

	gomail "github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// Field is an extra header field for Compose.
type Field struct {
	Key   string
	Value string // ASCII; encode non-ASCII text yourself (RFC 2047)
}

// Outgoing describes a message for Compose.
type Outgoing struct {
	From    mail.Address // required
	To      []mail.Address
	Cc      []mail.Address
	ReplyTo []mail.Address

	Subject    string   // UTF-8; encoded with RFC 2047 when needed
	MessageID  string   // without angle brackets; generated when empty
	InReplyTo  string   // without angle brackets
	References []string // without angle brackets
	Date       time.Time

	// ContentType and Content follow the package's content convention.
	// An empty ContentType means "text/plain; charset=utf-8".
	ContentType string
	Content     []byte

	// Headers are extra fields (Auto-Submitted, X-..., List-...). Fields
	// that Compose manages (From, To, Cc, Bcc, Reply-To, Subject, Date,
	// Message-ID, In-Reply-To, References, MIME-Version, Content-Type,
	// Content-Transfer-Encoding) are refused.
	Headers []Field
}

// dateLayout is the RFC 5322 date format.
const dateLayout = "Mon, 02 Jan 2006 15:04:05 -0700"

// maxLine is the RFC 5322 line limit without CRLF.
const maxLine = 998

// maxWord is the longest run without white space a header value may have:
// folding happens only at white space, so longer runs could not be kept
// under maxLine.
const maxWord = 900

// isManagedField reports the header fields Compose sets itself (canonical
// key).
func isManagedField(key string) bool {
	switch key {
	case "From", "To", "Cc", "Bcc", "Reply-To", "Subject", "Date", "Message-Id",
		"In-Reply-To", "References", "Mime-Version", "Content-Type",
		"Content-Transfer-Encoding":
		return true
	}
	return false
}

// Compose builds an RFC 5322 message with CRLF line endings from o.
//
// Every header value is validated first: CR, LF or NUL gives
// ErrHeaderInjection, any other control character, invalid UTF-8, a bad
// address or message identifier gives ErrInvalidHeader. Non-ASCII (or
// otherwise fragile) subjects and display names are encoded with RFC 2047.
//
// The body is encoded according to its content type: multipart and
// message/rfc822 bodies are emitted as they are (line endings normalised to
// CRLF, boundary kept) with 7bit or 8bit, after checking that the multipart
// structure parses; text is sent as 7bit when it can be, else
// quoted-printable; anything else is base64. Lines are at most 998 octets,
// so the result is safe for SMTP dot-stuffing. A multipart body whose parts
// use the "binary" transfer encoding cannot be sent and is refused with
// ErrInvalidContent.
func Compose(o Outgoing) ([]byte, error) {
	if o.From.Address == "" {
		return nil, fmt.Errorf("%w: From is required", ErrInvalidHeader)
	}
	from, err := formatAddresses("From", []mail.Address{o.From})
	if err != nil {
		return nil, err
	}
	to, err := formatAddresses("To", o.To)
	if err != nil {
		return nil, err
	}
	cc, err := formatAddresses("Cc", o.Cc)
	if err != nil {
		return nil, err
	}
	replyTo, err := formatAddresses("Reply-To", o.ReplyTo)
	if err != nil {
		return nil, err
	}
	if err := checkText("Subject", o.Subject); err != nil {
		return nil, err
	}
	msgID := o.MessageID
	if msgID == "" {
		if msgID, err = newMessageID(o.From.Address); err != nil {
			return nil, err
		}
	}
	if err := checkMsgID("Message-ID", msgID); err != nil {
		return nil, err
	}
	if o.InReplyTo != "" {
		if err := checkMsgID("In-Reply-To", o.InReplyTo); err != nil {
			return nil, err
		}
	}
	for _, id := range o.References {
		if err := checkMsgID("References", id); err != nil {
			return nil, err
		}
	}
	for _, f := range o.Headers {
		if err := checkExtraField(f); err != nil {
			return nil, err
		}
	}
	ct, cte, body, err := encodeContent(o.ContentType, o.Content)
	if err != nil {
		return nil, err
	}
	date := o.Date
	if date.IsZero() {
		date = time.Now()
	}

	fields := []Field{{"Date", date.Format(dateLayout)}, {"From", from}}
	if to != "" {
		fields = append(fields, Field{"To", to})
	}
	if cc != "" {
		fields = append(fields, Field{"Cc", cc})
	}
	if replyTo != "" {
		fields = append(fields, Field{"Reply-To", replyTo})
	}
	if o.Subject != "" {
		fields = append(fields, Field{"Subject", encodeText(o.Subject)})
	}
	fields = append(fields, Field{"Message-ID", "<" + msgID + ">"})
	if o.InReplyTo != "" {
		fields = append(fields, Field{"In-Reply-To", "<" + o.InReplyTo + ">"})
	}
	if len(o.References) > 0 {
		fields = append(fields, Field{"References", "<" + strings.Join(o.References, "> <") + ">"})
	}
	fields = append(fields, o.Headers...)
	fields = append(fields,
		Field{"MIME-Version", "1.0"},
		Field{"Content-Type", ct},
		Field{"Content-Transfer-Encoding", cte})

	var buf bytes.Buffer
	buf.Grow(len(body) + 1024)
	if err := writeFields(&buf, fields); err != nil {
		return nil, err
	}
	buf.Write(body)
	return buf.Bytes(), nil
}

// writeFields writes fields, in order, as a header block followed by the
// blank line. Each field is formatted and folded by go-message's textproto;
// the field name keeps the caller's spelling ("MIME-Version", not the
// canonical "Mime-Version").
func writeFields(buf *bytes.Buffer, fields []Field) error {
	var fb bytes.Buffer
	for _, f := range fields {
		var h textproto.Header
		h.Add(f.Key, f.Value)
		fb.Reset()
		if err := textproto.WriteHeader(&fb, h); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidHeader, err)
		}
		if longestWord(f.Value) > maxWord {
			return fmt.Errorf("%w: %s has a word longer than %d octets", ErrInvalidHeader, f.Key, maxWord)
		}
		b := fb.Bytes()[:fb.Len()-2] // drop the blank line
		if len(b) >= len(f.Key) && strings.EqualFold(string(b[:len(f.Key)]), f.Key) {
			copy(b, f.Key)
		}
		buf.Write(b)
	}
	buf.WriteString("\r\n")
	return nil
}

// checkText validates a header value.
func checkText(field, s string) error {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\r' || c == '\n' || c == 0:
			return fmt.Errorf("%w: %s", ErrHeaderInjection, field)
		case c < 0x20 && c != '\t' || c == 0x7f:
			return fmt.Errorf("%w: control character 0x%02x in %s", ErrInvalidHeader, c, field)
		}
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: invalid UTF-8 in %s", ErrInvalidHeader, field)
	}
	return nil
}

// formatAddresses validates and formats an address list (names encoded
// with RFC 2047 by net/mail when needed).
func formatAddresses(field string, list []mail.Address) (string, error) {
	out := make([]string, 0, len(list))
	for _, a := range list {
		if err := checkText(field, a.Name); err != nil {
			return "", err
		}
		if err := checkText(field, a.Address); err != nil {
			return "", err
		}
		if strings.ContainsRune(a.Address, '\t') {
			return "", fmt.Errorf("%w: control character in address in %s", ErrInvalidHeader, field)
		}
		if len(a.Address) > 254 {
			return "", fmt.Errorf("%w: address longer than 254 octets in %s", ErrInvalidHeader, field)
		}
		s := a.String()
		parsed, err := gomail.ParseAddress(s)
		if err != nil || parsed.Address != a.Address {
			return "", fmt.Errorf("%w: bad address %q in %s", ErrInvalidHeader, a.Address, field)
		}
		out = append(out, s)
	}
	return strings.Join(out, ", "), nil
}

// checkMsgID validates an RFC 5322 msg-id without its angle brackets.
func checkMsgID(field, id string) error {
	if err := checkText(field, id); err != nil {
		return err
	}
	left, right, ok := strings.Cut(id, "@")
	bad := !ok || !isDotAtomText(left)
	if !bad {
		if strings.HasPrefix(right, "[") {
			inner, ok := strings.CutSuffix(right[1:], "]")
			bad = !ok || strings.ContainsAny(inner, "[]\\ \t")
		} else {
			bad = !isDotAtomText(right)
		}
	}
	if bad || len(id) > maxIDBytes {
		return fmt.Errorf("%w: bad message identifier %q in %s", ErrInvalidHeader, id, field)
	}
	return nil
}

// isDotAtomText accepts what go-message's msg-id parser accepts: atext,
// '.' and non-ASCII (RFC 6532).
func isDotAtomText(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		switch {
		case r >= utf8.RuneSelf:
		case r == '.':
		case r <= ' ' || r > '~' || strings.ContainsRune(`()[];@\,<>":`, r):
			return false
		}
	}
	return true
}

// newMessageID returns a random identifier in the domain of addr.
func newMessageID(addr string) (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("mailmsg: message identifier: %w", err)
	}
	domain := "uims.invalid"
	if i := strings.LastIndexByte(addr, '@'); i >= 0 && isDotAtomText(addr[i+1:]) {
		domain = addr[i+1:]
	}
	return hex.EncodeToString(b[:]) + "@" + domain, nil
}

// checkExtraField validates a caller-supplied header field.
func checkExtraField(f Field) error {
	if f.Key == "" {
		return fmt.Errorf("%w: empty field name", ErrInvalidHeader)
	}
	for i := 0; i < len(f.Key); i++ {
		if c := f.Key[i]; c <= ' ' || c > '~' || c == ':' {
			if c == '\r' || c == '\n' || c == 0 {
				return fmt.Errorf("%w: field name %q", ErrHeaderInjection, f.Key)
			}
			return fmt.Errorf("%w: field name %q", ErrInvalidHeader, f.Key)
		}
	}
	if len(f.Key) > 76 {
		return fmt.Errorf("%w: over-long field name", ErrInvalidHeader)
	}
	if isManagedField(nettextproto.CanonicalMIMEHeaderKey(f.Key)) {
		return fmt.Errorf("%w: field %s is set by Compose", ErrInvalidHeader, f.Key)
	}
	if err := checkText(f.Key, f.Value); err != nil {
		return err
	}
	for i := 0; i < len(f.Value); i++ {
		if f.Value[i] >= 0x80 {
			return fmt.Errorf("%w: non-ASCII value in %s", ErrInvalidHeader, f.Key)
		}
	}
	return nil
}

func longestWord(s string) int {
	longest, run := 0, 0
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' || s[i] == '\t' {
			run = 0
			continue
		}
		run++
		if run > longest {
			longest = run
		}
	}
	return longest
}

// encodeText returns s as an unstructured header value: unchanged when it
// survives folding and decoding as it is, else as RFC 2047 Q encoded words.
func encodeText(s string) string {
	if !needsEncodedWords(s) {
		return s
	}
	const prefix, suffix, maxWord = "=?utf-8?q?", "?=", 75
	var b strings.Builder
	cur := 0
	start := func() {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(prefix)
		cur = len(prefix)
	}
	start()
	var tmp [utf8.UTFMax]byte
	for _, r := range s {
		n := utf8.EncodeRune(tmp[:], r)
		enc := 0
		for _, c := range tmp[:n] {
			if isQSafe(c) || c == ' ' {
				enc++
			} else {
				enc += 3
			}
		}
		if cur+enc+len(suffix) > maxWord {
			b.WriteString(suffix)
			start()
		}
		for _, c := range tmp[:n] {
			switch {
			case c == ' ':
				b.WriteByte('_')
			case isQSafe(c):
				b.WriteByte(c)
			default:
				fmt.Fprintf(&b, "=%02X", c)
			}
		}
		cur += enc
	}
	b.WriteString(suffix)
	return b.String()
}

// isQSafe reports the characters RFC 2047 section 5 (3) allows literally
// in a Q encoded word anywhere.
func isQSafe(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' ||
		c == '!' || c == '*' || c == '+' || c == '-' || c == '/'
}

// needsEncodedWords reports whether s would not come back unchanged from
// folding, unfolding and RFC 2047 decoding if written as it is.
func needsEncodedWords(s string) bool {
	if s == "" {
		return false
	}
	if s[0] == ' ' || s[len(s)-1] == ' ' || strings.Contains(s, "  ") || strings.Contains(s, "=?") {
		return true
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e {
			return true
		}
	}
	return longestWord(s) > maxWord
}

// isComposite reports media types whose body must not be transfer-encoded
// (RFC 2045 section 6.4, RFC 2046 section 5.2).
func isComposite(mt string) bool {
	switch mt {
	case "message/rfc822", "message/partial", "message/external-body", "message/global":
		return true
	}
	return strings.HasPrefix(mt, "multipart/")
}

// encodeContent returns the Content-Type and Content-Transfer-Encoding
// values and the encoded body.
func encodeContent(contentType string, content []byte) (ct, cte string, body []byte, err error) {
	if contentType == "" {
		contentType = "text/plain; charset=utf-8"
	}
	for i := 0; i < len(contentType); i++ {
		if c := contentType[i]; c == '\r' || c == '\n' || c == 0 {
			return "", "", nil, fmt.Errorf("%w: Content-Type", ErrHeaderInjection)
		}
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return "", "", nil, fmt.Errorf("%w: Content-Type %q: %w", ErrInvalidContent, contentType, err)
	}
	for k, v := range params {
		if !isCleanValue(v) {
			return "", "", nil, fmt.Errorf("%w: control character in Content-Type parameter %s", ErrInvalidHeader, k)
		}
	}
	switch {
	case isComposite(mt):
		body = normalizeCRLF(content)
		if bytes.IndexByte(body, 0) >= 0 {
			return "", "", nil, fmt.Errorf("%w: NUL byte in %s body", ErrInvalidContent, mt)
		}
		if longestLine(body) > maxLine {
			return "", "", nil, fmt.Errorf("%w: line longer than %d octets in %s body", ErrInvalidContent, maxLine, mt)
		}
		if strings.HasPrefix(mt, "multipart/") {
			if err := checkMultipart(mt, params, body); err != nil {
				return "", "", nil, err
			}
		}
		cte = "7bit"
		if !isASCII(body) {
			cte = "8bit"
		}
	case strings.HasPrefix(mt, "text/") || strings.HasPrefix(mt, "message/"):
		if params["charset"] == "" && strings.HasPrefix(mt, "text/") {
			params["charset"] = "utf-8"
		}
		if isUTF8Charset(params["charset"]) && !utf8.Valid(content) {
			return "", "", nil, fmt.Errorf("%w: %s content is not valid UTF-8", ErrInvalidContent, mt)
		}
		body = normalizeCRLF(content)
		if is7bit(body) {
			cte = "7bit"
		} else {
			cte = "quoted-printable"
			var buf bytes.Buffer
			qw := quotedprintable.NewWriter(&buf)
			if _, err := qw.Write(body); err != nil {
				return "", "", nil, err
			}
			if err := qw.Close(); err != nil {
				return "", "", nil, err
			}
			body = buf.Bytes()
		}
	default:
		cte = "base64"
		body = encodeBase64Lines(content)
	}
	ct = mime.FormatMediaType(mt, params)
	if ct == "" {
		return "", "", nil, fmt.Errorf("%w: Content-Type %q cannot be formatted", ErrInvalidContent, contentType)
	}
	return ct, cte, body, nil
}

// checkMultipart verifies that a multipart body parses with the boundary of
// its content type, under the default limits, exactly as Extract will.
func checkMultipart(mt string, params map[string]string, body []byte) error {
	p := newParser(Limits{})
	var hdr bytes.Buffer
	if err := writeFields(&hdr, []Field{{"Content-Type", mime.FormatMediaType(mt, params)}}); err != nil {
		return err
	}
	h := hdr.Bytes()
	root, err := p.parseEntity(h[:len(h)-2], body, 0, nil, "text/plain")
	if err != nil {
		return fmt.Errorf("%w: multipart body: %w", ErrInvalidContent, err)
	}
	if err := p.crossCheck(root); err != nil {
		return fmt.Errorf("%w: multipart body: %w", ErrInvalidContent, err)
	}
	return nil
}

// normalizeCRLF turns bare LF and bare CR into CRLF.
func normalizeCRLF(b []byte) []byte {
	if !needsCRLFFix(b) {
		return b
	}
	out := make([]byte, 0, len(b)+len(b)/32+2)
	for i := 0; i < len(b); i++ {
		switch c := b[i]; c {
		case '\r':
			out = append(out, '\r', '\n')
			if i+1 < len(b) && b[i+1] == '\n' {
				i++
			}
		case '\n':
			out = append(out, '\r', '\n')
		default:
			out = append(out, c)
		}
	}
	return out
}

func needsCRLFFix(b []byte) bool {
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '\r':
			if i+1 >= len(b) || b[i+1] != '\n' {
				return true
			}
			i++
		case '\n':
			return true
		}
	}
	return false
}

// longestLine returns the longest line of a CRLF text, CRLF excluded.
func longestLine(b []byte) int {
	longest := 0
	for len(b) > 0 {
		i := bytes.Index(b, []byte("\r\n"))
		if i < 0 {
			i = len(b)
		}
		if i > longest {
			longest = i
		}
		if i+2 > len(b) {
			break
		}
		b = b[i+2:]
	}
	return longest
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

// is7bit reports whether a CRLF text can be sent as 7bit (RFC 2045 section
// 2.7).
func is7bit(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 || c == 0 || c < 0x20 && c != '\t' && c != '\r' && c != '\n' || c == 0x7f {
			return false
		}
	}
	return longestLine(b) <= maxLine
}

// encodeBase64Lines encodes b in base64 with 76-character CRLF lines.
func encodeBase64Lines(b []byte) []byte {
	enc := make([]byte, base64.StdEncoding.EncodedLen(len(b)))
	base64.StdEncoding.Encode(enc, b)
	out := make([]byte, 0, len(enc)+len(enc)/76*2+2)
	for len(enc) > 76 {
		out = append(out, enc[:76]...)
		out = append(out, '\r', '\n')
		enc = enc[76:]
	}
	out = append(out, enc...)
	return append(out, '\r', '\n')
}
