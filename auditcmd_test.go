package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/schemas"
)

// uims audit against uims run (its NATS identities and permissions): the
// brokers' records of a message verify and show as its signed history,
// with the operator's identity; a batch the administrator removed makes
// verify fail.
func TestAuditAgainstRun(t *testing.T) {
	data := tempData(t)
	a := runFabric(t, data)
	t.Setenv("UIMS_NATS_URL", a.NATS)
	var id string
	fabrictest.Eventually(t, 15*time.Second, "a route to bob", func() bool {
		out, err := capture(t, cmdSend, "--from", "alice", "--to", "bob", "--wait", "5s", "warm up")
		id, _, _ = strings.Cut(out, "\n")
		return err == nil && strings.Contains(out, "final: delivered")
	})
	mustRun(t, cmdSend, "--from", "alice", "--to", "bob", "--wait", "5s", "second")
	var out string
	fabrictest.Eventually(t, 10*time.Second, "the message's history", func() bool {
		var err error
		out, err = capture(t, cmdAudit, "show", id)
		return err == nil && strings.Contains(out, "ack ") && strings.Contains(out, "status=delivered")
	})
	if !strings.Contains(out, "verified (") || !strings.Contains(out, "route ") || !strings.Contains(out, "id=match") {
		t.Errorf("uims audit show:\n%s", out)
	}
	if out := mustRun(t, cmdAudit, "verify"); !strings.Contains(out, "verified: no record missing") {
		t.Errorf("uims audit verify:\n%s", out)
	}
	if out := mustRun(t, cmdAudit, "verify", "--since", "1h"); !strings.Contains(out, "verified") {
		t.Errorf("uims audit verify --since 1h:\n%s", out)
	}
	keys := filepath.Join(t.TempDir(), "pub")
	if err := os.WriteFile(keys, []byte(mustRun(t, cmdAudit, "keys")), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := mustRun(t, cmdAudit, "verify", "--pub", keys); !strings.Contains(out, "verified") {
		t.Errorf("uims audit verify --pub:\n%s", out)
	}

	nc, err := nats.Connect(a.NATS, nats.UserCredentials(filepath.Join(data, "creds", "admin.creds")))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	s, err := js.Stream(context.Background(), schemas.AuditStream)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := s.Info(context.Background())
	if info.State.Msgs < 2 {
		t.Fatalf("%d audit batches", info.State.Msgs)
	}
	if err := s.DeleteMsg(context.Background(), info.State.FirstSeq); err != nil {
		t.Fatal(err)
	}
	out, err = capture(t, cmdAudit, "verify")
	if !errors.Is(err, errAuditFindings) || !strings.Contains(out, "missing") {
		t.Errorf("after a removal: %v\n%s", err, out)
	}
}
