package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/uims/uims/internal/fabrictest"
)

// The SDK example as a new user runs it (docs/GATEWAYS.md): `uims run`,
// `uims party add`, a profile for the bot's address, `uims bot example`;
// a web client's message gets the auto-reply, a read receipt, and the
// reminder it asked for; `uims bot send` reaches the web client too.
func TestBotExampleAgainstRun(t *testing.T) {
	data := tempData(t)
	a := runFabric(t, data)
	t.Setenv("UIMS_NATS_URL", a.NATS)
	dir := filepath.Join(t.TempDir(), "helper-bundle")
	mustRun(t, cmdParty, "add", "helper", "--role", "gateway", "--medium", "bot", "--out", dir)
	profiles := filepath.Join(t.TempDir(), "helper.yaml")
	os.WriteFile(profiles, []byte("clients:\n  - id: helper\n    name: Helper bot\n    addresses: {bot: helper}\n    prefer: [bot]\n"), 0o600)
	mustRun(t, cmdProfile, "put", profiles)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- cmdBot(ctx, []string{"example", "--bundle", dir, "--address", "helper", "--log-level", "warn"})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("uims bot example: %v", err)
		}
	})

	web := "http://" + a.HTTP
	var id string
	fabrictest.Eventually(t, 15*time.Second, "alice's message delivered to the example bot", func() bool {
		code, body := httpJSON(t, "POST", web+"/api/v1/messages", "alice-token", `{"to":"helper","text":"remind 1s drink water"}`)
		id, _ = body["id"].(string)
		return code == 202 && body["status"] == "delivered"
	})
	fabrictest.Eventually(t, 15*time.Second, "the auto-reply and the reminder in alice's inbox", func() bool {
		_, body := httpJSON(t, "GET", web+"/api/v1/inbox", "alice-token", "")
		s := mustJSON(body)
		return strings.Contains(s, "ok, I will remind you in 1s.") && strings.Contains(s, "reminder: drink water")
	})
	fabrictest.Eventually(t, 10*time.Second, "the read receipt for alice's message", func() bool {
		_, body := httpJSON(t, "GET", web+"/api/v1/messages/"+id, "alice-token", "")
		return body["state"] == "read"
	})

	// one message as the bot, from the shell
	out, err := capture(t, cmdBot, "send", "--bundle", dir, "--address", "helper", "--to", "alice", "--log-level", "warn", "the build is green")
	if err != nil || !strings.Contains(out, "delivered to alice") {
		t.Fatalf("uims bot send: %v\n%s", err, out)
	}
	fabrictest.Eventually(t, 10*time.Second, "the bot's message in alice's inbox", func() bool {
		_, body := httpJSON(t, "GET", web+"/api/v1/inbox", "alice-token", "")
		return strings.Contains(mustJSON(body), "the build is green")
	})
	// to nobody: the code, and a failing exit
	if _, err := capture(t, cmdBot, "send", "--bundle", dir, "--to", "nobody-at-all", "--log-level", "warn", "x"); err == nil || !strings.Contains(err.Error(), "UNKNOWN_RECIPIENT") {
		t.Fatalf("send to nobody: %v", err)
	}
}
