package processor_test

import (
	"context"
	"testing"
	"time"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/processor"
	"github.com/uims/uims/schemas"
)

func startProcessor(t *testing.T, f *fabrictest.Fabric, strict bool) {
	p, err := processor.New(processor.Config{Strict: strict,
		Conversions: []processor.Conversion{processor.HTMLToText(1 << 16)}}, f.Conn("proc"), f.Keyring("proc"), f.Log)
	if err != nil {
		t.Fatal(err)
	}
	fabrictest.Start(t, "processor", p.Run)
}

// An HTML message to a recipient whose gateway takes only plain text passes
// the html2text processor; every hop checks the content against its ticket.
func TestConversionOnTheWay(t *testing.T) {
	for _, strict := range []bool{false, true} {
		t.Run(map[bool]string{false: "fast", true: "strict"}[strict], func(t *testing.T) {
			f := fabrictest.New(t)
			f.StartBroker(broker.Config{})
			f.PutProfiles(&schemas.Profile{ID: "alice", Addresses: map[string]string{"test": "alice"}},
				&schemas.Profile{ID: "bob", Addresses: map[string]string{"sms": "+15550101"}})
			startProcessor(t, f, strict)
			og, dg := fabrictest.NewInbox(), fabrictest.NewInbox()
			ogKit, _ := f.StartKit(og, kit.Config{Gateway: "test", Medium: "test", Strict: strict})
			f.StartKit(dg, kit.Config{Gateway: "peer", Medium: "sms", Accepts: []string{"text/plain"}, Strict: strict})
			var res *kit.Result
			fabrictest.Eventually(t, 5*time.Second, "a route through the processor", func() bool {
				var err error
				res, err = ogKit.Send(context.Background(), &kit.Submission{From: schemas.Endpoint{Medium: "test", Address: "alice", Client: "alice"},
					To: "bob", Type: "text/html; charset=utf-8", Content: []byte("<p>Hi <b>Bob</b></p><p>see <a href='https://x.test'>this</a></p>")})
				if err != nil {
					t.Log(err)
				}
				return err == nil
			})
			d := dg.Get(res.MsgID)
			if d == nil || string(d.Content) != "Hi Bob\n\nsee this (https://x.test)" || d.Type != "text/plain; charset=utf-8" {
				t.Fatalf("delivery %+v", d)
			}
			if len(d.Routed.Conversions) != 1 || d.Routed.Conversions[0].Conversion != "html2text" || res.Status != schemas.StatusDelivered {
				t.Fatalf("route %+v result %+v", d.Routed.Conversions, res)
			}
		})
	}
}
