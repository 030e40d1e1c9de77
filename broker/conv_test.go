package broker_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/miap/miapnats"
	"github.com/uims/uims/schemas"
)

// rogue is a processor party that announces conversions but does not run
// them: the test sends its conversion reports by hand.
type rogue struct {
	party string
	eng   *miap.Engine
	nc    *nats.Conn
	got   chan *miap.Transfer
}

func newRogue(t *testing.T, f *fabrictest.Fabric, party string, convs ...schemas.Conversion) *rogue {
	r := &rogue{party: party, nc: f.Conn(party), got: make(chan *miap.Transfer, 4)}
	var err error
	if r.eng, err = miap.New(miap.Config{Keys: f.Keyring(party)}); err != nil {
		t.Fatal(err)
	}
	for _, c := range convs {
		if _, err := r.nc.Subscribe(schemas.ProcessorIM(c.Name), func(m *nats.Msg) {
			tr, err := r.eng.OpenTransfer(party, m.Header, m.Data, nil)
			if err != nil {
				t.Errorf("%s: transfer: %v", party, err)
				return
			}
			select {
			case r.got <- tr:
			default: // a retry of the transfer
			}
			miapnats.RespondError(m, schemas.CodeBusy)
		}); err != nil {
			t.Fatal(err)
		}
	}
	announce := func() {
		body, _ := json.Marshal(schemas.Announce{V: 1, Gateway: party, Medium: schemas.MediumProcessor, Instance: party + "-rogue",
			Conversions: convs, TTL: 3000, At: time.Now().UnixMilli()})
		fr := &miap.Frame{Purpose: miap.PurposeAnnounce, Party: party, Body: body}
		if err := r.eng.Sign(fr); err != nil {
			t.Error(err)
			return
		}
		m := nats.NewMsg(schemas.SubjectBrokerAnnounce)
		fr.PutHeader(m.Header)
		m.Data = body
		r.nc.PublishMsg(m)
	}
	announce()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				announce()
			}
		}
	}()
	return r
}

// report sends a conversion report as party p (whose keyring signs it)
// and returns the error and the party the next ticket is for.
func report(t *testing.T, f *fabrictest.Fabric, p string, id []byte, rep schemas.ConvReport, frameType string) (string, error) {
	eng, err := miap.New(miap.Config{Keys: f.Keyring(p)})
	if err != nil {
		t.Fatal(err)
	}
	c := &miapnats.Client{NC: f.Conn(p + "-report"), Eng: eng, Party: p, Timeout: 5 * time.Second}
	sum, _ := hex.DecodeString(rep.Content.SHA256)
	if frameType == "" {
		frameType = rep.Content.Type
	}
	rep.V = 1
	body, _ := json.Marshal(rep)
	_, reply, err := c.Request(context.Background(), schemas.SubjectBrokerConv, &miap.Frame{Purpose: miap.PurposeConv, Party: p, ID: id,
		CType: frameType, CLen: rep.Content.Length, CSHA: sum, Body: body}, miap.PurposeConvReply, nil)
	if err != nil {
		return "", err
	}
	return reply.Header.Get(miapnats.HdrTicketParty), nil
}

// routeTo sends a multipart/alternative message to bob (an SMS recipient)
// until it is routed, and returns its transfer to the rogue processor.
func routeTo(t *testing.T, og *kit.Kit, proc *rogue) *miap.Transfer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			_, err := og.Send(ctx, &kit.Submission{From: schemas.Endpoint{Medium: "test", Address: "alice", Client: "alice"},
				To: "bob", Type: "multipart/alternative; boundary=x", Content: []byte("--x\r\n\r\nhi\r\n--x--\r\n")})
			if !kit.IsCode(err, schemas.CodeNoRoute) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	select {
	case tr := <-proc.got:
		return tr
	case <-time.After(10 * time.Second):
		t.Fatal("no transfer to the processor")
		return nil
	}
}

func content(ctype, data string) schemas.Content {
	sum := sha256.Sum256([]byte(data))
	return schemas.Content{Type: ctype, Length: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}
}

