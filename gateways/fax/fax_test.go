package fax_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/email/mailmsg"
	"github.com/uims/uims/gateways/fax"
	"github.com/uims/uims/gateways/fax/hylafax/hfaxdtest"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/internal/peertest"
	"github.com/uims/uims/schemas"
)

// sys is a fabric with a broker, bob's web inbox (a web kit), alice's
// sending kit (party test) and the fax gateway.
type sys struct {
	f      *fabrictest.Fabric
	bob    *fabrictest.Inbox
	alice  *fabrictest.Inbox
	sender *kit.Kit
	gw     *fax.Gateway
}

func start(t *testing.T, cfg fax.Config) *sys {
	t.Helper()
	f := fabrictest.New(t)
	f.StartBroker(broker.Config{})
	f.PutProfiles(
		&schemas.Profile{ID: "alice", Name: "Alice", Prefer: []string{"test"}, Addresses: map[string]string{"test": "alice"}},
		&schemas.Profile{ID: "bob", Name: "Bob", Prefer: []string{"web"}, Addresses: map[string]string{"web": "bob"}},
	)
	s := &sys{f: f, bob: fabrictest.NewInbox(), alice: fabrictest.NewInbox()}
	f.StartKit(s.bob, kit.Config{Gateway: "web", Medium: schemas.MediumWeb})
	s.sender, _ = f.StartKit(s.alice, kit.Config{Gateway: "test", Medium: "test"})
	cfg.Domain = "fax.test"
	if cfg.SMTPAddr == "" {
		cfg.SMTPAddr = "127.0.0.1:0"
	}
	cfg.Poll = 200 * time.Millisecond
	g, err := fax.New(cfg, f.Conn("fax"), f.Keyring("fax"), f.Log)
	if err != nil {
		t.Fatal(err)
	}
	s.gw = g
	fabrictest.Start(t, "fax", g.Run)
	// the brokers see the fax gateway
	fabrictest.Eventually(t, 10*time.Second, "fax gateway announced", func() bool {
		_, err := s.send(t, []byte("probe"), "text/plain")
		return !kit.IsCode(err, schemas.CodeNoRoute)
	})
	return s
}

// send sends a fax from alice to +15550133.
func (s *sys) send(t *testing.T, content []byte, ctype string) (*kit.Result, error) {
	return s.sendTo(t, "+15550133", content, ctype)
}

func (s *sys) sendTo(t *testing.T, number string, content []byte, ctype string) (*kit.Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return s.sender.Send(ctx, &kit.Submission{MsgID: kit.NewMsgID(), From: schemas.Endpoint{Medium: "test", Address: "alice", Client: "alice"},
		To: "fax:" + number, Type: ctype, Content: content})
}

// page makes a one-page TIFF-F with ImageMagick.
func page(t *testing.T) []byte {
	t.Helper()
	return makeTIFF(t, "xc:white")
}

