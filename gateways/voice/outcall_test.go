package voice_test

import (
	"context"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/gateways/voice"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/internal/peertest"
	"github.com/uims/uims/schemas"
)

// callee is Debian's baresip as the phone of a voice recipient: it
// answers (answermode auto) or only rings (manual), records what it hears
// (sndfile) and takes commands on a UDP console (cons), such as /sndcode
// to press a key or /hangup.
type callee struct {
	dir, recDir string
	port, cons  int
	out         peertest.Output
	done        chan struct{}
}

func newCallee(t *testing.T, user, answermode string, secs int) *callee {
	t.Helper()
	return newPhone(t, func(port int) string {
		return fmt.Sprintf("<sip:%s@127.0.0.1:%d>;regint=0;answermode=%s", user, port, answermode)
	}, secs)
}

// newPhone runs baresip with the account line account(its SIP port). A
// port taken between the test's choice and baresip's bind (another
// package's test) makes baresip quit or lose its console: it is started
// again on other ports.
func newPhone(t *testing.T, account func(port int) string, secs int) *callee {
	t.Helper()
	peertest.Require(t, "baresip", "apt-get install baresip")
	mods := "/usr/lib/baresip/modules"
	for _, m := range []string{"aufile", "sndfile", "cons"} {
		if _, err := os.Stat(filepath.Join(mods, m+".so")); err != nil {
			peertest.Missing(t, "baresip's "+m+" module in "+mods, "apt-get install baresip")
		}
	}
	for try := 1; ; try++ {
		c, ok := startPhone(t, mods, account, secs)
		if ok {
			return c
		}
		if try == 3 {
			t.Fatalf("baresip did not start:\n%s", c.out.String())
		}
		t.Logf("baresip met a port in use; again on other ports")
	}
}

