package processor_test

import (
	"testing"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/internal/wav"
	"github.com/uims/uims/internal/wer"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/processor"
	"github.com/uims/uims/schemas"
)

// An HTML message to a recipient whose gateway takes only audio/wav goes
// html2text, then text2speech, and arrives as 8 kHz speech; a recording to
// a text-only recipient goes speech2text and arrives as its transcript.
func TestVoiceChain(t *testing.T) {
	voiceConversion(t, "text2speech")
	voiceConversion(t, "speech2text")
	refs, recs := librivox(t)
	f := fabrictest.New(t)
	f.AddParty("voicegw", miap.Grant{Role: miap.RoleGateway, Media: []string{schemas.MediumVoice}})
	f.StartBroker(broker.Config{})
	f.PutProfiles(&schemas.Profile{ID: "alice", Addresses: map[string]string{"test": "alice"}},
		&schemas.Profile{ID: "bob", Addresses: map[string]string{"voice": "+41445550199"}},
		&schemas.Profile{ID: "carol", Addresses: map[string]string{"sms": "+15550101"}})
	og, voice, sms := fabrictest.NewInbox(), fabrictest.NewInbox(), fabrictest.NewInbox()
	ogKit, _ := f.StartKit(og, kit.Config{Gateway: "test", Medium: "test"})
	f.StartKit(voice, kit.Config{Gateway: "voicegw", Medium: "voice", Accepts: []string{"audio/wav"}})
	f.StartKit(sms, kit.Config{Gateway: "peer", Medium: "sms", Accepts: []string{"text/plain"}})
	convs, _ := processor.Voice(processor.VoiceConfig{})
	startProcessorAs(t, f, "proc", false, append(processor.Standard(1<<16), convs...)...)

	res, err := sendFrom(t, ogKit, "bob", "text/html; charset=utf-8", []byte("<p>Hello <b>Bob</b>,</p><p>please call me back.</p>"))
	if err != nil {
		t.Fatal(err)
	}
	d := voice.Get(res.MsgID)
	if d == nil || d.Type != processor.VoiceType {
		t.Fatalf("delivery %+v", d)
	}
	if s := d.Routed.Conversions; len(s) != 2 || s[0].Conversion != "html2text" || s[1].Conversion != "text2speech" {
		t.Errorf("route %+v", s)
	}
	if fm, s, err := wav.Read(d.Content, wav.DefaultLimits); err != nil || fm != wav.Telephone || fm.Duration(len(s)) < fm.Duration(8000) {
		t.Fatalf("the speech: %+v, %d samples, %v", fm, len(s), err)
	}

	res, err = sendFrom(t, ogKit, "carol", "audio/wav", recs[1])
	if err != nil {
		t.Fatal(err)
	}
	got := sms.Get(res.MsgID)
	if got == nil || got.Type != "text/plain; charset=utf-8" || len(got.Routed.Conversions) != 1 || got.Routed.Conversions[0].Conversion != "speech2text" {
		t.Fatalf("delivery %+v", got)
	}
	if e, n := wer.Count(refs[1], string(got.Content)); e > n/2 {
		t.Errorf("transcript %q of %q", got.Content, refs[1])
	}
}
