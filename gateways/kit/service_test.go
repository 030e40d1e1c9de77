package kit_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/schemas"
)

// Every gateway is a nats micro service: $SRV.PING names it with its
// medium and instance, and $SRV.STATS counts what it received, delivered,
// refused and sent.
func TestGatewayIsAMicroService(t *testing.T) {
	f := fabrictest.New(t)
	f.StartBroker(broker.Config{})
	f.PutProfiles(
		&schemas.Profile{ID: "alice", Addresses: map[string]string{"test": "alice"}},
		&schemas.Profile{ID: "bob", Addresses: map[string]string{"web": "bob"}, Prefer: []string{"web"}},
	)
	og, dg := fabrictest.NewInbox(), fabrictest.NewInbox()
	ogKit, _ := f.StartKit(og, kit.Config{Gateway: "test", Medium: "test", Instance: "test-1"})
	f.StartKit(dg, kit.Config{Gateway: "peer", Medium: "web", Instance: "peer-1", Version: "1.2.3"})
	probe := f.Conn("probe")

	m, err := probe.Request("$SRV.PING."+schemas.GatewayService("peer"), nil, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var ping micro.Ping
	if err := json.Unmarshal(m.Data, &ping); err != nil {
		t.Fatal(err)
	}
	if ping.Name != "uims-gw-peer" || ping.Version != "1.2.3" || ping.Metadata["medium"] != "web" ||
		ping.Metadata["instance"] != "peer-1" || ping.Metadata["kind"] != "gateway" || ping.Metadata["miap_mode"] != "fast" {
		t.Fatalf("ping %+v", ping)
	}

	ctx := context.Background()
	fabrictest.Eventually(t, 5*time.Second, "a route to bob", func() bool {
		_, err := ogKit.Send(ctx, &kit.Submission{From: schemas.Endpoint{Medium: "test", Address: "alice", Client: "alice"}, To: "bob", Content: []byte("hi")})
		return err == nil
	})
	// a forged transfer is refused and counted
	r, err := probe.Request(schemas.GatewayIM("peer"), []byte("not a transfer"), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r.Header.Get(schemas.HdrError) == "" {
		t.Fatalf("forged transfer answered %v", r.Header)
	}

	stats := func(svc string) (micro.Stats, kit.GatewayStats) {
		m, err := probe.Request("$SRV.STATS."+svc, nil, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var st micro.Stats
		if err := json.Unmarshal(m.Data, &st); err != nil {
			t.Fatal(err)
		}
		var gs kit.GatewayStats
		for _, e := range st.Endpoints {
			if e.Name == "im" {
				json.Unmarshal(e.Data, &gs)
			}
		}
		return st, gs
	}
	st, gs := stats("uims-gw-peer")
	var im *micro.EndpointStats
	for _, e := range st.Endpoints {
		if e.Name == "im" {
			im = e
		}
	}
	if im == nil || im.Subject != "uims.gw.peer.im" || im.QueueGroup != "uims-gw-peer" || im.NumRequests < 2 {
		t.Fatalf("im endpoint %+v", im)
	}
	if gs.Medium != "web" || gs.Delivered < 1 || gs.Refused != 1 || gs.Acks < 1 || gs.Codes["MALFORMED"] != 1 {
		t.Fatalf("peer stats %+v", gs)
	}
	if _, gs := stats("uims-gw-test"); gs.Sent < 1 {
		t.Fatalf("originator stats %+v", gs)
	}
}
