package mailmsg

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// crlf turns the LF line endings of a test literal into CRLF.
func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// b64 encodes b as a base64 body with 76-column lines.
func b64(b []byte) string {
	s := base64.StdEncoding.EncodeToString(b)
	var out strings.Builder
	for len(s) > 76 {
		out.WriteString(s[:76] + "\n")
		s = s[76:]
	}
	out.WriteString(s + "\n")
	return out.String()
}

var (
	pdfData  = []byte("%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")
	tiffData = append([]byte("II*\x00\x08\x00\x00\x00"), bytes.Repeat([]byte{0, 1, 2, 0xff}, 300)...)
	wavData  = append([]byte("RIFF\x24\x08\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x40\x1f\x00\x00"), bytes.Repeat([]byte{0x80, 0x7f}, 1000)...)
)

const stdHeader = `From: "Alice Example" <alice@example.org>
To: Bob <bob@example.net>, carol@example.net
Cc: =?utf-8?q?J=C3=BCrgen?= <juergen@example.net>
Subject: Quarterly report
Message-ID: <20240101.abc@example.org>
In-Reply-To: <prev@example.net>
References: <root@example.net>
 <prev@example.net>
Date: Mon, 02 Jan 2006 15:04:05 -0700
MIME-Version: 1.0
`

type wantAttachment struct {
	filename, contentType string
	data                  []byte
}

