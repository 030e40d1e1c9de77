package processor_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/processor"
	"github.com/uims/uims/schemas"
)

// capture records every message on every subject of the fabric, as a
// privileged connection subscribed to ">" (what a NATS operator sees).
type capture struct {
	mu   sync.Mutex
	msgs []*nats.Msg
}

func captureAll(t *testing.T, f *fabrictest.Fabric) *capture {
	c := &capture{}
	nc := f.Conn("operator")
	if _, err := nc.Subscribe(">", func(m *nats.Msg) { c.mu.Lock(); c.msgs = append(c.msgs, m); c.mu.Unlock() }); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return c
}

// forms are the marker and its base64 encodings (standard and URL, at each
// of the three alignments), as the content could show in a capture.
func forms(marker string) [][]byte {
	out := [][]byte{[]byte(marker)}
	for i := range 3 {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawURLEncoding} {
			s := enc.EncodeToString([]byte(strings.Repeat("x", i) + marker))
			out = append(out, []byte(s[(i*4+2)/3+1:len(s)-4]))
		}
	}
	return out
}

// leaks returns the subjects of captured messages whose payload or header
// values hold one of the forms.
func (c *capture) leaks(fs [][]byte) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, m := range c.msgs {
		for _, f := range fs {
			hit := bytes.Contains(m.Data, f)
			for _, vs := range m.Header {
				for _, v := range vs {
					hit = hit || strings.Contains(v, string(f))
				}
			}
			if hit {
				out = append(out, m.Subject)
				break
			}
		}
	}
	return out
}

func (c *capture) on(prefix string) []*nats.Msg {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*nats.Msg
	for _, m := range c.msgs {
		if strings.HasPrefix(m.Subject, prefix) {
			out = append(out, m)
		}
	}
	return out
}

func sendHTML(t *testing.T, k *kit.Kit, body string) (*kit.Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return k.Send(ctx, &kit.Submission{From: schemas.Endpoint{Medium: "test", Address: "alice", Client: "alice"},
		To: "bob", Type: "text/html; charset=utf-8", Content: []byte(body)})
}

// TestSealedContentCapture (issue 20): a message through a processor
// (html2text), inline and by reference, shows no plaintext anywhere on
// NATS — no subject, no header, no object chunk: only the originating
// gateway, the processor and the destination hold it. Every transfer
// carries a wrap; the recipient gets the content.
func TestSealedContentCapture(t *testing.T) {
	f, _, ogKit, dg := chainFabric(t, false)
	startProcessorAs(t, f, "proc", false, processor.Standard(1<<20)...)
	c := captureAll(t, f)
	marker := "SEALED-MARKER-5f0a71c3-do-not-leak"
	var small *kit.Result
	fabrictest.Eventually(t, 10*time.Second, "a route through the processor", func() bool {
		var err error
		small, err = sendHTML(t, ogKit, "<p>hello <b>"+marker+"</b></p>")
		return err == nil
	})
	big := "<p>" + strings.Repeat("long text "+marker+" ", 300<<10/40) + "</p>" // by reference, both hops
	large, err := sendHTML(t, ogKit, big)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []*kit.Result{small, large} {
		d := dg.Get(r.MsgID)
		if d == nil || !strings.Contains(string(d.Content), marker) || d.Type != "text/plain; charset=utf-8" {
			t.Fatalf("the recipient did not get the converted content: %+v", d)
		}
	}
	if l := c.leaks(forms(marker)); len(l) > 0 {
		t.Fatalf("plaintext on NATS subjects %v", l)
	}
	transfers := append(c.on("uims.proc."), c.on(schemas.GatewayIM("peer"))...)
	n := 0
	for _, m := range transfers {
		if m.Header.Get(miap.HdrPurpose) != "ticket" {
			continue
		}
		n++
		if m.Header.Get(miap.HdrSealKey) == "" || !miap.ValidXKeyPublic(m.Header.Get(miap.HdrSealFrom)) {
			t.Errorf("transfer on %s without a wrap", m.Subject)
		}
	}
	if n < 4 {
		t.Fatalf("%d transfers captured, want 4 (two hops of two messages)", n)
	}
	if len(c.on("$O.uims_content.C.")) == 0 {
		t.Fatal("nothing went by reference")
	}
	for _, m := range c.on(schemas.SubjectBrokerIMI) {
		if !bytes.Contains(m.Data, []byte(`"sealed":"x25519-a256gcm"`)) {
			t.Fatalf("an IMI without content.sealed: %s", m.Data)
		}
	}
}

