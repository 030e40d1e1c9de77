package mailmsg

import (
	"bytes"
	"errors"
	"net/mail"
	"strings"
	"testing"
	"time"
)

var (
	alice = mail.Address{Name: "Alice Example", Address: "alice@example.org"}
	bob   = mail.Address{Name: "Bob", Address: "bob@example.net"}
)

func TestComposeRefusesInjection(t *testing.T) {
	base := func() Outgoing {
		return Outgoing{From: alice, To: []mail.Address{bob}, Subject: "Hi", Content: []byte("x")}
	}
	tests := []struct {
		name string
		mod  func(*Outgoing)
		want error
	}{
		{"subject CRLF", func(o *Outgoing) { o.Subject = "Hi\r\nBcc: victim@example.org" }, ErrHeaderInjection},
		{"subject LF", func(o *Outgoing) { o.Subject = "Hi\nBcc: victim@example.org" }, ErrHeaderInjection},
		{"subject CR", func(o *Outgoing) { o.Subject = "Hi\rBcc: victim@example.org" }, ErrHeaderInjection},
		{"subject NUL", func(o *Outgoing) { o.Subject = "Hi\x00" }, ErrHeaderInjection},
		{"subject control", func(o *Outgoing) { o.Subject = "Hi\x1b[31m" }, ErrInvalidHeader},
		{"subject bad utf-8", func(o *Outgoing) { o.Subject = "Hi\xff" }, ErrInvalidHeader},
		{"from name", func(o *Outgoing) { o.From.Name = "Alice\r\nBcc: x@example.org" }, ErrHeaderInjection},
		{"from address", func(o *Outgoing) { o.From.Address = "alice@example.org\r\nBcc: x@example.org" }, ErrHeaderInjection},
		{"to name", func(o *Outgoing) { o.To[0].Name = "Bob\n" }, ErrHeaderInjection},
		{"cc address", func(o *Outgoing) { o.Cc = []mail.Address{{Address: "c@example.org\x00"}} }, ErrHeaderInjection},
		{"reply-to", func(o *Outgoing) { o.ReplyTo = []mail.Address{{Address: "c@example.org\n"}} }, ErrHeaderInjection},
		{"message-id", func(o *Outgoing) { o.MessageID = "a@b>\r\nBcc: <x@y" }, ErrHeaderInjection},
		{"in-reply-to", func(o *Outgoing) { o.InReplyTo = "a@b\n" }, ErrHeaderInjection},
		{"references", func(o *Outgoing) { o.References = []string{"ok@x", "a@b\r\n"} }, ErrHeaderInjection},
		{"extra value", func(o *Outgoing) { o.Headers = []Field{{"X-Tag", "a\r\nBcc: x@y"}} }, ErrHeaderInjection},
		{"extra key", func(o *Outgoing) { o.Headers = []Field{{"X-Tag\r\nBcc", "a"}} }, ErrHeaderInjection},
		{"content type", func(o *Outgoing) { o.ContentType = "text/plain\r\nBcc: x@y" }, ErrHeaderInjection},
		{"managed extra", func(o *Outgoing) { o.Headers = []Field{{"bcc", "x@example.org"}} }, ErrInvalidHeader},
		{"missing from", func(o *Outgoing) { o.From = mail.Address{} }, ErrInvalidHeader},
		{"bad address", func(o *Outgoing) { o.To = []mail.Address{{Address: "not an address"}} }, ErrInvalidHeader},
		{"bad message-id", func(o *Outgoing) { o.MessageID = "no-at-sign" }, ErrInvalidHeader},
		{"bad content type", func(o *Outgoing) { o.ContentType = "text/" }, ErrInvalidContent},
		{"multipart without boundary", func(o *Outgoing) { o.ContentType = "multipart/mixed" }, ErrInvalidContent},
		{"multipart wrong boundary", func(o *Outgoing) {
			o.ContentType = "multipart/mixed; boundary=zz"
			o.Content = []byte("--b\r\n\r\nx\r\n--b--\r\n")
		}, ErrInvalidContent},
		{"invalid utf-8 text", func(o *Outgoing) { o.Content = []byte("caf\xe9") }, ErrInvalidContent},
	}
	for _, tc := range tests {
		o := base()
		tc.mod(&o)
		out, err := Compose(o)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v (output %q)", tc.name, err, tc.want, out)
		}
	}
}

