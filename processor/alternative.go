package processor

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/textproto"
	"strings"

	"golang.org/x/net/html/charset"

	"github.com/uims/uims/schemas"
)

// Alternative returns the alternative conversion: a multipart/alternative
// message (RFC 2046 §5.1.4: the same content in several forms, e-mail's
// text and HTML bodies) to the one part the rest of the route can use
// best, in UTF-8. It announces text/html, the part a chain of text
// conversions can use in every case; the part it picks is the one of the
// route's Targets that comes first, so on the way to a text-only
// destination (alternative, then html2text) a text/plain part goes straight
// to the destination and an HTML part through html2text (PROTOCOL.md
// §6.7).
func Alternative() Conversion {
	return Conversion{
		Conversion: schemas.Conversion{Name: "alternative", From: "multipart/alternative", To: "text/html; charset=utf-8"},
		Converter: ConverterFunc(func(ctx context.Context, in Content, route Route) (Content, error) {
			targets := route.Targets
			if len(targets) == 0 {
				targets = []string{"text/html"}
			}
			return PickPart(in, targets)
		}),
	}
}

// Standard returns the conversions of a UIMS processor: alternative and
// html2text (texts cut at maxText bytes), which chain to bring e-mail to a
// text-only medium such as SMS.
func Standard(maxText int) []Conversion {
	return []Conversion{Alternative(), HTMLToText(maxText)}
}

// Limits of PickPart, against messages built to exhaust a processor.
const (
	// maxAltParts is the most parts PickPart reads, nested ones included.
	maxAltParts = 64
	// maxAltDepth is the deepest nesting of multiparts it follows.
	maxAltDepth = 4
)

// Errors of PickPart.
var (
	// ErrNoPart reports a multipart/alternative without a part of a type
	// the route can use.
	ErrNoPart = errors.New("processor: no part of a type the route takes")
	// ErrMultipart reports content that is no multipart/alternative body
	// that parses (RFC 2046 §5.1.1), or that exceeds the limits.
	ErrMultipart = errors.New("processor: malformed multipart/alternative")
)

// part is one alternative: its media type, parameters and decoded body.
type part struct {
	mt     string
	params map[string]string
	data   []byte
}

// PickPart returns the part of a multipart/alternative body whose media type
// comes first in targets (media types, best first), as UTF-8 text with
// "; charset=utf-8" and LF line ends when it is text. Of several parts of that type it takes
// the last, the most faithful by RFC 2046 §5.1.4. It looks into nested
// multipart/alternative parts and takes the root of a multipart/related one
// (RFC 2387 §3.1: "start", else the first part); it skips attachments and
// parts whose transfer encoding it does not know (RFC 2045 §6.4). A part
// without a Content-Type is text/plain (RFC 2045 §5.2).
func PickPart(in Content, targets []string) (Content, error) {
	mt, params, err := mime.ParseMediaType(in.Type)
	if err != nil || mt != "multipart/alternative" || params["boundary"] == "" {
		return Content{}, fmt.Errorf("%w: content type %q", ErrMultipart, in.Type)
	}
	w := walker{}
	if err := w.alternatives(in.Data, params["boundary"], 1); err != nil {
		return Content{}, err
	}
	for _, t := range targets {
		for i := len(w.parts) - 1; i >= 0; i-- {
			if p := w.parts[i]; p.mt == t {
				return p.content()
			}
		}
	}
	have := make([]string, len(w.parts))
	for i, p := range w.parts {
		have[i] = p.mt
	}
	return Content{}, fmt.Errorf("%w: wanted %s, have %s", ErrNoPart, strings.Join(targets, " or "), strings.Join(have, ", "))
}

// walker collects the alternatives of a body, in document order.
type walker struct {
	parts []part
	read  int // parts read, nested ones included
}

// alternatives reads the parts of a multipart/alternative body.
func (w *walker) alternatives(body []byte, boundary string, depth int) error {
	return w.each(body, boundary, func(h textproto.MIMEHeader, mt string, params map[string]string, data []byte) error {
		switch {
		case mt == "multipart/alternative":
			return w.nested(data, params, depth, w.alternatives)
		case mt == "multipart/related":
			return w.nested(data, params, depth, w.related(params["start"]))
		case strings.HasPrefix(mt, "multipart/"):
			return nil // mixed, signed…: not one form of the content
		}
		w.parts = append(w.parts, part{mt: mt, params: params, data: data})
		return nil
	})
}

// related returns a reader of a multipart/related body that keeps its root
// part (RFC 2387 §3.1), the one whose Content-ID is start, else the first.
func (w *walker) related(start string) func([]byte, string, int) error {
	return func(body []byte, boundary string, depth int) error {
		var root *part
		found := false // root is the part start names
		err := w.each(body, boundary, func(h textproto.MIMEHeader, mt string, params map[string]string, data []byte) error {
			if start != "" && !found && contentID(h.Get("Content-Id")) == contentID(start) {
				root, found = &part{mt: mt, params: params, data: data}, true
			} else if root == nil {
				root = &part{mt: mt, params: params, data: data}
			}
			return nil
		})
		if err != nil || root == nil {
			return err
		}
		if root.mt == "multipart/alternative" {
			return w.nested(root.data, root.params, depth, w.alternatives)
		}
		if !strings.HasPrefix(root.mt, "multipart/") {
			w.parts = append(w.parts, *root)
		}
		return nil
	}
}

