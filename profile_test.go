package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/schemas"
)

const daveYAML = `clients:
  - id: dave
    name: Dave Example
    token: dave-token
    addresses: {email: dave@example.test}
    prefer: [email, web]
    smpp: {system_id: dave, password: dave-pw}
`

// TestProfileThroughBrokers runs `uims profile` against a running broker,
// told only the NATS URL, with flags after the subcommand.
func TestProfileThroughBrokers(t *testing.T) {
	tempData(t)
	f := fabrictest.New(t)
	var saved atomic.Int32
	b, _ := f.StartBroker(broker.Config{OnProfilesChanged: func(context.Context) error { saved.Add(1); return nil }})
	f.PutProfiles(&schemas.Profile{ID: "alice", Name: "Alice", Token: "alice-token", Addresses: map[string]string{"web": "alice"}})
	url := f.NATS.ClientURL()
	file := filepath.Join(t.TempDir(), "dave.yaml")
	if err := os.WriteFile(file, []byte(daveYAML), 0o600); err != nil {
		t.Fatal(err)
	}

	if out := mustRun(t, cmdProfile, "put", file, "--nats", url); !strings.Contains(out, "1 profiles stored") {
		t.Errorf("put: %q", out)
	}
	if p, err := b.Profiles().ByToken(context.Background(), schemas.TokenSHA256("dave-token")); err != nil || p.Addresses["web"] != "dave" {
		t.Fatalf("dave in the store: %+v %v", p, err)
	}
	if saved.Load() != 1 {
		t.Errorf("the broker's OnProfilesChanged ran %d times for one put", saved.Load())
	}
	out := mustRun(t, cmdProfile, "--nats", url, "list")
	for _, want := range []string{"alice", "dave", "email=dave@example.test", "prefer=email,web"} {
		if !strings.Contains(out, want) {
			t.Errorf("list lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "token") || strings.Contains(out, "dave-pw") {
		t.Errorf("list shows a secret:\n%s", out)
	}
	t.Setenv("UIMS_NATS_URL", url)
	mustRun(t, cmdProfile, "delete", "dave")
	if _, err := b.Profiles().ByID(context.Background(), "dave"); err == nil {
		t.Error("dave still there after delete")
	}
	if _, err := capture(t, cmdProfile, "delete", "dave"); err == nil || !strings.Contains(err.Error(), `no client "dave"`) {
		t.Errorf("delete of an unknown client: %v", err)
	}

	// --redis: a store without brokers
	mustRun(t, cmdProfile, "put", file, "--redis", "redis://"+f.Redis.Addr)
	if out := mustRun(t, cmdProfile, "list", "--redis", "redis://"+f.Redis.Addr); !strings.Contains(out, "dave") {
		t.Errorf("list --redis: %q", out)
	}
}