func TestExtractTable(t *testing.T) {
	tests := []struct {
		name        string
		mail        string
		contentType string // exact, or prefix when it ends with ';'
		content     string // "" means do not check
		text        string
		textType    string
		html        string
		subject     string
		attachments []wantAttachment
	}{
		{
			name: "plain",
			mail: stdHeader + `Content-Type: text/plain; charset=utf-8; format=flowed
Content-Transfer-Encoding: quoted-printable

Caf=C3=A9 au lait, =
tout va bien.
`,
			contentType: "text/plain; charset=utf-8; format=flowed",
			content:     "Café au lait, tout va bien.\r\n",
			text:        "Café au lait, tout va bien.\r\n",
			textType:    "text/plain",
			subject:     "Quarterly report",
		},
		{
			name:        "no content type",
			mail:        stdHeader + "\nJust text.\n",
			contentType: "text/plain; charset=utf-8",
			content:     "Just text.\r\n",
			text:        "Just text.\r\n",
			textType:    "text/plain",
			subject:     "Quarterly report",
		},
		{
			name: "html only latin1 base64",
			mail: stdHeader + `Content-Type: text/html; charset=ISO-8859-1
Content-Transfer-Encoding: base64

PHA+Q2Fm6SBjcuhtZTwvcD4=
`,
			contentType: "text/html; charset=utf-8",
			content:     "<p>Café crème</p>",
			text:        "<p>Café crème</p>",
			textType:    "text/html",
			html:        "<p>Café crème</p>",
			subject:     "Quarterly report",
		},
		{
			name:        "iso-8859-1 8bit",
			mail:        stdHeader + "Content-Type: text/plain; charset=\"iso-8859-1\"\nContent-Transfer-Encoding: 8bit\n\nCaf\xe9 cr\xe8me\n",
			contentType: "text/plain; charset=utf-8",
			content:     "Café crème\r\n",
			text:        "Café crème\r\n",
			textType:    "text/plain",
			subject:     "Quarterly report",
		},
		{
			name: "shift_jis with shift_jis subject",
			mail: strings.Replace(stdHeader, "Subject: Quarterly report", "Subject: =?Shift_JIS?B?k/qWe4zq?=", 1) +
				"Content-Type: text/plain; charset=Shift_JIS\nContent-Transfer-Encoding: 8bit\n\n\x93\xfa\x96\x7b\x8c\xea\n",
			contentType: "text/plain; charset=utf-8",
			content:     "日本語\r\n",
			text:        "日本語\r\n",
			textType:    "text/plain",
			subject:     "日本語",
		},
		{
			name: "utf-16 with BOM",
			mail: stdHeader + `Content-Type: text/plain; charset=UTF-16
Content-Transfer-Encoding: base64

//5HAHIA/ADfAGUAIABhAHUAcwAgAEsA9gBsAG4A
`,
			contentType: "text/plain; charset=utf-8",
			content:     "Grüße aus Köln",
			text:        "Grüße aus Köln",
			textType:    "text/plain",
			subject:     "Quarterly report",
		},
		{
			name: "rfc2047 subject mixed charsets",
			mail: strings.Replace(stdHeader, "Subject: Quarterly report",
				"Subject: =?utf-8?B?w4lsw6h2ZQ==?= =?ISO-8859-1?Q?_caf=E9?= and more", 1) + "\nx\n",
			contentType: "text/plain; charset=utf-8",
			text:        "x\r\n",
			textType:    "text/plain",
			subject:     "Élève café and more",
		},
		{
			name: "alternative",
			mail: stdHeader + `Content-Type: multipart/alternative; boundary="alt-1"

This is a multi-part message in MIME format.
--alt-1
Content-Type: text/plain; charset=us-ascii

Hello Bob.
--alt-1
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: quoted-printable

<p>Hello <b>Bob</b>.</p>
--alt-1--
`,
			contentType: "multipart/alternative; boundary=alt-1",
			text:        "Hello Bob.",
			textType:    "text/plain",
			html:        "<p>Hello <b>Bob</b>.</p>",
			subject:     "Quarterly report",
		},
		{
			name: "mixed with pdf tiff wav",
			mail: stdHeader + `Content-Type: multipart/mixed; boundary="==outer=="

--==outer==
Content-Type: multipart/alternative; boundary="inner"

--inner
Content-Type: text/plain; charset=utf-8

See attachments.
--inner
Content-Type: text/html; charset=utf-8

<p>See attachments.</p>
--inner--

--==outer==
Content-Type: application/pdf; name="report.pdf"
Content-Disposition: attachment; filename="report.pdf"
Content-Transfer-Encoding: base64

` + b64(pdfData) + `--==outer==
Content-Type: image/tiff; name="fax.tif"
Content-Disposition: attachment; filename*=UTF-8''fax%20page%C2%B71.tif
Content-Transfer-Encoding: base64

` + b64(tiffData) + `--==outer==
Content-Type: audio/wav
Content-Disposition: attachment;
 filename*0*=UTF-8''r%C3%A9pondeur;
 filename*1="-message.wav"
Content-Transfer-Encoding: base64

` + b64(wavData) + `--==outer==--
`,
			contentType: "multipart/mixed; boundary=\"==outer==\"",
			text:        "See attachments.",
			textType:    "text/plain",
			html:        "<p>See attachments.</p>",
			subject:     "Quarterly report",
			attachments: []wantAttachment{
				{"report.pdf", "application/pdf", pdfData},
				{"fax page·1.tif", "image/tiff", tiffData},
				{"répondeur-message.wav", "audio/wav", wavData},
			},
		},
		{
			name: "single-part tiff fax",
			mail: stdHeader + `Content-Type: image/tiff; application=faxbw
Content-Transfer-Encoding: base64

` + b64(tiffData),
			contentType: "image/tiff; application=faxbw",
			content:     string(tiffData),
			subject:     "Quarterly report",
			attachments: []wantAttachment{{"", "image/tiff", tiffData}},
		},
		{
			name:        "lf line endings and digest",
			mail:        strings.ReplaceAll(stdHeader, "\n", "\r\n") + "Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: inner\r\n\r\ninner body\r\n--d--\r\n",
			contentType: "multipart/digest; boundary=d",
			subject:     "Quarterly report",
			attachments: []wantAttachment{{"", "message/rfc822", []byte("Subject: inner\r\n\r\ninner body")}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw := crlf(tc.mail)
			if tc.name == "lf line endings and digest" {
				raw = tc.mail
			}
			m, err := Extract(strings.NewReader(raw), Limits{})
			if err != nil {
				t.Fatalf("Extract: %v", err)
			}
			if m.ContentType != tc.contentType {
				t.Errorf("ContentType = %q, want %q", m.ContentType, tc.contentType)
			}
			if tc.content != "" && string(m.Content) != tc.content {
				t.Errorf("Content = %q, want %q", m.Content, tc.content)
			}
			if m.ContentSHA256 != sha(m.Content) {
				t.Errorf("ContentSHA256 mismatch")
			}
			if m.Size != int64(len(raw)) {
				t.Errorf("Size = %d, want %d", m.Size, len(raw))
			}
			if strings.TrimRight(m.Text, "\r\n") != strings.TrimRight(tc.text, "\r\n") || m.TextType != tc.textType {
				t.Errorf("Text = %q (%s), want %q (%s)", m.Text, m.TextType, tc.text, tc.textType)
			}
			if strings.TrimRight(m.HTML, "\r\n") != tc.html {
				t.Errorf("HTML = %q, want %q", m.HTML, tc.html)
			}
			if m.Subject != tc.subject {
				t.Errorf("Subject = %q, want %q", m.Subject, tc.subject)
			}
			if len(m.Attachments) != len(tc.attachments) {
				t.Fatalf("Attachments = %+v, want %d", m.Attachments, len(tc.attachments))
			}
			for i, w := range tc.attachments {
				a := m.Attachments[i]
				if a.Filename != w.filename || a.ContentType != w.contentType || a.Size != int64(len(w.data)) || a.SHA256 != sha(w.data) {
					t.Errorf("attachment %d = %+v, want %q %q size %d", i, a, w.filename, w.contentType, len(w.data))
				}
			}
			if strings.HasPrefix(m.ContentType, "multipart/") {
				checkStdlibMultipart(t, m)
			}
		})
	}
}

