package email

import (
	"bytes"
	"net/mail"
	"testing"

	"github.com/uims/uims/gateways/email/mailmsg"
)

func TestParseMDN(t *testing.T) {
	raw, err := mailmsg.ComposeMDN(mailmsg.MDN{ReportingUA: "ua.test; x", From: mail.Address{Address: "carol@outside.test"},
		To: mail.Address{Address: "a@example.test"}, OriginalMessageID: "abc@example.test", OriginalSubject: "s"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := mailmsg.Extract(bytes.NewReader(raw), mailmsg.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	n, ok := parseMDN(m.ContentType, m.Content)
	if !ok || !n.Displayed || n.OriginalMessageID != "abc@example.test" {
		t.Fatalf("%+v %v", n, ok)
	}
	deleted := "Content-Type: multipart/report; report-type=disposition-notification; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\ndeleted\r\n--b\r\nContent-Type: message/disposition-notification\r\n\r\n" +
		"Final-Recipient: rfc822; c@x.test\r\nOriginal-Message-ID: <id1@example.test>\r\nDisposition: manual-action/MDN-sent-manually; deleted\r\n--b--\r\n"
	m, err = mailmsg.Extract(bytes.NewReader([]byte(deleted)), mailmsg.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := parseMDN(m.ContentType, m.Content); !ok || n.Displayed || n.OriginalMessageID != "id1@example.test" {
		t.Fatalf("deleted: %+v %v", n, ok)
	}
	if _, ok := parseMDN("text/plain", []byte("x")); ok {
		t.Fatal("text/plain taken for an MDN")
	}
}

// FuzzParseMDN: any mail Extract accepts is read without panic, and a
// notice found names a clean message id.
func FuzzParseMDN(f *testing.F) {
	f.Add([]byte("Content-Type: multipart/report; report-type=disposition-notification; boundary=b\r\n\r\n--b\r\nContent-Type: message/disposition-notification\r\n\r\nOriginal-Message-ID: <a@b>\r\nDisposition: automatic-action/MDN-sent-automatically; displayed/error\r\n--b--\r\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := mailmsg.Extract(bytes.NewReader(raw), mailmsg.Limits{MaxBytes: 1 << 20})
		if err != nil {
			return
		}
		if n, ok := parseMDN(m.ContentType, m.Content); ok && bytes.ContainsAny([]byte(n.OriginalMessageID), "\r\n<>") {
			t.Fatalf("message id %q", n.OriginalMessageID)
		}
	})
}
