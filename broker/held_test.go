package broker_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/schemas"
)

// A destination that holds a valid key but lies in the deadline check
// (PROTOCOL.md §6.14) cannot keep a message open: "held" without the
// acknowledgement it stands for, and "later" for ever, both end in the
// non-delivery report.
func TestDeadlineCheckLiesDoNotKeepAMessageOpen(t *testing.T) {
	for name, answer := range map[string]string{
		"held without acknowledging": `{"v":1,"held":true}`,
		"later for ever":             `{"v":1,"later":true}`,
	} {
		t.Run(name, func(t *testing.T) {
			f := fabrictest.New(t)
			f.StartBroker(broker.Config{Deadline: 2 * time.Second, Grace: 200 * time.Millisecond, SweepInterval: 50 * time.Millisecond})
			profiles(f)
			og := fabrictest.NewInbox()
			ogKit, _ := f.StartKit(og, kit.Config{Gateway: "test", Medium: "test", TransferTimeout: time.Second})
			// the destination takes the transfer and never answers it
			nc := f.Conn("gw-peer")
			k, err := kit.New(nc, f.Keyring("peer"), storeThenHang{fabrictest.NewInbox()}, kit.Config{Gateway: "peer", Medium: "web"}, f.Log)
			if err != nil {
				t.Fatal(err)
			}
			go k.Run(context.Background(), nil)
			s := submission("held hostage")
			s.MsgID = kit.NewMsgID()
			fabrictest.Eventually(t, 10*time.Second, "the message routed to the hanging destination", func() bool {
				ogKit.Send(context.Background(), s)
				st, err := ogKit.Query(context.Background(), s.MsgID)
				return err == nil && st.State == schemas.StatusRouted
			})
			// then its connection goes, and a liar answers its deadline checks
			nc.Close()
			liar := f.Conn("liar")
			asked := make(chan struct{}, 100)
			if _, err := liar.Subscribe(schemas.GatewayHeld("peer"), func(m *nats.Msg) {
				m.Respond([]byte(answer))
				select {
				case asked <- struct{}{}:
				default:
				}
			}); err != nil {
				t.Fatal(err)
			}
			var st *schemas.TxStatus
			fabrictest.Eventually(t, 15*time.Second, "the non-delivery report", func() bool {
				st, err = ogKit.Query(context.Background(), s.MsgID)
				return err == nil && schemas.Terminal(st.State)
			})
			if st.State != schemas.StatusFailed {
				t.Fatalf("state %s; history %+v", st.State, st.History)
			}
			if len(asked) == 0 {
				t.Fatal("the liar was never asked: the test tested nothing")
			}
		})
	}
}
