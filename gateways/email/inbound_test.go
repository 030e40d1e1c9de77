package email

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/uims/uims/gateways/web"
)

// swaks (a real SMTP client) sends to our listener; the message shows up
// in bob's web inbox with its attachments, which keep their types.
func TestSwaksToWebInbox(t *testing.T) {
	s := startSystem(t, Config{})
	dir := t.TempDir()
	report := filepath.Join(dir, "report.txt")
	os.WriteFile(report, []byte("quarterly numbers\n"), 0o644)
	fax := filepath.Join(dir, "fax.tif")
	tiff := append([]byte("II*\x00"), bytes.Repeat([]byte{0x55}, 2000)...)
	os.WriteFile(fax, tiff, 0o644)

	out, code := swaks(t, "--server", s.smtp, "--from", "dave@outside.test", "--to", "bob@example.test",
		"--header", "Subject: swaks test", "--body", "hello from swaks",
		"--attach-type", "text/plain", "--attach", report, "--attach-type", "image/tiff", "--attach", fax)
	if code != 0 || !strings.Contains(out, "<-  250") {
		t.Fatalf("swaks failed (%d):\n%s", code, out)
	}
	m := s.waitInbox("bob-token", "the swaks message", func(m web.Message) bool { return m.Subject == "swaks test" })
	if !strings.Contains(m.Text, "hello from swaks") || m.Medium != "email" || m.From.Address != "dave@outside.test" {
		t.Fatalf("message %+v", m)
	}
	types := map[string]string{}
	for _, a := range m.Attachments {
		types[a.Name] = a.Type
	}
	if types["report.txt"] != "text/plain" || types["fax.tif"] != "image/tiff" {
		t.Fatalf("attachments %+v", m.Attachments)
	}

	// A client is also reachable as <client id>@<local domain>.
	out, code = swaks(t, "--server", s.smtp, "--from", "dave@outside.test", "--to", "Alice@Example.TEST",
		"--header", "Subject: by id", "--body", "to alice by id")
	if code != 0 {
		t.Fatalf("swaks to alice (%d):\n%s", code, out)
	}
	s.waitInbox("alice-token", "the message by id", func(m web.Message) bool { return m.Subject == "by id" })
}

// Mail for an unknown user of a local domain is refused at RCPT with 550.
func TestUnknownRecipient(t *testing.T) {
	s := startSystem(t, Config{})
	out, code := swaks(t, "--server", s.smtp, "--from", "dave@outside.test", "--to", "nobody@example.test",
		"--quit-after", "RCPT")
	if code == 0 || !strings.Contains(out, "550 5.1.1") {
		t.Fatalf("want 550 5.1.1 (%d):\n%s", code, out)
	}
}

// The relay matrix (reliability note G1): every trick and every foreign
// domain is refused; a proper recipient in the same session still works.
func TestRelayMatrix(t *testing.T) {
	s := startSystem(t, Config{})
	c := dialSMTP(t, s.smtp)
	c.cmd(250, "MAIL FROM:<dave@outside.test>")
	for _, rcpt := range []string{
		`a%b@example.test`, `bob%outside.test@example.test`, `"a@x.test"@example.test`, `"bob@outside.test"@example.test`,
		`@example.test:a@x.test`, `@example.test:bob@outside.test`, `x!a@example.test`, `outside.test!bob@example.test`,
		`x!a`, `bob@outside.test`, `bob@example.test.evil.test`, `bob@[127.0.0.1]`, `bob@example.test@outside.test`,
	} {
		code, msg := c.cmd(5, "RCPT TO:<%s>", rcpt)
		t.Logf("RCPT TO:<%s> -> %d %s", rcpt, code, msg)
		if strings.Contains(rcpt, "%") || strings.Contains(rcpt, "!") || strings.Contains(rcpt, `"`) || strings.HasSuffix(rcpt, "outside.test") {
			if code != 550 && code != 501 && code != 553 {
				t.Errorf("%s: %d %s", rcpt, code, msg)
			}
		}
	}
	// Without AUTH nothing is relayed; a null sender changes nothing.
	c.cmd(250, "RSET")
	c.cmd(250, "MAIL FROM:<>")
	c.cmd(550, "RCPT TO:<victim@outside.test>")
	c.cmd(250, "RSET")
	code, msg := c.send("dave@outside.test", "bob@example.test", mailText("dave@outside.test", "bob@example.test", "after the matrix", "still works"))
	if code != 250 {
		t.Fatalf("proper message: %d %s", code, msg)
	}
	s.waitInbox("bob-token", "the proper message", func(m web.Message) bool { return m.Subject == "after the matrix" })

	// Our own addresses are for authenticated clients only (no spoofing of
	// local senders), in the envelope and in the From field.
	c.cmd(550, "MAIL FROM:<alice@example.test>")
	if code, msg := c.send("dave@outside.test", "bob@example.test", mailText("Alice <alice@example.test>", "bob@example.test", "spoofed", "x")); code != 550 {
		t.Fatalf("spoofed From: %d %s", code, msg)
	}
}

