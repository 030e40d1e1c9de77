package mailmsg

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/charset"
)

// transferEncoding returns the lower-case Content-Transfer-Encoding of h.
func transferEncoding(h message.Header) string {
	v := strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding")))
	// Tolerate a trailing comment or parameter, seen in the wild.
	if i := strings.IndexAny(v, " \t(;"); i >= 0 {
		v = v[:i]
	}
	return v
}

// errUnknownEncoding is wrapped by decodeTransfer for an encoding it does
// not know (x-uuencode, ...).
type unknownEncodingError struct{ cte string }

func (e unknownEncodingError) Error() string {
	return fmt.Sprintf("unknown Content-Transfer-Encoding %q", e.cte)
}

// decodeTransfer writes body decoded from cte to w. base64 and
// quoted-printable are decoded leniently (RFC 2045 sections 6.7 and 6.8 ask
// decoders to ignore characters outside the alphabet) and never fail on
// bad input; only an unknown encoding or a write error is an error.
func (p *parser) decodeTransfer(w io.Writer, cte string, body []byte) error {
	switch cte {
	case "", "7bit", "8bit", "binary":
		_, err := w.Write(body)
		return err
	case "base64":
		return p.decodeBase64(w, body)
	case "quoted-printable":
		return decodeQP(w, body)
	}
	return unknownEncodingError{cte: truncateForWarning(cte)}
}

func isBase64Char(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/'
}

// decodeBase64 streams src through a base64 decoder that skips characters
// outside the alphabet, stops at the first '=' and drops a dangling final
// character, using fixed-size buffers.
func (p *parser) decodeBase64(w io.Writer, src []byte) error {
	var in [4096]byte
	var out [3072]byte
	n := 0
	junk := false
	flush := func(final bool) error {
		k := n - n%4
		if final {
			k = n
			if k%4 == 1 {
				k--
				p.warn.add("base64 data ends with a dangling character")
			}
		}
		m, err := base64.RawStdEncoding.Decode(out[:], in[:k])
		if err != nil { // cannot happen: input is filtered
			return malformed("base64: %w", err)
		}
		if _, err := w.Write(out[:m]); err != nil {
			return err
		}
		n = copy(in[:], in[k:n])
		return nil
	}
	for _, c := range src {
		if c == '=' {
			break
		}
		if !isBase64Char(c) {
			if c != '\r' && c != '\n' && c != ' ' && c != '\t' {
				junk = true
			}
			continue
		}
		in[n] = c
		n++
		if n == len(in) {
			if err := flush(false); err != nil {
				return err
			}
		}
	}
	if junk {
		p.warn.add("base64 data contains characters outside the alphabet")
	}
	return flush(true)
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// decodeQP decodes quoted-printable leniently: "=" followed by two hex
// digits is an octet, "=" at the end of a line (trailing white space
// allowed) is a soft line break, any other "=" is kept literally, and
// trailing white space on a line is removed (RFC 2045 section 6.7).
func decodeQP(w io.Writer, src []byte) error {
	var out bytes.Buffer
	for len(src) > 0 {
		line := src
		var eol []byte
		if i := bytes.IndexByte(src, '\n'); i >= 0 {
			line, src = src[:i], src[i+1:]
			eol = []byte("\n")
			if len(line) > 0 && line[len(line)-1] == '\r' {
				line = line[:len(line)-1]
				eol = []byte("\r\n")
			}
		} else {
			src = nil
		}
		line = bytes.TrimRight(line, " \t")
		if len(line) > 0 && line[len(line)-1] == '=' {
			line = line[:len(line)-1]
			eol = nil
		}
		for len(line) > 0 {
			i := bytes.IndexByte(line, '=')
			if i < 0 {
				out.Write(line)
				break
			}
			out.Write(line[:i])
			if i+2 < len(line) {
				if hi, ok := unhex(line[i+1]); ok {
					if lo, ok := unhex(line[i+2]); ok {
						out.WriteByte(hi<<4 | lo)
						line = line[i+3:]
						continue
					}
				}
			}
			out.WriteByte('=')
			line = line[i+1:]
		}
		out.Write(eol)
		if out.Len() >= 32<<10 {
			if _, err := w.Write(out.Bytes()); err != nil {
				return err
			}
			out.Reset()
		}
	}
	_, err := w.Write(out.Bytes())
	return err
}

// isUTF8Charset reports whether cs needs no conversion.
func isUTF8Charset(cs string) bool {
	switch strings.ToLower(strings.TrimSpace(cs)) {
	case "", "utf-8", "utf8", "us-ascii", "ascii":
		return true
	}
	return false
}

// toUTF8 converts text in charset cs to valid UTF-8. An unknown charset or
// a conversion error leaves the bytes as they are, invalid sequences
// replaced by U+FFFD, and records a warning.
func (p *parser) toUTF8(b []byte, cs string) string {
	if isUTF8Charset(cs) {
		return toValidUTF8(b)
	}
	r, err := charset.Reader(cs, bytes.NewReader(b))
	if err != nil {
		p.warn.add("unknown charset %q", truncateForWarning(cs))
		return toValidUTF8(b)
	}
	// A decoder emits at most 3 bytes (U+FFFD) per input byte.
	out, err := io.ReadAll(io.LimitReader(r, int64(4*len(b)+64)))
	if err != nil {
		p.warn.add("charset %q: %v", truncateForWarning(cs), err)
	}
	return toValidUTF8(out)
}

func toValidUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// decodeText returns the text of a text/* leaf in UTF-8.
func (p *parser) decodeText(e *entity) (string, error) {
	var buf bytes.Buffer
	buf.Grow(len(e.body))
	if err := p.decodeTransfer(&buf, transferEncoding(e.header), e.body); err != nil {
		return "", err
	}
	return p.toUTF8(buf.Bytes(), e.params["charset"]), nil
}
