package mailmsg

import (
	"bytes"
	"errors"
	"mime"
	"net/mail"
	"strings"
	"testing"
	"unicode/utf8"
)

// fuzzLimits are small so that the fuzzer reaches every limit.
func fuzzLimits() Limits {
	return Limits{MaxBytes: 64 << 10, MaxDepth: 4, MaxParts: 16, MaxHeaderBytes: 2048, MaxHeaders: 40}
}

func isSentinel(err error) bool {
	for _, s := range []error{ErrTooLarge, ErrTooDeep, ErrTooManyParts, ErrTooManyHeaders, ErrMalformed} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// checkValue fails when a returned header value could inject a header.
func checkValue(t *testing.T, what, v string) {
	t.Helper()
	if strings.ContainsAny(v, "\r\n\x00") {
		t.Fatalf("%s %q contains CR, LF or NUL", what, v)
	}
	if !utf8.ValidString(v) {
		t.Fatalf("%s %q is not valid UTF-8", what, v)
	}
}

func checkAddresses(t *testing.T, what string, l []mail.Address) {
	t.Helper()
	for _, a := range l {
		checkValue(t, what, a.Name)
		checkValue(t, what, a.Address)
	}
}

func FuzzExtract(f *testing.F) {
	for _, s := range []string{
		crlf(stdHeader + "\nhello\n"),
		crlf(stdHeader + "Content-Type: multipart/alternative; boundary=b\n\n--b\n\nhi\n--b\nContent-Type: text/html\n\n<b>hi</b>\n--b--\n"),
		crlf("Subject: =?utf-8?q?a=0D=0Ab?=\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\ncaf=E9\n"),
		crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Disposition: attachment; filename*=UTF-8''..%2F..%2Fetc%2Fpasswd\nContent-Transfer-Encoding: base64\n\naGVsbG8=\n--b--\n"),
		string(nestedBomb(8)),
		string(wideBomb(20)),
		postfixBounce,
	} {
		f.Add([]byte(s))
	}
	fuzzLimits := fuzzLimits()
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := Extract(bytes.NewReader(in), fuzzLimits)
		if err != nil {
			if !isSentinel(err) {
				t.Fatalf("error %v is not a package sentinel", err)
			}
			return
		}
		if int64(len(in)) > fuzzLimits.MaxBytes || m.Size != int64(len(in)) {
			t.Fatalf("size %d for %d-byte input", m.Size, len(in))
		}
		if len(m.Attachments) > fuzzLimits.MaxParts+1 {
			t.Fatalf("%d attachments with MaxParts %d", len(m.Attachments), fuzzLimits.MaxParts)
		}
		if len(m.RawHeader) > fuzzLimits.MaxHeaderBytes {
			t.Fatalf("header of %d bytes", len(m.RawHeader))
		}
		checkValue(t, "subject", m.Subject)
		checkValue(t, "from", m.From.Name)
		checkValue(t, "from", m.From.Address)
		checkAddresses(t, "to", m.To)
		checkAddresses(t, "cc", m.Cc)
		checkAddresses(t, "reply-to", m.ReplyTo)
		checkAddresses(t, "dnt", m.DispositionNotificationTo)
		checkValue(t, "message-id", m.MessageID)
		checkValue(t, "in-reply-to", m.InReplyTo)
		for _, r := range m.References {
			checkValue(t, "references", r)
		}
		checkValue(t, "auto-submitted", m.AutoSubmitted)
		checkValue(t, "content-type", m.ContentType)
		for _, a := range m.Attachments {
			checkValue(t, "filename", a.Filename)
			checkValue(t, "content-id", a.ContentID)
			checkValue(t, "attachment content-type", a.ContentType)
			if len(a.Filename) > MaxFilenameBytes || strings.ContainsAny(a.Filename, "/\\") ||
				a.Filename == "." || a.Filename == ".." {
				t.Fatalf("unsafe filename %q", a.Filename)
			}
		}
		if !utf8.ValidString(m.Text) || !utf8.ValidString(m.HTML) {
			t.Fatalf("text is not valid UTF-8")
		}
		mt, params, err := mime.ParseMediaType(m.ContentType)
		if err != nil {
			t.Fatalf("content type %q: %v", m.ContentType, err)
		}
		if strings.HasPrefix(mt, "multipart/") {
			if params["boundary"] == "" {
				t.Fatalf("multipart content type %q without boundary", m.ContentType)
			}
			checkStdlibMultipart(t, m)
		}
		if len(m.Content) > 4*len(in)+64 {
			t.Fatalf("content of %d bytes for a %d-byte input", len(m.Content), len(in))
		}
	})
}

