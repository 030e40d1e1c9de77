package web_test

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/uims/uims/gateways/web"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/schemas"
)

// file is one file part of a test upload.
type file struct {
	name, ctype string
	data        []byte
}

// form builds a multipart/form-data body: the fields in order (a key may
// repeat: "to"), then the files.
func form(fields [][2]string, files ...file) (string, []byte) {
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	for _, f := range fields {
		w.WriteField(f[0], f[1])
	}
	for _, f := range files {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="file"; filename=%q`, f.name))
		if f.ctype != "" {
			h.Set("Content-Type", f.ctype)
		}
		p, _ := w.CreatePart(h)
		p.Write(f.data)
	}
	w.Close()
	return w.FormDataContentType(), b.Bytes()
}

// postForm posts a multipart/form-data body and returns the status and
// the JSON answer.
func postForm(t *testing.T, url, token, ctype string, body io.Reader) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", url+"/api/v1/messages", body)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", ctype)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("answer %d is not JSON: %q", resp.StatusCode, raw)
	}
	return resp.StatusCode, out
}

// get GETs a path as the client with token.
func get(t *testing.T, url, token string) (int, http.Header, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// inboxMessage waits for message id in the inbox of the client with token.
func inboxMessage(t *testing.T, url, token, id string) web.Message {
	t.Helper()
	var found *web.Message
	fabrictest.Eventually(t, 20*time.Second, "message "+id+" in the inbox", func() bool {
		_, _, b := get(t, url+"/api/v1/inbox", token)
		var p web.Page
		json.Unmarshal(b, &p)
		for _, m := range p.Messages {
			if m.ID == id {
				found = &m
				return true
			}
		}
		return false
	})
	return *found
}

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// TestUploadWebToWeb: alice sends bob a 5 MB file and an HTML page with a
// text, as multipart/form-data; bob's inbox lists them with their names,
// types and sizes, and each downloads byte for byte with its name (RFC
// 6266, filename* for a name that is not ASCII), its type, nosniff, and
// always as an attachment, so that the HTML page never renders in the
// gateway's origin.
func TestUploadWebToWeb(t *testing.T) {
	url, _ := startWeb(t)
	pdf := random(5 << 20)
	page := []byte("<!doctype html><script>alert(document.cookie)</script><p>hi</p>")
	ctype, body := form([][2]string{{"to", "bob"}, {"subject", "the report"}, {"text", "Here it is.\nBest, Alice"}},
		file{"Rapport d’été 2026.pdf", "application/pdf", pdf}, file{"page.html", "text/html", page})
	start := time.Now()
	code, out := postForm(t, url, "alice-token", ctype, bytes.NewReader(body))
	if code != http.StatusAccepted {
		t.Fatalf("upload: %d %v", code, out)
	}
	t.Logf("5 MB upload, web to web: %d bytes posted, accepted in %v", len(body), time.Since(start).Round(time.Millisecond))
	m := inboxMessage(t, url, "bob-token", out["id"].(string))
	want := []schemas.Attachment{{Name: "Rapport d’été 2026.pdf", Type: "application/pdf", Length: 5 << 20},
		{Name: "page.html", Type: "text/html", Length: int64(len(page))}}
	if len(m.Attachments) != 2 || m.Attachments[0] != want[0] || m.Attachments[1] != want[1] {
		t.Fatalf("attachments %+v, want %+v", m.Attachments, want)
	}
	if m.Text != "Here it is.\nBest, Alice" || m.Subject != "the report" || !strings.HasPrefix(m.Type, "multipart/mixed") {
		t.Fatalf("message %q %q %q", m.Subject, m.Text, m.Type)
	}

	base := url + "/api/v1/messages/" + m.ID + "/attachments/"
	code, h, got := get(t, base+"0", "bob-token")
	if code != 200 || !bytes.Equal(got, pdf) {
		t.Fatalf("download 0: %d, %d bytes, equal %v", code, len(got), bytes.Equal(got, pdf))
	}
	if cd := h.Get("Content-Disposition"); cd != `attachment; filename="Rapport d__t_ 2026.pdf"; filename*=UTF-8''Rapport%20d%E2%80%99%C3%A9t%C3%A9%202026.pdf` {
		t.Errorf("Content-Disposition %q", cd)
	}
	if h.Get("Content-Type") != "application/pdf" || h.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("download 0 headers %v", h)
	}
	code, h, got = get(t, base+"1", "bob-token")
	if code != 200 || !bytes.Equal(got, page) {
		t.Fatalf("download 1: %d %q", code, got)
	}
	if h.Get("Content-Disposition") != `attachment; filename="page.html"` || h.Get("Content-Type") != "text/html" ||
		h.Get("X-Content-Type-Options") != "nosniff" || !strings.HasPrefix(h.Get("Content-Security-Policy"), "sandbox") {
		t.Errorf("HTML download headers %v", h)
	}
	for _, bad := range []string{"2", "-1", "x"} {
		if code, _, _ := get(t, base+bad, "bob-token"); code != 404 && code != 400 {
			t.Errorf("attachment %s: %d", bad, code)
		}
	}
	// only the recipient's inbox has it
	if code, _, _ := get(t, base+"0", "alice-token"); code != 404 {
		t.Errorf("alice downloads bob's attachment: %d", code)
	}
	// the whole content, as it came
	code, h, got = get(t, url+"/api/v1/messages/"+m.ID+"/content", "bob-token")
	if code != 200 || !bytes.Contains(got, []byte("Content-Disposition: attachment")) || h.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("content: %d %v", code, h)
	}
}

// TestUploadWithoutFiles: a multipart/form-data body without files is a
// text message as the JSON form sends it; two "to" fields make a group
// message; fields the JSON form does not take are refused.
func TestUploadWithoutFiles(t *testing.T) {
	url, _ := startWeb(t)
	ctype, body := form([][2]string{{"to", "bob"}, {"text", "plain text"}})
	code, out := postForm(t, url, "alice-token", ctype, bytes.NewReader(body))
	if code != http.StatusAccepted {
		t.Fatalf("text only: %d %v", code, out)
	}
	m := inboxMessage(t, url, "bob-token", out["id"].(string))
	if m.Text != "plain text" || m.Type != "text/plain; charset=utf-8" || len(m.Attachments) != 0 {
		t.Fatalf("text only arrived as %+v", m)
	}

	ctype, body = form([][2]string{{"to", "bob"}, {"to", "alice"}, {"text", "to both"}}, file{"a.txt", "text/plain", []byte("A")})
	code, out = postForm(t, url, "alice-token", ctype, bytes.NewReader(body))
	if code != http.StatusAccepted || len(out["recipients"].([]any)) != 2 {
		t.Fatalf("group upload: %d %v", code, out)
	}

	for _, c := range []struct {
		fields [][2]string
		files  []file
		want   string
	}{
		{[][2]string{{"to", "bob"}, {"colour", "red"}, {"text", "x"}}, nil, `unknown field "colour"`},
		{[][2]string{{"to", "bob"}}, nil, `missing "text" or "html"`},
		{[][2]string{{"text", "x"}}, []file{{"a.txt", "", []byte("a")}}, `missing "to"`},
		{[][2]string{{"to", "bob"}, {"urgent", "maybe"}, {"text", "x"}}, nil, "urgent"},
		{[][2]string{{"to", "bob"}, {"send_at", "tomorrow"}, {"text", "x"}}, nil, "send_at"},
	} {
		ctype, body := form(c.fields, c.files...)
		code, out := postForm(t, url, "alice-token", ctype, bytes.NewReader(body))
		if code != 400 || !strings.Contains(fmt.Sprint(out["error"]), c.want) || out["code"] != "MALFORMED" {
			t.Errorf("%v: %d %v, want 400 with %q", c.fields, code, out, c.want)
		}
	}
}

// TestUploadIdempotent: the same upload sent again with the same
// Idempotency-Key (the page's retry on 503) is the same message: the same
// id, one inbox entry.
func TestUploadIdempotent(t *testing.T) {
	url, _ := startWeb(t)
	ctype, body := form([][2]string{{"to", "bob"}, {"text", "once"}}, file{"a.bin", "application/octet-stream", random(400 << 10)})
	var ids []string
	for range 2 {
		req, _ := http.NewRequest("POST", url+"/api/v1/messages", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer alice-token")
		req.Header.Set("Content-Type", ctype)
		req.Header.Set("Idempotency-Key", "retry-me")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("upload: %d %v", resp.StatusCode, out)
		}
		ids = append(ids, out["id"].(string))
	}
	if ids[0] != ids[1] {
		t.Fatalf("ids %v, want one", ids)
	}
	inboxMessage(t, url, "bob-token", ids[0])
	_, _, b := get(t, url+"/api/v1/inbox", "bob-token")
	var p web.Page
	json.Unmarshal(b, &p)
	if len(p.Messages) != 1 {
		t.Fatalf("bob's inbox holds %d messages, want 1", len(p.Messages))
	}
}

// TestUploadLimit: files of MaxUpload bytes in all are taken, one byte
// more is 413 TOO_LARGE with a clear error, declared in Content-Length or
// not; nothing of a refused upload is sent.
func TestUploadLimit(t *testing.T) {
	const limit = 1 << 20
	dir := t.TempDir()
	url, _ := startWebWith(t, web.Config{MaxUpload: limit, UploadDir: dir})
	_, _, b := get(t, url+"/api/v1/limits", "alice-token")
	var lim web.Limits
	if json.Unmarshal(b, &lim) != nil || lim.MaxUpload != limit || lim.MaxFiles != web.MaxFiles {
		t.Fatalf("limits %s", b)
	}

	ctype, body := form([][2]string{{"to", "alice"}, {"text", "at the limit"}}, file{"a.bin", "", random(limit / 2)}, file{"b.bin", "", random(limit / 2)})
	if code, out := postForm(t, url, "alice-token", ctype, bytes.NewReader(body)); code != http.StatusAccepted {
		t.Fatalf("files of exactly the limit: %d %v", code, out)
	}

	ctype, body = form([][2]string{{"to", "alice"}, {"text", "over the limit"}}, file{"a.bin", "", random(limit / 2)}, file{"b.bin", "", random(limit/2 + 1)})
	code, out := postForm(t, url, "alice-token", ctype, bytes.NewReader(body))
	if code != http.StatusRequestEntityTooLarge || out["code"] != "TOO_LARGE" || !strings.Contains(fmt.Sprint(out["error"]), fmt.Sprintf("attachments over %d bytes", limit)) {
		t.Fatalf("one byte over: %d %v", code, out)
	}
	// the same without Content-Length (chunked)
	pr, pw := io.Pipe()
	go func() { pw.Write(body); pw.Close() }()
	if code, out := postForm(t, url, "alice-token", ctype, pr); code != http.StatusRequestEntityTooLarge || out["code"] != "TOO_LARGE" {
		t.Fatalf("one byte over, chunked: %d %v", code, out)
	}
	// a body declared larger than any upload is refused before it is read
	bigType, big := form([][2]string{{"to", "alice"}, {"text", "far over"}}, file{"big.bin", "", random(3 * limit)})
	if code, out := postForm(t, url, "alice-token", bigType, bytes.NewReader(big)); code != http.StatusRequestEntityTooLarge || !strings.Contains(fmt.Sprint(out["error"]), "at most") {
		t.Fatalf("declared too large: %d %v", code, out)
	}
	waitEmpty(t, dir)
	_, _, b = get(t, url+"/api/v1/inbox", "alice-token")
	var p web.Page
	json.Unmarshal(b, &p)
	if len(p.Messages) != 1 || p.Messages[0].Text != "at the limit" {
		t.Fatalf("alice's inbox holds %d messages, want only the one at the limit", len(p.Messages))
	}
}

// waitEmpty waits until dir holds no file.
func waitEmpty(t *testing.T, dir string) {
	t.Helper()
	fabrictest.Eventually(t, 10*time.Second, dir+" empty", func() bool {
		es, _ := os.ReadDir(dir)
		return len(es) == 0
	})
}

// TestUploadInterrupted: a client that closes its connection in the middle
// of a file leaves no temporary file, and nothing is sent.
func TestUploadInterrupted(t *testing.T) {
	dir := t.TempDir()
	url, _ := startWebWith(t, web.Config{UploadDir: dir})
	ctype, body := form([][2]string{{"to", "alice"}, {"text", "never whole"}}, file{"big.bin", "application/octet-stream", random(4 << 20)})
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "POST /api/v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer alice-token\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n", ctype, len(body))
	if _, err := c.Write(body[:2<<20]); err != nil {
		t.Fatal(err)
	}
	fabrictest.Eventually(t, 10*time.Second, "the upload's temporary file", func() bool {
		es, _ := os.ReadDir(dir)
		return len(es) == 1
	})
	c.Close() // mid-file
	waitEmpty(t, dir)
	time.Sleep(500 * time.Millisecond)
	_, _, b := get(t, url+"/api/v1/inbox", "alice-token")
	var p web.Page
	json.Unmarshal(b, &p)
	if len(p.Messages) != 0 {
		t.Fatalf("an interrupted upload was sent: %+v", p.Messages)
	}
	_, _, metrics := get(t, url+"/metrics", "")
	if bytes.Contains(metrics, []byte(`code="202",route="POST /api/v1/messages"`)) {
		t.Fatal("an interrupted upload was accepted")
	}
}
