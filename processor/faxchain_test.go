package processor_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/processor"
	"github.com/uims/uims/processor/faxtiff"
	"github.com/uims/uims/schemas"
)

// faxFabric is a fabric with alice on the test gateway, bob on a fax
// gateway "faxgw" that takes only image/tiff, and carol on an SMS-like
// gateway "peer" that takes only text/plain; one processor runs the
// standard and the fax conversions.
func faxFabric(t *testing.T) (*kit.Kit, *fabrictest.Inbox, *fabrictest.Inbox) {
	f := fabrictest.New(t)
	f.AddParty("faxgw", miap.Grant{Role: miap.RoleGateway, Media: []string{schemas.MediumFax}})
	f.StartBroker(broker.Config{})
	f.PutProfiles(&schemas.Profile{ID: "alice", Addresses: map[string]string{"test": "alice"}},
		&schemas.Profile{ID: "bob", Addresses: map[string]string{"fax": "+41445550199"}},
		&schemas.Profile{ID: "carol", Addresses: map[string]string{"sms": "+15550101"}})
	og, fax, sms := fabrictest.NewInbox(), fabrictest.NewInbox(), fabrictest.NewInbox()
	ogKit, _ := f.StartKit(og, kit.Config{Gateway: "test", Medium: "test"})
	f.StartKit(fax, kit.Config{Gateway: "faxgw", Medium: "fax", Accepts: []string{"image/tiff"}})
	f.StartKit(sms, kit.Config{Gateway: "peer", Medium: "sms", Accepts: []string{"text/plain"}})
	convs, missing := processor.Fax(processor.FaxConfig{})
	if len(missing) > 0 {
		t.Logf("fax conversions missing: %v", missing)
	}
	startProcessorAs(t, f, "proc", false, append(processor.Standard(1<<16), convs...)...)
	return ogKit, fax, sms
}

func sendFrom(t *testing.T, k *kit.Kit, to, ctype string, body []byte) (*kit.Result, error) {
	t.Helper()
	var res *kit.Result
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		res, err = k.Send(context.Background(), &kit.Submission{From: schemas.Endpoint{Medium: "test", Address: "alice", Client: "alice", Name: "Alice"},
			To: to, Type: ctype, Content: body})
		if !kit.IsCode(err, schemas.CodeNoRoute) { // the brokers learn the fabric (3 s)
			break
		}
	}
	return res, err
}

// An HTML message to a fax recipient goes html2text, then text2fax, and
// arrives as a TIFF-F fax; a fax to a text-only recipient goes fax2text.
// A corrupt fax is refused MALFORMED, end to end.
func TestFaxChain(t *testing.T) {
	ogKit, fax, sms := faxFabric(t)
	res, err := sendFrom(t, ogKit, "bob", "text/html; charset=utf-8", []byte("<p>Hello <b>Bob</b>,</p><p>the fax machine says hi.</p>"))
	if err != nil {
		t.Fatal(err)
	}
	d := fax.Get(res.MsgID)
	if d == nil || d.Type != processor.FaxType {
		t.Fatalf("delivery %+v", d)
	}
	if s := d.Routed.Conversions; len(s) != 2 || s[0].Conversion != "html2text" || s[1].Conversion != "text2fax" {
		t.Errorf("route %+v", s)
	}
	pages, err := faxtiff.Read(d.Content, faxtiff.DefaultLimits)
	if err != nil || len(pages) != 1 || pages[0].Width != faxtiff.Width || pages[0].YDPI != faxtiff.FineYDPI {
		t.Fatalf("the fax: %d pages, %v", len(pages), err)
	}

	faxConversion(t, "fax2text") // skips loudly, or fails under CI, without tesseract

	res, err = sendFrom(t, ogKit, "carol", "image/tiff", d.Content)
	if err != nil {
		t.Fatal(err)
	}
	got := sms.Get(res.MsgID)
	if got == nil || got.Type != "text/plain; charset=utf-8" || len(got.Routed.Conversions) != 1 || got.Routed.Conversions[0].Conversion != "fax2text" {
		t.Fatalf("delivery %+v", got)
	}
	if text := string(got.Content); !contains(text, "Hello Bob", "the fax machine says hi.", "FROM Alice <alice>", "P. 1/1") {
		t.Errorf("OCR text %q", text)
	}
	if _, err := sendFrom(t, ogKit, "carol", "image/tiff", []byte("II*\x00\x08\x00\x00\x00\xff\xff")); !kit.IsCode(err, schemas.CodeMalformed) {
		t.Errorf("a corrupt fax: %v, want MALFORMED", err)
	}
}

func contains(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
