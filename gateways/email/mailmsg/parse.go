package mailmsg

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"strings"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
)

// entity is one node of a parsed MIME tree. header, rawHeader and body alias
// the input buffer (or a buffer decoded from it); nothing is copied.
type entity struct {
	header    message.Header
	rawHeader []byte
	body      []byte // transfer encoding not decoded
	content   []byte // multipart only: body with any transfer encoding decoded
	mediaType string // lower case
	params    map[string]string
	path      []int // part indexes from the root, 0-based
	children  []*entity
}

func (e *entity) isMultipart() bool { return strings.HasPrefix(e.mediaType, "multipart/") }

// parser walks one message under Limits.
type parser struct {
	lim   Limits
	parts int
	warn  warnings
}

func newParser(lim Limits) *parser { return &parser{lim: lim.withDefaults()} }

// warnings collects a bounded list of best-effort notes.
type warnings struct{ list []string }

const maxWarnings = 32

func (w *warnings) add(format string, args ...any) {
	if len(w.list) < maxWarnings {
		w.list = append(w.list, cleanValue(fmt.Sprintf(format, args...)))
	}
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// parseMessage parses a whole message held in raw.
func (p *parser) parseMessage(raw []byte) (*entity, error) {
	hdr, body, err := p.splitHeader(raw, false)
	if err != nil {
		return nil, err
	}
	root, err := p.parseEntity(hdr, body, 0, nil, "text/plain")
	if err != nil {
		return nil, err
	}
	if err := p.crossCheck(root); err != nil {
		return nil, err
	}
	return root, nil
}

// splitHeader cuts b into its header block (the blank line excluded) and
// body, enforcing MaxHeaderBytes and MaxHeaders before anything is parsed.
// With needBlank, a header block not terminated by a blank line is an error
// (as Go's mime/multipart requires for parts); otherwise it is a header-only
// entity.
func (p *parser) splitHeader(b []byte, needBlank bool) (hdr, body []byte, err error) {
	fields := 0
	i := 0
	for i < len(b) {
		window := b[i:]
		if room := p.lim.MaxHeaderBytes + 1 - i; len(window) > room {
			window = window[:room]
		}
		j := bytes.IndexByte(window, '\n')
		next := len(b)
		line := b[i:]
		if j >= 0 {
			next = i + j + 1
			line = b[i : i+j]
		} else if len(window) < len(b)-i {
			return nil, nil, fmt.Errorf("%w: header block exceeds %d bytes", ErrTooLarge, p.lim.MaxHeaderBytes)
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(line) == 0 {
			return b[:i], b[next:], nil
		}
		if line[0] != ' ' && line[0] != '\t' {
			fields++
			if fields > p.lim.MaxHeaders {
				return nil, nil, fmt.Errorf("%w: more than %d fields in a header block", ErrTooManyHeaders, p.lim.MaxHeaders)
			}
		}
		if next > p.lim.MaxHeaderBytes {
			return nil, nil, fmt.Errorf("%w: header block exceeds %d bytes", ErrTooLarge, p.lim.MaxHeaderBytes)
		}
		i = next
	}
	if needBlank {
		return nil, nil, malformed("part header not terminated by a blank line")
	}
	return b, nil, nil
}

// readHeader parses a header block already bounded by splitHeader.
func readHeader(hdr []byte) (message.Header, error) {
	if len(hdr) == 0 {
		return message.Header{}, nil
	}
	h, err := textproto.ReadHeader(bufio.NewReaderSize(bytes.NewReader(hdr), 512))
	if err != nil {
		return message.Header{}, malformed("header: %w", err)
	}
	return message.Header{Header: h}, nil
}

// contentType returns the media type and parameters of h; a missing field
// gives def and a syntactically invalid one text/plain (RFC 2045 section
// 5.2).
func (p *parser) contentType(h message.Header, def string) (string, map[string]string) {
	v := h.Get("Content-Type")
	if strings.TrimSpace(v) == "" {
		if def == "text/plain" {
			return def, map[string]string{"charset": "us-ascii"}
		}
		return def, map[string]string{}
	}
	mt, params, err := mime.ParseMediaType(v)
	if err != nil {
		if errors.Is(err, mime.ErrInvalidMediaParameter) && mt != "" {
			p.warn.add("invalid Content-Type parameters in %q", truncateForWarning(v))
			return mt, map[string]string{}
		}
		p.warn.add("invalid Content-Type %q, assuming text/plain", truncateForWarning(v))
		return "text/plain", map[string]string{"charset": "us-ascii"}
	}
	if params == nil {
		params = map[string]string{}
	}
	return mt, params
}

func truncateForWarning(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// parseEntity builds the entity for a header block and body at depth,
// recursing into multipart bodies.
func (p *parser) parseEntity(hdr, body []byte, depth int, path []int, def string) (*entity, error) {
	h, err := readHeader(hdr)
	if err != nil {
		return nil, err
	}
	e := &entity{header: h, rawHeader: hdr, body: body, path: path}
	e.mediaType, e.params = p.contentType(h, def)
	if !e.isMultipart() {
		return e, nil
	}
	if depth+1 > p.lim.MaxDepth {
		return nil, fmt.Errorf("%w: more than %d nested multipart levels", ErrTooDeep, p.lim.MaxDepth)
	}
	boundary := e.params["boundary"]
	if err := checkBoundary(boundary); err != nil {
		return nil, err
	}
	content, err := p.multipartContent(e)
	if err != nil {
		return nil, err
	}
	e.content = content
	childDef := "text/plain"
	if e.mediaType == "multipart/digest" {
		childDef = "message/rfc822"
	}
	sc := newMultipartScanner(p, content, boundary)
	for i := 0; ; i++ {
		phdr, pbody, ok, err := sc.next()
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		p.parts++
		if p.parts > p.lim.MaxParts {
			return nil, fmt.Errorf("%w: more than %d parts", ErrTooManyParts, p.lim.MaxParts)
		}
		cpath := make([]int, len(path)+1)
		copy(cpath, path)
		cpath[len(path)] = i
		child, err := p.parseEntity(phdr, pbody, depth+1, cpath, childDef)
		if err != nil {
			return nil, err
		}
		e.children = append(e.children, child)
	}
	if len(e.children) == 0 {
		// RFC 2046 section 5.1.1 requires at least one body part.
		return nil, malformed("multipart entity without parts")
	}
	return e, nil
}

// multipartContent returns the body of a multipart entity, decoding a
// (non-conformant) base64 or quoted-printable transfer encoding.
func (p *parser) multipartContent(e *entity) ([]byte, error) {
	switch cte := transferEncoding(e.header); cte {
	case "base64", "quoted-printable":
		p.warn.add("multipart entity with Content-Transfer-Encoding %s", cte)
		var buf bytes.Buffer
		if err := p.decodeTransfer(&buf, cte, e.body); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	}
	return e.body, nil
}

// checkBoundary accepts 1 to 200 printable ASCII characters not ending in a
// space (RFC 2046 allows 70, longer ones are seen in the wild).
func checkBoundary(b string) error {
	if b == "" {
		return malformed("multipart entity without boundary")
	}
	if len(b) > 200 {
		return malformed("boundary longer than 200 characters")
	}
	for i := 0; i < len(b); i++ {
		if b[i] < 0x20 || b[i] > 0x7e {
			return malformed("invalid character in boundary")
		}
	}
	if b[len(b)-1] == ' ' {
		return malformed("boundary ends with a space")
	}
	return nil
}

// maxPreambleLine mirrors the buffer size of Go's mime/multipart reader,
// which fails on longer preamble lines.
const maxPreambleLine = 4096

// multipartScanner splits a multipart body into parts following exactly the
// rules of Go's mime/multipart reader (itself RFC 2046 section 5.1.1 with
// the usual leniencies), so that a body this package accepts is one
// consumers can parse.
type multipartScanner struct {
	p       *parser
	b       []byte
	dash    []byte // "--" boundary
	nlDash  []byte // nl "--" boundary
	nl      []byte
	pos     int
	started bool
	done    bool
}

func newMultipartScanner(p *parser, b []byte, boundary string) *multipartScanner {
	return &multipartScanner{
		p:      p,
		b:      b,
		dash:   []byte("--" + boundary),
		nlDash: []byte("\r\n--" + boundary),
		nl:     []byte("\r\n"),
	}
}

// line returns the line starting at i, newline included, and whether it
// ended at the end of the buffer without a newline.
func (s *multipartScanner) line(i int) (line []byte, eof bool) {
	j := bytes.IndexByte(s.b[i:], '\n')
	if j < 0 {
		return s.b[i:], true
	}
	return s.b[i : i+j+1], false
}

func skipLWSP(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}

func (s *multipartScanner) isDelimiter(line []byte) bool {
	if !bytes.HasPrefix(line, s.dash) {
		return false
	}
	rest := skipLWSP(line[len(s.dash):])
	if !s.started && len(rest) == 1 && rest[0] == '\n' {
		s.nl = s.nl[1:]
		s.nlDash = s.nlDash[1:]
	}
	return bytes.Equal(rest, s.nl)
}

func (s *multipartScanner) isFinal(line []byte) bool {
	if !bytes.HasPrefix(line, s.dash) || !bytes.HasPrefix(line[len(s.dash):], []byte("--")) {
		return false
	}
	rest := skipLWSP(line[len(s.dash)+2:])
	return len(rest) == 0 || bytes.Equal(rest, s.nl)
}

// next returns the header block and body of the next part; ok is false
// after the closing delimiter.
func (s *multipartScanner) next() (hdr, body []byte, ok bool, err error) {
	if s.done {
		return nil, nil, false, nil
	}
	// Find the delimiter line opening the next part.
	if !s.started {
		for {
			if s.pos >= len(s.b) {
				return nil, nil, false, malformed("multipart body without boundary delimiter")
			}
			line, eof := s.line(s.pos)
			if len(line) > maxPreambleLine {
				return nil, nil, false, malformed("multipart preamble line too long")
			}
			if eof && s.isFinal(line) {
				s.done = true
				return nil, nil, false, nil
			}
			if eof {
				return nil, nil, false, malformed("multipart body without boundary delimiter")
			}
			s.pos += len(line)
			if s.isDelimiter(line) {
				s.started = true
				break
			}
			if s.isFinal(line) {
				s.done = true
				return nil, nil, false, nil
			}
		}
	} else {
		// s.pos is at the nl preceding the delimiter, or at the
		// delimiter itself when the previous body was empty.
		if bytes.HasPrefix(s.b[s.pos:], s.nl) && !bytes.HasPrefix(s.b[s.pos:], s.dash) {
			s.pos += len(s.nl)
		}
		line, eof := s.line(s.pos)
		switch {
		case s.isFinal(line):
			s.done = true
			return nil, nil, false, nil
		case !eof && s.isDelimiter(line):
			s.pos += len(line)
		case eof:
			return nil, nil, false, malformed("multipart body truncated (no closing delimiter)")
		default:
			return nil, nil, false, malformed("unexpected line after multipart part")
		}
	}

	hdr, rest, err := s.p.splitHeader(s.b[s.pos:], true)
	if err != nil {
		return nil, nil, false, err
	}
	bodyStart := len(s.b) - len(rest)

	// Find the end of the body, as mime/multipart's scanUntilBoundary.
	from := bodyStart
	if bytes.HasPrefix(s.b[bodyStart:], s.dash) {
		if matchAfterPrefix(s.b[bodyStart:], s.dash) > 0 {
			s.pos = bodyStart
			return hdr, s.b[bodyStart:bodyStart], true, nil
		}
		from = bodyStart + len(s.dash)
	}
	for {
		k := bytes.Index(s.b[from:], s.nlDash)
		if k < 0 {
			// Truncated: report the body, fail on the next call so
			// that a deeper, more specific error wins.
			s.pos = len(s.b)
			return hdr, s.b[bodyStart:], true, nil
		}
		i := from + k
		if matchAfterPrefix(s.b[i:], s.nlDash) > 0 {
			s.pos = i
			return hdr, s.b[bodyStart:i], true, nil
		}
		from = i + len(s.nlDash)
	}
}

// matchAfterPrefix mirrors mime/multipart: +1 when the boundary prefix at
// the start of buf is a real delimiter candidate, -1 otherwise. The whole
// body is in memory, so the end of buf is the end of the input.
func matchAfterPrefix(buf, prefix []byte) int {
	if len(buf) == len(prefix) {
		return +1
	}
	c := buf[len(prefix)]
	if c == ' ' || c == '\t' || c == '\r' || c == '\n' {
		return +1
	}
	if c == '-' && len(buf) > len(prefix)+1 && buf[len(prefix)+1] == '-' {
		return +1
	}
	return -1
}

// crossCheck parses every multipart body again with Go's mime/multipart and
// refuses the message if it disagrees on the number of parts or their body
// sizes. This guarantees the content convention of the package: the
// multipart bytes handed to consumers parse the same way for them. It runs
// only after parseEntity has enforced every limit.
func (p *parser) crossCheck(e *entity) error {
	if !e.isMultipart() {
		return nil
	}
	mr := multipart.NewReader(bytes.NewReader(e.content), e.params["boundary"])
	for i := 0; ; i++ {
		part, err := mr.NextRawPart()
		if err == io.EOF { // not errors.Is: mime/multipart wraps io.EOF in real errors
			if i != len(e.children) {
				return malformed("ambiguous multipart structure: %d parts, strict parser found %d", len(e.children), i)
			}
			break
		}
		if err != nil {
			return malformed("multipart body: %w", err)
		}
		if i >= len(e.children) {
			return malformed("ambiguous multipart structure: strict parser found more than %d parts", len(e.children))
		}
		n, err := io.Copy(io.Discard, part)
		if err != nil {
			return malformed("multipart part %d: %w", i, err)
		}
		if n != int64(len(e.children[i].body)) {
			return malformed("ambiguous multipart structure in part %d", i)
		}
	}
	for _, c := range e.children {
		if err := p.crossCheck(c); err != nil {
			return err
		}
	}
	return nil
}

// walkLeaves calls fn for every non-multipart entity in document order.
func walkLeaves(e *entity, fn func(*entity) error) error {
	if !e.isMultipart() {
		return fn(e)
	}
	for _, c := range e.children {
		if err := walkLeaves(c, fn); err != nil {
			return err
		}
	}
	return nil
}