// contentID returns a Content-ID without its angle brackets (RFC 2392).
func contentID(s string) string {
	return strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(s), "<"), ">")
}

// nested follows a multipart part, one level deeper.
func (w *walker) nested(data []byte, params map[string]string, depth int, read func([]byte, string, int) error) error {
	if depth >= maxAltDepth {
		return fmt.Errorf("%w: nested deeper than %d", ErrMultipart, maxAltDepth)
	}
	if params["boundary"] == "" {
		return nil // a multipart part without a boundary has no parts to offer
	}
	return read(data, params["boundary"], depth+1)
}

// each calls fn with every part of a multipart body that is no attachment
// and whose transfer encoding it knows, its body decoded.
func (w *walker) each(body []byte, boundary string, fn func(h textproto.MIMEHeader, mt string, params map[string]string, data []byte) error) error {
	r := multipart.NewReader(bytes.NewReader(body), boundary)
	for {
		p, err := r.NextRawPart()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %w", ErrMultipart, err)
		}
		if w.read++; w.read > maxAltParts {
			return fmt.Errorf("%w: more than %d parts", ErrMultipart, maxAltParts)
		}
		raw, err := io.ReadAll(p)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrMultipart, err)
		}
		if d, _, err := mime.ParseMediaType(p.Header.Get("Content-Disposition")); err == nil && d == "attachment" {
			continue
		}
		data, ok := decodeTransfer(p.Header.Get("Content-Transfer-Encoding"), raw)
		if !ok {
			continue
		}
		mt, params, err := mime.ParseMediaType(p.Header.Get("Content-Type"))
		if err != nil || !strings.Contains(mt, "/") {
			// RFC 2045 §5.2: absent or invalid, it is plain US-ASCII text.
			mt, params = "text/plain", map[string]string{"charset": "us-ascii"}
		}
		if err := fn(p.Header, mt, params, data); err != nil {
			return err
		}
	}
}

// decodeTransfer undoes a Content-Transfer-Encoding (RFC 2045 §6); ok is
// false for an encoding it does not know.
func decodeTransfer(cte string, raw []byte) ([]byte, bool) {
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "", "7bit", "8bit", "binary":
		return raw, true
	case "quoted-printable":
		// What decoded before an error, as mail readers show it.
		out, _ := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(raw)))
		return out, true
	case "base64":
		out, _ := io.ReadAll(base64.NewDecoder(base64.StdEncoding, newlineFilter{bytes.NewReader(raw)}))
		return out, true
	}
	return nil, false
}

// newlineFilter drops the line breaks and spaces of base64 text, which
// encoding/base64 takes only as CR and LF.
type newlineFilter struct{ r io.Reader }

func (f newlineFilter) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	j := 0
	for _, c := range p[:n] {
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			p[j] = c
			j++
		}
	}
	return j, err
}

// content returns the part as content: text in UTF-8, from its charset
// (RFC 2046 §4.1.2), or as the HTML standard's sniffing finds it when the
// part names none; other types as they are.
func (p part) content() (Content, error) {
	if !strings.HasPrefix(p.mt, "text/") {
		ctype := mime.FormatMediaType(p.mt, p.params)
		if ctype == "" {
			ctype = p.mt
		}
		return Content{Type: ctype, Data: p.data}, nil
	}
	label := p.params["charset"]
	var data []byte
	if label != "" {
		enc, _ := charset.Lookup(label)
		if enc == nil {
			return Content{}, fmt.Errorf("processor: %s part in unknown charset %q", p.mt, label)
		}
		out, err := enc.NewDecoder().Bytes(p.data)
		if err != nil {
			return Content{}, fmt.Errorf("processor: %s part: charset %s: %w", p.mt, label, err)
		}
		data = out
	} else {
		enc, _, _ := charset.DetermineEncoding(p.data, p.mt)
		out, err := enc.NewDecoder().Bytes(p.data)
		if err != nil {
			return Content{}, fmt.Errorf("processor: %s part: %w", p.mt, err)
		}
		data = out
	}
	// Without a byte order mark, lines ending in LF as html2text writes them
	// (MIME's canonical form is CRLF, RFC 2046 §4.1.1).
	data = bytes.ReplaceAll(bytes.TrimPrefix(data, []byte("\uFEFF")), []byte("\r\n"), []byte("\n"))
	return Content{Type: p.mt + "; charset=utf-8", Data: bytes.ToValidUTF8(data, []byte("\uFFFD"))}, nil
}