// TestSealedTransferTampered: a transfer to the destination replayed with
// its ciphertext changed is DIGEST_MISMATCH (the ticket binds the sealed
// bytes), with its wrap changed, removed, or sealed to another key
// BAD_SEAL; the destination delivers nothing more.
func TestSealedTransferTampered(t *testing.T) {
	f, _, ogKit, dg := chainFabric(t, false)
	startProcessorAs(t, f, "proc", false, processor.Standard(1<<16)...)
	c := captureAll(t, f)
	var res *kit.Result
	fabrictest.Eventually(t, 10*time.Second, "a route through the processor", func() bool {
		var err error
		res, err = sendHTML(t, ogKit, "<p>tamper with me</p>")
		return err == nil
	})
	var orig *nats.Msg
	for _, m := range c.on(schemas.GatewayIM("peer")) {
		if m.Header.Get(miap.HdrSealKey) != "" {
			orig = m
		}
	}
	if orig == nil {
		t.Fatal("no sealed transfer to the destination captured")
	}
	eve := fabrictest.New(t) // another fabric's processor key: a wrap it made opens for nobody here
	eveEng, _ := miap.New(miap.Config{Keys: eve.Keyring("proc")})
	sealed, _ := eveEng.Seal("proc", res.MsgID, []byte("forged"))
	nc := f.Conn("attacker")
	cases := []struct {
		name string
		mod  func(m *nats.Msg)
		want schemas.Code
	}{
		{"ciphertext changed", func(m *nats.Msg) { m.Data[len(m.Data)-1] ^= 1 }, schemas.CodeDigestMismatch},
		{"wrap changed", func(m *nats.Msg) {
			w, _ := miap.DecodeB64(m.Header.Get(miap.HdrSealKey))
			w[len(w)-1] ^= 1
			m.Header.Set(miap.HdrSealKey, miap.EncodeB64(w))
		}, schemas.CodeBadSeal},
		{"wrap removed", func(m *nats.Msg) { m.Header.Del(miap.HdrSealKey) }, schemas.CodeBadSeal},
		{"wrap of another key", func(m *nats.Msg) {
			h := map[string][]string{}
			eveEng.Wrap(h, sealed, eveEng.SealPublic("proc"), make([]byte, 32))
			m.Header[miap.HdrSealKey], m.Header[miap.HdrSealFrom] = h[miap.HdrSealKey], h[miap.HdrSealFrom]
		}, schemas.CodeBadSeal},
	}
	for _, tc := range cases {
		m := nats.NewMsg(orig.Subject)
		for k, v := range orig.Header {
			m.Header[k] = append([]string(nil), v...)
		}
		m.Data = append([]byte(nil), orig.Data...)
		tc.mod(m)
		reply, err := nc.RequestMsg(m, 5*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if e := schemas.ErrorFromHeader(reply.Header); e == nil || e.Code != tc.want {
			t.Errorf("%s: answered %v, want %v", tc.name, e, tc.want)
		}
	}
	if dg.Count[res.MsgID] != 1 {
		t.Fatalf("delivered %d times", dg.Count[res.MsgID])
	}
}

// TestSealInterop: a processor that announces no encryption key (an
// implementation that does not seal, or Seal off) gets the message
// unsealed: the brokers refuse the sealed IMI with SEAL_UNAVAILABLE and the
// originator (auto) sends it unsealed; an originator with Seal required
// sends nothing.
func TestSealInterop(t *testing.T) {
	f, _, ogKit, dg := chainFabric(t, false)
	p, err := processor.New(processor.Config{Party: "proc", Seal: miap.SealOff, Conversions: processor.Standard(1 << 16)}, f.Conn("proc"), f.Keyring("proc"), f.Log)
	if err != nil {
		t.Fatal(err)
	}
	fabrictest.Start(t, "processor proc", p.Run)
	c := captureAll(t, f)
	var res *kit.Result
	fabrictest.Eventually(t, 10*time.Second, "a route through the processor", func() bool {
		res, err = sendHTML(t, ogKit, "<p>plain INTEROP-MARKER</p>")
		return err == nil
	})
	if d := dg.Get(res.MsgID); d == nil || !strings.Contains(string(d.Content), "INTEROP-MARKER") {
		t.Fatal("not delivered")
	}
	for _, m := range append(c.on("uims.proc."), c.on(schemas.GatewayIM("peer"))...) {
		if m.Header.Get(miap.HdrSealKey) != "" {
			t.Fatalf("a sealed transfer on %s", m.Subject)
		}
	}
	if len(c.leaks(forms("INTEROP-MARKER"))) == 0 {
		t.Fatal("the capture does not see unsealed content: the leak check is blind")
	}
	// Seal required: SEAL_UNAVAILABLE, nothing transferred.
	strictKit, _ := f.StartKit(fabrictest.NewInbox(), kit.Config{Gateway: "test", Medium: "test", Seal: miap.SealRequired})
	_, err = sendHTML(t, strictKit, "<p>must not leave unsealed</p>")
	if !kit.IsCode(err, schemas.CodeSealUnavailable) {
		t.Fatalf("seal required: %v", err)
	}
}
