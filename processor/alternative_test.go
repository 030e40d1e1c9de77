package processor_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/uims/uims/processor"
	"github.com/uims/uims/schemas"
)

// crlf writes a MIME body with CRLF line ends, as mail carries it.
func crlf(s string) []byte {
	return []byte(strings.ReplaceAll(strings.TrimPrefix(s, "\n"), "\n", "\r\n"))
}

// textAndHTML is what mail clients send: the text and the HTML body, the
// text quoted-printable in Latin-1, the HTML in base64.
var textAndHTML = crlf(`
--b1
Content-Type: text/plain; charset=iso-8859-1
Content-Transfer-Encoding: quoted-printable

Caf=E9 at 8?
--b1
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: base64

PHA+Q2Fmw6kgYXQgPGI+ODwvYj4/PC9wPg==
--b1--
`)

// htmlOnly has no text part: the HTML body, and an attachment that is no
// form of the content.
var htmlOnly = crlf(`
preamble, ignored
--b2
Content-Type: text/html

<p>Hi <b>Bob</b></p>
--b2
Content-Type: text/plain
Content-Disposition: attachment; filename=notes.txt

not the body
--b2--
`)

// related is Apple Mail's form: an alternative whose richer part is a
// multipart/related of the HTML and its images, the root named by start.
var related = crlf(`
--outer
Content-Type: text/plain; charset=us-ascii

plain version
--outer
Content-Type: multipart/related; boundary=inner; type="text/html"; start="<root@x>"

--inner
Content-Type: image/png
Content-ID: <img@x>
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--inner
Content-Type: text/html; charset=utf-8
Content-ID: <root@x>

<p>rich <img src="cid:img@x"></p>
--inner--
--outer--
`)

func pick(t *testing.T, boundary string, body []byte, targets ...string) processor.Content {
	t.Helper()
	out, err := processor.PickPart(processor.Content{Type: "multipart/alternative; boundary=" + boundary, Data: body}, targets)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestPickPart(t *testing.T) {
	for _, c := range []struct {
		name     string
		boundary string
		body     []byte
		targets  []string
		typ      string
		data     string
	}{
		{"text preferred", "b1", textAndHTML, []string{"text/plain", "text/html"}, "text/plain; charset=utf-8", "Café at 8?"},
		{"html preferred", "b1", textAndHTML, []string{"text/html", "text/plain"}, "text/html; charset=utf-8", "<p>Café at <b>8</b>?</p>"},
		{"html only", "b2", htmlOnly, []string{"text/plain", "text/html"}, "text/html; charset=utf-8", "<p>Hi <b>Bob</b></p>"},
		{"root of related", "outer", related, []string{"text/html"}, "text/html; charset=utf-8", `<p>rich <img src="cid:img@x"></p>`},
		{"plain beside related", "outer", related, []string{"text/plain", "text/html"}, "text/plain; charset=utf-8", "plain version"},
		{"image of related is no alternative", "outer", related, []string{"image/png", "text/plain"}, "text/plain; charset=utf-8", "plain version"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := pick(t, c.boundary, c.body, c.targets...)
			if out.Type != c.typ || string(out.Data) != c.data {
				t.Fatalf("got %q %q, want %q %q", out.Type, out.Data, c.typ, c.data)
			}
		})
	}
}

// Of two parts of one type, the last is the most faithful (RFC 2046
// §5.1.4); a part without Content-Type is plain US-ASCII text (RFC 2045
// §5.2); nested alternatives count; an unknown transfer encoding skips the
// part; a part without a charset is sniffed.
func TestPickPartRules(t *testing.T) {
	body := crlf(`
--x
Content-Type: text/plain

first
--x
Content-Type: text/plain

second
--x--
`)
	if out := pick(t, "x", body, "text/plain"); string(out.Data) != "second" {
		t.Errorf("of two: %q", out.Data)
	}
	body = crlf(`
--x

no header at all
--x--
`)
	if out := pick(t, "x", body, "text/plain"); string(out.Data) != "no header at all" || out.Type != "text/plain; charset=utf-8" {
		t.Errorf("default type: %q %q", out.Type, out.Data)
	}
	body = crlf(`
--x
Content-Type: multipart/alternative; boundary=y

--y
Content-Type: text/html

<i>nested</i>
--y--
--x
Content-Type: text/plain
Content-Transfer-Encoding: x-uuencode

begin 644 f
--x--
`)
	out := pick(t, "x", body, "text/plain", "text/html")
	if string(out.Data) != "<i>nested</i>" {
		t.Errorf("nested, and an unknown encoding skipped: %q %q", out.Type, out.Data)
	}
	body = crlf("\n--x\nContent-Type: text/plain\nContent-Transfer-Encoding: 8bit\n\ncaf\xc3\xa9 \xe2\x82\xac\n--x--\n")
	if out := pick(t, "x", body, "text/plain"); string(out.Data) != "café €" {
		t.Errorf("sniffed UTF-8: %q", out.Data)
	}
	body = crlf("\n--x\nContent-Type: text/plain\nContent-Transfer-Encoding: 8bit\n\ncaf\xe9\n--x--\n")
	if out := pick(t, "x", body, "text/plain"); string(out.Data) != "café" {
		t.Errorf("sniffed Windows-1252: %q", out.Data)
	}
}

