package email

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/textproto"
	"sync"
	"testing"
	"time"

	"mime/multipart"

	"github.com/nats-io/nats.go"

	"github.com/uims/uims/gateways/email/mailmsg"
	"github.com/uims/uims/gateways/web"
	"github.com/uims/uims/internal/fabrictest"
)

// brokerWatch records the largest message on the brokers' subjects and
// whether any carried a marker of the content.
type brokerWatch struct {
	mu     sync.Mutex
	max    int
	leaked bool
}

func watchBrokers(t *testing.T, nc *nats.Conn, marker []byte) *brokerWatch {
	w := &brokerWatch{}
	sub, err := nc.Subscribe("uims.broker.>", func(m *nats.Msg) {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.max = max(w.max, len(m.Data))
		w.leaked = w.leaked || bytes.Contains(m.Data, marker)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	nc.Flush()
	return w
}

// upload posts one file with the web form and returns the message id.
func (s *system) upload(t *testing.T, token, to, subject, name string, data []byte) string {
	t.Helper()
	var body bytes.Buffer
	w := multipart.NewWriter(&body)
	w.WriteField("to", to)
	w.WriteField("subject", subject)
	w.WriteField("text", "the file is attached")
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="file"; filename=%q`, name))
	h.Set("Content-Type", "application/octet-stream")
	p, _ := w.CreatePart(h)
	p.Write(data)
	w.Close()
	req, _ := http.NewRequest("POST", s.webURL+"/api/v1/messages", &body)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", w.FormDataContentType())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var res web.SendResponse
	json.NewDecoder(resp.Body).Decode(&res)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("upload of %d bytes: %d %+v", len(data), resp.StatusCode, res)
	}
	return res.ID
}

// Large content end to end (issue 18): 5, 20 and 25 MB files web to web,
// web to e-mail and e-mail to web (SIZE counts base64, so the SMTP server
// takes 36 MiB here, UIMS_SMTP_MAX_SIZE; with the default 25 MiB the
// largest file by mail is 18 MB, and 25 MB is refused 552), each
// byte-exact at the other end, while nothing on the brokers' subjects
// carries content (no message over 32 KiB, no marker of the files).
func TestLargeContentEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 150 MB: not in -short")
	}
	relay, rec := startRecordingRelay(t)
	s := startSystem(t, Config{Relay: relay, MaxSize: 36 << 20})
	marker := []byte("MARKER-of-the-files-3f9a")
	w := watchBrokers(t, s.f.Conn("observer"), marker)
	file := func(n int) []byte {
		b := randomBytes(n)
		copy(b[n/3:], marker)
		return b
	}
	for _, n := range []int{5_000_000, 20_000_000, 25_000_000} {
		data := file(n)
		// web to web
		id := s.upload(t, "alice-token", "bob", fmt.Sprintf("web %d", n), "big.bin", data)
		m := s.waitInbox("bob-token", fmt.Sprintf("%d bytes web to web", n), func(m web.Message) bool { return m.ID == id })
		if len(m.Attachments) != 1 || m.Attachments[0].Length != int64(n) {
			t.Fatalf("web to web %d: attachments %+v", n, m.Attachments)
		}
		if code, _, body := s.download("bob-token", "/api/v1/messages/"+id+"/attachments/0"); code != 200 || !bytes.Equal(body, data) {
			t.Fatalf("web to web %d: download %d, %d bytes", n, code, len(body))
		}
		// web to e-mail
		id = s.upload(t, "alice-token", "dave@outside.test", fmt.Sprintf("mail %d", n), "big.bin", data)
		var raw []byte
		fabrictest.Eventually(t, 60*time.Second, fmt.Sprintf("%d bytes at the relay", n), func() bool {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			for _, m := range rec.mails {
				if bytes.Contains(m[:min(len(m), 8192)], []byte(id)) {
					raw = m
					return true
				}
			}
			return false
		})
		lim := mailmsg.DefaultLimits()
		lim.MaxBytes = 64 << 20
		mm, err := mailmsg.Extract(bytes.NewReader(raw), lim)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		if len(mm.Attachments) != 1 || mm.Attachments[0].SHA256 != hex.EncodeToString(sum[:]) || mm.Attachments[0].Size != int64(n) {
			t.Fatalf("web to e-mail %d: %d attachments", n, len(mm.Attachments))
		}
	}
	// e-mail to web
	for _, n := range []int{5_000_000, 20_000_000, 25_000_000} {
		data := file(n)
		subject := fmt.Sprintf("by mail %d", n)
		mail := mailWithAttachment("dave@outside.test", "bob@example.test", subject, "the file", "big.bin", "application/octet-stream", data)
		c := dialSMTP(t, s.smtp)
		if code, msg := c.send("dave@outside.test", "bob@example.test", mail); code != 250 {
			t.Fatalf("mail of %d bytes: %d %s", len(mail), code, msg)
		}
		m := s.waitInbox("bob-token", subject, func(m web.Message) bool { return m.Subject == subject })
		if code, _, body := s.download("bob-token", "/api/v1/messages/"+m.ID+"/attachments/0"); code != 200 || !bytes.Equal(body, data) {
			t.Fatalf("e-mail to web %d: download %d, %d bytes", n, code, len(body))
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.leaked || w.max > 32<<10 {
		t.Fatalf("broker subjects: the marker seen %v, largest message %d bytes", w.leaked, w.max)
	}
	t.Logf("largest broker message: %d bytes", w.max)
}