func startPhone(t *testing.T, mods string, account func(port int) string, secs int) (*callee, bool) {
	t.Helper()
	c := &callee{dir: t.TempDir(), port: freeUDPPort(t), cons: freeUDPPort(t), done: make(chan struct{})}
	c.recDir = filepath.Join(c.dir, "rec")
	if err := os.Mkdir(c.recDir, 0o700); err != nil {
		t.Fatal(err)
	}
	silence := filepath.Join(c.dir, "silence.wav")
	if err := os.WriteFile(silence, voice.EncodeWAV(make([]int16, 60*voice.Rate), voice.Rate), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("module_path %s\nsip_listen 127.0.0.1:%d\naudio_player alsa,null\naudio_source aufile,%s\n"+
		"rtp_ports 31000-31999\nsnd_path %s\ncons_listen 127.0.0.1:%d\nstatmode_default off\n"+
		"module g711.so\nmodule aufile.so\nmodule sndfile.so\nmodule alsa.so\nmodule cons.so\nmodule_tmp account.so\nmodule_app menu.so\n",
		mods, c.port, silence, c.recDir, c.cons)
	if err := os.WriteFile(filepath.Join(c.dir, "config"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.dir, "accounts"), []byte(account(c.port)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs+10)*time.Second)
	cmd := exec.CommandContext(ctx, "baresip", "-f", c.dir, "-t", fmt.Sprint(secs))
	cmd.Stdout, cmd.Stderr = &c.out, &c.out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() { cmd.Wait(); cancel(); close(c.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out := c.out.String()
		switch {
		case strings.Contains(out, "Address already in use"):
			cmd.Process.Kill()
			<-c.done
			return c, false
		case strings.Contains(out, "baresip is ready"):
			t.Cleanup(func() {
				cmd.Process.Kill()
				<-c.done
				t.Logf("baresip callee:\n%s", c.out.String())
			})
			return c, true
		case time.Now().After(deadline):
			cmd.Process.Kill()
			<-c.done
			t.Fatalf("baresip not ready in 10 s:\n%s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// uri is the callee's SIP URI.
func (c *callee) uri(user string) string { return fmt.Sprintf("sip:%s@127.0.0.1:%d", user, c.port) }

// command sends a console command, as a user at the phone would type it.
func (c *callee) command(t *testing.T, cmd string) {
	conn, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", c.cons))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(cmd + "\n")); err != nil {
		t.Fatal(err)
	}
}

// recording returns what the callee heard (sndfile's -dec.wav), once
// baresip wrote it.
func (c *callee) recording(t *testing.T) []int16 {
	t.Helper()
	var file string
	fabrictest.Eventually(t, 15*time.Second, "the callee's recording", func() bool {
		m, _ := filepath.Glob(filepath.Join(c.recDir, "*-dec.wav"))
		if len(m) == 0 {
			return false
		}
		file = m[0]
		return strings.Contains(c.out.String(), "terminated") || strings.Contains(c.out.String(), "closed")
	})
	time.Sleep(500 * time.Millisecond)
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	s, err := voice.DecodeWAV(b, 0)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// send sends content from bob (web) to client to and returns its id.
func (s *sys) send(t *testing.T, to, typ string, content []byte) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := s.web.Send(ctx, &kit.Submission{From: schemas.Endpoint{Medium: schemas.MediumWeb, Address: "bob"}, To: to,
		Subject: "test", Type: typ, Content: content})
	if err != nil {
		t.Fatalf("send to %s: %v", to, err)
	}
	return res.MsgID
}

func (s *sys) waitStatus(t *testing.T, id, status string, within time.Duration) *schemas.StatusEvent {
	t.Helper()
	fabrictest.Eventually(t, within, "status "+status+" of "+id, func() bool { return s.bob.NoteOf(id, status) != nil })
	return s.bob.NoteOf(id, status)
}

func rms(s []int16) float64 {
	var sum float64
	for _, v := range s {
		sum += float64(v) * float64(v)
	}
	return math.Sqrt(sum / float64(max(1, len(s))))
}

// A message to a voice-preferring client is spoken in a call that
// baresip answers: answered and played is delivered, 2 pressed on the
// phone is read, and the phone heard the tone the message held.
func TestCallOutBaresip(t *testing.T) {
	s := start(t, voice.Config{PromptWait: 10 * time.Second})
	phone := newCallee(t, "carol", "auto", 60)
	s.f.PutProfiles(&schemas.Profile{ID: "carol", Name: "Carol", Prefer: []string{"voice"},
		Addresses: map[string]string{"voice": phone.uri("carol")}})
	id := s.send(t, "carol", voice.ContentType, voice.EncodeWAV(toneSamples(440, 3), voice.Rate))
	s.waitStatus(t, id, schemas.StatusDelivered, 40*time.Second)
	t.Logf("delivered at %s", time.Now().Format(time.TimeOnly))
	phone.command(t, "/sndcode 2")
	s.waitStatus(t, id, schemas.StatusRead, 20*time.Second)
	if st := s.bob.Statuses(id); slices.Contains(st, schemas.StatusFailed) {
		t.Fatalf("statuses %v", st)
	}
	rec := phone.recording(t)
	// the intro, 3 s of tone, the prompt: the tone is the loudest second
	best := 0.0
	for off := 0; off+voice.Rate <= len(rec); off += voice.Rate / 4 {
		best = max(best, rms(rec[off:off+voice.Rate]))
	}
	if best < 3000 {
		t.Fatalf("the phone heard %.1f s, loudest second RMS %.0f: not the tone (RMS 5657)", float64(len(rec))/voice.Rate, best)
	}
	t.Logf("the phone heard %.1f s; tone RMS %.0f", float64(len(rec))/voice.Rate, best)
}

func toneSamples(hz, secs float64) []int16 {
	s := make([]int16, int(secs*voice.Rate))
	for i := range s {
		s[i] = int16(8000 * math.Sin(2*math.Pi*hz*float64(i)/voice.Rate))
	}
	return s
}

// A phone that rings and is never answered fails after the profile's
// retries with "no answer"; a phone whose user rejects the call fails
// with the SIP status baresip answers; the sender hears both.
func TestCallOutNoAnswerAndRejected(t *testing.T) {
	s := start(t, voice.Config{})
	ringing := newCallee(t, "dave", "manual", 60)
	rejecting := newCallee(t, "erin", "manual", 60)
	s.f.PutProfiles(
		&schemas.Profile{ID: "dave", Prefer: []string{"voice"}, Addresses: map[string]string{"voice": ringing.uri("dave")},
			Options: map[string]string{voice.OptRing: "5s", voice.OptRetries: "1", voice.OptRetryInterval: "5s"}},
		&schemas.Profile{ID: "erin", Prefer: []string{"voice"}, Addresses: map[string]string{"voice": rejecting.uri("erin")},
			Options: map[string]string{voice.OptRetries: "0"}},
	)
	tone := voice.EncodeWAV(toneSamples(440, 1), voice.Rate)
	noAnswer := s.send(t, "dave", voice.ContentType, tone)
	rejected := s.send(t, "erin", voice.ContentType, tone)

	fabrictest.Eventually(t, 15*time.Second, "erin's phone ringing", func() bool {
		return strings.Contains(rejecting.out.String(), "Incoming call")
	})
	rejecting.command(t, "/hangup")
	ev := s.waitStatus(t, rejected, schemas.StatusFailed, 20*time.Second)
	if ev.Code != schemas.CodeRejected.String() || !strings.HasPrefix(ev.Reason, "SIP 486") && !strings.HasPrefix(ev.Reason, "SIP 603") {
		t.Fatalf("rejected call: %s %q", ev.Code, ev.Reason)
	}
	t.Logf("rejected: %s %q", ev.Code, ev.Reason)

	ev = s.waitStatus(t, noAnswer, schemas.StatusFailed, 40*time.Second)
	if ev.Code != schemas.CodeRejected.String() || ev.Reason != "no answer in 5s (2 calls)" {
		t.Fatalf("unanswered call: %s %q", ev.Code, ev.Reason)
	}
	if n := strings.Count(ringing.out.String(), "Incoming call"); n != 2 {
		t.Fatalf("dave's phone rang %d times, want 2 (one retry)", n)
	}
	for _, id := range []string{noAnswer, rejected} {
		if st := s.bob.Statuses(id); slices.Contains(st, schemas.StatusDelivered) {
			t.Fatalf("%s: statuses %v", id, st)
		}
	}
}

// A gateway that stops between two tries of a call resumes it when it
// starts again, from its record in JetStream: the phone rings a second
// time, and the sender gets one outcome.
func TestCallOutResumedAfterRestart(t *testing.T) {
	s := start(t, voice.Config{})
	ringing := newCallee(t, "dave", "manual", 60)
	s.f.PutProfiles(&schemas.Profile{ID: "dave", Prefer: []string{"voice"}, Addresses: map[string]string{"voice": ringing.uri("dave")},
		Options: map[string]string{voice.OptRing: "5s", voice.OptRetries: "1", voice.OptRetryInterval: "10s"}})
	id := s.send(t, "dave", voice.ContentType, voice.EncodeWAV(toneSamples(440, 1), voice.Rate))
	rang := func() int { return strings.Count(ringing.out.String(), "Incoming call") }
	fabrictest.Eventually(t, 15*time.Second, "the first ring", func() bool { return rang() == 1 })
	time.Sleep(6 * time.Second) // the first try gives up after 5 s of ringing
	s.run.Stop()
	if n := rang(); n != 1 {
		t.Fatalf("rang %d times before the restart", n)
	}
	s.startGateway(t)
	ev := s.waitStatus(t, id, schemas.StatusFailed, 30*time.Second)
	if ev.Reason != "no answer in 5s (2 calls)" || rang() != 2 {
		t.Fatalf("after the restart: %q, rang %d times", ev.Reason, rang())
	}
	if st := s.bob.Statuses(id); slices.Contains(st, schemas.StatusDelivered) {
		t.Fatalf("statuses %v", st)
	}
}
