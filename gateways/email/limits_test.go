package email

import (
	"bufio"
	"context"
	"encoding/base64"
	"io"
	"net"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/uims/uims/gateways/kit/authlimit"
	"github.com/uims/uims/gateways/web"
)

// dialIdle connects from local (nil: any) and reads the first reply
// line, which must come within a second.
func dialIdle(t *testing.T, addr string, local net.IP) (net.Conn, string) {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if local != nil {
		d.LocalAddr = &net.TCPAddr{IP: local}
	}
	n, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	n.SetReadDeadline(time.Now().Add(time.Second))
	line, err := textproto.NewReader(bufio.NewReader(n)).ReadLine()
	if err != nil {
		t.Fatalf("no first reply within a second: %v", err)
	}
	n.SetReadDeadline(time.Time{})
	return n, line
}

// TestSMTPConnectionsPerAddress: idle connections from one address hold at
// most MaxPerIP slots; the next from that address is answered 421 4.7.0 at
// once, a client from another address gets its banner at once and
// delivers, and a closed connection gives its slot back.
func TestSMTPConnectionsPerAddress(t *testing.T) {
	const perIP = 5
	s := startSystem(t, Config{MaxPerIP: perIP, MaxConnections: 50})
	var idle []net.Conn
	for range perIP {
		n, line := dialIdle(t, s.smtp, net.IPv4(127, 0, 0, 1))
		if !strings.HasPrefix(line, "220 ") {
			t.Fatalf("banner %q", line)
		}
		idle = append(idle, n)
	}
	start := time.Now()
	n, line := dialIdle(t, s.smtp, net.IPv4(127, 0, 0, 1))
	if line != "421 4.7.0 too many connections from your address" {
		t.Fatalf("connection %d: %q, want 421 4.7.0", perIP+1, line)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("refusal took %v", d)
	}
	n.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := n.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("refused connection not closed: %v", err)
	}

	// Another address: banner at once, and the mail is delivered.
	start = time.Now()
	c := dialSMTPFrom(t, s.smtp, net.IPv4(127, 0, 0, 2))
	if d := time.Since(start); d > time.Second {
		t.Fatalf("banner for another address took %v", d)
	}
	if code, msg := c.send("someone@outside.test", "bob@example.test", mailText("someone@outside.test", "bob@example.test", "limits", "still served")); code != 250 {
		t.Fatalf("delivery from another address: %d %s", code, msg)
	}
	s.waitInbox("bob-token", "the mail from another address", func(m web.Message) bool { return m.Subject == "limits" })

	// A slot given back is taken again.
	idle[0].Close()
	waitBanner(t, s.smtp)
	if got := s.mail.ln.refusedAddr.Load(); got < 1 {
		t.Fatalf("refusals counted: %d", got)
	}
}

// waitBanner waits until a connection from 127.0.0.1 is
// greeted (the server sees the close a moment after the client).
func waitBanner(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, line := dialIdle(t, addr, net.IPv4(127, 0, 0, 1))
		if strings.HasPrefix(line, "220 ") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no slot after a close: %q", line)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSMTPGlobalConnectionCap: beyond MaxConnections every client is
// answered 421 4.3.2 at once instead of waiting in the listen queue.
func TestSMTPGlobalConnectionCap(t *testing.T) {
	s := startSystem(t, Config{MaxConnections: 2, MaxPerIP: 10})
	dialIdle(t, s.smtp, net.IPv4(127, 0, 0, 1))
	dialIdle(t, s.smtp, net.IPv4(127, 0, 0, 2))
	if _, line := dialIdle(t, s.smtp, net.IPv4(127, 0, 0, 3)); line != "421 4.3.2 too many connections, try again later" {
		t.Fatalf("third connection: %q", line)
	}
}

// TestSMTPIdleBeforeMailClosed: before MAIL (or AUTH) a command must come
// within PreMailTimeout, and the whole phase ends after four of it; after
// MAIL the normal ReadTimeout applies.
func TestSMTPIdleBeforeMailClosed(t *testing.T) {
	s := startSystem(t, Config{PreMailTimeout: time.Second})

	// Silent after the banner: 421 4.4.2 and closed after about a second.
	n, _ := dialIdle(t, s.smtp, nil)
	start := time.Now()
	n.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := textproto.NewReader(bufio.NewReader(n))
	line, err := r.ReadLine()
	if err != nil || !strings.HasPrefix(line, "421 4.4.2") {
		t.Fatalf("idle connection: %q %v, want 421 4.4.2", line, err)
	}
	if d := time.Since(start); d < 800*time.Millisecond || d > 3*time.Second {
		t.Fatalf("closed after %v, want about 1 s", d)
	}
	if _, err := r.ReadLine(); err != io.EOF {
		t.Fatalf("not closed: %v", err)
	}

	// NOOP every half second: still closed at the end of the phase (4 s).
	c := dialSMTP(t, s.smtp)
	start = time.Now()
	for {
		if err := c.c.PrintfLine("NOOP"); err != nil {
			break
		}
		code, _, err := c.c.ReadResponse(0)
		if err != nil || code != 250 {
			break
		}
		if time.Since(start) > 8*time.Second {
			t.Fatal("NOOPs kept the connection past the pre-MAIL phase")
		}
		time.Sleep(500 * time.Millisecond)
	}
	if d := time.Since(start); d < 3*time.Second {
		t.Fatalf("NOOP client closed after %v, want about 4 s", d)
	}

	// After MAIL the pre-MAIL deadline is gone.
	c = dialSMTP(t, s.smtp)
	c.cmd(250, "MAIL FROM:<someone@outside.test>")
	time.Sleep(1500 * time.Millisecond)
	c.cmd(250, "RCPT TO:<bob@example.test>")
}

// TestSMTPAuthLockout: failed AUTH locks the user name out; then even the
// right password is answered 454 4.7.0 without asking the brokers (no
// store keys), while another user still authenticates.
func TestSMTPAuthLockout(t *testing.T) {
	s := startSystem(t, Config{AuthPerUser: authlimit.Policy{Failures: 3, Window: time.Minute, Lockout: time.Minute}})
	plain := func(user, pass string) string {
		return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
	}
	c := dialSMTP(t, s.smtp)
	for range 3 {
		c.cmd(535, "AUTH PLAIN %s", plain("alice", "wrong"))
	}
	ctx := context.Background()
	before := s.f.RDB.DBSize(ctx).Val()
	c = dialSMTP(t, s.smtp)
	for range 10 {
		c.cmd(454, "AUTH PLAIN %s", plain("Alice", "wrong"))
	}
	_, msg := c.cmd(454, "AUTH PLAIN %s", plain("alice", "alice-pw"))
	if !strings.Contains(msg, "Too many failed authentications") {
		t.Fatalf("lockout reply %q", msg)
	}
	if after := s.f.RDB.DBSize(ctx).Val(); after != before {
		t.Fatalf("store keys %d → %d during the lockout", before, after)
	}
	c = dialSMTP(t, s.smtp)
	c.cmd(235, "AUTH PLAIN %s", plain("quiet", "quiet-pw"))
}
