package web_test

import (
	"context"
	"testing"
	"time"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/web"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/schemas"
)

// The web gateway answers the brokers' deadline check from bob's inbox
// (PROTOCOL.md §6.14): a message there is held, with the reference its
// acknowledgement needs; another is not.
func TestHeldFromTheInbox(t *testing.T) {
	f := fabrictest.New(t)
	f.StartBroker(broker.Config{})
	f.PutProfiles(&schemas.Profile{ID: "alice", Token: "alice-token", Addresses: map[string]string{"web": "alice"}},
		&schemas.Profile{ID: "bob", Token: "bob-token", Addresses: map[string]string{"web": "bob"}})
	g, err := web.New(web.Config{Addr: "127.0.0.1:0"}, f.Conn("web"), f.Keyring("web"), f.Log)
	if err != nil {
		t.Fatal(err)
	}
	fabrictest.Start(t, "web gateway", g.Run)
	url := "http://" + g.Addr()
	var id string
	fabrictest.Eventually(t, 10*time.Second, "alice → bob delivered", func() bool {
		code, out := call(t, "POST", url+"/api/v1/messages", "alice-token", `{"to":"bob","text":"held?"}`)
		id, _ = out["id"].(string)
		return code == 202
	})
	ctx := context.Background()
	ref, err := g.Held(ctx, &schemas.HeldQuery{V: 1, MsgID: id, Recipient: "bob"})
	if err != nil || ref == nil || ref.MsgID != id || ref.ID == "" {
		t.Fatalf("held %s for bob: %+v %v", id, ref, err)
	}
	if ref, err := g.Held(ctx, &schemas.HeldQuery{V: 1, MsgID: id, Recipient: "alice"}); err != nil || ref != nil {
		t.Errorf("held %s for alice, whose inbox does not have it: %+v %v", id, ref, err)
	}
	if ref, err := g.Held(ctx, &schemas.HeldQuery{V: 1, MsgID: "0123456789abcdef0123456789abcdef", Recipient: "bob"}); err != nil || ref != nil {
		t.Errorf("held an unknown message: %+v %v", ref, err)
	}
}
