package sms_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/uims/uims/gateways/sms"
	"github.com/uims/uims/gateways/sms/pdu"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/schemas"
)

// When the gateway cannot read which clients are applications, a message
// for a client is a temporary failure (ESME_RTHROTTLED: submit again
// later), not a permanent one (ESME_RSUBMITFAIL), which the client would
// give up on (issue 13 item 4).
func TestAppStoreFailureIsTemporary(t *testing.T) {
	e := newEnv(t, sms.Config{})
	e.f.PutProfiles(&schemas.Profile{ID: "erin", Addresses: map[string]string{"sms": "+15550199"}})
	c := dialESME(t, e.addr())
	c.mustBind(pdu.CmdBindTransmitter, "alice", "alice-pw")
	// erin has no application and there is no SMS centre: refused for
	// good (UNREACHABLE).
	var st pdu.Status
	fabrictest.Eventually(t, 10*time.Second, "a decision", func() bool {
		st = c.submit(textMsg("15550100", "15550199", "hi", 0)).Status
		return st == pdu.ESME_RSUBMITFAIL
	})

	// The application bucket goes away (a JetStream failure): the gateway
	// cannot look, so it says "later".
	js, err := jetstream.New(e.f.Conn("admin"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := js.DeleteKeyValue(ctx, sms.AppBucket); err != nil {
		t.Fatal(err)
	}
	if r := c.submit(textMsg("15550100", "15550199", "hi again", 0)); r.Status != pdu.ESME_RTHROTTLED {
		t.Fatalf("submit while the application store fails: %s, want ESME_RTHROTTLED", r.Status)
	}
}
