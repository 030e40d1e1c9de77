package voice_test

import (
	"bytes"
	"context"
	"io"
	"math"
	"mime"
	"mime/multipart"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/gateways/voice"
	"github.com/uims/uims/gateways/web"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/internal/peertest"
	"github.com/uims/uims/internal/wav"
	"github.com/uims/uims/internal/wer"
	"github.com/uims/uims/processor"
	"github.com/uims/uims/schemas"
)

const installVoice = "apt-get install espeak-ng pocketsphinx pocketsphinx-en-us pocketsphinx-testdata (.ci/deps.d/voice.sh)"

// voiceConversions returns the voice processors' conversions by name; a
// missing one skips loudly (and fails under CI).
func voiceConversions(t *testing.T, names ...string) map[string]processor.Conversion {
	t.Helper()
	convs, missing := processor.Voice(processor.VoiceConfig{})
	out := map[string]processor.Conversion{}
	for _, c := range convs {
		out[c.Name] = c
	}
	for _, n := range names {
		if _, ok := out[n]; !ok {
			peertest.Missing(t, "conversion "+n+": "+strings.Join(missing, "; "), installVoice)
		}
	}
	return out
}

// startProcessor runs a processor with the standard and voice conversions.
func (s *sys) startProcessor(t *testing.T, convs map[string]processor.Conversion) {
	t.Helper()
	all := processor.Standard(64 << 10)
	for _, c := range convs {
		all = append(all, c)
	}
	p, err := processor.New(processor.Config{Conversions: all}, s.f.Conn("proc"), s.f.Keyring("proc"), s.f.Log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, nil) }()
	t.Cleanup(func() { cancel(); <-done })
}

// A web message in text to a voice-preferring client goes text2speech and
// is spoken in a call that baresip answers: what the phone heard holds the
// speech the processor made, sample for sample through G.711; pocketsphinx
// transcribes it (the word error rate is logged: synthetic speech at 8 kHz
// is what its model knows least, docs/VOICE.md).
func TestSpokenWebMessageBaresip(t *testing.T) {
	convs := voiceConversions(t, "text2speech", "speech2text")
	s := start(t, voice.Config{PromptWait: 2 * time.Second})
	s.startProcessor(t, convs)
	phone := newCallee(t, "carol", "auto", 60)
	s.f.PutProfiles(&schemas.Profile{ID: "carol", Name: "Carol", Prefer: []string{"voice"},
		Addresses: map[string]string{"voice": phone.uri("carol")}})
	const text = "please call me back tomorrow morning"
	var id string
	fabrictest.Eventually(t, 20*time.Second, "a route to carol's phone through text2speech", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		res, err := s.web.Send(ctx, &kit.Submission{From: schemas.Endpoint{Medium: schemas.MediumWeb, Address: "bob"}, To: "carol",
			Type: "text/plain; charset=utf-8", Content: []byte(text)})
		if err != nil {
			t.Logf("send: %v", err)
			return false
		}
		id = res.MsgID
		return true
	})
	s.waitStatus(t, id, schemas.StatusDelivered, 40*time.Second)
	rec := phone.recording(t)

	spoken, err := convs["text2speech"].Converter.Convert(context.Background(), processor.Content{Type: "text/plain", Data: []byte(text)}, processor.Route{})
	if err != nil {
		t.Fatal(err)
	}
	want, err := voice.DecodeWAV(spoken.Data, 0)
	if err != nil {
		t.Fatal(err)
	}
	at, corr := locate(rec, want)
	if corr < 0.9 {
		t.Fatalf("the phone heard %.1f s; the speech correlates at most %.2f with it (at %.2f s)", float64(len(rec))/voice.Rate, corr, float64(at)/voice.Rate)
	}
	heard := rec[at : at+len(want)]
	tr, err := convs["speech2text"].Converter.Convert(context.Background(),
		processor.Content{Type: voice.ContentType, Data: voice.EncodeWAV(heard, voice.Rate)}, processor.Route{})
	e, n := wer.Count(text, string(tr.Data))
	t.Logf("the phone heard the speech at %.2f s, correlation %.3f; pocketsphinx: %q (%v), %d errors in %d words",
		float64(at)/voice.Rate, corr, tr.Data, err, e, n)
}

// locate finds want in rec: the offset with the highest normalised
// correlation, searched on 10 ms envelopes first, then sample by sample
// around the best envelope match.
func locate(rec, want []int16) (int, float64) {
	const w = voice.Rate / 100
	env := func(s []int16) []float64 {
		out := make([]float64, len(s)/w)
		for i := range out {
			for _, v := range s[i*w : (i+1)*w] {
				out[i] += math.Abs(float64(v))
			}
		}
		return out
	}
	er, ew := env(rec), env(want)
	bestEnv, bestOff := -1.0, 0
	for o := 0; o+len(ew) <= len(er); o++ {
		if c := ncc(er[o:o+len(ew)], ew); c > bestEnv {
			bestEnv, bestOff = c, o
		}
	}
	best, at := -1.0, 0
	for d := max(0, bestOff*w-2*w); d <= bestOff*w+2*w && d+len(want) <= len(rec); d++ {
		a := make([]float64, len(want))
		b := make([]float64, len(want))
		for i := range want {
			a[i], b[i] = float64(rec[d+i]), float64(want[i])
		}
		if c := ncc(a, b); c > best {
			best, at = c, d
		}
	}
	return at, best
}

