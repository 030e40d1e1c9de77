package email

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/web"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/schemas"
)

// system is a test fabric with a broker, the real web gateway and the
// e-mail gateway, all on free ports.
type system struct {
	t      *testing.T
	f      *fabrictest.Fabric
	web    *web.Gateway
	mail   *Gateway
	webURL string
	smtp   string
}

// testProfiles are the clients of the tests: alice and bob read on the web
// and have local e-mail addresses; alice may submit by SMTP.
func testProfiles() []*schemas.Profile {
	return []*schemas.Profile{
		{ID: "alice", Name: "Alice", Token: "alice-token", Prefer: []string{"web"},
			Addresses: map[string]string{"web": "alice", "email": "alice@example.test"},
			SMTP:      &schemas.SMTPCredentials{Username: "alice", Password: "alice-pw"}},
		{ID: "bob", Name: "Bob", Token: "bob-token", Prefer: []string{"web"},
			Addresses: map[string]string{"web": "bob", "email": "bob@example.test"}},
		{ID: "quiet", Name: "Quiet", Token: "quiet-token", Prefer: []string{"web"},
			Addresses: map[string]string{"web": "quiet", "email": "quiet@example.test"},
			SMTP:      &schemas.SMTPCredentials{Username: "quiet", Password: "quiet-pw"},
			Receipts:  &schemas.ReceiptPrefs{}},
		// carol reads e-mail elsewhere: messages for her go out by the relay.
		{ID: "carol", Name: "Carol", Token: "carol-token", Prefer: []string{"email"},
			Addresses: map[string]string{"email": "carol@outside.test"}},
	}
}

// startSystem starts the system; cfg gets the test's listen address and
// local domain unless set.
func startSystem(t *testing.T, cfg Config, opts ...func(*Gateway)) *system {
	t.Helper()
	f := fabrictest.New(t)
	f.StartBroker(broker.Config{})
	f.PutProfiles(testProfiles()...)
	s := &system{t: t, f: f}

	wg, err := web.New(web.Config{Addr: "127.0.0.1:0"}, f.Conn("web"), f.Keyring("web"), f.Log)
	if err != nil {
		t.Fatal(err)
	}
	s.web = wg
	runUntilCleanup(t, "web", wg.Run)
	s.webURL = "http://" + wg.Addr()

	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Domains == nil {
		cfg.Domains = []string{"example.test"}
	}
	if cfg.Retry == nil {
		cfg.Retry = []time.Duration{200 * time.Millisecond}
	}
	g, err := New(cfg, f.Conn("email"), f.Keyring("email"), f.Log)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range opts {
		o(g)
	}
	s.mail = g
	runUntilCleanup(t, "email", g.Run)
	s.smtp = g.Addr()
	return s
}

// runUntilCleanup runs a component until the test ends and waits until it
// serves.
func runUntilCleanup(t *testing.T, name string, run func(context.Context, func()) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan struct{}), make(chan error, 1)
	go func() { done <- run(ctx, func() { close(ready) }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s stopped: %v", name, err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("%s stopped: %v", name, err)
	case <-time.After(20 * time.Second):
		t.Fatalf("%s not ready", name)
	}
}

// api calls the web gateway's HTTP API as the client with token.
func (s *system) api(method, path, token, body string, out any) int {
	s.t.Helper()
	req, _ := http.NewRequest(method, s.webURL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			s.t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
		}
	}
	return resp.StatusCode
}

// inbox returns the web inbox of the client with token.
func (s *system) inbox(token string) []web.Message {
	var r struct{ Messages []web.Message }
	if code := s.api("GET", "/api/v1/inbox", token, "", &r); code != 200 {
		s.t.Fatalf("inbox: %d", code)
	}
	return r.Messages
}

// waitInbox waits for a message in the web inbox that satisfies match.
func (s *system) waitInbox(token string, what string, match func(web.Message) bool) web.Message {
	s.t.Helper()
	var found web.Message
	fabrictest.Eventually(s.t, 20*time.Second, what, func() bool {
		for _, m := range s.inbox(token) {
			if match(m) {
				found = m
				return true
			}
		}
		return false
	})
	return found
}