// SIZE (RFC 1870): a declared or actual size over the limit gets 552.
func TestSizeLimit(t *testing.T) {
	s := startSystem(t, Config{MaxSize: 64 << 10})
	c := dialSMTP(t, s.smtp)
	_, ehlo := c.cmd(250, "EHLO client.test")
	if !strings.Contains(ehlo, "SIZE 65536") {
		t.Fatalf("EHLO does not announce SIZE: %s", ehlo)
	}
	c.cmd(552, "MAIL FROM:<dave@outside.test> SIZE=100000")

	big := make([]byte, 100<<10)
	rand.Read(big)
	bodyFile := filepath.Join(t.TempDir(), "body.txt")
	hexBody := fmt.Sprintf("%x", big)
	var lines strings.Builder
	for i := 0; i < len(hexBody); i += 76 {
		lines.WriteString(hexBody[i:min(i+76, len(hexBody))] + "\n")
	}
	os.WriteFile(bodyFile, []byte(lines.String()), 0o644)
	out, code := swaks(t, "--server", s.smtp, "--from", "dave@outside.test", "--to", "bob@example.test",
		"--header", "Subject: too big", "--body", bodyFile)
	if code == 0 || !strings.Contains(out, "552 5.3.4") {
		t.Fatalf("want 552 (%d):\n%s", code, out[max(0, len(out)-2000):])
	}
	c2 := dialSMTP(t, s.smtp)
	if code, msg := c2.send("dave@outside.test", "bob@example.test", mailText("dave@outside.test", "bob@example.test", "small", "fits")); code != 250 {
		t.Fatalf("small message: %d %s", code, msg)
	}
	s.waitInbox("bob-token", "the small message", func(m web.Message) bool { return m.Subject == "small" })
	for _, m := range s.inbox("bob-token") {
		if m.Subject == "too big" {
			t.Fatal("oversize message delivered")
		}
	}
}