func ncc(a, b []float64) float64 {
	var ab, aa, bb float64
	for i := range a {
		ab += a[i] * b[i]
		aa += a[i] * a[i]
		bb += b[i] * b[i]
	}
	if aa == 0 || bb == 0 {
		return 0
	}
	return ab / math.Sqrt(aa*bb)
}

// baresip calls dave's mailbox and speaks a LibriVox sentence (human
// speech nobody here recorded, from pocketsphinx-testdata, at 8 kHz);
// dave prefers SMS, so the recording goes speech2text and dave's SMS
// gateway gets the transcript. Then it calls bob's: bob's web gateway
// (which takes no audio/wav, as web.Accepts says) gets the transcript
// with the recording attached (speech2mixed).
func TestVoiceMailTranscribedBaresip(t *testing.T) {
	convs := voiceConversions(t, "speech2text", "speech2mixed")
	const dir = "/usr/share/pocketsphinx/test/data/librivox"
	trans, err := os.ReadFile(filepath.Join(dir, "transcription"))
	if err != nil {
		peertest.Missing(t, "pocketsphinx-testdata's LibriVox recordings", installVoice)
	}
	// the first line: <s> text </s> (file)
	line, _, _ := strings.Cut(string(trans), "\n")
	ref, file, _ := strings.Cut(line, "</s> (")
	ref = strings.TrimSpace(strings.TrimPrefix(ref, "<s>"))
	b, err := os.ReadFile(filepath.Join(dir, strings.TrimSuffix(strings.TrimSpace(file), ")")+".wav"))
	if err != nil {
		t.Fatal(err)
	}
	f, samples, err := wav.Read(b, wav.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	// the greeting and the beep take about 3.5 s: the caller waits 4.5 s
	speech := append(make([]int16, 9*voice.Rate/2), wav.Resample(wav.Mono(samples, f.Channels), f.Rate, voice.Rate)...)
	src := filepath.Join(t.TempDir(), "librivox8k.wav")
	if err := os.WriteFile(src, voice.EncodeWAV(speech, voice.Rate), 0o600); err != nil {
		t.Fatal(err)
	}

	s := startWith(t, voice.Config{}, web.Accepts())
	s.startProcessor(t, convs)
	sms := fabrictest.NewInbox()
	s.f.StartKit(sms, kit.Config{Gateway: "sms", Medium: schemas.MediumSMS, Accepts: []string{"text/plain"}})
	s.f.PutProfiles(&schemas.Profile{ID: "dave", Name: "Dave", Prefer: []string{"sms"},
		Addresses: map[string]string{"sms": "+15550144", "voice": "+15550144"}})

	caller := newBaresip(t, "alice", src)
	// the mailbox by client id: sip:dave@<the gateway>
	caller.run(t, len(speech)/voice.Rate+3, "/dial sip:dave@"+s.gw.Addr())
	fabrictest.Eventually(t, 60*time.Second, "the transcript in dave's SMS inbox", func() bool { return sms.Len() == 1 })
	d := sms.All()[0]
	if !strings.HasPrefix(d.Type, "text/plain") || len(d.Routed.Conversions) != 1 || d.Routed.Conversions[0].Conversion != "speech2text" {
		t.Fatalf("dave got %s through %+v", d.Type, d.Routed.Conversions)
	}
	if d.Routed.IMI.From.Address != "sip:alice@127.0.0.1" {
		t.Fatalf("from %+v", d.Routed.IMI.From)
	}
	e, n := wer.Count(ref, string(d.Content))
	t.Logf("said %q; dave read %q: %d errors in %d words", ref, d.Content, e, n)
	if e > n {
		t.Fatalf("transcript %q of %q: WER above 100 %%", d.Content, ref)
	}

	caller = newBaresip(t, "alice", src)
	caller.run(t, len(speech)/voice.Rate+3, "/dial sip:bob@"+s.gw.Addr())
	fabrictest.Eventually(t, 60*time.Second, "the voice mail in bob's web inbox", func() bool { return s.bob.Len() == 1 })
	w := s.bob.All()[0]
	if mt, _, _ := mime.ParseMediaType(w.Type); mt != "multipart/mixed" || len(w.Routed.Conversions) != 1 || w.Routed.Conversions[0].Conversion != "speech2mixed" {
		t.Fatalf("bob got %s through %+v", w.Type, w.Routed.Conversions)
	}
	_, params, _ := mime.ParseMediaType(w.Type)
	r := multipart.NewReader(bytes.NewReader(w.Content), params["boundary"])
	text, err := r.NextPart()
	if err != nil {
		t.Fatal(err)
	}
	tb, _ := io.ReadAll(text)
	att, err := r.NextPart()
	if err != nil || att.FileName() != "recording.wav" {
		t.Fatalf("attachment %v %v", att, err)
	}
	t.Logf("bob's web inbox: %q with %s", tb, att.Header.Get("Content-Description"))
	if e, n := wer.Count(ref, string(tb)); e > n {
		t.Fatalf("transcript %q of %q", tb, ref)
	}
}
