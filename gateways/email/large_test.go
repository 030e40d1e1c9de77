package email

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/uims/uims/gateways/email/mailmsg"
	"github.com/uims/uims/gateways/web"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/schemas"
)

// mailWithAttachment builds a mail with a text part and one base64
// attachment of data, named name, of type ctype.
func mailWithAttachment(from, to, subject, text, name, ctype string, data []byte) string {
	const boundary = "=-uims-test-boundary-="
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%d.large@client.test>\r\nDate: %s\r\nMIME-Version: 1.0\r\n",
		from, to, subject, time.Now().UnixNano(), time.Now().Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=%q\r\n\r\n", boundary)
	fmt.Fprintf(&b, "--%s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n", boundary, text)
	fmt.Fprintf(&b, "--%s\r\nContent-Type: %s\r\nContent-Disposition: attachment; filename=%q\r\nContent-Transfer-Encoding: base64\r\n\r\n", boundary, ctype, name)
	enc := base64.StdEncoding.EncodeToString(data)
	for i := 0; i < len(enc); i += 76 {
		b.WriteString(enc[i:min(i+76, len(enc))])
		b.WriteString("\r\n")
	}
	fmt.Fprintf(&b, "--%s--\r\n", boundary)
	return b.String()
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// download GETs an inbox download as the client with token and returns
// the status, the headers and the body.
func (s *system) download(token, path string) (int, http.Header, []byte) {
	s.t.Helper()
	req, _ := http.NewRequest("GET", s.webURL+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// TestAttachmentLengthFromMail: a 3 MB attachment from e-mail is listed in
// the web inbox with its real length (it was 1048577: counted from a read
// capped at 1 MiB + 1), name and type, and downloads byte for byte.
func TestAttachmentLengthFromMail(t *testing.T) {
	s := startSystem(t, Config{})
	data := randomBytes(3 << 20)
	mail := mailWithAttachment("dave@outside.test", "bob@example.test", "three megabytes", "the scan", "scan.pdf", "application/pdf", data)
	c := dialSMTP(t, s.smtp)
	if code, msg := c.send("dave@outside.test", "bob@example.test", mail); code != 250 {
		t.Fatalf("3 MB mail: %d %s", code, msg)
	}
	m := s.waitInbox("bob-token", "the 3 MB mail", func(m web.Message) bool { return m.Subject == "three megabytes" })
	if len(m.Attachments) != 1 || m.Attachments[0] != (schemas.Attachment{Name: "scan.pdf", Type: "application/pdf", Length: 3 << 20}) {
		t.Fatalf("attachments %+v, want scan.pdf, application/pdf, %d bytes", m.Attachments, 3<<20)
	}
	if m.Text != "the scan" {
		t.Fatalf("text %q", m.Text)
	}
	code, h, body := s.download("bob-token", "/api/v1/messages/"+m.ID+"/attachments/0")
	if code != 200 || !bytes.Equal(body, data) {
		t.Fatalf("download: %d, %d bytes, equal %v", code, len(body), bytes.Equal(body, data))
	}
	if h.Get("Content-Type") != "application/pdf" || h.Get("Content-Disposition") != `attachment; filename="scan.pdf"` {
		t.Fatalf("download headers %v", h)
	}
}

// TestLargeMailAccepted: a mail of about 7 MB (a 5 MB file), well under
// the SIZE the gateway advertises, is accepted (250, not "451 4.3.0 busy":
// the web inbox stored its content inline, over NATS max_payload) and
// reaches the web inbox whole.
func TestLargeMailAccepted(t *testing.T) {
	s := startSystem(t, Config{})
	data := randomBytes(5_000_000)
	mail := mailWithAttachment("dave@outside.test", "bob@example.test", "five megabytes", "the report", "report.bin", "application/octet-stream", data)
	t.Logf("mail of %d bytes", len(mail))
	c := dialSMTP(t, s.smtp)
	if code, msg := c.send("dave@outside.test", "bob@example.test", mail); code != 250 {
		t.Fatalf("5 MB mail: %d %s", code, msg)
	}
	m := s.waitInbox("bob-token", "the 5 MB mail", func(m web.Message) bool { return m.Subject == "five megabytes" })
	if len(m.Attachments) != 1 || m.Attachments[0].Name != "report.bin" || m.Attachments[0].Length != int64(len(data)) {
		t.Fatalf("attachments %+v, want report.bin of %d bytes", m.Attachments, len(data))
	}
	code, _, body := s.download("bob-token", "/api/v1/messages/"+m.ID+"/attachments/0")
	if code != 200 || !bytes.Equal(body, data) {
		t.Fatalf("download: %d, %d bytes, equal %v", code, len(body), bytes.Equal(body, data))
	}
}

// recordingRelay is a smarthost that keeps every mail it accepts.
type recordingRelay struct {
	mu    sync.Mutex
	mails [][]byte
}

func (r *recordingRelay) NewSession(*smtp.Conn) (smtp.Session, error) {
	return &recordingSession{r: r}, nil
}

type recordingSession struct{ r *recordingRelay }

func (*recordingSession) Reset()                               {}
func (*recordingSession) Logout() error                        { return nil }
func (*recordingSession) Mail(string, *smtp.MailOptions) error { return nil }
func (*recordingSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *recordingSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err == nil {
		s.r.mu.Lock()
		s.r.mails = append(s.r.mails, b)
		s.r.mu.Unlock()
	}
	return err
}

// startRecordingRelay runs a recording smarthost on a free port.
func startRecordingRelay(t *testing.T) (string, *recordingRelay) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &recordingRelay{}
	srv := smtp.NewServer(r)
	srv.Domain = "relay.test"
	srv.MaxMessageBytes = 64 << 20
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), r
}

// TestWebAttachmentsToMail: files sent from the web page's form reach an
// outside mailbox as attachments with their names (one not ASCII, RFC
// 2231) and types, byte for byte, and the text as the mail's text.
func TestWebAttachmentsToMail(t *testing.T) {
	relay, rec := startRecordingRelay(t)
	s := startSystem(t, Config{Relay: relay})
	png, notes := randomBytes(300<<10), []byte("Grüße aus Köln\n")
	var body bytes.Buffer
	w := multipart.NewWriter(&body)
	w.WriteField("to", "dave@outside.test")
	w.WriteField("subject", "photos")
	w.WriteField("text", "Two files for you.")
	for _, f := range []struct {
		name, ctype string
		data        []byte
	}{{"Köln.png", "image/png", png}, {"notes.txt", "text/plain; charset=utf-8", notes}} {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="file"; filename=%q`, f.name))
		h.Set("Content-Type", f.ctype)
		p, _ := w.CreatePart(h)
		p.Write(f.data)
	}
	w.Close()
	req, _ := http.NewRequest("POST", s.webURL+"/api/v1/messages", &body)
	req.Header.Set("Authorization", "Bearer alice-token")
	req.Header.Set("Content-Type", w.FormDataContentType())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var res web.SendResponse
	json.NewDecoder(resp.Body).Decode(&res)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("upload: %d %+v", resp.StatusCode, res)
	}
	var raw []byte
	fabrictest.Eventually(t, 20*time.Second, "the mail at the relay", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		for _, m := range rec.mails {
			if bytes.Contains(m, []byte(res.ID)) {
				raw = m
				return true
			}
		}
		return false
	})
	m, err := mailmsg.Extract(bytes.NewReader(raw), mailmsg.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	sum := func(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }
	if m.Text != "Two files for you." || m.Subject != "photos" || len(m.Attachments) != 2 {
		t.Fatalf("mail: text %q, subject %q, attachments %+v", m.Text, m.Subject, m.Attachments)
	}
	for i, want := range []mailmsg.Attachment{{Filename: "Köln.png", ContentType: "image/png", Size: int64(len(png)), SHA256: sum(png)},
		{Filename: "notes.txt", ContentType: "text/plain", Size: int64(len(notes)), SHA256: sum(notes)}} {
		a := m.Attachments[i]
		if a.Filename != want.Filename || a.ContentType != want.ContentType || a.Size != want.Size || a.SHA256 != want.SHA256 {
			t.Errorf("attachment %d: %+v, want %+v", i, a, want)
		}
	}
	s.waitState("alice-token", res.ID, schemas.StatusDelivered)
}