// checkStdlibMultipart parses the content with mime/multipart, as UIMS
// consumers do.
func checkStdlibMultipart(t *testing.T, m *Message) {
	t.Helper()
	mt, params, err := mime.ParseMediaType(m.ContentType)
	if err != nil || !strings.HasPrefix(mt, "multipart/") {
		t.Fatalf("content type %q: %v", m.ContentType, err)
	}
	mr := multipart.NewReader(bytes.NewReader(m.Content), params["boundary"])
	n := 0
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF { // mime/multipart wraps io.EOF in real errors
			break
		}
		if err != nil {
			t.Fatalf("mime/multipart: %v", err)
		}
		if _, err := io.Copy(io.Discard, p); err != nil {
			t.Fatalf("mime/multipart part: %v", err)
		}
		n++
	}
	if n == 0 {
		t.Fatalf("mime/multipart found no part")
	}
}

func TestExtractHeaderFields(t *testing.T) {
	m, err := Extract(strings.NewReader(crlf(stdHeader+"Auto-Submitted: Auto-Replied (vacation)\nDisposition-Notification-To: Alice <alice@example.org>\n\nbody\n")), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if m.From.Name != "Alice Example" || m.From.Address != "alice@example.org" {
		t.Errorf("From = %+v", m.From)
	}
	if len(m.To) != 2 || m.To[0].Name != "Bob" || m.To[0].Address != "bob@example.net" || m.To[1].Address != "carol@example.net" {
		t.Errorf("To = %+v", m.To)
	}
	if len(m.Cc) != 1 || m.Cc[0].Name != "Jürgen" {
		t.Errorf("Cc = %+v", m.Cc)
	}
	if m.MessageID != "20240101.abc@example.org" || m.InReplyTo != "prev@example.net" {
		t.Errorf("ids = %q %q", m.MessageID, m.InReplyTo)
	}
	if len(m.References) != 2 || m.References[0] != "root@example.net" || m.References[1] != "prev@example.net" {
		t.Errorf("References = %q", m.References)
	}
	want := time.Date(2006, 1, 2, 15, 4, 5, 0, time.FixedZone("", -7*3600))
	if !m.Date.Equal(want) {
		t.Errorf("Date = %v", m.Date)
	}
	if m.AutoSubmitted != "auto-replied" {
		t.Errorf("AutoSubmitted = %q", m.AutoSubmitted)
	}
	if len(m.DispositionNotificationTo) != 1 || m.DispositionNotificationTo[0].Address != "alice@example.org" {
		t.Errorf("DispositionNotificationTo = %+v", m.DispositionNotificationTo)
	}
	if !bytes.HasPrefix(m.RawHeader, []byte("From: ")) || bytes.Contains(m.RawHeader, []byte("\r\n\r\n")) {
		t.Errorf("RawHeader = %q", m.RawHeader)
	}
}

func TestFilenameSanitising(t *testing.T) {
	long := strings.Repeat("n", 300)
	tests := []struct{ disposition, want string }{
		{`attachment; filename*=UTF-8''..%2F..%2Fetc%2Fpasswd`, "passwd"},
		{`attachment; filename="..\\..\\x"`, "x"},
		{`attachment; filename="/abs"`, "abs"},
		{`attachment; filename="C:\\x"`, "x"},
		{`attachment; filename="C:x.exe"`, "C_x.exe"},
		{`attachment; filename*=UTF-8''a%00b%0D%0A.txt`, "ab.txt"},
		{`attachment; filename*=UTF-8''evil%E2%80%AEgpj.exe`, "evilgpj.exe"},
		{`attachment; filename=".."`, ""},
		{`attachment; filename=".bashrc"`, "bashrc"},
		{`attachment; filename="NUL.txt"`, "_NUL.txt"},
		{`attachment; filename="=?UTF-8?B?w4lsw6h2ZS5wZGY=?="`, "Élève.pdf"},
		{`attachment; filename="` + long + `.pdf"`, strings.Repeat("n", 251) + ".pdf"},
		{`attachment; filename="` + strings.Repeat("é", 150) + `"`, strings.Repeat("é", 127)},
	}
	for _, tc := range tests {
		mail := crlf(stdHeader + `Content-Type: multipart/mixed; boundary=b

--b
Content-Type: application/octet-stream
Content-Disposition: ` + tc.disposition + `

data
--b--
`)
		m, err := Extract(strings.NewReader(mail), Limits{})
		if err != nil {
			t.Errorf("%s: %v", tc.disposition, err)
			continue
		}
		if len(m.Attachments) != 1 {
			t.Errorf("%s: %d attachments", tc.disposition, len(m.Attachments))
			continue
		}
		got := m.Attachments[0].Filename
		if got != tc.want {
			t.Errorf("%s: filename %q, want %q", tc.disposition, got, tc.want)
		}
		if len(got) > MaxFilenameBytes || strings.ContainsAny(got, "/\\\x00\r\n") {
			t.Errorf("%s: unsafe filename %q", tc.disposition, got)
		}
	}
}

func TestHeaderInjectionCleaned(t *testing.T) {
	mail := crlf(`From: =?utf-8?q?Eve=0D=0ABcc=3A_victim=40example.org?= <eve@example.org>
To: =?utf-8?b?Qm9iDQpYLUV2aWw6IDE=?= <bob@example.net>
Subject: =?utf-8?q?Hi=0D=0ABcc:_victim@example.org=00?=
Message-ID: <a@b>
References: =?utf-8?q?=0D=0A?= <x@y>

body
`)
	m, err := Extract(strings.NewReader(mail), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{m.Subject, m.From.Name, m.To[0].Name} {
		if strings.ContainsAny(v, "\r\n\x00") {
			t.Errorf("value %q contains CR/LF/NUL", v)
		}
	}
	if m.Subject != "Hi  Bcc: victim@example.org " {
		t.Errorf("Subject = %q", m.Subject)
	}
	if m.From.Name != "Eve  Bcc: victim@example.org" {
		t.Errorf("From.Name = %q", m.From.Name)
	}
	// The cleaned values are accepted by Compose.
	if _, err := Compose(Outgoing{From: m.From, To: m.To, Subject: m.Subject}); err != nil {
		t.Errorf("Compose of cleaned values: %v", err)
	}
}

func TestExtractLimits(t *testing.T) {
	small := Limits{MaxBytes: 1000}
	_, err := Extract(strings.NewReader(crlf(stdHeader+"\n"+strings.Repeat("x", 2000))), small)
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized: %v", err)
	}
	// An endless reader is cut at MaxBytes+1.
	cr := &countingReader{}
	_, err = Extract(cr, small)
	if !errors.Is(err, ErrTooLarge) || cr.n > 1001+32<<10 {
		t.Errorf("endless reader: %v after %d bytes", err, cr.n)
	}
	_, err = Extract(strings.NewReader("X-Long: "+strings.Repeat("a", 3000)+"\r\n\r\nbody"), Limits{MaxHeaderBytes: 1024})
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("header bytes: %v", err)
	}
	_, err = Extract(strings.NewReader(strings.Repeat("X-A: 1\r\n", 50)+"\r\nbody"), Limits{MaxHeaders: 20})
	if !errors.Is(err, ErrTooManyHeaders) {
		t.Errorf("header count: %v", err)
	}
	part := "--b\r\n" + strings.Repeat("X-A: 1\r\n", 50) + "\r\nx\r\n--b--\r\n"
	_, err = Extract(strings.NewReader("Content-Type: multipart/mixed; boundary=b\r\n\r\n"+part), Limits{MaxHeaders: 20})
	if !errors.Is(err, ErrTooManyHeaders) {
		t.Errorf("part header count: %v", err)
	}
}

