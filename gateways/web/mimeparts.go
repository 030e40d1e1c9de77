package web

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/uims/uims/schemas"
)

// Multipart content (RFC 2046 §5.1) as the inbox shows it: the first
// inline text/plain and text/html parts are the message's text and HTML,
// every other leaf part is an attachment, in document order, descending
// into nested multiparts. Listing (entry) and downloading an attachment
// (GET /api/v1/messages/{id}/attachments/{n}) walk the content with the
// same scanMultipart, so that attachment n of the list is the part the
// download sends; both stream the parts, so an attachment's length is
// counted over all of its bytes (after its transfer encoding), not over a
// size-capped read of it.

// Bounds of one scan: nesting depth and parts per level.
const (
	maxDepth      = 5
	maxLevelParts = 100
	// maxAttachName bounds an attachment's name, in bytes.
	maxAttachName = 255
)

// errStop ends a scan once the wanted attachment was sent.
var errStop = errors.New("web: scan stopped")

// scan is one walk over multipart content. want is the index of the
// attachment whose decoded bytes go to send (-1: none); the text, the
// HTML and the attachment list are filled as the walk goes.
type scan struct {
	want  int
	send  func(a schemas.Attachment, body io.Reader) error
	text  string
	html  string
	texts bool // the text was found (an empty text part counts as none)
	atts  []schemas.Attachment
	err   error // send's error
}

// scanMultipart walks the multipart body r with boundary and returns its
// text, HTML and attachments. With send set, it stops at attachment want
// and hands send its name, type and decoded bytes; found reports whether
// it got there.
func scanMultipart(r io.Reader, boundary string, want int, send func(schemas.Attachment, io.Reader) error) (text, html string, atts []schemas.Attachment, found bool, err error) {
	s := &scan{want: want, send: send}
	if send == nil {
		s.want = -1
	}
	stopped := s.walk(r, boundary, 0) == errStop
	return s.text, s.html, s.atts, stopped && s.err == nil && send != nil, s.err
}

// walk reads one multipart level; errStop ends the whole walk.
func (s *scan) walk(r io.Reader, boundary string, depth int) error {
	if boundary == "" || depth > maxDepth {
		return nil
	}
	mr := multipart.NewReader(r, boundary)
	for i := 0; i < maxLevelParts; i++ {
		p, err := mr.NextPart()
		if err != nil {
			return nil // the end, or a broken body: what was read so far
		}
		mt, params, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		if mt == "" {
			mt = "text/plain"
		}
		name := partName(p, params)
		cte := strings.ToLower(strings.TrimSpace(p.Header.Get("Content-Transfer-Encoding")))
		switch {
		case strings.HasPrefix(mt, "multipart/"):
			if err := s.walk(p, params["boundary"], depth+1); err != nil {
				return err
			}
		case mt == "text/plain" && name == "" && !s.texts:
			s.text = readText(p, cte)
			s.texts = s.text != ""
		case mt == "text/html" && name == "" && s.html == "":
			s.html = readText(p, cte)
		default:
			if name == "" {
				name = fmt.Sprintf("part-%d", i+1)
			}
			a := schemas.Attachment{Name: name, Type: mt}
			body := decoded(p, cte)
			if len(s.atts) == s.want {
				s.atts = append(s.atts, a)
				s.err = s.send(a, body)
				return errStop
			}
			n, _ := io.Copy(io.Discard, body)
			a.Length = n
			s.atts = append(s.atts, a)
		}
	}
	return nil
}

// readText reads a text part, at most maxText bytes of it decoded (the
// rest is passed over).
func readText(p io.Reader, cte string) string {
	b, _ := io.ReadAll(io.LimitReader(decoded(p, cte), maxText+1))
	return string(b)
}

// decoded undoes a part's transfer encoding (mime/multipart has already
// undone quoted-printable, and removed its header).
func decoded(p io.Reader, cte string) io.Reader {
	if cte == "base64" {
		return base64.NewDecoder(base64.StdEncoding, &base64Text{r: bufio.NewReader(p)})
	}
	return p
}

// base64Text passes base64 text without the white space a mail may fold
// it with (the decoder itself skips only CR and LF).
type base64Text struct{ r *bufio.Reader }

func (b *base64Text) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c, err := b.r.ReadByte()
		if err != nil {
			if n > 0 {
				return n, nil
			}
			return 0, err
		}
		if c == ' ' || c == '\t' {
			continue
		}
		p[n] = c
		n++
		if b.r.Buffered() == 0 {
			break // do not wait for more than the reader has
		}
	}
	return n, nil
}

// partName returns a part's file name: the Content-Disposition filename
// (RFC 2231 decoded), else the Content-Type name, with RFC 2047 encoded
// words decoded, cleaned by cleanName; "" when it has none.
func partName(p *multipart.Part, ctParams map[string]string) string {
	name := ""
	if _, dp, err := mime.ParseMediaType(p.Header.Get("Content-Disposition")); err == nil {
		name = dp["filename"]
	}
	if name == "" {
		name = ctParams["name"]
	}
	if name == "" {
		return ""
	}
	if dec, err := new(mime.WordDecoder).DecodeHeader(name); err == nil {
		name = dec
	}
	return cleanName(name)
}

// cleanName makes a file name safe to show and to save: valid UTF-8, no
// control characters, no folders, at most maxAttachName bytes; "" when
// nothing is left.
func cleanName(name string) string {
	name = strings.ToValidUTF8(name, "\uFFFD")
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:] // the last element of a path, whichever system's
	}
	name = strings.TrimSpace(strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '_'
		}
		return r
	}, name))
	if name == "." || name == ".." {
		return ""
	}
	return cutUTF8(name, maxAttachName)
}

// cutUTF8 cuts s to at most n bytes, at a character boundary.
func cutUTF8(s string, n int) string {
	if len(s) > n+utf8.UTFMax {
		s = s[:n+utf8.UTFMax]
	}
	for len(s) > n {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s
}

// contentDisposition is the Content-Disposition of a download (RFC 6266):
// always attachment, so that a browser saves the file rather than showing
// it in the gateway's origin; the name as a quoted ASCII filename, and as
// filename* in UTF-8 (RFC 8187) when it is not plain ASCII.
func contentDisposition(name string) string {
	if name == "" {
		return "attachment"
	}
	ascii, plain := asciiName(name)
	if plain {
		return `attachment; filename="` + ascii + `"`
	}
	return `attachment; filename="` + ascii + `"; filename*=UTF-8''` + rfc8187(name)
}

// asciiName returns name with every character a quoted string cannot
// carry plainly replaced by '_', and whether nothing was replaced.
func asciiName(name string) (string, bool) {
	var b strings.Builder
	plain := true
	for _, r := range name {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' || r == '%' {
			b.WriteByte('_')
			plain = false
			continue
		}
		b.WriteRune(r)
	}
	return b.String(), plain
}

// rfc8187 percent-encodes s as an ext-value's value-chars (RFC 8187 §3.2.1:
// attr-char stays, every other byte is %XX).
func rfc8187(s string) string {
	const attrChar = "!#$&+-.^_`|~"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(attrChar, c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// safeType returns the media type of a download: the attachment's if it
// parses, else application/octet-stream.
func safeType(t string) string {
	mt, params, err := mime.ParseMediaType(t)
	if err != nil || !strings.Contains(mt, "/") {
		return "application/octet-stream"
	}
	keep := map[string]string{}
	if cs, ok := params["charset"]; ok {
		keep["charset"] = cs
	}
	if s := mime.FormatMediaType(mt, keep); s != "" {
		return s
	}
	return "application/octet-stream"
}