// Hostile MIME (reliability note G5) and CR/LF in headers (G2): a clear
// rejection or a safe result, no crash, and mail before and after still
// delivered.
func TestHostileMIME(t *testing.T) {
	s := startSystem(t, Config{})
	deep := "Content-Type: multipart/mixed; boundary=\"b0\"\r\n\r\n"
	for i := 0; i < 60; i++ {
		deep += fmt.Sprintf("--b%d\r\nContent-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n", i, i+1)
	}
	deep += "--b60\r\nContent-Type: text/plain\r\n\r\ndeep\r\n--b60--\r\n"
	var many strings.Builder
	many.WriteString("Content-Type: multipart/mixed; boundary=\"m\"\r\n\r\n")
	for i := 0; i < 2000; i++ {
		fmt.Fprintf(&many, "--m\r\nContent-Type: text/plain\r\n\r\npart %d\r\n", i)
	}
	many.WriteString("--m--\r\n")
	cases := []struct {
		name, headers, body string
		wantCode            int // 0: 250 or 5xx
	}{
		{"unterminated multipart", "Content-Type: multipart/mixed; boundary=\"zz\"\r\n", "--zz\r\nContent-Type: text/plain\r\n\r\nno end", 0},
		{"no delimiter at all", "Content-Type: multipart/mixed; boundary=\"zz\"\r\n", "just text", 0},
		{"missing boundary", "Content-Type: multipart/mixed\r\n", "--x\r\n\r\nhi\r\n--x--", 0},
		{"deep nesting", strings.SplitN(deep, "\r\n\r\n", 2)[0] + "\r\n", strings.SplitN(deep, "\r\n\r\n", 2)[1], 554},
		{"many parts", strings.SplitN(many.String(), "\r\n\r\n", 2)[0] + "\r\n", strings.SplitN(many.String(), "\r\n\r\n", 2)[1], 554},
		{"bad base64", "Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n", "!!!not base64@@@", 0},
		{"unknown charset", "Content-Type: text/plain; charset=x-klingon\r\n", "qapla", 0},
		{"unknown encoding", "Content-Type: text/plain\r\nContent-Transfer-Encoding: x-rot13\r\n", "uryyb", 0},
		{"encoded CRLF in subject", "X-Note: injection\r\n", "body", 250},
	}
	c := dialSMTP(t, s.smtp)
	send := func(subject, extra, body string) (int, string) {
		data := "From: dave@outside.test\r\nTo: bob@example.test\r\nSubject: " + subject + "\r\n" + extra + "\r\n" + body + "\r\n"
		return c.send("dave@outside.test", "bob@example.test", data)
	}
	for i, tc := range cases {
		before := fmt.Sprintf("before %d", i)
		if code, msg := send(before, "", "ok"); code != 250 {
			t.Fatalf("%s: message before: %d %s", tc.name, code, msg)
		}
		subject := "hostile " + tc.name
		if tc.name == "encoded CRLF in subject" {
			subject = "=?utf-8?q?hostile_encoded=0D=0ABcc:_victim@outside.test=0D=0A?="
		}
		code, msg := send(subject, tc.headers, tc.body)
		t.Logf("%s -> %d %s", tc.name, code, msg)
		if code != 250 && code/100 != 5 || tc.wantCode != 0 && code != tc.wantCode {
			t.Errorf("%s: reply %d %s", tc.name, code, msg)
		}
		after := fmt.Sprintf("after %d", i)
		if code, msg := send(after, "", "ok"); code != 250 {
			t.Fatalf("%s: message after: %d %s", tc.name, code, msg)
		}
	}
	s.waitInbox("bob-token", "the last message", func(m web.Message) bool { return m.Subject == fmt.Sprintf("after %d", len(cases)-1) })
	got := map[string]bool{}
	for _, m := range s.inbox("bob-token") {
		got[m.Subject] = true
		if strings.ContainsAny(m.Subject, "\r\n") {
			t.Errorf("subject with CR/LF reached the inbox: %q", m.Subject)
		}
		if strings.HasPrefix(m.Subject, "hostile encoded") && !strings.Contains(m.Subject, "Bcc: victim") {
			t.Errorf("injected subject changed unexpectedly: %q", m.Subject)
		}
	}
	for i := range cases {
		if !got[fmt.Sprintf("before %d", i)] || !got[fmt.Sprintf("after %d", i)] {
			t.Errorf("%s: the messages around it were not all delivered", cases[i].name)
		}
	}
}

// SMTP smuggling (reliability note G3): only <CRLF>.<CRLF> ends the data,
// and data with a bare LF or CR is refused as a whole, so no hidden second
// message gets through.
func TestSMTPSmuggling(t *testing.T) {
	s := startSystem(t, Config{})
	for _, end := range []string{"\n.\n", "\n.\r\n", "\r\n.\n", "\r.\r\n"} {
		c := dialSMTP(t, s.smtp)
		c.cmd(250, "MAIL FROM:<dave@outside.test>")
		c.cmd(250, "RCPT TO:<bob@example.test>")
		c.cmd(354, "DATA")
		c.raw("From: dave@outside.test\r\nSubject: carrier\r\n\r\nfirst" + end +
			"MAIL FROM:<admin@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nsmuggled\r\n.\r\n")
		code, msg := c.expect(554)
		if !strings.Contains(msg, "bare CR or LF") {
			t.Errorf("%q: %d %s", end, code, msg)
		}
		// The next reply belongs to our next command: nothing was executed
		// from inside the data.
		if _, msg := c.cmd(250, "NOOP"); !strings.Contains(msg, "nothing") {
			t.Fatalf("%q: smuggled commands were answered: %s", end, msg)
		}
	}
	c := dialSMTP(t, s.smtp)
	if code, msg := c.send("dave@outside.test", "bob@example.test", mailText("dave@outside.test", "bob@example.test", "clean", "clean")); code != 250 {
		t.Fatalf("clean: %d %s", code, msg)
	}
	s.waitInbox("bob-token", "the clean message", func(m web.Message) bool { return m.Subject == "clean" })
	for _, m := range s.inbox("bob-token") {
		if m.Subject == "smuggled" || m.Subject == "carrier" {
			t.Fatalf("smuggled or carrier message delivered: %+v", m)
		}
	}
}