type countingReader struct{ n int }

func (r *countingReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	r.n += len(p)
	return len(p), nil
}

// nestedBomb builds a message nesting multipart/mixed depth times.
func nestedBomb(depth int) []byte {
	var b bytes.Buffer
	b.WriteString("From: a@example.org\r\n")
	for i := 0; i < depth; i++ {
		b.WriteString("Content-Type: multipart/mixed; boundary=b" + itoa(i) + "\r\n\r\n--b" + itoa(i) + "\r\n")
	}
	b.WriteString("\r\nleaf\r\n")
	for i := depth - 1; i >= 0; i-- {
		b.WriteString("--b" + itoa(i) + "--\r\n")
	}
	return b.Bytes()
}

func itoa(i int) string { return strconv.Itoa(i) }

// wideBomb builds a message with n empty parts.
func wideBomb(n int) []byte {
	var b bytes.Buffer
	b.WriteString("From: a@example.org\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n")
	for i := 0; i < n; i++ {
		b.WriteString("--b\r\n\r\nx\r\n")
	}
	b.WriteString("--b--\r\n")
	return b.Bytes()
}

// allocBytes returns the bytes allocated by fn.
func allocBytes(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestMIMEBombs(t *testing.T) {
	deep := nestedBomb(1000)
	wide := wideBomb(100000)
	for _, tc := range []struct {
		name string
		msg  []byte
		want error
	}{
		{"depth 1000", deep, ErrTooDeep},
		{"100k parts", wide, ErrTooManyParts},
	} {
		var err error
		start := time.Now()
		alloc := allocBytes(func() { _, err = Extract(bytes.NewReader(tc.msg), Limits{}) })
		elapsed := time.Since(start)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
		// Reading the input costs about twice its size; parsing must add
		// only a bounded amount, not something proportional to the parts.
		if limit := uint64(3*len(tc.msg)) + 2<<20; alloc > limit {
			t.Errorf("%s: allocated %d bytes for a %d-byte input (limit %d)", tc.name, alloc, len(tc.msg), limit)
		}
		if elapsed > 2*time.Second {
			t.Errorf("%s: took %v", tc.name, elapsed)
		}
		t.Logf("%s: %d-byte input, %d bytes allocated, %v", tc.name, len(tc.msg), alloc, elapsed)
	}
	// Within the limits the same shapes parse.
	if _, err := Extract(bytes.NewReader(nestedBomb(DefaultMaxDepth)), Limits{}); err != nil {
		t.Errorf("depth %d: %v", DefaultMaxDepth, err)
	}
	if _, err := Extract(bytes.NewReader(nestedBomb(DefaultMaxDepth+1)), Limits{}); !errors.Is(err, ErrTooDeep) {
		t.Errorf("depth %d: %v", DefaultMaxDepth+1, err)
	}
	if _, err := Extract(bytes.NewReader(wideBomb(DefaultMaxParts)), Limits{}); err != nil {
		t.Errorf("%d parts: %v", DefaultMaxParts, err)
	}
	// Allocation per run stays flat whatever the number of parts beyond
	// the limit.
	a1 := testing.AllocsPerRun(5, func() { Extract(bytes.NewReader(wideBomb(1000)), Limits{}) })
	a2 := testing.AllocsPerRun(5, func() { Extract(bytes.NewReader(wide), Limits{}) })
	if a2 > a1+100 {
		t.Errorf("allocations grow with parts beyond the limit: %v vs %v", a1, a2)
	}
}

func TestMalformed(t *testing.T) {
	tests := []struct {
		name string
		mail string
		want error // nil: best-effort success
	}{
		{"missing boundary param", "Content-Type: multipart/mixed\n\n--b\n\nx\n--b--\n", ErrMalformed},
		{"boundary never present", "Content-Type: multipart/mixed; boundary=zz\n\n--b\n\nx\n--b--\n", ErrMalformed},
		{"truncated", "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nx\n", ErrMalformed},
		{"truncated header", "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n", ErrMalformed},
		{"repeated boundary", "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n--b--\n--b--\n", ErrMalformed},
		{"junk after delimiter", "Content-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n--b junk\n\ny\n--b--\n", ErrMalformed},
		{"bad header line", "Subject: x\nno colon here\n\nbody\n", ErrMalformed},
		{"bad From", "From: <<<\n\nbody\n", ErrMalformed},
		{"unknown top-level encoding", "Content-Type: text/plain\nContent-Transfer-Encoding: x-uuencode\n\nbegin 644 x\n", ErrMalformed},
		{"bad base64", "Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\nSGVsbG8*gd29y!bGQ\n", nil},
		{"bad quoted-printable", "Content-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\na=ZZb=\n=4", nil},
		{"unknown charset", "Content-Type: text/plain; charset=x-klingon\n\nqapla\xff\n", nil},
		{"bad content type", "Content-Type: ;;;\n\nhello\n", nil},
		{"empty", "", nil},
		{"header only", "Subject: x", nil},
		{"bad To and Date", "To: <<<\nDate: yesterday\nMessage-ID: not an id\n\nbody\n", nil},
	}
	for _, tc := range tests {
		m, err := Extract(strings.NewReader(crlf(tc.mail)), Limits{})
		if tc.want == nil {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
				continue
			}
			if !isCleanValue(m.Text) && !strings.ContainsAny(m.Text, "\r\n") {
				t.Errorf("%s: text %q", tc.name, m.Text)
			}
			t.Logf("%s: text %q warnings %q", tc.name, m.Text, m.Warnings)
			continue
		}
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
	m, err := Extract(strings.NewReader(crlf("Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\nSGVsbG8*gd29y!bGQ\n")), Limits{})
	if err != nil || string(m.Content) != "Hello world" {
		t.Errorf("lenient base64: %q %v", m.Content, err)
	}
	m, err = Extract(strings.NewReader(crlf("Content-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\na=ZZb=\n=4")), Limits{})
	if err != nil || string(m.Content) != "a=ZZb=4" {
		t.Errorf("lenient quoted-printable: %q %v", m.Content, err)
	}
}

func TestSanitizeFilename(t *testing.T) {
	for in, want := range map[string]string{
		"report.pdf":             "report.pdf",
		"../../etc/passwd":       "passwd",
		`..\..\x`:                "x",
		"/abs":                   "abs",
		`C:\x`:                   "x",
		"a\x00b.txt":             "ab.txt",
		"a\r\nb.txt":             "ab.txt",
		"dir/":                   "",
		"...":                    "",
		" spaced .txt. ":         "spaced .txt",
		"com1":                   "_com1",
		"LPT9.log":               "_LPT9.log",
		"inv\xffalid.txt":        "inv_alid.txt",
		"a:b|c?.txt":             "a_b_c_.txt",
		"zero\u200bwidth.txt":    "zerowidth.txt",
		strings.Repeat("x", 400): strings.Repeat("x", MaxFilenameBytes),
	} {
		if got := SanitizeFilename(in); got != want {
			t.Errorf("SanitizeFilename(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestExtractGroupsAndDefaults(t *testing.T) {
	m, err := Extract(strings.NewReader("From: a@example.org\r\nTo: undisclosed-recipients:;\r\nCc: team: x@example.org, y@example.org;\r\n\r\nhi"), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.To) != 0 || len(m.Cc) != 2 || len(m.Warnings) != 0 {
		t.Errorf("To %+v Cc %+v warnings %q", m.To, m.Cc, m.Warnings)
	}
	l := DefaultLimits()
	if l.MaxBytes != DefaultMaxBytes || l.MaxDepth != 10 || l.MaxParts != 100 || l.MaxHeaderBytes != DefaultMaxHeaderBytes || l.MaxHeaders != DefaultMaxHeaders {
		t.Errorf("DefaultLimits = %+v", l)
	}
	if got := (Limits{MaxDepth: 1 << 20}).withDefaults().MaxDepth; got != HardMaxDepth {
		t.Errorf("MaxDepth not capped: %d", got)
	}
}