func TestComposeRoundTripText(t *testing.T) {
	date := time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)
	long := strings.Repeat("Ünïcödé wörds, ", 20)
	for _, subject := range []string{
		"Hello",
		"Grüße aus Köln",
		"日本語の件名",
		"  leading and  double spaces ",
		"literal =?utf-8?q?not-encoded?= text",
		"tab\there",
		long,
		strings.Repeat("x", 1200),
	} {
		o := Outgoing{
			From:       mail.Address{Name: "Jürgen Müller", Address: "juergen@example.org"},
			To:         []mail.Address{bob, {Address: "carol@example.net"}},
			Cc:         []mail.Address{{Name: "Dave, the \"Boss\"", Address: "dave@example.net"}},
			Subject:    subject,
			MessageID:  "m1.123@example.org",
			InReplyTo:  "prev@example.net",
			References: []string{"root@example.net", "prev@example.net"},
			Date:       date,
			Content:    []byte("Bonjour,\nça va ?\n.\nfin\n"),
			Headers:    []Field{{"Auto-Submitted", "no"}, {"X-UIMS-Id", "42"}},
		}
		out, err := Compose(o)
		if err != nil {
			t.Fatalf("Compose(%q): %v", subject, err)
		}
		checkWire(t, out)
		m, err := Extract(bytes.NewReader(out), Limits{})
		if err != nil {
			t.Fatalf("Extract: %v\n%s", err, out)
		}
		if m.Subject != subject {
			t.Errorf("subject %q came back as %q\n%s", subject, m.Subject, out)
		}
		if m.From.Name != "Jürgen Müller" || m.From.Address != "juergen@example.org" {
			t.Errorf("From = %+v", m.From)
		}
		if len(m.To) != 2 || m.To[0] != bob || len(m.Cc) != 1 || m.Cc[0].Name != "Dave, the \"Boss\"" {
			t.Errorf("To/Cc = %+v %+v", m.To, m.Cc)
		}
		if m.MessageID != o.MessageID || m.InReplyTo != o.InReplyTo || strings.Join(m.References, " ") != "root@example.net prev@example.net" {
			t.Errorf("ids = %q %q %q", m.MessageID, m.InReplyTo, m.References)
		}
		if !m.Date.Equal(date) {
			t.Errorf("Date = %v", m.Date)
		}
		if m.ContentType != "text/plain; charset=utf-8" || string(m.Content) != "Bonjour,\r\nça va ?\r\n.\r\nfin\r\n" {
			t.Errorf("content %q %q", m.ContentType, m.Content)
		}
		if m.AutoSubmitted != "no" {
			t.Errorf("AutoSubmitted = %q", m.AutoSubmitted)
		}
	}
}

// checkWire verifies CRLF-only line endings and the line length limit.
func checkWire(t *testing.T, b []byte) {
	t.Helper()
	for i, line := range bytes.Split(b, []byte("\r\n")) {
		if bytes.ContainsAny(line, "\r\n") {
			t.Fatalf("bare CR or LF in line %d: %q", i, line)
		}
		if len(line) > 998 {
			t.Fatalf("line %d has %d octets", i, len(line))
		}
	}
}

