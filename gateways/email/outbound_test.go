package email

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/nats-io/nats.go"

	"github.com/uims/uims/gateways/email/mailmsg"
	"github.com/uims/uims/gateways/web"
	"github.com/uims/uims/schemas"
)

// A web message from alice to an outside address is delivered into mailpit
// (a real SMTP server) through the relay, threads, and alice gets the
// delivery receipt; a reply comes back into her inbox; a bounce that
// arrives later reaches her too.
func TestWebToOutsideThroughMailpit(t *testing.T) {
	mp := startMailpit(t)
	s := startSystem(t, Config{Relay: mp.SMTP})

	res := s.webSend("alice-token", "dave@outside.test", "web to mail", "hello dave, from the web")
	got := mp.waitFor("to:dave@outside.test subject:\"web to mail\"", 20*time.Second)
	if got.From.Address != "alice@example.test" || got.From.Name != "Alice" || !strings.Contains(got.Text, "hello dave, from the web") {
		t.Fatalf("mailpit got %+v", got)
	}
	raw := mp.raw(got.ID)
	if !strings.Contains(raw, "Message-ID: <"+res.ID+"@example.test>") || !strings.Contains(raw, "X-UIMS-Message-Id: "+res.ID) {
		t.Fatalf("identifiers missing:\n%s", raw)
	}
	s.waitState("alice-token", res.ID, schemas.StatusDelivered)

	// dave answers; the reply threads to alice's message.
	c := dialSMTP(t, s.smtp)
	reply := mailText("Dave <dave@outside.test>", "alice@example.test", "Re: web to mail", "thanks alice",
		"In-Reply-To: <"+res.ID+"@example.test>")
	if code, msg := c.send("dave@outside.test", "alice@example.test", reply); code != 250 {
		t.Fatalf("reply: %d %s", code, msg)
	}
	s.waitInbox("alice-token", "dave's reply", func(m web.Message) bool { return m.Subject == "Re: web to mail" })
	if id, err := s.mail.inReplyTo(t.Context(), res.ID+"@example.test"); id != res.ID {
		t.Fatalf("reply does not thread: %q %v", id, err)
	}

	// A client who prefers e-mail gets it at her outside address.
	res2 := s.webSend("alice-token", "carol", "to carol", "hello carol")
	got2 := mp.waitFor("to:carol@outside.test subject:\"to carol\"", 20*time.Second)
	if len(got2.To) != 1 || got2.To[0].Name != "Carol" {
		t.Fatalf("to carol: %+v", got2)
	}
	s.waitState("alice-token", res2.ID, schemas.StatusDelivered)
	// alice wants read receipts: the mail asks for a read notice, and
	// carol's mail program's notice (RFC 8098) marks the message read.
	if raw := mp.raw(got2.ID); !strings.Contains(raw, "Disposition-Notification-To: <bounces+"+res2.ID+"@example.test>") {
		t.Fatalf("no read notice requested:\n%s", raw)
	}
	mdn, err := mailmsg.ComposeMDN(mailmsg.MDN{ReportingUA: "mua.outside.test; Thunderbird", From: mail.Address{Address: "carol@outside.test"},
		To: mail.Address{Address: "bounces+" + res2.ID + "@example.test"}, OriginalMessageID: res2.ID + "@example.test", OriginalSubject: "to carol"})
	if err != nil {
		t.Fatal(err)
	}
	cm := dialSMTP(t, s.smtp)
	if code, msg := cm.send("", "bounces+"+res2.ID+"@example.test", string(mdn)); code != 250 {
		t.Fatalf("read notice: %d %s", code, msg)
	}
	s.waitState("alice-token", res2.ID, schemas.StatusRead)

	// Mail from an outside sender for carol is forwarded to her outside
	// address, from our own address (we do not send as dave's domain), with
	// Reply-To dave and dave's Message-ID kept for threading.
	cf := dialSMTP(t, s.smtp)
	fwd := mailText("Dave <dave@outside.test>", "carol@example.test", "forward me", "for carol", "Message-ID: <fwd-1@outside.test>")
	fwd = strings.Replace(fwd, "Message-ID: <", "X-Old-Id: <", 1) // keep only ours
	if code, msg := cf.send("dave@outside.test", "carol@example.test", fwd); code != 250 {
		t.Fatalf("forward: %d %s", code, msg)
	}
	gotF := mp.waitFor("to:carol@outside.test subject:\"forward me\"", 20*time.Second)
	if gotF.From.Address != "noreply@example.test" || !strings.Contains(gotF.From.Name, "Dave") ||
		len(gotF.ReplyTo) != 1 || gotF.ReplyTo[0].Address != "dave@outside.test" || gotF.MessageID != "fwd-1@outside.test" {
		t.Fatalf("forwarded: %+v", gotF)
	}

	// A mail too large for one stream message waits in the object store.
	big := strings.Repeat("all work and no play makes jack a dull boy\n", 36<<10) // 1.5 MiB
	res3 := s.webSend("alice-token", "dave@outside.test", "large", big)
	got3 := mp.waitFor("to:dave@outside.test subject:large", 30*time.Second)
	if !strings.Contains(got3.Text, "dull boy") {
		t.Fatalf("large mail: %+v", got3.mpSummary)
	}
	if raw := mp.raw(got3.ID); len(raw) < len(big) {
		t.Fatalf("large mail truncated: %d bytes", len(raw))
	}
	s.waitState("alice-token", res3.ID, schemas.StatusDelivered)

	// dave's server bounces the first message later: alice hears of it.
	bounce, err := mailmsg.ComposeDSN(mailmsg.DSN{ReportingMTA: "mx.outside.test", To: mail.Address{Address: "bounces+" + res.ID + "@example.test"},
		OriginalMessageID: res.ID + "@example.test",
		Recipients: []mailmsg.DSNRecipient{{FinalRecipient: "dave@outside.test", Action: mailmsg.ActionFailed, Status: "5.2.2",
			DiagnosticCode: "smtp; 552 5.2.2 mailbox full"}}})
	if err != nil {
		t.Fatal(err)
	}
	c2 := dialSMTP(t, s.smtp)
	if code, msg := c2.send("", "bounces+"+res.ID+"@example.test", string(bounce)); code != 250 {
		t.Fatalf("bounce: %d %s", code, msg)
	}
	m := s.waitInbox("alice-token", "the late bounce", func(m web.Message) bool {
		return m.From.Address == "MAILER-DAEMON@example.test" && strings.Contains(m.Text, "mailbox full")
	})
	t.Logf("late bounce in alice's inbox: %q", m.Subject)
}

