package main

import (
	"strings"
	"testing"
	"time"

	"github.com/uims/uims/internal/fabrictest"
)

// uims send --at: held by the brokers, and sent when the hold ends by
// 'uims run', with the 'uims send' process gone; uims cancel cancels
// another before its time (docs/ROUTING.md, "Holds").
func TestSendAtAgainstRun(t *testing.T) {
	data := tempData(t)
	a := runFabric(t, data)
	t.Setenv("UIMS_NATS_URL", a.NATS)
	web := "http://" + a.HTTP
	// warm up: the brokers hear the web gateway
	fabrictest.Eventually(t, 15*time.Second, "a route to bob", func() bool {
		out, err := capture(t, cmdSend, "--from", "alice", "--to", "bob", "--wait", "5s", "warm up")
		return err == nil && strings.Contains(out, "final: delivered")
	})

	out := mustRun(t, cmdSend, "--from", "alice", "--to", "bob", "--at", "2s", "in two seconds")
	id, rest, _ := strings.Cut(out, "\n")
	if !strings.Contains(rest, "held  alice → web:bob") || !strings.Contains(rest, "held until ") || !strings.Contains(rest, "scheduled for ") {
		t.Fatalf("uims send --at 2s printed:\n%s", out)
	}
	fabrictest.Eventually(t, 15*time.Second, "the scheduled message in bob's inbox", func() bool {
		_, body := httpJSON(t, "GET", web+"/api/v1/inbox", "bob-token", "")
		return strings.Contains(mustJSON(body), "in two seconds")
	})
	fabrictest.Eventually(t, 10*time.Second, "delivered", func() bool {
		_, body := httpJSON(t, "GET", web+"/api/v1/messages/"+id, "alice-token", "")
		return body["state"] == "delivered"
	})

	out = mustRun(t, cmdSend, "--from", "alice", "--to", "bob", "--at", "1h", "never mind")
	id, _, _ = strings.Cut(out, "\n")
	if out := mustRun(t, cmdCancel, id); !strings.Contains(out, "failed (cancelled)") {
		t.Fatalf("uims cancel printed %q", out)
	}
	if _, err := capture(t, cmdCancel, id); err == nil || !strings.Contains(err.Error(), "SETTLED") {
		t.Fatalf("uims cancel again: %v, want SETTLED", err)
	}
	if _, err := capture(t, cmdSend, "--from", "alice", "--to", "bob", "--at", "tomorrow", "x"); err == nil || !strings.Contains(err.Error(), "RFC 3339") {
		t.Fatalf("--at tomorrow: %v", err)
	}
}