func makeTIFF(t *testing.T, args ...string) []byte {
	t.Helper()
	convert := peertest.Require(t, "convert", "apt-get install imagemagick")
	out := filepath.Join(t.TempDir(), "in.tif")
	a := []string{"-size", "1728x1100"}
	a = append(a, args...)
	a = append(a, "-font", "DejaVu-Sans", "-pointsize", "40", "-draw", "text 100,200 'Hello fax'", "-compress", "Fax", out)
	if b, err := exec.Command(convert, a...).CombinedOutput(); err != nil {
		t.Fatalf("convert: %v: %s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// offramp is a real SMTP server (go-smtp) in the test, playing the
// offramp's MTA: it records the mail it takes.
type offramp struct {
	mu   sync.Mutex
	from string
	to   []string
	env  string
	raw  []byte
	addr string
}

func (o *offramp) NewSession(*smtp.Conn) (smtp.Session, error) { return &offSession{o: o}, nil }

type offSession struct{ o *offramp }

func (s *offSession) Reset()        {}
func (s *offSession) Logout() error { return nil }
func (s *offSession) Mail(from string, opts *smtp.MailOptions) error {
	s.o.mu.Lock()
	defer s.o.mu.Unlock()
	s.o.from = from
	if opts != nil {
		s.o.env = opts.EnvelopeID
	}
	return nil
}
func (s *offSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if strings.Contains(to, "+15550666") {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such fax number"}
	}
	s.o.mu.Lock()
	defer s.o.mu.Unlock()
	s.o.to = append(s.o.to, to)
	return nil
}
func (s *offSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	s.o.mu.Lock()
	defer s.o.mu.Unlock()
	s.o.raw = b
	return err
}

func startOfframp(t *testing.T) *offramp {
	o := &offramp{}
	srv := smtp.NewServer(o)
	srv.Domain = "offramp.test"
	srv.EnableDSN = true
	srv.Addr = "127.0.0.1:0"
	ln, err := netListen()
	if err != nil {
		t.Fatal(err)
	}
	o.addr = ln.Addr().String()
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return o
}

// TestT37Out: a fax goes to the offramp as RFC 3965 mail; the offramp's
// DSN "delivered" makes it delivered at alice, a second fax's "failed"
// DSN makes it failed with the offramp's reason.
func TestT37Out(t *testing.T) {
	off := startOfframp(t)
	s := start(t, fax.Config{T37Relay: off.addr, T37Domain: "offramp.test"})
	tiff := page(t)
	res, err := s.send(t, tiff, "image/tiff")
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != schemas.StatusTransferred {
		t.Fatalf("status %s, want transferred", res.Status)
	}
	off.mu.Lock()
	raw, to, env, from := off.raw, off.to, off.env, off.from
	off.mu.Unlock()
	if len(to) != 1 || to[0] != "FAX=+15550133@offramp.test" || env != res.MsgID || from != "fax-bounces@fax.test" {
		t.Fatalf("envelope from %q to %v envid %q", from, to, env)
	}
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get("To") != "<FAX=+15550133@offramp.test>" || m.Header.Get("Disposition-Notification-To") == "" {
		t.Fatalf("headers %v", m.Header)
	}
	mt, params, _ := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if mt != "multipart/mixed" {
		t.Fatalf("content type %s", mt)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	var got []byte
	for {
		p, err := mr.NextRawPart()
		if err != nil {
			break
		}
		if p.Header.Get("Content-Type") == "image/tiff; application=faxbw" && p.Header.Get("Content-Transfer-Encoding") == "base64" {
			b, _ := io.ReadAll(p)
			got, err = base64.StdEncoding.DecodeString(strings.NewReplacer("\r", "", "\n", "").Replace(string(b)))
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	if !bytes.Equal(got, tiff) {
		t.Fatalf("the image/tiff; application=faxbw part does not decode to the TIFF (%d bytes, want %d)", len(got), len(tiff))
	}
	// the offramp reports: delivered
	dsn(t, s.gw.Addr(), res.MsgID, mailmsg.ActionDelivered, "2.0.0", "")
	fabrictest.Eventually(t, 10*time.Second, "delivered at alice", func() bool { return s.alice.NoteOf(res.MsgID, schemas.StatusDelivered) != nil })

	res2, err := s.send(t, tiff, "image/tiff")
	if err != nil {
		t.Fatal(err)
	}
	dsn(t, s.gw.Addr(), res2.MsgID, mailmsg.ActionFailed, "5.4.0", "smtp; 554 5.4.0 fax: no answer")
	fabrictest.Eventually(t, 10*time.Second, "failed at alice", func() bool { return s.alice.NoteOf(res2.MsgID, schemas.StatusFailed) != nil })
	if n := s.alice.NoteOf(res2.MsgID, schemas.StatusFailed); !strings.Contains(n.Reason, "no answer") || n.Code != "UNREACHABLE" {
		t.Fatalf("failure %s %q", n.Code, n.Reason)
	}
	// RFC 4142 full mode: the offramp's MDN (processed; ComposeMDN writes displayed) means sent
	res3, err := s.send(t, tiff, "image/tiff")
	if err != nil {
		t.Fatal(err)
	}
	mdn, err := mailmsg.ComposeMDN(mailmsg.MDN{ReportingUA: "offramp.test", From: mail.Address{Address: "FAX=+15550133@offramp.test"},
		To: mail.Address{Address: "fax-bounces@fax.test"}, OriginalMessageID: res3.MsgID + ".fax@fax.test",
		FinalRecipient: "FAX=+15550133@offramp.test"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := smtp.Dial(s.gw.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("", []string{"fax-bounces@fax.test"}, bytes.NewReader(mdn)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	fabrictest.Eventually(t, 10*time.Second, "MDN: delivered at alice", func() bool { return s.alice.NoteOf(res3.MsgID, schemas.StatusDelivered) != nil })

	// the relay's 550 5.1.1 fails the fax at once with its text
	if _, err := s.sendTo(t, "+15550666", tiff, "image/tiff"); !kit.IsCode(err, schemas.CodeUnknownRecipient) || !strings.Contains(err.Error(), "no such fax number") {
		t.Fatalf("relay 550: %v", err)
	}
	// a text message is not a fax: UNSUPPORTED without a conversion
	if _, err := s.send(t, []byte("hello"), "text/plain"); err == nil {
		t.Fatal("text/plain taken by the fax gateway")
	}
}

// dsn mails an RFC 3464 DSN, as the offramp would, to the fax gateway.
func dsn(t *testing.T, addr, envID string, action mailmsg.Action, status, diag string) {
	t.Helper()
	raw, err := mailmsg.ComposeDSN(mailmsg.DSN{ReportingMTA: "offramp.test", To: mail.Address{Address: "fax-bounces@fax.test"},
		OriginalEnvelopeID: envID,
		Recipients:         []mailmsg.DSNRecipient{{FinalRecipient: "FAX=+15550133@offramp.test", Action: action, Status: status, DiagnosticCode: diag}}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SendMail("", []string{"fax-bounces@fax.test"}, bytes.NewReader(raw)); err != nil {
		t.Fatal(err)
	}
}

// swaks sends a mail with swaks; it returns the transcript and exit code.
func swaks(t *testing.T, args ...string) (string, int) {
	t.Helper()
	bin := peertest.Require(t, "swaks", "apt-get install swaks")
	cmd := exec.Command(bin, append([]string{"--timeout", "30"}, args...)...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

func fileOf(t *testing.T, b []byte) string {
	p := filepath.Join(t.TempDir(), "fax.tif")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestT37In: an onramp's mail with a TIFF made by ImageMagick reaches
// bob's inbox as image/tiff from {fax, +15550199}; a corrupt TIFF, a fax
// of 0 and of 200 pages are refused with clear answers, and the good fax
// after them still arrives.
func TestT37In(t *testing.T) {
	s := start(t, fax.Config{})
	good := page(t)
	swak := func(tiff []byte) (string, int) {
		return swaks(t, "--server", s.gw.Addr(), "--from", "FAX=+15550199@onramp.test", "--to", "bob@fax.test",
			"--attach-type", "image/tiff", "--attach", "@"+fileOf(t, tiff))
	}
	if out, code := swak(good); code != 0 {
		t.Fatalf("swaks %d:\n%s", code, out)
	}
	fabrictest.Eventually(t, 10*time.Second, "fax in bob's inbox", func() bool { return s.bob.Len() == 1 })
	d := s.bob.All()[0]
	if d.Type != "image/tiff" || !bytes.Equal(d.Content, good) || d.Routed.IMI.From != (schemas.Endpoint{Medium: "fax", Address: "+15550199"}) {
		t.Fatalf("delivery %s from %+v, %d bytes", d.Type, d.Routed.IMI.From, len(d.Content))
	}

	corrupt := append([]byte("II*\x00\xff\xff\x00\x00"), good[8:200]...)
	if out, code := swak(corrupt); code == 0 || !strings.Contains(out, "554 5.6.0") || !strings.Contains(out, "not a valid TIFF") {
		t.Fatalf("corrupt TIFF: %d\n%s", code, out)
	}
	zero := []byte("II*\x00\x00\x00\x00\x00")
	if out, code := swak(zero); code == 0 || !strings.Contains(out, "554 5.6.0") || !strings.Contains(out, "no pages") {
		t.Fatalf("0 pages: %d\n%s", code, out)
	}
	many := filepath.Join(t.TempDir(), "many.tif")
	convert := peertest.Require(t, "convert", "apt-get install imagemagick")
	if b, err := exec.Command(convert, "-size", "100x100", "xc:white", "-duplicate", "199", "-compress", "Fax", many).CombinedOutput(); err != nil {
		t.Fatalf("convert: %v %s", err, b)
	}
	big, _ := os.ReadFile(many)
	if out, code := swak(big); code == 0 || !strings.Contains(out, "552 5.3.4") || !strings.Contains(out, "more than 100 pages") {
		t.Fatalf("200 pages: %d\n%s", code, out)
	}
	second := makeTIFF(t, "xc:white", "-draw", "text 100,400 'second'")
	if out, code := swak(second); code != 0 {
		t.Fatalf("swaks %d:\n%s", code, out)
	}
	fabrictest.Eventually(t, 10*time.Second, "second fax", func() bool { return s.bob.Len() == 2 })
	got := 0
	for _, d := range s.bob.All() { // in no particular order
		if bytes.Equal(d.Content, second) {
			got++
		}
	}
	if got != 1 {
		t.Fatalf("the second good fax delivered %d times", got)
	}
	// a sender that is no fax mailbox is refused
	if out, code := swaks(t, "--server", s.gw.Addr(), "--from", "eve@else.test", "--to", "bob@fax.test",
		"--attach-type", "image/tiff", "--attach", "@"+fileOf(t, good)); code == 0 || !strings.Contains(out, "5.1.7") {
		t.Fatalf("non-fax sender: %d\n%s", code, out)
	}
}

// TestHylaFAX: a fax to +15550133 becomes a job on a real HylaFAX, seen in
// faxstat with the number; faxrm makes it failed at alice. A fax received
// by HylaFAX reaches bob through the faxrcvd hook.
func TestHylaFAX(t *testing.T) {
	srv := hfaxdtest.Start(t)
	s := start(t, fax.Config{HylaFAX: hylafaxConfig(srv), HookAddr: "127.0.0.1:0", HookToken: "hook-secret"})
	tiff := page(t)
	res, err := s.send(t, tiff, "image/tiff")
	if err != nil {
		t.Fatal(err)
	}
	var job string
	fabrictest.Eventually(t, 20*time.Second, "job in faxstat", func() bool {
		out, _ := srv.Client("faxstat", "-s")
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) > 3 && strings.Contains(l, "+15550133") {
				job = f[0]
				return true
			}
		}
		return false
	})
	if n, err := srv.DocPages(job); err != nil || n != 1 {
		t.Fatalf("job %s has %d pages (%v), want 1", job, n, err)
	}
	if out, err := srv.Client("faxrm", job); err != nil || !strings.Contains(out, "removed") {
		t.Fatalf("faxrm: %v %s", err, out)
	}
	fabrictest.Eventually(t, 20*time.Second, "failed at alice", func() bool { return s.alice.NoteOf(res.MsgID, schemas.StatusFailed) != nil })
	if n := s.alice.NoteOf(res.MsgID, schemas.StatusFailed); !strings.Contains(n.Reason, "aborted") {
		t.Fatalf("reason %q", n.Reason)
	}

	// the hook, as faxrcvd calls it
	if _, err := fax.PostReceived(http.DefaultClient, s.gw.HookURL(), "wrong", "+15550199", "bob", "", bytes.NewReader(tiff)); err == nil {
		t.Fatal("hook took a wrong token")
	}
	rep, err := fax.PostReceived(http.DefaultClient, s.gw.HookURL(), "hook-secret", "+15550199", "bob", "000000001", bytes.NewReader(tiff))
	if err != nil {
		t.Fatal(err)
	}
	fabrictest.Eventually(t, 10*time.Second, "hook fax in bob's inbox", func() bool { return s.bob.Get(rep.MsgID) != nil })
	if d := s.bob.Get(rep.MsgID); d.Type != "image/tiff" || d.Routed.IMI.From.Address != "+15550199" {
		t.Fatalf("delivery %s from %+v", d.Type, d.Routed.IMI.From)
	}
}
