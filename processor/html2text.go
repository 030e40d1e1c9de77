package processor

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/html"
	"golang.org/x/net/html/charset"

	"github.com/uims/uims/schemas"
)

// OptionTextMax is the recipient option that caps converted text, in bytes.
const OptionTextMax = "text.max"

// HTMLToText returns the html2text conversion: text/html to plain UTF-8
// text, keeping paragraphs, line breaks, list items and link targets, and
// dropping scripts and styles. The text is cut at maxLen bytes (or the
// recipient's text.max option if smaller), on a character boundary, with
// an ellipsis.
func HTMLToText(maxLen int) Conversion {
	return Conversion{
		Conversion: schemas.Conversion{Name: "html2text", From: "text/html", To: "text/plain; charset=utf-8"},
		Converter: ConverterFunc(func(ctx context.Context, in Content, route Route) (Content, error) {
			limit := maxLen
			if v, err := strconv.Atoi(route.Options[OptionTextMax]); err == nil && v > 0 && v < limit {
				limit = v
			}
			text, err := htmlText(in)
			if err != nil {
				return Content{}, err
			}
			return Content{Type: "text/plain; charset=utf-8", Data: []byte(Truncate(text, limit))}, nil
		}),
	}
}

// blocks are the elements that end a line (1) or a paragraph (2).
var blocks = map[string]int{"br": 1, "li": 1, "tr": 1, "div": 1, "title": 1, "p": 2, "h1": 2, "h2": 2, "h3": 2,
	"h4": 2, "h5": 2, "h6": 2, "blockquote": 2, "pre": 2, "table": 2, "ul": 2, "ol": 2, "hr": 2,
	"section": 2, "article": 2, "header": 2, "footer": 2}

func htmlText(in Content) (string, error) {
	r, err := charset.NewReader(bytes.NewReader(in.Data), in.Type)
	if err != nil {
		return "", fmt.Errorf("processor: html2text: charset: %w", err)
	}
	z := html.NewTokenizer(r)
	var b strings.Builder
	skip := 0 // inside script or style
	href := ""
	space := false // a space is due before the next word
	newlines := 2  // newlines at the end of b (2: start of text)
	write := func(s string) {
		if s == "" {
			return
		}
		if space && newlines == 0 {
			b.WriteByte(' ')
		}
		b.WriteString(s)
		space, newlines = false, 0
	}
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			if z.Err() == io.EOF {
				return strings.TrimSpace(b.String()), nil
			}
			return "", fmt.Errorf("processor: html2text: %w", z.Err())
		case html.StartTagToken, html.SelfClosingTagToken, html.EndTagToken:
			name, hasAttr := z.TagName()
			tag := string(name)
			if tag == "script" || tag == "style" {
				if tt == html.StartTagToken {
					skip++
				} else if tt == html.EndTagToken && skip > 0 {
					skip--
				}
				continue
			}
			for newlines < blocks[tag] {
				b.WriteByte('\n')
				newlines++
				space = false
			}
			if tag == "li" && tt == html.StartTagToken {
				write("- ")
			}
			if tag == "a" {
				if tt == html.StartTagToken && hasAttr {
					for {
						k, v, more := z.TagAttr()
						if string(k) == "href" {
							href = string(v)
						}
						if !more {
							break
						}
					}
				} else if tt == html.EndTagToken && href != "" && !strings.HasPrefix(href, "#") {
					space = true
					write("(" + href + ")")
					href = ""
				}
			}
		case html.TextToken:
			if skip > 0 {
				continue
			}
			t := z.Text()
			if len(t) > 0 && unicode.IsSpace(rune(t[0])) {
				space = true
			}
			for i, f := range strings.FieldsFunc(string(t), unicode.IsSpace) {
				if i > 0 {
					space = true
				}
				write(f)
			}
			if len(t) > 0 && unicode.IsSpace(rune(t[len(t)-1])) {
				space = true
			}
		}
	}
}

// Truncate cuts s to at most n bytes on a character boundary, ending with
// "…" when it cut.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const ell = "…"
	cut := n - len(ell)
	if cut < 0 {
		cut = 0
	}
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ell
}