// noInbox checks that no message matching match arrives within d.
func (s *system) noInbox(token string, d time.Duration, what string, match func(web.Message) bool) {
	s.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		for _, m := range s.inbox(token) {
			if match(m) {
				s.t.Fatalf("unexpected %s: %+v", what, m)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// webSend sends a message from the web as the client with token.
func (s *system) webSend(token, to, subject, text string) web.SendResponse {
	s.t.Helper()
	body, _ := json.Marshal(web.SendRequest{To: to, Subject: subject, Text: text})
	var r web.SendResponse
	var code int
	fabrictest.Eventually(s.t, 10*time.Second, "web send to "+to, func() bool {
		code = s.api("POST", "/api/v1/messages", token, string(body), &r)
		return code != http.StatusServiceUnavailable
	})
	if code != http.StatusAccepted {
		s.t.Fatalf("web send to %s: %d %+v", to, code, r)
	}
	return r
}

// waitState waits until the brokers report the message in state and
// returns its status.
func (s *system) waitState(token, id, state string) schemas.TxStatus {
	s.t.Helper()
	var st schemas.TxStatus
	fabrictest.Eventually(s.t, 20*time.Second, "message "+id+" "+state, func() bool {
		st = schemas.TxStatus{}
		s.api("GET", "/api/v1/messages/"+id, token, "", &st)
		return st.State == state
	})
	return st
}

// lastReason returns the reason of the last history entry with status.
func lastReason(st schemas.TxStatus, status string) string {
	r := ""
	for _, h := range st.History {
		if h.Status == status {
			r = h.Code + " " + h.Reason
		}
	}
	return r
}

// smtpConn is a raw SMTP dialogue, for what no client program sends.
type smtpConn struct {
	t *testing.T
	c *textproto.Conn
	n net.Conn
}

func dialSMTP(t *testing.T, addr string) *smtpConn {
	t.Helper()
	return dialSMTPFrom(t, addr, nil)
}

// dialSMTPFrom is dialSMTP from the local address local (nil: any).
func dialSMTPFrom(t *testing.T, addr string, local net.IP) *smtpConn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if local != nil {
		d.LocalAddr = &net.TCPAddr{IP: local}
	}
	n, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	n.SetDeadline(time.Now().Add(60 * time.Second))
	c := &smtpConn{t: t, c: textproto.NewConn(n), n: n}
	t.Cleanup(func() { c.c.Close() })
	c.expect(220)
	c.cmd(250, "EHLO client.test")
	return c
}

// cmd sends a command and checks the reply code class (2, 3, 4, 5) or the
// exact code; it returns the reply.
func (c *smtpConn) cmd(want int, format string, args ...any) (int, string) {
	c.t.Helper()
	if err := c.c.PrintfLine(format, args...); err != nil {
		c.t.Fatal(err)
	}
	return c.expect(want)
}

func (c *smtpConn) expect(want int) (int, string) {
	c.t.Helper()
	code, msg, err := c.c.ReadResponse(0)
	if err != nil && code == 0 {
		c.t.Fatalf("reading reply: %v", err)
	}
	if !codeMatches(code, want) {
		c.t.Fatalf("reply %d %s, want %d", code, msg, want)
	}
	return code, msg
}

// raw writes bytes as they are.
func (c *smtpConn) raw(b string) {
	c.t.Helper()
	if _, err := c.c.W.WriteString(b); err != nil {
		c.t.Fatal(err)
	}
	if err := c.c.W.Flush(); err != nil {
		c.t.Fatal(err)
	}
}

// send runs one whole transaction and returns the final reply.
func (c *smtpConn) send(from, to, data string) (int, string) {
	c.t.Helper()
	c.cmd(250, "MAIL FROM:<%s>", from)
	c.cmd(250, "RCPT TO:<%s>", to)
	c.cmd(354, "DATA")
	c.raw(dotStuff(data) + ".\r\n")
	return c.expect(0)
}

func codeMatches(code, want int) bool {
	switch {
	case want == 0:
		return true
	case want < 10:
		return code/100 == want
	}
	return code == want
}

// dotStuff prepares data for DATA (RFC 5321 §4.5.2) and ends it with CRLF.
func dotStuff(data string) string {
	var b strings.Builder
	sc := bufio.NewScanner(strings.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := strings.TrimSuffix(sc.Text(), "\r")
		if strings.HasPrefix(line, ".") {
			b.WriteByte('.')
		}
		b.WriteString(line)
		b.WriteString("\r\n")
	}
	return b.String()
}

// mailText builds a simple message.
func mailText(from, to, subject, body string, extra ...string) string {
	h := fmt.Sprintf("From: %s\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%d.%s>\r\nDate: %s\r\n",
		from, to, subject, time.Now().UnixNano(), "test@client.test", time.Now().Format(time.RFC1123Z))
	for _, e := range extra {
		h += e + "\r\n"
	}
	return h + "\r\n" + body + "\r\n"
}
