package broker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// An outside address on a medium no party is provisioned for can never be
// reached: UNREACHABLE (permanent), with the reason. One whose gateway is
// provisioned but not live now stays NO_ROUTE (temporary).
func TestOutsideAddressOnUnprovisionedMediumIsUnreachable(t *testing.T) {
	f := fabrictest.New(t)
	f.StartBroker(broker.Config{})
	profiles(f)
	ogKit, _ := f.StartKit(fabrictest.NewInbox(), kit.Config{Gateway: "test", Medium: "test"})
	f.StartKit(fabrictest.NewInbox(), kit.Config{Gateway: "peer", Medium: "web"})
	waitRoute(t, ogKit)
	send := func(to string) error {
		_, err := ogKit.Send(context.Background(), &kit.Submission{From: schemas.Endpoint{Medium: "test", Address: "alice", Client: "alice"},
			To: to, Content: []byte("hi")})
		return err
	}
	var err error
	fabrictest.Eventually(t, 10*time.Second, "the brokers' registry settled", func() bool {
		err = send("xmpp:carol@chat.example.test")
		return miap.CodeOf(err) != schemas.CodeNoRoute
	})
	if miap.CodeOf(err) != schemas.CodeUnreachable || miap.CodeOf(err).Retryable() || !strings.Contains(err.Error(), "xmpp") {
		t.Fatalf("to an xmpp address with no xmpp party: %v, want UNREACHABLE naming the medium", err)
	}
	// sms is provisioned (the sms party, and peer speaks sms) but no SMS gateway is live
	if err := send("+15550999"); miap.CodeOf(err) != schemas.CodeNoRoute {
		t.Fatalf("to a number while no SMS gateway is live: %v, want NO_ROUTE", err)
	}
}
