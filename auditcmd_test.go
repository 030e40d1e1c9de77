package main

import (
	"bytes"
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
	"github.com/uims/uims/internal/redistest"
	"github.com/uims/uims/schemas"
)

// uims audit against uims run (its NATS identities and permissions): the
// brokers' records of a message verify and show as its signed history,
// with the operator's identity; a batch the administrator removed makes
// verify fail.
func TestAuditAgainstRun(t *testing.T) {
	data := tempData(t)
	t.Setenv("UIMS_REDIS_URL", "") // the embedded store: no anchors to read
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

	s := adminAuditStream(t, a.NATS, data)
	// the broker batches what it decides within 20 ms: on a fast machine
	// both messages' records may be one batch, and removing a broker's
	// only batch leaves no gap to find without the anchors
	var info *jetstream.StreamInfo
	fabrictest.Eventually(t, 10*time.Second, "two audit batches", func() bool {
		info, _ = s.Info(context.Background())
		if info != nil && info.State.Msgs >= 2 {
			return true
		}
		capture(t, cmdSend, "--from", "alice", "--to", "bob", "--wait", "5s", "one more")
		return false
	})
	if err := s.DeleteMsg(context.Background(), info.State.FirstSeq); err != nil {
		t.Fatal(err)
	}
	out, err := capture(t, cmdAudit, "verify")
	if !errors.Is(err, errAuditFindings) || !strings.Contains(out, "missing") {
		t.Errorf("after a removal: %v\n%s", err, out)
	}
}

// uims audit verify --redis against uims run on a real Redis: the whole
// audit stream purged by the administrator verifies without the store's
// anchors (nothing is left to find a gap in; verify says on stderr what it
// cannot see) and fails with them, from --redis or UIMS_REDIS_URL.
func TestAuditVerifyAnchorsAgainstRun(t *testing.T) {
	data := tempData(t)
	srv := redistest.Start(t)
	redisURL := "redis://" + srv.Addr + "/0"
	t.Setenv("UIMS_REDIS_URL", "")
	a := runFabricOn(t, data, redisURL)
	t.Setenv("UIMS_NATS_URL", a.NATS)
	fabrictest.Eventually(t, 15*time.Second, "a message delivered", func() bool {
		out, err := capture(t, cmdSend, "--from", "alice", "--to", "bob", "--wait", "5s", "anchored")
		return err == nil && strings.Contains(out, "final: delivered")
	})
	fabrictest.Eventually(t, 10*time.Second, "the broker's anchor", func() bool {
		out, err := capture(t, cmdAudit, "verify", "--redis", redisURL)
		return err == nil && strings.Contains(out, "1 broker boot checked against their anchors")
	})

	s := adminAuditStream(t, a.NATS, data)
	if err := s.Purge(context.Background()); err != nil {
		t.Fatal(err)
	}

	var warned bytes.Buffer
	old := stderr
	stderr = &warned
	out, err := capture(t, cmdAudit, "verify")
	stderr = old
	if err != nil || !strings.Contains(out, "verified") {
		t.Errorf("purged, without --redis: %v\n%s", err, out)
	}
	if n := strings.Count(warned.String(), "no --redis"); n != 1 {
		t.Errorf("stderr without --redis:\n%s", warned.String())
	}
	out, err = capture(t, cmdAudit, "verify", "--redis", redisURL)
	if !errors.Is(err, errAuditFindings) || !strings.Contains(out, "missing") || !strings.Contains(out, "none of this boot") {
		t.Errorf("purged, with --redis: %v\n%s", err, out)
	}
	t.Setenv("UIMS_REDIS_URL", redisURL)
	if _, err := capture(t, cmdAudit, "verify"); !errors.Is(err, errAuditFindings) {
		t.Errorf("purged, with UIMS_REDIS_URL: %v", err)
	}
}

// adminAuditStream opens the audit stream of a uims run at natsURL with
// the administrator's credentials under data (who may delete from it).
func adminAuditStream(t *testing.T, natsURL, data string) jetstream.Stream {
	t.Helper()
	nc, err := nats.Connect(natsURL, nats.UserCredentials(filepath.Join(data, "creds", "admin.creds")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	s, err := js.Stream(context.Background(), schemas.AuditStream)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