func TestPickPartRefuses(t *testing.T) {
	for _, c := range []struct {
		name, ctype string
		body        []byte
		want        error
	}{
		{"not alternative", "multipart/mixed; boundary=b1", textAndHTML, processor.ErrMultipart},
		{"no boundary", "multipart/alternative", textAndHTML, processor.ErrMultipart},
		{"wrong boundary", "multipart/alternative; boundary=zz", textAndHTML, processor.ErrMultipart},
		{"truncated", "multipart/alternative; boundary=b1", textAndHTML[:60], processor.ErrMultipart},
		{"no usable part", "multipart/alternative; boundary=outer", crlf("\n--outer\nContent-Type: image/png\n\nx\n--outer--\n"), processor.ErrNoPart},
	} {
		_, err := processor.PickPart(processor.Content{Type: c.ctype, Data: c.body}, []string{"text/plain", "text/html"})
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	_, err := processor.PickPart(processor.Content{Type: "multipart/alternative; boundary=x",
		Data: crlf("\n--x\nContent-Type: text/plain; charset=x-no-such\n\nhi\n--x--\n")}, []string{"text/plain"})
	if err == nil || !strings.Contains(err.Error(), "unknown charset") {
		t.Errorf("unknown charset: %v", err)
	}
	// Nesting and part count are bounded.
	deep := "hi"
	for i := range 6 {
		b := "n" + string(rune('a'+i))
		deep = "--" + b + "\nContent-Type: " + map[bool]string{true: "text/plain", false: "multipart/alternative; boundary=n" + string(rune('a'+i-1))}[i == 0] +
			"\n\n" + deep + "\n--" + b + "--\n"
	}
	if _, err := processor.PickPart(processor.Content{Type: "multipart/alternative; boundary=nf", Data: crlf(deep)}, []string{"text/plain"}); !errors.Is(err, processor.ErrMultipart) {
		t.Errorf("deep: %v", err)
	}
	many := strings.Repeat("--m\nContent-Type: text/plain\n\nx\n", 65) + "--m--\n"
	if _, err := processor.PickPart(processor.Content{Type: "multipart/alternative; boundary=m", Data: crlf(many)}, []string{"text/plain"}); !errors.Is(err, processor.ErrMultipart) {
		t.Errorf("many parts: %v", err)
	}
}

// The alternative conversion picks for its route: the text part when the
// route's targets put text/plain first, the HTML otherwise.
func TestAlternativeConversion(t *testing.T) {
	c := processor.Alternative()
	if c.Name != "alternative" || c.From != "multipart/alternative" || schemas.MediaType(c.To) != "text/html" {
		t.Fatalf("announced %+v", c.Conversion)
	}
	in := processor.Content{Type: "multipart/alternative; boundary=b1", Data: textAndHTML}
	out, err := c.Converter.Convert(context.Background(), in, processor.Route{Targets: []string{"text/plain", "text/html"}})
	if err != nil || string(out.Data) != "Café at 8?" {
		t.Fatalf("for a text route: %q, %v", out.Data, err)
	}
	out, err = c.Converter.Convert(context.Background(), in, processor.Route{})
	if err != nil || out.Type != "text/html; charset=utf-8" {
		t.Fatalf("with no targets: %q, %v", out.Type, err)
	}
}

// FuzzPickPart: no body makes PickPart panic, loop or return something the
// route does not take; what it returns is valid UTF-8 text of a target type.
func FuzzPickPart(f *testing.F) {
	f.Add("b1", textAndHTML, true)
	f.Add("b2", htmlOnly, false)
	f.Add("outer", related, true)
	f.Add("x", crlf("\n--x\nContent-Type: multipart/alternative; boundary=x\n\n--x--\n--x--\n"), true)
	f.Add("x", crlf("\n--x\nContent-Transfer-Encoding: base64\n\n!!!!\n--x--\n"), true)
	f.Fuzz(func(t *testing.T, boundary string, body []byte, textFirst bool) {
		targets := []string{"text/html", "text/plain"}
		if textFirst {
			targets = []string{"text/plain", "text/html"}
		}
		ctype := "multipart/alternative; boundary=\"" + strings.ReplaceAll(boundary, `"`, "") + "\""
		out, err := processor.PickPart(processor.Content{Type: ctype, Data: body}, targets)
		if err != nil {
			if !errors.Is(err, processor.ErrMultipart) && !errors.Is(err, processor.ErrNoPart) && !strings.Contains(err.Error(), "charset") {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		mt := schemas.MediaType(out.Type)
		if mt != "text/plain" && mt != "text/html" {
			t.Fatalf("type %q", out.Type)
		}
		if !utf8.Valid(out.Data) {
			t.Fatalf("invalid UTF-8 %q", out.Data)
		}
		if len(out.Data) > 3*len(body)+3 {
			t.Fatalf("%d bytes out of %d", len(out.Data), len(body))
		}
	})
}