// A mail loop is cut (RFC 5321 §6.3).
func TestMailLoop(t *testing.T) {
	s := startSystem(t, Config{})
	c := dialSMTP(t, s.smtp)
	hops := strings.Repeat("Received: from a.test by b.test; Thu, 1 Jan 2026 00:00:00 +0000\r\n", maxReceived+1)
	code, msg := c.send("dave@outside.test", "bob@example.test", hops+mailText("dave@outside.test", "bob@example.test", "loop", "loop"))
	if code != 554 || !strings.Contains(msg, "loop") {
		t.Fatalf("loop: %d %s", code, msg)
	}
}

func TestBareNewline(t *testing.T) {
	for in, want := range map[string]int{"": -1, "a\r\nb\r\n": -1, "a\nb": 1, "a\rb": 1, "a\r": 1, "\n": 0, "ab\r\n\r\n.\r\n": -1} {
		if got := bareNewline([]byte(in)); got != want {
			t.Errorf("bareNewline(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestCountReceived(t *testing.T) {
	raw := "Received: a\r\nRECEIVED: b\r\n  folded\r\nX-Received: c\r\nSubject: s\r\n\r\nReceived: in body\r\n"
	if n := countReceived([]byte(raw)); n != 2 {
		t.Fatalf("countReceived = %d", n)
	}
}

func TestMsgIDStable(t *testing.T) {
	a := msgIDFor("email", "x@y", "bob@example.test", []byte("sum"))
	if a != msgIDFor("email", "x@y", "bob@example.test", []byte("sum")) || len(a) != 32 {
		t.Fatal("not stable")
	}
	if a == msgIDFor("email", "x@y", "alice@example.test", []byte("sum")) || a == msgIDFor("email", "x@", "ybob@example.test", []byte("sum")) {
		t.Fatal("ids collide")
	}
}

// FuzzBareNewline checks the smuggling guard against a direct definition:
// data passes only if every CR is followed by LF and every LF preceded by
// CR.
func FuzzBareNewline(f *testing.F) {
	for _, s := range []string{"a\r\n", "a\n.\n", "\r\r\n", "\r\n.\r\n", "x\r"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		want := -1
		for i := range b {
			if b[i] == '\r' && (i+1 == len(b) || b[i+1] != '\n') || b[i] == '\n' && (i == 0 || b[i-1] != '\r') {
				want = i
				break
			}
		}
		if got := bareNewline(b); got != want {
			t.Fatalf("bareNewline(%q) = %d, want %d", b, got, want)
		}
		countReceived(b) // must not panic
	})
}

// Debian postfix, a real MTA, relays a domain to our gateway: its mail
// reaches bob's inbox, and our 550 for an unknown user reaches postfix.
func TestPostfixRelaysToGateway(t *testing.T) {
	s := startSystem(t, Config{})
	pf := startPostfix(t, s.smtp, "example.test")
	att := filepath.Join(t.TempDir(), "minutes.txt")
	os.WriteFile(att, []byte("minutes of the meeting\n"), 0o644)
	out, code := swaks(t, "--server", pf.Addr, "--from", "dave@upstream.test", "--to", "bob@example.test",
		"--header", "Subject: relayed by postfix", "--body", "hello through postfix", "--attach", att)
	if code != 0 {
		t.Fatalf("swaks to postfix (%d):\n%s", code, out)
	}
	m := s.waitInbox("bob-token", "the mail relayed by postfix", func(m web.Message) bool { return m.Subject == "relayed by postfix" })
	if !strings.Contains(m.Text, "hello through postfix") || len(m.Attachments) != 1 || m.Attachments[0].Name != "minutes.txt" {
		t.Fatalf("message %+v", m)
	}
	if out, code := swaks(t, "--server", pf.Addr, "--from", "dave@upstream.test", "--to", "nobody@example.test",
		"--header", "Subject: for nobody"); code != 0 {
		t.Fatalf("swaks to postfix (%d):\n%s", code, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(pf.log(), "said: 550 5.1.1") {
		if time.Now().After(deadline) {
			t.Fatalf("postfix did not get our 550:\n%s", pf.log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
