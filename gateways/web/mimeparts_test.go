package web

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/uims/uims/schemas"
)

const fuzzBoundary = "b1"

// mimeSeeds are multipart bodies with boundary fuzzBoundary.
var mimeSeeds = []string{
	"--b1\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b1\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"a.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC\r\nAw==\r\n--b1--\r\n",
	"--b1\r\nContent-Type: multipart/alternative; boundary=b2\r\n\r\n--b2\r\nContent-Type: text/plain\r\n\r\nt\r\n--b2\r\nContent-Type: text/html\r\n\r\n<p>h</p>\r\n--b2--\r\n--b1\r\nContent-Type: image/png; name=\"=?UTF-8?B?w6k=?=.png\"\r\nContent-Transfer-Encoding: base64\r\n\r\niVBO Rw0K\r\n--b1--\r\n",
	"--b1\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nl=C3=A9\r\n--b1\r\nContent-Disposition: attachment; filename*=UTF-8''%E2%82%AC.txt\r\n\r\n../../etc/passwd\r\n--b1--\r\n",
	"--b1\r\nContent-Type: text/plain\r\n\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nsecond\r\n--b1\r\nContent-Type: text/plain\r\n\r\nthird\r\n--b1--",
}

// FuzzScanMultipart: whatever the body, the listing and the downloads
// agree (attachment n downloads as many bytes as the list says, with the
// same name and type), and names are clean.
func FuzzScanMultipart(f *testing.F) {
	for _, s := range mimeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		text, html, atts, _, err := scanMultipart(bytes.NewReader(body), fuzzBoundary, -1, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(text) > maxText+1 || len(html) > maxText+1 {
			t.Fatalf("text %d, html %d bytes", len(text), len(html))
		}
		for i, a := range atts {
			if a.Name == "" || !utf8.ValidString(a.Name) || len(a.Name) > maxAttachName || strings.ContainsAny(a.Name, "/\\") ||
				strings.IndexFunc(a.Name, unicode.IsControl) >= 0 {
				t.Fatalf("attachment %d: name %q", i, a.Name)
			}
			var got schemas.Attachment
			var n int64
			_, _, _, found, err := scanMultipart(bytes.NewReader(body), fuzzBoundary, i, func(b schemas.Attachment, r io.Reader) error {
				got = b
				n, _ = io.Copy(io.Discard, r)
				return nil
			})
			if err != nil || !found {
				t.Fatalf("attachment %d: found %v, %v", i, found, err)
			}
			if got.Name != a.Name || got.Type != a.Type || n != a.Length {
				t.Fatalf("attachment %d: listed %+v, downloads %+v of %d bytes", i, a, got, n)
			}
		}
	})
}

// The listing counts an attachment's bytes after its transfer encoding,
// over all of it: a 3 MiB base64 part is 3 MiB (it was 1048577, a capped
// read of the encoded text).
func TestScanMultipartLength(t *testing.T) {
	data := bytes.Repeat([]byte{0xAB}, 3<<20)
	var body bytes.Buffer
	body.WriteString("--b1\r\nContent-Type: text/plain\r\n\r\nsee the scan\r\n--b1\r\nContent-Type: application/pdf; name=\"scan.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	if _, _, err := base64Lines(&body, bytes.NewReader(data), 4<<20); err != nil {
		t.Fatal(err)
	}
	body.WriteString("--b1--\r\n")
	text, _, atts, _, _ := scanMultipart(bytes.NewReader(body.Bytes()), "b1", -1, nil)
	if text != "see the scan" || len(atts) != 1 || atts[0] != (schemas.Attachment{Name: "scan.pdf", Type: "application/pdf", Length: 3 << 20}) {
		t.Fatalf("text %q, attachments %+v", text, atts)
	}
}

func TestContentDisposition(t *testing.T) {
	for name, want := range map[string]string{
		"report.pdf": `attachment; filename="report.pdf"`,
		"":           `attachment`,
		`a"b\c%.txt`: `attachment; filename="a_b_c_.txt"; filename*=UTF-8''a%22b%5Cc%25.txt`,
		"Grüße.txt":  `attachment; filename="Gr__e.txt"; filename*=UTF-8''Gr%C3%BC%C3%9Fe.txt`,
		"写真 (1).jpg": `attachment; filename="__ (1).jpg"; filename*=UTF-8''%E5%86%99%E7%9C%9F%20%281%29.jpg`,
	} {
		if got := contentDisposition(name); got != want {
			t.Errorf("contentDisposition(%q) = %s, want %s", name, got, want)
		}
	}
	for in, want := range map[string]string{"../../etc/passwd": "passwd", `C:\x\y.doc`: "y.doc", "a\x00b": "a_b", "..": "", " ": ""} {
		if got := cleanName(in); got != want {
			t.Errorf("cleanName(%q) = %q, want %q", in, got, want)
		}
	}
}