// A processor gets the next hop's ticket only for the step the content is
// at, with the conversion of that step, producing a type the route takes:
// a report for a step it was not given, of a step not reached or already
// done, of another conversion or of content off the route is refused
// (PROTOCOL.md §6.7), and so is one from a party that is not the current
// hop.
func TestConvReportsOffTheRoute(t *testing.T) {
	f := fabrictest.New(t)
	f.AddParty("proc2", miap.Grant{Role: miap.RoleProcessor})
	f.StartBroker(broker.Config{})
	f.PutProfiles(&schemas.Profile{ID: "alice", Addresses: map[string]string{"test": "alice"}},
		&schemas.Profile{ID: "bob", Addresses: map[string]string{"sms": "+15550101"}})
	ogKit, _ := f.StartKit(fabrictest.NewInbox(), kit.Config{Gateway: "test", Medium: "test"})
	f.StartKit(fabrictest.NewInbox(), kit.Config{Gateway: "peer", Medium: "sms", Accepts: []string{"text/plain"}})
	proc := newRogue(t, f, "proc",
		schemas.Conversion{Name: "alternative", From: "multipart/alternative", To: "text/html; charset=utf-8"},
		schemas.Conversion{Name: "html2text", From: "text/html", To: "text/plain; charset=utf-8"})
	newRogue(t, f, "proc2", schemas.Conversion{Name: "ocr", From: "image/*", To: "text/plain"})

	tr := routeTo(t, ogKit, proc)
	var routed schemas.RoutedIMI
	if err := json.Unmarshal(tr.Routed(), &routed); err != nil {
		t.Fatal(err)
	}
	if len(routed.Conversions) != 2 {
		t.Fatalf("route %+v", routed.Conversions)
	}
	id := tr.Ticket.ID
	rep := func(step int, conv string, c schemas.Content) schemas.ConvReport {
		return schemas.ConvReport{Tx: routed.Tx, MsgID: routed.IMI.MsgID, Conversion: conv, Step: step, Content: c}
	}
	html, text := content("text/html; charset=utf-8", "<p>hi</p>"), content("text/plain; charset=utf-8", "hi")
	refused := []struct {
		name  string
		party string
		rep   schemas.ConvReport
		ctype string // the frame's, when it differs
		want  schemas.Code
	}{
		{"a step not reached yet", "proc", rep(1, "html2text", text), "", schemas.CodeNotAllowed},
		{"a conversion the step does not name", "proc", rep(0, "html2text", text), "", schemas.CodeNotAllowed},
		{"a step the route does not have", "proc", rep(2, "html2text", text), "", schemas.CodeNotAllowed},
		{"a negative step", "proc", rep(-1, "alternative", html), "", schemas.CodeNotAllowed},
		{"content of a type off the route", "proc", rep(0, "alternative", content("image/png", "x")), "", schemas.CodeNotAllowed},
		{"another party", "proc2", rep(0, "alternative", html), "", schemas.CodeNotAllowed},
		{"report and frame disagree", "proc", rep(0, "alternative", html), "text/plain", schemas.CodeMalformed},
	}
	for _, c := range refused {
		if next, err := report(t, f, c.party, id, c.rep, c.ctype); miap.CodeOf(err) != c.want {
			t.Errorf("%s: next %q, %v; want %v", c.name, next, err, c.want)
		}
	}
	other := append([]byte(nil), id...)
	other[0] ^= 1
	if _, err := report(t, f, "proc", other, rep(0, "alternative", html), ""); miap.CodeOf(err) != schemas.CodeIDMismatch {
		t.Errorf("another ID: %v", err)
	}

	// Step 0 as routed: the next ticket is for step 1's processor, and
	// step 0 cannot be reported again.
	if next, err := report(t, f, "proc", id, rep(0, "alternative", html), ""); err != nil || next != "proc" {
		t.Fatalf("step 0: next %q, %v", next, err)
	}
	if _, err := report(t, f, "proc", id, rep(0, "alternative", html), ""); miap.CodeOf(err) != schemas.CodeNotAllowed {
		t.Errorf("step 0 again: %v", err)
	}
	// Step 1: the next ticket is for the destination; after it the
	// processor is no hop of the message any more.
	if next, err := report(t, f, "proc", id, rep(1, "html2text", text), ""); err != nil || next != "peer" {
		t.Fatalf("step 1: next %q, %v", next, err)
	}
	if _, err := report(t, f, "proc", id, rep(1, "html2text", text), ""); miap.CodeOf(err) != schemas.CodeNotAllowed {
		t.Errorf("step 1 again: %v", err)
	}
}

// A step whose output a later step produces skips to the hop after it: the
// alternative step that found a text part hands it to the destination.
func TestConvReportSkipsAhead(t *testing.T) {
	f := fabrictest.New(t)
	f.StartBroker(broker.Config{})
	f.PutProfiles(&schemas.Profile{ID: "alice", Addresses: map[string]string{"test": "alice"}},
		&schemas.Profile{ID: "bob", Addresses: map[string]string{"sms": "+15550101"}})
	ogKit, _ := f.StartKit(fabrictest.NewInbox(), kit.Config{Gateway: "test", Medium: "test"})
	f.StartKit(fabrictest.NewInbox(), kit.Config{Gateway: "peer", Medium: "sms", Accepts: []string{"text/plain"}})
	proc := newRogue(t, f, "proc",
		schemas.Conversion{Name: "alternative", From: "multipart/alternative", To: "text/html; charset=utf-8"},
		schemas.Conversion{Name: "html2text", From: "text/html", To: "text/plain; charset=utf-8"})
	tr := routeTo(t, ogKit, proc)
	var routed schemas.RoutedIMI
	json.Unmarshal(tr.Routed(), &routed)
	r := schemas.ConvReport{Tx: routed.Tx, MsgID: routed.IMI.MsgID, Conversion: "alternative", Content: content("text/plain; charset=utf-8", "hi")}
	if next, err := report(t, f, "proc", tr.Ticket.ID, r, ""); err != nil || next != "peer" {
		t.Fatalf("text from step 0: next %q, %v", next, err)
	}
	r.Step, r.Conversion = 1, "html2text"
	if _, err := report(t, f, "proc", tr.Ticket.ID, r, ""); miap.CodeOf(err) != schemas.CodeNotAllowed {
		t.Errorf("the skipped step: %v", err)
	}
}
