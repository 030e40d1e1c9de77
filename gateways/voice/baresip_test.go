package voice_test

import (
	"context"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/uims/uims/gateways/voice"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/internal/peertest"
	"github.com/uims/uims/schemas"
)

// baresip is Debian's baresip 1.0.0 as a headless user agent: its audio
// source is a WAV file (aufile, 8 kHz only), G.711 only, no sound card.
type baresip struct {
	dir string
	out peertest.Output
}

func newBaresip(t *testing.T, user, source string) *baresip {
	t.Helper()
	peertest.Require(t, "baresip", "apt-get install baresip")
	mods := "/usr/lib/baresip/modules"
	if _, err := os.Stat(filepath.Join(mods, "aufile.so")); err != nil {
		peertest.Missing(t, "baresip's aufile module in "+mods, "apt-get install baresip")
	}
	dir := t.TempDir()
	port := freeUDPPort(t)
	cfg := fmt.Sprintf("module_path %s\nsip_listen 127.0.0.1:%d\naudio_player alsa,null\naudio_source aufile,%s\n"+
		"rtp_ports 30000-30999\nmodule g711.so\nmodule aufile.so\nmodule alsa.so\nmodule_tmp account.so\nmodule_app menu.so\n", mods, port, source)
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	acc := fmt.Sprintf("<sip:%s@127.0.0.1:%d>;regint=0\n", user, port)
	if err := os.WriteFile(filepath.Join(dir, "accounts"), []byte(acc), 0o600); err != nil {
		t.Fatal(err)
	}
	return &baresip{dir: dir}
}

// freeUDPPort returns a port free on 127.0.0.1 for UDP and for TCP alike,
// and the next one for TCP: baresip listens on UDP and TCP for SIP and for
// its console, and on the port after its SIP port for SIP over TLS.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	for range 50 {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := c.LocalAddr().(*net.UDPAddr).Port
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		c.Close()
		if err != nil {
			continue
		}
		l2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+1))
		l.Close()
		if err == nil {
			l2.Close()
			return port
		}
	}
	t.Fatal("no port free for UDP and TCP")
	return 0
}

// run runs baresip with startup commands until it quits (-t seconds).
func (b *baresip) run(t *testing.T, secs int, cmd string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs+10)*time.Second)
	defer cancel()
	c := exec.CommandContext(ctx, "baresip", "-f", b.dir, "-e", cmd, "-t", fmt.Sprint(secs))
	c.Stdout, c.Stderr = &b.out, &b.out
	if err := c.Run(); err != nil {
		t.Logf("baresip: %v", err)
	}
	t.Logf("baresip:\n%s", b.out.String())
}

// writeTone writes secs of a 440 Hz tone as an 8 kHz WAV.
func writeTone(t *testing.T, secs float64) string {
	n := int(secs * voice.Rate)
	s := make([]int16, n)
	for i := range s {
		s[i] = int16(8000 * math.Sin(2*math.Pi*440*float64(i)/voice.Rate))
	}
	p := filepath.Join(t.TempDir(), "tone.wav")
	if err := os.WriteFile(p, voice.EncodeWAV(s, voice.Rate), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// baresip calls bob's mailbox and plays 8 s of tone, then hangs up:
// bob's web inbox gets an audio/wav from the caller's SIP URI, as long as
// what was played after the greeting and the beep.
func TestMailboxBaresip(t *testing.T) {
	const played = 8.0
	b := newBaresip(t, "alice", writeTone(t, played))
	s := start(t, voice.Config{})
	b.run(t, int(played)+4, "/dial sip:bob@"+s.gw.Addr())
	fabrictest.Eventually(t, 20*time.Second, "voice message in bob's inbox", func() bool { return s.bob.Len() == 1 })
	d := s.bob.All()[0]
	imi := d.Routed.IMI
	if d.Type != voice.ContentType || imi.From.Medium != schemas.MediumVoice || imi.From.Address != "sip:alice@127.0.0.1" {
		t.Fatalf("message %s from %+v", d.Type, imi.From)
	}
	rec, err := voice.DecodeWAV(d.Content, 0)
	if err != nil {
		t.Fatal(err)
	}
	secs := float64(len(rec)) / voice.Rate
	// the greeting (espeak-ng, about 3 s, or a 0.6 s tone) and the beep
	// come first; the caller hangs up when its file ends
	if secs < 1.5 || secs > played {
		t.Fatalf("recording of %.1f s for %.0f s played", secs, played)
	}
	var sum float64
	for _, v := range rec {
		sum += float64(v) * float64(v)
	}
	if rms := math.Sqrt(sum / float64(len(rec))); rms < 2000 {
		t.Fatalf("recording RMS %.0f: not the tone played (RMS 5657)", rms)
	}
	t.Logf("recorded %.2f s", secs)
}
