package processor_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/miap/miapnats"
	"github.com/uims/uims/processor"
	"github.com/uims/uims/schemas"
)

// hops records every transfer of the fabric (uims.proc.<conversion> and a
// gateway's uims.gw.<gw>.im), as a party that listens on all of them.
type hops struct {
	mu   sync.Mutex
	msgs []*nats.Msg
}

func watchHops(t *testing.T, f *fabrictest.Fabric, gateway string) *hops {
	h := &hops{}
	nc := f.Conn("watch")
	for _, subj := range []string{"uims.proc.*", schemas.GatewayIM(gateway)} {
		if _, err := nc.Subscribe(subj, func(m *nats.Msg) {
			h.mu.Lock()
			h.msgs = append(h.msgs, m)
			h.mu.Unlock()
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return h
}

// hop is one transfer as its addressee opened it.
type hop struct {
	subject string
	tr      *miap.Transfer
}

// of opens every transfer of message msgID with the key of the party its
// ticket names, as that party does: each hop's ticket must verify for it
// and bind the content it got.
func (h *hops) of(t *testing.T, f *fabrictest.Fabric, msgID string) []hop {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []hop
	for _, m := range h.msgs {
		party := m.Header.Get("Miap-Party")
		eng, err := miap.New(miap.Config{Keys: f.Keyring(party)})
		if err != nil {
			t.Fatal(err)
		}
		tr, err := eng.OpenTransfer(party, m.Header, m.Data, nil)
		if err != nil {
			t.Fatalf("transfer on %s for %q: %v", m.Subject, party, err)
		}
		var routed schemas.RoutedIMI
		if err := json.Unmarshal(tr.Routed(), &routed); err != nil {
			t.Fatal(err)
		}
		if routed.IMI.MsgID == msgID {
			out = append(out, hop{m.Subject, tr})
		}
	}
	return out
}

func startProcessorAs(t *testing.T, f *fabrictest.Fabric, party string, strict bool, convs ...processor.Conversion) *fabrictest.Running {
	p, err := processor.New(processor.Config{Party: party, Strict: strict, Conversions: convs}, f.Conn(party), f.Keyring(party), f.Log)
	if err != nil {
		t.Fatal(err)
	}
	return fabrictest.Start(t, "processor "+party, p.Run)
}

// chainFabric is a fabric with alice on the test gateway and bob on an
// SMS-like gateway "peer" that takes plain text only.
func chainFabric(t *testing.T, strict bool) (*fabrictest.Fabric, *broker.Broker, *kit.Kit, *fabrictest.Inbox) {
	f := fabrictest.New(t)
	f.AddParty("proc2", miap.Grant{Role: miap.RoleProcessor})
	b, _ := f.StartBroker(broker.Config{})
	f.PutProfiles(&schemas.Profile{ID: "alice", Addresses: map[string]string{"test": "alice"}},
		&schemas.Profile{ID: "bob", Addresses: map[string]string{"sms": "+15550101"}})
	og, dg := fabrictest.NewInbox(), fabrictest.NewInbox()
	ogKit, _ := f.StartKit(og, kit.Config{Gateway: "test", Medium: "test", Strict: strict})
	f.StartKit(dg, kit.Config{Gateway: "peer", Medium: "sms", Accepts: []string{"text/plain"}, Strict: strict})
	return f, b, ogKit, dg
}

func sendAlt(t *testing.T, k *kit.Kit, boundary string, body []byte) *kit.Result {
	t.Helper()
	var res *kit.Result
	fabrictest.Eventually(t, 5*time.Second, "a route through the processors", func() bool {
		var err error
		res, err = k.Send(context.Background(), &kit.Submission{From: schemas.Endpoint{Medium: "test", Address: "alice", Client: "alice"},
			To: "bob", Type: "multipart/alternative; boundary=" + boundary, Content: body})
		if err != nil {
			t.Log(err)
		}
		return err == nil
	})
	return res
}

func history(t *testing.T, b *broker.Broker, msgID, status string) []string {
	st, err := b.TxStatus(context.Background(), msgID)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range st.History {
		if e.Status == status {
			out = append(out, e.Party+": "+e.Reason)
		}
	}
	return out
}

// An HTML-only multipart/alternative mail to a text-only destination takes
// two steps through two processors: alternative (proc) picks the HTML part,
// html2text (proc2) makes it text. Each hop gets a ticket of its own that
// verifies for it alone and binds the content it receives.
func TestTwoStepChain(t *testing.T) {
	for _, strict := range []bool{false, true} {
		t.Run(map[bool]string{false: "fast", true: "strict"}[strict], func(t *testing.T) {
			f, b, ogKit, dg := chainFabric(t, strict)
			startProcessorAs(t, f, "proc", strict, processor.Alternative())
			startProcessorAs(t, f, "proc2", strict, processor.HTMLToText(1<<16))
			watch := watchHops(t, f, "peer")

			res := sendAlt(t, ogKit, "b2", htmlOnly)
			d := dg.Get(res.MsgID)
			if d == nil || string(d.Content) != "Hi Bob" || d.Type != "text/plain; charset=utf-8" || res.Status != schemas.StatusDelivered {
				t.Fatalf("delivery %+v, result %+v", d, res)
			}
			steps := d.Routed.Conversions
			if len(steps) != 2 || steps[0].Conversion != "alternative" || steps[0].Processor != "proc" ||
				steps[1].Conversion != "html2text" || steps[1].Processor != "proc2" {
				t.Fatalf("route %+v", steps)
			}

			// The hops, in order: OG → proc, proc → proc2, proc2 → peer.
			got := watch.of(t, f, res.MsgID)
			want := []struct{ subject, party, peer, ctype string }{
				{"uims.proc.alternative", "proc", "test", "multipart/alternative; boundary=b2"},
				{"uims.proc.html2text", "proc2", "proc", "text/html; charset=utf-8"},
				{"uims.gw.peer.im", "peer", "proc2", "text/plain; charset=utf-8"},
			}
			if len(got) != len(want) {
				t.Fatalf("%d transfers, want %d", len(got), len(want))
			}
			for i, w := range want {
				tk := got[i].tr.Ticket
				if got[i].subject != w.subject || tk.Party != w.party || tk.Peer != w.peer || tk.CType != w.ctype ||
					!miap.EqualID(tk.ID, got[0].tr.Ticket.ID) || string(got[i].tr.Routed()) != string(got[0].tr.Routed()) {
					t.Errorf("hop %d: %s ticket party %q peer %q type %q; want %+v", i, got[i].subject, tk.Party, tk.Peer, tk.CType, w)
				}
				// The ticket binds the hop's content: another type or
				// length does not verify.
				eng, _ := miap.New(miap.Config{Keys: f.Keyring(w.party)})
				for _, bad := range []func(*miap.Frame){
					func(x *miap.Frame) { x.CType = "text/plain" },
					func(x *miap.Frame) { x.CLen++ },
					func(x *miap.Frame) { x.Peer = "mallory" },
				} {
					x := *tk
					bad(&x)
					if err := eng.VerifyTicket(w.party, &x); err == nil {
						t.Errorf("hop %d: an altered ticket verifies", i)
					}
				}
			}
			if h := history(t, b, res.MsgID, "converted"); len(h) != 2 ||
				h[0] != "proc: alternative → text/html; charset=utf-8" || h[1] != "proc2: html2text → text/plain; charset=utf-8" {
				t.Errorf("history %q", h)
			}
		})
	}
}

// Mail with a text and an HTML part to a text-only destination: the route
// is alternative then html2text, but the text part is what the destination
// takes, so it goes there straight from the first step. Without a text
// part both steps run, here on one processor.
func TestAlternativeToText(t *testing.T) {
	f, b, ogKit, dg := chainFabric(t, false)
	startProcessorAs(t, f, "proc", false, processor.Standard(1<<16)...)
	watch := watchHops(t, f, "peer")

	res := sendAlt(t, ogKit, "b1", textAndHTML)
	d := dg.Get(res.MsgID)
	if d == nil || string(d.Content) != "Café at 8?" || d.Type != "text/plain; charset=utf-8" || len(d.Routed.Conversions) != 2 {
		t.Fatalf("delivery %+v", d)
	}
	hs := watch.of(t, f, res.MsgID)
	if len(hs) != 2 || hs[0].subject != "uims.proc.alternative" || hs[1].subject != "uims.gw.peer.im" || hs[1].tr.Ticket.Peer != "proc" {
		t.Fatalf("hops %+v", hs)
	}
	if h := history(t, b, res.MsgID, "converted"); len(h) != 1 || h[0] != "proc: alternative → text/plain; charset=utf-8" {
		t.Errorf("history %q", h)
	}

	res = sendAlt(t, ogKit, "outer", related)
	if d := dg.Get(res.MsgID); d == nil || string(d.Content) != "plain version" {
		t.Fatalf("related: %+v", d)
	}

	html := crlf("\n--h\nContent-Type: text/html; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\n<p>Caf=E9 <i>tonight</i></p>\n--h--\n")
	res = sendAlt(t, ogKit, "h", html)
	if d := dg.Get(res.MsgID); d == nil || string(d.Content) != "Café tonight" {
		t.Fatalf("html only: %+v", d)
	}
	if h := history(t, b, res.MsgID, "converted"); len(h) != 2 || !strings.HasPrefix(h[1], "proc: html2text") {
		t.Errorf("history %q", h)
	}
}

// Content no chain of conversions brings to the recipient is a final
// UNSUPPORTED whose reason names the conversion missing, and reaches the
// sender; while the chain exists but its processor is down, it is
// NO_ROUTE, to be retried.
func TestNoChain(t *testing.T) {
	f, _, ogKit, _ := chainFabric(t, false)
	proc := startProcessorAs(t, f, "proc", false, processor.Standard(1<<16)...)
	send := func(ctype string) error {
		_, err := ogKit.Send(context.Background(), &kit.Submission{From: schemas.Endpoint{Medium: "test", Address: "alice", Client: "alice"},
			To: "bob", Type: ctype, Content: []byte("\x89PNG\r\n")})
		return err
	}
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		// NO_ROUTE while the brokers learn the fabric (3 s).
		if err = send("image/png"); !kit.IsCode(err, schemas.CodeNoRoute) {
			break
		}
	}
	var se *schemas.Error
	if !errors.As(err, &se) || se.Code != schemas.CodeUnsupported || se.Code.Retryable() {
		t.Fatalf("image to a text-only recipient: %v, want UNSUPPORTED", err)
	}
	want := "no conversion from image/png to text/plain (at most 4 steps; live processors: proc: " +
		"alternative multipart/alternative → text/html; charset=utf-8, html2text text/html → text/plain; charset=utf-8)"
	if se.Detail != want {
		t.Fatalf("reason %q\nwant   %q", se.Detail, want)
	}

	proc.Stop() // announces TTL 0
	fabrictest.Eventually(t, 5*time.Second, "NO_ROUTE with the processor down", func() bool {
		return kit.IsCode(send("text/html"), schemas.CodeNoRoute)
	})
	if err := send("image/png"); !kit.IsCode(err, schemas.CodeUnsupported) {
		t.Fatalf("image with the processor down: %v, still UNSUPPORTED", err)
	}
}

// A large HTML message (600 KB) goes to the processor by reference, and
// its text (still over 256 KiB) on to the destination by reference: both
// objects are deleted once delivered.
func TestChainByReference(t *testing.T) {
	f, _, ogKit, dg := chainFabric(t, false)
	startProcessorAs(t, f, "proc", false, processor.Standard(1<<20)...)
	para := "<p>" + strings.Repeat("words of a long letter, ", 20) + "</p>\n"
	html := "<html><body>" + strings.Repeat(para, 600000/len(para)) + "</body></html>"
	res, err := sendFrom(t, ogKit, "bob", "text/html; charset=utf-8", []byte(html))
	if err != nil {
		t.Fatal(err)
	}
	d := dg.Get(res.MsgID)
	if d == nil || !strings.HasPrefix(d.Type, "text/plain") || len(d.Content) < 300<<10 || !strings.Contains(string(d.Content), "words of a long letter") {
		t.Fatalf("delivery %v", d != nil)
	}
	js, err := jetstream.New(f.Conn("observer"))
	if err != nil {
		t.Fatal(err)
	}
	os, err := js.ObjectStore(context.Background(), miapnats.ContentBucket)
	if err != nil {
		t.Fatalf("no content went by reference: %v", err)
	}
	fabrictest.Eventually(t, 10*time.Second, "both objects deleted", func() bool {
		_, err := os.List(context.Background())
		return errors.Is(err, jetstream.ErrNoObjectsFound)
	})
}