// Submission: alice authenticates (AUTH PLAIN on loopback) with swaks and
// sends as herself to an outside address, which arrives in mailpit; she
// gets the delivery notice (DSN) in her inbox. Wrong credentials, another
// sender address or another From are refused; header injection does not
// reach the outgoing mail; a client with receipts switched off gets none.
func TestSubmission(t *testing.T) {
	mp := startMailpit(t)
	s := startSystem(t, Config{Relay: mp.SMTP})
	auth := []string{"--server", s.smtp, "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "alice-pw"}

	out, code := swaks(t, append(auth, "--from", "alice@example.test", "--to", "erin@outside.test",
		"--header", "Subject: submitted", "--body", "via submission")...)
	if code != 0 {
		t.Fatalf("submission (%d):\n%s", code, out)
	}
	got := mp.waitFor("to:erin@outside.test subject:submitted", 20*time.Second)
	if got.From.Address != "alice@example.test" || !strings.Contains(got.Text, "via submission") {
		t.Fatalf("mailpit got %+v", got)
	}
	dsn := s.waitInbox("alice-token", "the delivery notice", func(m web.Message) bool {
		return m.Subject == "Delivery Status Notification (Success)" && strings.Contains(m.Text, "erin@outside.test")
	})
	if dsn.From.Address != "MAILER-DAEMON@example.test" {
		t.Fatalf("notice %+v", dsn)
	}

	// Submission to a client by its address.
	if out, code := swaks(t, append(auth, "--from", "alice@example.test", "--to", "bob@example.test",
		"--header", "Subject: to bob by submission", "--body", "hi bob")...); code != 0 {
		t.Fatalf("to bob (%d):\n%s", code, out)
	}
	s.waitInbox("bob-token", "alice's submission", func(m web.Message) bool {
		return m.Subject == "to bob by submission" && m.From.Client == "alice"
	})

	// Refusals.
	out, code = swaks(t, "--server", s.smtp, "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "wrong",
		"--from", "alice@example.test", "--to", "erin@outside.test")
	if code == 0 || !strings.Contains(out, "535 5.7.8") {
		t.Fatalf("wrong password (%d):\n%s", code, out)
	}
	out, code = swaks(t, append(auth, "--from", "bob@example.test", "--to", "erin@outside.test")...)
	if code == 0 || !strings.Contains(out, "550 5.7.1") {
		t.Fatalf("other envelope sender (%d):\n%s", code, out)
	}
	out, code = swaks(t, append(auth, "--from", "alice@example.test", "--to", "erin@outside.test", "--h-From", "bob@example.test")...)
	if code == 0 || !strings.Contains(out, "550 5.7.1") {
		t.Fatalf("other From (%d):\n%s", code, out)
	}
	// Unauthenticated, an outside address is relaying.
	out, code = swaks(t, "--server", s.smtp, "--from", "alice@example.test", "--to", "erin@outside.test", "--quit-after", "RCPT")
	if code == 0 || !strings.Contains(out, "550 5.7.1") {
		t.Fatalf("relay without AUTH (%d):\n%s", code, out)
	}

	// CR/LF smuggled into the subject through an encoded word: the
	// outgoing mail has no extra header and no extra recipient (G2).
	out, code = swaks(t, append(auth, "--from", "alice@example.test", "--to", "frank@outside.test",
		"--header", "Subject: =?utf-8?q?injected=0D=0ABcc:_victim@outside.test=0D=0AX-Evil:_1?=", "--body", "injection test")...)
	if code != 0 {
		t.Fatalf("injection mail (%d):\n%s", code, out)
	}
	inj := mp.waitFor("to:frank@outside.test", 20*time.Second)
	rawInj := mp.raw(inj.ID)
	if len(inj.Bcc) != 0 || len(inj.Cc) != 0 || len(inj.To) != 1 || strings.Contains(rawInj, "\r\nBcc:") || strings.Contains(rawInj, "\r\nX-Evil:") {
		t.Fatalf("header injection reached the outgoing mail: %+v\n%s", inj, rawInj)
	}
	time.Sleep(300 * time.Millisecond)
	if n := len(mp.search("to:victim@outside.test")); n != 0 {
		t.Fatalf("victim got %d mails", n)
	}

	// A temporary failure (no SMS gateway for a phone number: NO_ROUTE)
	// gives 451 4.4.4.
	// (swaks takes a leading '+' for an option: go-smtp's client here.)
	pc, err := smtp.Dial(s.smtp)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if err := pc.Auth(sasl.NewPlainClient("", "alice", "alice-pw")); err != nil {
		t.Fatal(err)
	}
	err = pc.SendMail("alice@example.test", []string{"+15550123@example.test"},
		strings.NewReader(mailText("alice@example.test", "+15550123@example.test", "sms", "to a phone")))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 451 || se.EnhancedCode != (smtp.EnhancedCode{4, 4, 4}) {
		t.Fatalf("phone number without an SMS gateway: %v", err)
	}

	// quiet has receipts switched off in its profile: no notice.
	quiet := []string{"--server", s.smtp, "--auth", "PLAIN", "--auth-user", "quiet", "--auth-password", "quiet-pw"}
	if out, code := swaks(t, append(quiet, "--from", "quiet@example.test", "--to", "gina@outside.test",
		"--header", "Subject: quietly")...); code != 0 {
		t.Fatalf("quiet (%d):\n%s", code, out)
	}
	mp.waitFor("to:gina@outside.test", 20*time.Second)
	s.noInbox("quiet-token", 2*time.Second, "notice for quiet", func(m web.Message) bool { return true })
}

// Receipts to an outside sender: a DSN on delivery because it asked with
// NOTIFY=SUCCESS (RFC 3461), a read notice (RFC 8098) because it asked with
// Disposition-Notification-To; another sender who asked for nothing gets
// nothing.
func TestOutsideSenderReceipts(t *testing.T) {
	mp := startMailpit(t)
	s := startSystem(t, Config{Relay: mp.SMTP})
	c, err := smtp.Dial(s.smtp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	send := func(from, subject string, notify []smtp.DSNNotify, extra ...string) {
		t.Helper()
		if err := c.Mail(from, nil); err != nil {
			t.Fatal(err)
		}
		if err := c.Rcpt("bob@example.test", &smtp.RcptOptions{Notify: notify}); err != nil {
			t.Fatal(err)
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprint(w, mailText(from, "bob@example.test", subject, "please confirm", extra...))
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	send("eve@outside.test", "with receipts", []smtp.DSNNotify{smtp.DSNNotifySuccess, smtp.DSNNotifyFailure},
		"Disposition-Notification-To: Eve <eve@outside.test>")
	send("hal@outside.test", "without receipts", nil)

	dsn := mp.waitFor("to:eve@outside.test subject:\"Delivery Status Notification (Success)\"", 20*time.Second)
	if dsn.From.Address != "MAILER-DAEMON@example.test" {
		t.Fatalf("DSN %+v", dsn)
	}
	if raw := mp.raw(dsn.ID); !strings.Contains(raw, "Action: delivered") || !strings.Contains(raw, "Final-Recipient: rfc822; bob@example.test") {
		t.Fatalf("DSN body:\n%s", raw)
	}

	m := s.waitInbox("bob-token", "eve's message", func(m web.Message) bool { return m.Subject == "with receipts" })
	s.waitInbox("bob-token", "hal's message", func(m web.Message) bool { return m.Subject == "without receipts" })
	var r map[string]any
	if code := s.api("POST", "/api/v1/messages/"+m.ID+"/read", "bob-token", "", &r); code != 200 {
		t.Fatalf("read: %d %v", code, r)
	}
	mdn := mp.waitFor("to:eve@outside.test subject:\"Read: with receipts\"", 20*time.Second)
	if mdn.From.Address != "bob@example.test" {
		t.Fatalf("MDN %+v", mdn)
	}
	if raw := mp.raw(mdn.ID); !strings.Contains(raw, "Disposition: manual-action/MDN-sent-manually; displayed") {
		t.Fatalf("MDN body:\n%s", raw)
	}
	time.Sleep(time.Second)
	if n := len(mp.search("to:hal@outside.test")); n != 0 {
		t.Fatalf("hal, who asked for nothing, got %d notices", n)
	}
}

// Without a relay, mail to an outside address fails at once, for good
// (422 UNREACHABLE, no Retry-After), with a clear reason that the sender
// sees in its status events.
func TestNoRelay(t *testing.T) {
	s := startSystem(t, Config{})
	events := make(chan *nats.Msg, 64)
	sub, err := s.f.Conn("watch").ChanSubscribe(web.EventsSubject("alice"), events)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	for _, to := range []string{"dave@outside.test", "carol"} {
		body, _ := json.Marshal(web.SendRequest{To: to, Subject: "nowhere", Text: "no relay"})
		var r map[string]any
		code := s.api("POST", "/api/v1/messages", "alice-token", string(body), &r)
		t.Logf("POST to %s: %d %v", to, code, r)
		if code != 422 || r["code"] != schemas.CodeUnreachable.String() {
			t.Fatalf("POST to %s: %d %v, want 422 UNREACHABLE", to, code, r)
		}
		deadline := time.After(10 * time.Second)
		for found := false; !found; {
			select {
			case m := <-events:
				var ev web.Event
				json.Unmarshal(m.Data, &ev)
				if ev.Type == "status" && ev.Status.To == to && ev.Status.Status == schemas.StatusFailed {
					if !strings.Contains(ev.Status.Reason, ReasonNoRelay) {
						t.Fatalf("%s: reason %q", to, ev.Status.Reason)
					}
					found = true
				}
			case <-deadline:
				t.Fatalf("%s: no failed status event", to)
			}
		}
	}
}

// fakeRelay is a scripted smarthost: it refuses recipients named reject@
// permanently and later@ temporarily, and accepts the others.
type fakeRelay struct{}

func (fakeRelay) NewSession(*smtp.Conn) (smtp.Session, error) { return &fakeRelaySession{}, nil }

type fakeRelaySession struct{}

func (*fakeRelaySession) Reset()                               {}
func (*fakeRelaySession) Logout() error                        { return nil }
func (*fakeRelaySession) Mail(string, *smtp.MailOptions) error { return nil }
func (*fakeRelaySession) Data(r io.Reader) error {
	_, err := io.Copy(io.Discard, r)
	return err
}

func (*fakeRelaySession) Rcpt(to string, _ *smtp.RcptOptions) error {
	switch {
	case strings.HasPrefix(to, "reject@"):
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such mailbox"}
	case strings.HasPrefix(to, "later"):
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 1}, Message: "try later"}
	}
	return nil
}

// startFakeRelay runs the scripted smarthost on a free port.
func startFakeRelay(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := smtp.NewServer(fakeRelay{})
	srv.Domain = "relay.test"
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// The relay's answers become the message's outcome: a permanent refusal
// fails it with the relay's reason; a temporary one is retried until a
// bounce comes back (a DSN on our listener, matched by the VERP address or
// the ENVID) or until the gateway gives up.
func TestRelayFailures(t *testing.T) {
	relay := startFakeRelay(t)
	s := startSystem(t, Config{Relay: relay, GiveUp: time.Hour})

	res := s.webSend("alice-token", "reject@outside.test", "refused", "x")
	st := s.waitState("alice-token", res.ID, schemas.StatusFailed)
	if r := lastReason(st, schemas.StatusFailed); !strings.Contains(r, "550 5.1.1 no such mailbox") || !strings.HasPrefix(r, "UNKNOWN_RECIPIENT") {
		t.Fatalf("reason %q", r)
	}

	res = s.webSend("alice-token", "later@outside.test", "deferred", "x")
	time.Sleep(time.Second) // a few attempts
	var cur schemas.TxStatus
	s.api("GET", "/api/v1/messages/"+res.ID, "alice-token", "", &cur)
	if cur.State != schemas.StatusTransferred {
		t.Fatalf("deferred message is %s", cur.State)
	}
	// A bounce that names the message only by its Original-Envelope-Id.
	bounce, err := mailmsg.ComposeDSN(mailmsg.DSN{ReportingMTA: "relay.test", To: mail.Address{Address: "alice@example.test"},
		OriginalEnvelopeID: res.ID,
		Recipients: []mailmsg.DSNRecipient{{FinalRecipient: "later@outside.test", Action: mailmsg.ActionFailed, Status: "5.4.7",
			DiagnosticCode: "smtp; 451 4.4.1 try later"}}})
	if err != nil {
		t.Fatal(err)
	}
	c := dialSMTP(t, s.smtp)
	if code, msg := c.send("", "alice@example.test", string(bounce)); code != 250 {
		t.Fatalf("bounce: %d %s", code, msg)
	}
	st = s.waitState("alice-token", res.ID, schemas.StatusFailed)
	if r := lastReason(st, schemas.StatusFailed); !strings.Contains(r, "bounced by relay.test: 5.4.7") {
		t.Fatalf("reason %q", r)
	}
	// The bounce was consumed, not delivered to alice as a message.
	s.noInbox("alice-token", 500*time.Millisecond, "the bounce as a message", func(m web.Message) bool { return true })

	// Giving up.
	s2 := startSystem(t, Config{Relay: relay, GiveUp: 800 * time.Millisecond})
	res = s2.webSend("alice-token", "later2@outside.test", "given up", "x")
	st = s2.waitState("alice-token", res.ID, schemas.StatusFailed)
	if r := lastReason(st, schemas.StatusFailed); !strings.Contains(r, "gave up after") || !strings.HasPrefix(r, "EXPIRED") {
		t.Fatalf("reason %q", r)
	}
}

// STARTTLS (RFC 3207) with a configured certificate; AUTH is offered only
// over TLS to a remote client (RFC 4954 §4) and refused with 538 before.
func TestSTARTTLSAndAuth(t *testing.T) {
	cert := selfSigned(t, "example.test")
	s := startSystem(t, Config{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}},
		func(g *Gateway) { g.loopback = func(net.Addr) bool { return false } }) // as if remote
	c := dialSMTP(t, s.smtp)
	_, ehlo := c.cmd(250, "EHLO client.test")
	if !strings.Contains(ehlo, "STARTTLS") || strings.Contains(ehlo, "AUTH") {
		t.Fatalf("EHLO before TLS: %s", ehlo)
	}
	c.cmd(538, "AUTH PLAIN AGFsaWNlAGFsaWNlLXB3")

	tc, err := smtp.DialStartTLS(s.smtp, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if ok, mechs := tc.Extension("AUTH"); !ok || !strings.Contains(mechs, "PLAIN") {
		t.Fatalf("no AUTH PLAIN over TLS: %q", mechs)
	}
	if err := tc.Auth(sasl.NewPlainClient("", "alice", "alice-pw")); err != nil {
		t.Fatal(err)
	}
	if err := tc.SendMail("alice@example.test", []string{"bob@example.test"},
		strings.NewReader(mailText("alice@example.test", "bob@example.test", "over tls", "secret"))); err != nil {
		t.Fatal(err)
	}
	s.waitInbox("bob-token", "the TLS message", func(m web.Message) bool { return m.Subject == "over tls" && m.From.Client == "alice" })
}

// selfSigned makes a certificate for host.
func selfSigned(t *testing.T, host string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