func TestComposeDefaults(t *testing.T) {
	before := time.Now().Add(-time.Second)
	out, err := Compose(Outgoing{From: alice, Content: []byte("hi")})
	if err != nil {
		t.Fatal(err)
	}
	m, err := Extract(bytes.NewReader(out), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(m.MessageID, "@example.org") || len(m.MessageID) < 20 {
		t.Errorf("generated Message-ID %q", m.MessageID)
	}
	if m.Date.Before(before) {
		t.Errorf("Date = %v", m.Date)
	}
	if !bytes.Contains(out, []byte("MIME-Version: 1.0\r\n")) || !bytes.Contains(out, []byte("Content-Transfer-Encoding: 7bit\r\n")) {
		t.Errorf("headers:\n%s", out)
	}
}

func TestComposeRoundTripMultipart(t *testing.T) {
	orig := crlf(stdHeader + `Content-Type: multipart/mixed; boundary="==outer=="

--==outer==
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Voilà le fax.
--==outer==
Content-Type: image/tiff; name="fax.tif"
Content-Disposition: attachment; filename="fax.tif"
Content-Transfer-Encoding: base64

` + b64(tiffData) + `--==outer==
Content-Type: audio/wav
Content-Disposition: attachment; filename="msg.wav"
Content-Transfer-Encoding: base64

` + b64(wavData) + `--==outer==--
`)
	m1, err := Extract(strings.NewReader(orig), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	out, err := Compose(Outgoing{From: m1.From, To: m1.To, Subject: m1.Subject, ContentType: m1.ContentType, Content: m1.Content})
	if err != nil {
		t.Fatal(err)
	}
	checkWire(t, out)
	if !bytes.Contains(out, []byte("Content-Transfer-Encoding: 8bit\r\n")) {
		t.Errorf("8bit body not declared:\n%s", out[:400])
	}
	m2, err := Extract(bytes.NewReader(out), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if m2.ContentType != m1.ContentType || !bytes.Equal(m2.Content, m1.Content) || m2.Text != m1.Text {
		t.Errorf("content changed: %q vs %q", m2.ContentType, m1.ContentType)
	}
	if len(m2.Attachments) != 2 || m2.Attachments[0].SHA256 != sha(tiffData) || m2.Attachments[1].SHA256 != sha(wavData) {
		t.Errorf("attachments = %+v", m2.Attachments)
	}
}

func TestComposeBinaryAndQP(t *testing.T) {
	out, err := Compose(Outgoing{From: alice, ContentType: "image/tiff; application=faxbw", Content: tiffData})
	if err != nil {
		t.Fatal(err)
	}
	checkWire(t, out)
	m, err := Extract(bytes.NewReader(out), Limits{})
	if err != nil || !bytes.Equal(m.Content, tiffData) || m.ContentType != "image/tiff; application=faxbw" {
		t.Fatalf("tiff round trip: %v %q", err, m.ContentType)
	}
	text := strings.Repeat("Une très longue ligne sans retour. ", 60)
	out, err = Compose(Outgoing{From: alice, Content: []byte(text)})
	if err != nil {
		t.Fatal(err)
	}
	checkWire(t, out)
	if !bytes.Contains(out, []byte("quoted-printable")) {
		t.Errorf("long non-ASCII text not quoted-printable")
	}
	m, err = Extract(bytes.NewReader(out), Limits{})
	if err != nil || string(m.Content) != text {
		t.Fatalf("qp round trip: %v %q", err, m.Content)
	}
	// Multipart bodies with LF line endings are normalised and still
	// parse.
	out, err = Compose(Outgoing{From: alice, ContentType: "multipart/alternative; boundary=b",
		Content: []byte("--b\nContent-Type: text/plain\n\nhi\n--b--\n")})
	if err != nil {
		t.Fatal(err)
	}
	checkWire(t, out)
	if m, err = Extract(bytes.NewReader(out), Limits{}); err != nil || m.Text != "hi" {
		t.Fatalf("LF multipart: %v %q", err, m.Text)
	}
	// Over-long lines in a multipart body cannot be sent.
	_, err = Compose(Outgoing{From: alice, ContentType: "multipart/mixed; boundary=b",
		Content: []byte("--b\r\n\r\n" + strings.Repeat("x", 1200) + "\r\n--b--\r\n")})
	if !errors.Is(err, ErrInvalidContent) {
		t.Errorf("long multipart line: %v", err)
	}
}
