package voice_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/uims/uims/gateways/voice"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/internal/peertest"
	"github.com/uims/uims/schemas"
)

// pbx is Debian's kamailio with testdata/kamailio.cfg: a registrar and
// proxy for pbx.test that challenges the voice gateway (digest).
type pbx struct {
	addr string
	out  peertest.Output
}

func startPBX(t *testing.T) *pbx {
	t.Helper()
	bin := peertest.Require(t, "kamailio", "apt-get install kamailio")
	cfg, err := os.ReadFile("testdata/kamailio.cfg")
	if err != nil {
		t.Fatal(err)
	}
	p := &pbx{addr: fmt.Sprintf("127.0.0.1:%d", freeUDPPort(t))}
	dir := t.TempDir()
	file := filepath.Join(dir, "kamailio.cfg")
	if err := os.WriteFile(file, []byte(strings.Replace(string(cfg), "listen=udp:LISTEN", "listen=udp:"+p.addr, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	// kamailio forks its workers even with fork=no: it runs in a process
	// group of its own, and the whole group is stopped
	cmd := exec.Command(bin, "-f", file, "-E", "-m", "32", "-M", "8", "-Y", dir, "-P", filepath.Join(dir, "pid"))
	cmd.Stdout, cmd.Stderr = &p.out, &p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			t.Logf("kamailio:\n%s", p.out.String())
		}
	})
	fabrictest.Eventually(t, 10*time.Second, "kamailio listening", func() bool {
		return strings.Contains(p.out.String(), "SO_RCVBUF is finally") // the UDP socket is open
	})
	return p
}

// With a PBX (kamailio) the gateway registers as voicemail@pbx.test with
// its password; a message for carol, whose phone (baresip) registered at
// the PBX, is called through it (the gateway answers the PBX's proxy
// challenge); and a call for bob, who has no phone registered, reaches
// the mailbox through the PBX with To: bob, and lands in bob's inbox.
func TestPBXKamailio(t *testing.T) {
	pbx := startPBX(t)
	s := start(t, voice.Config{Domain: "pbx.test", Proxy: "sip:" + pbx.addr, Registrar: "sip:" + pbx.addr,
		User: "voicemail", Password: "s3cret", PromptWait: 2 * time.Second})
	fabrictest.Eventually(t, 15*time.Second, "the gateway registered", func() bool { ok, _ := s.gw.Registered(); return ok })

	phone := newPhone(t, func(int) string {
		return fmt.Sprintf("<sip:carol@pbx.test>;outbound=\"sip:%s\";regint=60;answermode=auto", pbx.addr)
	}, 40)
	fabrictest.Eventually(t, 15*time.Second, "carol's phone registered", func() bool {
		return strings.Contains(phone.out.String(), "200 OK")
	})
	s.f.PutProfiles(
		&schemas.Profile{ID: "carol", Name: "Carol", Prefer: []string{"voice"}, Addresses: map[string]string{"voice": "sip:carol@pbx.test"}},
		// bob prefers the web; his voice address is where callers reach him
		&schemas.Profile{ID: "bob", Name: "Bob", Prefer: []string{"web"}, Addresses: map[string]string{"web": "bob", "voice": "sip:bob@pbx.test"}},
	)
	id := s.send(t, "carol", voice.ContentType, voice.EncodeWAV(toneSamples(440, 2), voice.Rate))
	s.waitStatus(t, id, schemas.StatusDelivered, 40*time.Second)
	if rec := phone.recording(t); len(rec) < 2*voice.Rate {
		t.Fatalf("carol's phone heard %.1f s", float64(len(rec))/voice.Rate)
	}

	before := s.bob.Len()
	b := newBaresip(t, "alice", writeTone(t, 8))
	acc := fmt.Sprintf("<sip:alice@pbx.test>;outbound=\"sip:%s\";regint=0\n", pbx.addr)
	if err := os.WriteFile(filepath.Join(b.dir, "accounts"), []byte(acc), 0o600); err != nil {
		t.Fatal(err)
	}
	b.run(t, 12, "/dial sip:bob@pbx.test")
	fabrictest.Eventually(t, 20*time.Second, "the voice message in bob's inbox", func() bool { return s.bob.Len() == before+1 })
	d := s.bob.All()[before]
	if d.Type != voice.ContentType || d.Routed.IMI.From.Address != "sip:alice@pbx.test" {
		t.Fatalf("bob got %s from %+v", d.Type, d.Routed.IMI.From)
	}
	for _, want := range []string{"challenge: REGISTER of voicemail", "authenticated: REGISTER of voicemail",
		"challenge: INVITE from voicemail", "authenticated: INVITE from voicemail", "no phone for bob: to the voice mailbox"} {
		if !strings.Contains(pbx.out.String(), want) {
			t.Errorf("kamailio did not log %q", want)
		}
	}
}
