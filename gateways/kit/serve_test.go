package kit_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/schemas"
)

// Kit.Serve starts the kit, then the medium's server, calls ready once
// both run, stops the medium's server first when ctx is done (the kit
// still answers then, for late acknowledgements), and the kit last.
func TestServeStartsAndDrainsInOrder(t *testing.T) {
	f := fabrictest.New(t)
	f.StartBroker(broker.Config{})
	f.PutProfiles(&schemas.Profile{ID: "alice", Addresses: map[string]string{"test": "alice"}})
	k, err := kit.New(f.Conn("gw-test"), f.Keyring("test"), fabrictest.NewInbox(), kit.Config{Gateway: "test", Medium: "test"}, f.Log)
	if err != nil {
		t.Fatal(err)
	}
	probe := f.Conn("probe")
	kitServes := func() error { // the kit answers on its own subjects while it runs
		_, err := probe.Request(schemas.GatewayHeld("test"), []byte(`{"v":1,"msg_id":"0123456789abcdef0123456789abcdef"}`), 2*time.Second)
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	readyCalled := make(chan struct{})
	var kitUpWhenStopping error
	done := make(chan error, 1)
	go func() {
		done <- k.Serve(ctx, func() { close(readyCalled) }, func(ctx context.Context) error {
			<-ctx.Done()
			// the medium drains: the kit must still serve
			kitUpWhenStopping = kitServes()
			return errors.New("medium stopped")
		})
	}()
	select {
	case <-readyCalled:
	case err := <-done:
		t.Fatalf("Serve ended before ready: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("not ready")
	}
	cancel()
	select {
	case err := <-done:
		if err == nil || err.Error() != "medium stopped" {
			t.Errorf("Serve returned %v, want the medium's error", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Serve did not end")
	}
	if kitUpWhenStopping != nil {
		t.Errorf("the kit was already down while the medium drained: %v", kitUpWhenStopping)
	}
	// its subscriptions drain asynchronously (nats Drain)
	fabrictest.Eventually(t, 5*time.Second, "the kit no longer serving", func() bool { return kitServes() != nil })
}