func FuzzParseDSN(f *testing.F) {
	f.Add([]byte(postfixBounce))
	if d, err := ComposeDSN(DSN{ReportingMTA: "gw.example", To: alice, OriginalEnvelopeID: "e+1",
		OriginalHeaders: []byte(origHeaders),
		Recipients:      []DSNRecipient{{FinalRecipient: "a@example.net", Action: ActionFailed, DiagnosticCode: "550 no"}}}); err == nil {
		f.Add(d)
	}
	f.Add([]byte(crlf(stdHeader + "\nnot a report\n")))
	f.Add([]byte(crlf("Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; x\n\nFinal-Recipient: rfc822; =?utf-8?q?a=0Db?=\nAction: failed\nStatus: 5.1.1\n--b--\n")))
	f.Fuzz(func(t *testing.T, in []byte) {
		d, err := ParseDSN(bytes.NewReader(in))
		if err != nil {
			if !isSentinel(err) && !errors.Is(err, ErrNotDSN) {
				t.Fatalf("error %v is not a package sentinel", err)
			}
			return
		}
		for _, v := range []string{d.MessageID, d.OriginalMessageID, d.OriginalEnvelopeID, d.ReportingMTA, d.OriginalSubject} {
			checkValue(t, "report field", v)
		}
		if len(d.Recipients) == 0 || len(d.Recipients) > maxDSNRecipients {
			t.Fatalf("%d recipients", len(d.Recipients))
		}
		for _, r := range d.Recipients {
			for _, v := range []string{r.OriginalRecipient, r.FinalRecipient, string(r.Action), r.Status, r.DiagnosticCode, r.RemoteMTA} {
				checkValue(t, "recipient field", v)
			}
			if r.Status != "" && !isStatusCode(r.Status) {
				t.Fatalf("bad status %q", r.Status)
			}
		}
	})
}

func FuzzCompose(f *testing.F) {
	f.Add("Hello", "Alice", "alice@example.org", "text/plain; charset=utf-8", []byte("hi\n"), "")
	f.Add("Grüße aus Köln", "Jürgen Müller", "juergen@example.org", "", []byte("ça va\n"), "id@example.org")
	f.Add("  two  spaces =?x?q?y?= ", "Eve\r\nBcc: x", "eve@example.org", "text/html", []byte("<b>x</b>"), "")
	f.Add("fax", "", "fax@example.org", "image/tiff", tiffData[:64], "a@b")
	f.Add("alt", "A", "a@example.org", "multipart/alternative; boundary=b", []byte("--b\r\n\r\nhi\r\n--b--\r\n"), "")
	f.Add("x\ny", "A", "a@example.org", "multipart/mixed; boundary=b", []byte("--b\n\nhi\n--b--"), "")
	f.Fuzz(func(t *testing.T, subject, name, addr, contentType string, content []byte, msgID string) {
		o := Outgoing{
			From:        mail.Address{Name: name, Address: addr},
			To:          []mail.Address{{Name: name, Address: "bob@example.net"}},
			Subject:     subject,
			MessageID:   msgID,
			ContentType: contentType,
			Content:     content,
		}
		out, err := Compose(o)
		if err != nil {
			for _, s := range []error{ErrHeaderInjection, ErrInvalidHeader, ErrInvalidContent} {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("error %v is not a package sentinel", err)
		}
		if strings.ContainsAny(subject+name+addr+contentType+msgID, "\r\n\x00") {
			t.Fatalf("Compose accepted CR, LF or NUL")
		}
		for i, line := range bytes.Split(out, []byte("\r\n")) {
			if bytes.ContainsAny(line, "\r\n") || len(line) > maxLine {
				t.Fatalf("bad line %d (%d octets): %q", i, len(line), line)
			}
		}
		m, err := Extract(bytes.NewReader(out), Limits{})
		if err != nil {
			t.Fatalf("Extract(Compose(x)): %v\n%q", err, out)
		}
		if m.Subject != subject {
			t.Fatalf("subject %q came back as %q\n%q", subject, m.Subject, out)
		}
		if m.From.Address != addr {
			t.Fatalf("from %q came back as %q", addr, m.From.Address)
		}
		if msgID != "" && m.MessageID != msgID {
			t.Fatalf("message-id %q came back as %q", msgID, m.MessageID)
		}
	})
}
