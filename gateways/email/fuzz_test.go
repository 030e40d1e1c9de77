package email

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"testing"

	"github.com/uims/uims/gateways/email/mailmsg"
	"github.com/uims/uims/schemas"
)

// FuzzMailToIMI checks the MIME-to-IMI path end to end: every mail that
// Extract accepts becomes meta information that the brokers accept (valid
// IMI within the size limit), so a well-formed mail is never refused for
// what we derived from it.
func FuzzMailToIMI(f *testing.F) {
	for _, s := range []string{
		"From: a@b.test\r\nSubject: hi\r\n\r\nbody\r\n",
		"From: \"A\" <a@b.test>\r\nSubject: =?utf-8?q?x=0D=0Ay?=\r\nMessage-ID: <x@y>\r\nIn-Reply-To: <z@y>\r\nDisposition-Notification-To: a@b.test\r\nContent-Type: multipart/mixed; boundary=q; x=1\r\n\r\n--q\r\nContent-Type: text/plain\r\n\r\nt\r\n--q\r\nContent-Type: image/tiff; name=\"f.tif\"\r\nContent-Disposition: attachment; filename=\"f.tif\"\r\n\r\nII*\r\n--q--\r\n",
		"Subject: " + string(bytes.Repeat([]byte("<&>"), 400)) + "\r\n\r\nx\r\n",
		"Content-Type: text/plain; charset=x-unknown; " + string(bytes.Repeat([]byte("p=v; "), 200)) + "a=b\r\n\r\nx\r\n",
	} {
		f.Add([]byte(s))
	}
	g := &Gateway{cfg: Config{Gateway: "email", Domains: []string{"example.test"}}}
	g.cfg.setDefaults()
	s := &session{g: g, from: "sender@outside.test", envID: "env-1"}
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := mailmsg.Extract(bytes.NewReader(raw), mailmsg.Limits{MaxBytes: 1 << 20})
		if err != nil {
			return
		}
		sub := s.submission(m, recipient{addr: "bob@example.test", to: "bob@example.test", client: "bob", notify: "SUCCESS,FAILURE"})
		sum := sha256.Sum256(sub.Content)
		imi := schemas.IMI{V: schemas.Version, MsgID: msgIDFor("email", s.from, "bob@example.test", sum[:]), Gateway: "email",
			Instance: "email-12345678", From: sub.From, To: sub.To, Subject: sub.Subject, Meta: sub.Meta, InReplyTo: sub.InReplyTo,
			Content: schemas.Content{Type: sub.Type, Length: int64(len(sub.Content)), SHA256: hex.EncodeToString(sum[:]), Attachments: sub.Attachments},
			Created: 1_700_000_000_000}
		if err := imi.Validate(); err != nil {
			t.Fatalf("IMI from an accepted mail does not validate: %v\n%+v", err, imi)
		}
		if b, _ := json.Marshal(&imi); len(b) > schemas.MaxIMI {
			t.Fatalf("IMI of %d bytes", len(b))
		}
	})
}
