package voice_test

import (
	"context"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/gateways/voice"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/internal/peertest"
	"github.com/uims/uims/schemas"
)

// sys is a fabric with a broker, bob's web inbox (a web kit) and the
// voice gateway; bob's voice address is sip:bob@voice.example.test.
type sys struct {
	f   *fabrictest.Fabric
	bob *fabrictest.Inbox
	web *kit.Kit // bob's gateway, to send from
	gw  *voice.Gateway
	cfg voice.Config
	run *fabrictest.Running
}

func start(t *testing.T, cfg voice.Config) *sys {
	t.Helper()
	return startWith(t, cfg, nil)
}

// startWith is start with bob's web gateway announcing accepts (nil:
// everything as it is).
func startWith(t *testing.T, cfg voice.Config, accepts []string) *sys {
	t.Helper()
	f := fabrictest.New(t)
	f.StartBroker(broker.Config{})
	f.PutProfiles(
		&schemas.Profile{ID: "bob", Name: "Bob", Prefer: []string{"web"}, Addresses: map[string]string{"web": "bob", "voice": "sip:bob@voice.example.test"}},
	)
	s := &sys{f: f, bob: fabrictest.NewInbox()}
	s.web, _ = f.StartKit(s.bob, kit.Config{Gateway: "web", Medium: schemas.MediumWeb, Accepts: accepts})
	cfg.SIPAddr = "127.0.0.1:0"
	if cfg.Domain == "" {
		cfg.Domain = "voice.example.test"
	}
	s.cfg = cfg
	s.startGateway(t)
	return s
}

// startGateway starts a voice gateway (again) with s.cfg.
func (s *sys) startGateway(t *testing.T) {
	t.Helper()
	g, err := voice.New(s.cfg, s.f.Conn("voice"), s.f.Keyring("voice"), s.f.Log)
	if err != nil {
		t.Fatal(err)
	}
	s.gw = g
	s.run = fabrictest.Start(t, "voice", g.Run)
}

// client is sipgo's own UAC, from a port of its own.
func client(t *testing.T) *sipgo.Client {
	t.Helper()
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("test"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ua.Close() })
	c, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func do(t *testing.T, c *sipgo.Client, req *sip.Request) *sip.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.Do(ctx, req)
	if err != nil {
		t.Fatalf("%s: %v", req.Method, err)
	}
	return res
}

const offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"

func invite(addr, user, transport string) *sip.Request {
	host, port, _ := net.SplitHostPort(addr)
	var p int
	for _, r := range port {
		p = p*10 + int(r-'0')
	}
	req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: user, Host: host, Port: p, UriParams: sip.HeaderParams{{K: "transport", V: transport}}})
	req.SetBody([]byte(offer))
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: "127.0.0.1", Port: 5999}})
	return req
}

// sipsak, a SIP tool nobody here wrote, sends OPTIONS: 200 with Allow.
func TestOptionsSipsak(t *testing.T) {
	sipsak := peertest.Require(t, "sipsak", "apt-get install sipsak")
	s := start(t, voice.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, sipsak, "-vv", "-s", "sip:bob@"+s.gw.Addr()).CombinedOutput()
	if err != nil {
		t.Fatalf("sipsak: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "SIP/2.0 200 OK") || !strings.Contains(string(out), "Allow: INVITE, ACK, BYE, CANCEL, OPTIONS") {
		t.Fatalf("sipsak got:\n%s", out)
	}
}

// An INVITE for no client's address is 404; beyond MaxCalls 486 with
// Retry-After; a malformed request 400, and the gateway still serves.
func TestInviteErrors(t *testing.T) {
	s := start(t, voice.Config{MaxCalls: 1, Espeak: "no-such-espeak", Silence: 30 * time.Second})
	c := client(t)
	res := do(t, c, invite(s.gw.Addr(), "nobody", "udp"))
	if res.StatusCode != sip.StatusNotFound {
		t.Fatalf("unknown mailbox: %d %s", res.StatusCode, res.Reason)
	}
	// over TCP too: an offer without G.711 is 488
	bad := invite(s.gw.Addr(), "bob", "tcp")
	bad.SetBody([]byte(strings.ReplaceAll(offer, "RTP/AVP 0 101", "RTP/AVP 9")))
	if res := do(t, c, bad); res.StatusCode != sip.StatusNotAcceptableHere {
		t.Fatalf("G.722 only: %d %s", res.StatusCode, res.Reason)
	}

	// bob's mailbox takes the one call allowed
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dc := sipgo.NewDialogClientCache(c, sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: "127.0.0.1", Port: 5999}})
	req := invite(s.gw.Addr(), "bob", "udp")
	sess, err := dc.WriteInvite(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.WaitAnswer(ctx, sipgo.AnswerOptions{}); err != nil {
		t.Fatalf("bob's mailbox: %v", err)
	}
	if err := sess.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	if m, err := voice.ParseSDP(sess.InviteResponse.Body()); err != nil || m.Addr.Port() == 0 {
		t.Fatalf("answer SDP: %v %+v", err, m)
	}
	res = do(t, c, invite(s.gw.Addr(), "bob", "udp"))
	if res.StatusCode != sip.StatusBusyHere || res.GetHeader("Retry-After") == nil {
		t.Fatalf("second call: %d %s", res.StatusCode, res.Reason)
	}

	// malformed: a CSeq without a number
	conn, err := net.Dial("udp", s.gw.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	raw := "OPTIONS sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5998;branch=z9hG4bK1\r\nFrom: <sip:x@127.0.0.1>;tag=1\r\n" +
		"To: <sip:bob@127.0.0.1>\r\nCall-ID: bad1\r\nCSeq: OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
	conn.Write([]byte(raw))
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	n, err := conn.Read(buf)
	if err != nil || !strings.HasPrefix(string(buf[:n]), "SIP/2.0 400 Bad Request\r\n") || !strings.Contains(string(buf[:n]), "Call-ID: bad1") {
		t.Fatalf("malformed request: %v %q", err, buf[:n])
	}

	if err := sess.Bye(ctx); err != nil {
		t.Fatalf("BYE: %v", err)
	}
	// still serving: OPTIONS
	o := do(t, c, sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", User: "bob", Host: "127.0.0.1", Port: req.Recipient.Port}))
	if o.StatusCode != 200 {
		t.Fatalf("OPTIONS after: %d", o.StatusCode)
	}
	if malformed, busy, _, _ := s.gw.Snapshot(); malformed != 1 || busy != 1 {
		t.Fatalf("counted %d malformed, %d busy", malformed, busy)
	}
}
