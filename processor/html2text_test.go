package processor_test

import (
	"context"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/uims/uims/processor"
)

func convert(t testing.TB, max int, ctype, html string, opts map[string]string) string {
	out, err := processor.HTMLToText(max).Converter.Convert(context.Background(), processor.Content{Type: ctype, Data: []byte(html)}, processor.Route{Options: opts})
	if err != nil {
		t.Fatal(err)
	}
	if out.Type != "text/plain; charset=utf-8" || !utf8.Valid(out.Data) {
		t.Fatalf("output %q of type %q", out.Data, out.Type)
	}
	return string(out.Data)
}

func TestHTMLToText(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"paragraphs", "<p>Hello <b>Bob</b>,</p><p>see you</p>", "Hello Bob,\n\nsee you"},
		{"line break", "one<br>two", "one\ntwo"},
		{"list", "<ul><li>tea</li><li>milk</li></ul>", "- tea\n- milk"},
		{"link", `Go <a href="https://x.test/a">there</a> now`, "Go there (https://x.test/a) now"},
		{"script and style dropped", "<style>p{}</style><script>alert(1)</script>visible", "visible"},
		{"entities", "5 &lt; 6 &amp; caf&eacute;", "5 < 6 & café"},
		{"whitespace collapsed", "  a \n\t b  ", "a b"},
	}
	for _, tc := range cases {
		if got := convert(t, 1<<20, "text/html; charset=utf-8", tc.in, nil); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
	if got := convert(t, 1<<20, "text/html; charset=iso-8859-1", "caf\xe9", nil); got != "café" {
		t.Errorf("latin-1: %q", got)
	}
}

func TestHTMLToTextLimit(t *testing.T) {
	long := "<p>" + strings.Repeat("é", 100) + "</p>"
	got := convert(t, 51, "text/html", long, nil)
	if len(got) > 51 || !strings.HasSuffix(got, "…") {
		t.Fatalf("limit 51: %d bytes %q", len(got), got)
	}
	if got := convert(t, 1000, "text/html", long, map[string]string{processor.OptionTextMax: "20"}); len(got) > 20 {
		t.Fatalf("recipient limit 20: %d bytes", len(got))
	}
}

func FuzzHTMLToText(f *testing.F) {
	f.Add("<p>a<br>b</p><ul><li>x</ul>", 100)
	f.Add("<a href=x>y</a><script>", 5)
	f.Fuzz(func(t *testing.T, html string, max int) {
		if max < 4 || max > 1<<16 {
			return
		}
		out, err := processor.HTMLToText(max).Converter.Convert(context.Background(), processor.Content{Type: "text/html", Data: []byte(html)}, processor.Route{})
		if err != nil {
			return
		}
		if len(out.Data) > max {
			t.Fatalf("%d bytes over limit %d", len(out.Data), max)
		}
		if utf8.ValidString(html) && !utf8.Valid(out.Data) {
			t.Fatal("invalid UTF-8 out of valid UTF-8 in")
		}
	})
}
