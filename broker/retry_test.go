package broker_test

import (
	"context"
	"testing"
	"time"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// A client's retry with the same message id always gets an answer: the
// message's status once it is delivered (no second delivery), the final
// failure once it failed, never a perpetual "try again" — also after the
// transaction's deadline (docs/RELIABILITY.md, retries).
func TestRetryOfSettledMessageAnswers(t *testing.T) {
	f := fabrictest.New(t)
	f.StartBroker(broker.Config{Deadline: 2 * time.Second, Grace: 500 * time.Millisecond, SweepInterval: 50 * time.Millisecond})
	profiles(f)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	og := fabrictest.NewInbox()
	ogKit, _ := f.StartKit(og, kit.Config{Gateway: "test", Medium: "test", TransferTimeout: time.Second})

	// delivered, then retried after the deadline: the status, one delivery
	dg := fabrictest.NewInbox()
	dgRun := func() *fabrictest.Running {
		_, r := f.StartKit(dg, kit.Config{Gateway: "peer", Medium: "web"})
		return r
	}()
	s := submission("once")
	s.MsgID = kit.NewMsgID()
	res := waitRoute(t, ogKit)
	if res.Status != schemas.StatusDelivered {
		t.Fatalf("warm-up: %+v", res)
	}
	if res, err := ogKit.Send(ctx, s); err != nil || res.Status != schemas.StatusDelivered {
		t.Fatalf("first send: %+v %v", res, err)
	}
	time.Sleep(2600 * time.Millisecond) // past deadline and grace
	for range 2 {
		res, err := ogKit.Send(ctx, s)
		if err != nil || res.Status != schemas.StatusDelivered || res.MsgID != s.MsgID {
			t.Fatalf("retry after the deadline: %+v %v, want its status delivered", res, err)
		}
	}
	if n := dg.Count[s.MsgID]; n != 1 {
		t.Errorf("delivered %d times, want once", n)
	}

	// failed at its deadline (the destination hangs), then retried: the final failure
	dgRun.Stop()
	hungGateway(t, f, ctx)
	lost := submission("into the void")
	lost.MsgID = kit.NewMsgID()
	fabrictest.Eventually(t, 5*time.Second, "the route to the hung gateway", func() bool {
		_, err := ogKit.Send(ctx, lost)
		return miap.CodeOf(err) == schemas.CodeBusy
	})
	fabrictest.Eventually(t, 10*time.Second, "the non-delivery report", func() bool {
		n := og.Note(lost.MsgID)
		return n != nil && n.Status == schemas.StatusFailed
	})
	for range 2 {
		_, err := ogKit.Send(ctx, lost)
		if c := miap.CodeOf(err); c != schemas.CodeExpired {
			t.Fatalf("retry of a failed message: %v (%s), want the final failure EXPIRED", err, c)
		}
	}
}
