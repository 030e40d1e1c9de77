package email_test

import (
	"bytes"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/uims/uims/gateways/email"
	"github.com/uims/uims/gateways/email/mailmsg"
	"github.com/uims/uims/gateways/kit/kittest"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/schemas"
)

// sink is the e-mail recipient side of the conformance suite: a go-smtp
// server standing for the smarthost and the recipient's mailbox behind it
// (in the manner of go-smtp's recording test backend, with knobs). It keeps
// every mail it accepted, and refuses recipients at RCPT while told to: 451
// 4.2.1 (mailbox busy, try later) or 550 5.1.1 (no such mailbox).
//
// The recipient is at an outside domain on purpose: for an address in one
// of the gateway's local domains Deliver has no mailbox to put the mail in
// and fails it (CodeUnsupported, deliver.go), since sending it to the relay
// would loop back to us. Mail that leaves the gateway goes to the relay.
type sink struct {
	addr string

	mu      sync.Mutex
	mails   [][]byte
	refuse  int // 0, 451 or 550
	refused int
}

func startSink(t *testing.T) *sink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{addr: ln.Addr().String()}
	srv := smtp.NewServer(s)
	srv.Domain = "mx.outside.test"
	srv.MaxMessageBytes = 64 << 20
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

func (s *sink) NewSession(*smtp.Conn) (smtp.Session, error) { return &sinkSession{s: s}, nil }

type sinkSession struct {
	s   *sink
	rcp int
}

func (*sinkSession) Reset()                               {}
func (*sinkSession) Logout() error                        { return nil }
func (*sinkSession) Mail(string, *smtp.MailOptions) error { return nil }

func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	switch ss.s.refuse {
	case 451:
		ss.s.refused++
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 2, 1}, Message: "mailbox busy, try later"}
	case 550:
		ss.s.refused++
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such mailbox"}
	}
	ss.rcp++
	return nil
}

func (ss *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.s.mu.Lock()
	for range ss.rcp {
		ss.s.mails = append(ss.s.mails, b)
	}
	ss.s.mu.Unlock()
	return nil
}

// Received implements kittest.Probe: the mails that arrived with the
// Message-ID the gateway gives a UIMS message (<msg id>@<host name>), and
// the text of the last as a mail program shows it: lines end in CRLF on the
// wire (RFC 5322 §2.3) and SMTP DATA always ends on one (RFC 5321 §4.1.1.4),
// so the lines are joined with LF and that last line break is dropped.
func (s *sink) Received(t testing.TB, id string) (int, string) {
	s.mu.Lock()
	mails := append([][]byte(nil), s.mails...)
	s.mu.Unlock()
	n, text := 0, ""
	for _, raw := range mails {
		if !bytes.Contains(raw, []byte("<"+id+"@example.test>")) {
			continue
		}
		m, err := mailmsg.Extract(bytes.NewReader(raw), mailmsg.DefaultLimits())
		if err != nil {
			t.Fatalf("mail for %s does not parse: %v", id, err)
		}
		if m.MessageID != id+"@example.test" {
			continue
		}
		n++
		text = strings.TrimSuffix(strings.ReplaceAll(string(m.Content), "\r\n", "\n"), "\n")
		if !strings.HasPrefix(m.ContentType, "text/plain") {
			t.Errorf("mail for %s is %s", id, m.ContentType)
		}
	}
	return n, text
}

// Refuse, Accept and Refused implement kittest.Refuser.
func (s *sink) Refuse(t testing.TB, temporary bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuse = 550
	if temporary {
		s.refuse = 451
	}
}

func (s *sink) Accept(t testing.TB) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuse = 0
}

func (s *sink) Refused(t testing.TB) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused
}

// The e-mail gateway passes the kit's conformance suite, with a recipient
// at an outside address whose mail goes through the smarthost into sink.
func TestEmailConformance(t *testing.T) {
	kittest.Run(t, kittest.Adapter{Gateway: "email", Medium: "email", Address: "rcpt@outside.test",
		Features: kittest.Features{
			// Not Immediate: Deliver queues the mail in JetStream and
			// answers transferred; delivered follows when the relay took it.
			// MaxText stays at the suite's 64 KiB default (MaxSize is 25 MiB)
			// and any UTF-8 travels (8bit or base64, charset=utf-8).
			//
			// Refusal: a 5xx from the relay fails the message with the
			// relay's answer as the reason (relay.go).
			Refusal: true,
			// Retry: a 4xx is retried after Config.Retry until GiveUp, and
			// the outbound record keeps the message id queued once.
			Retry: true,
			// LargeContent: a mail above one stream message waits in the
			// object store (store.go).
			LargeContent: true,
		},
		Profile: func(p *schemas.Profile) { p.Name = "Suite Recipient" },
		Start: func(t *testing.T, f *fabrictest.Fabric) kittest.Probe {
			s := startSink(t)
			g, err := email.New(email.Config{Addr: "127.0.0.1:0", Domains: []string{"example.test"}, Relay: s.addr,
				Retry: []time.Duration{200 * time.Millisecond}}, f.Conn("email"), f.Keyring("email"), f.Log)
			if err != nil {
				t.Fatal(err)
			}
			fabrictest.Start(t, "e-mail gateway", g.Run)
			return s
		}})
}
