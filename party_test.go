package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/internal/system"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/miap/bundle"
	"github.com/uims/uims/miap/natsauth"
	"github.com/uims/uims/schemas"
)

// runFabric runs `uims run` on data in this process and returns its addresses.
func runFabric(t *testing.T, data string) system.Addrs {
	t.Helper()
	return runFabricOn(t, data, "")
}

// runFabricOn is runFabric with the store at redisURL (empty: embedded).
func runFabricOn(t *testing.T, data, redisURL string) system.Addrs {
	t.Helper()
	addrs := make(chan system.Addrs, 1)
	cfg := system.Config{DataDir: data, HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0", SMTPAddr: "off", SMPPAddr: "off",
		RedisURL: redisURL, Ready: func(a system.Addrs) { addrs <- a }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- system.Run(ctx, cfg, zerolog.Nop()) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case a := <-addrs:
		return a
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("run not ready")
	}
	return system.Addrs{}
}

// `uims party add` while the fabric runs: a gateway that has the bundle
// alone joins, receives a web client's message and answers it; `uims
// party remove` then closes its connection and the fabric refuses it.
func TestPartyAddJoinsAndRemoveShutsOut(t *testing.T) {
	data := tempData(t)
	a := runFabric(t, data)
	t.Setenv("UIMS_NATS_URL", a.NATS)
	dir := filepath.Join(t.TempDir(), "mybot")
	out := mustRun(t, cmdParty, "add", "mybot", "--role", "gateway", "--medium", "bot", "--out", dir)
	if !strings.Contains(out, "no restart") {
		t.Errorf("party add: %s", out)
	}
	profiles := filepath.Join(t.TempDir(), "echo.yaml")
	os.WriteFile(profiles, []byte("clients:\n  - id: echo\n    addresses: {bot: echo}\n    prefer: [bot]\n"), 0o600)
	mustRun(t, cmdProfile, "put", profiles)

	// the bundle holds this party's material and nothing else
	b, err := bundle.Read(dir)
	if err != nil || b.Party != "mybot" || b.InboxPrefix != "_INBOX.mybot" || b.Role != "gateway" {
		t.Fatalf("bundle: %+v %v", b, err)
	}
	kf, err := miap.ReadKeyFile(filepath.Join(dir, "keys.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range kf.Keys {
		if e.Party != "mybot" {
			t.Errorf("the bundle holds a key of %q", e.Party)
		}
		if e.XKey == "" { // sealed content (PROTOCOL.md §14.2)
			t.Errorf("the bundle's key %s has no encryption key", e.Kid)
		}
	}
	kr, err := kf.Keyring()
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	nc, err := nats.Connect(b.NATSURL, append(natsauth.Options(b.Party, filepath.Join(dir, "mybot.creds")),
		nats.MaxReconnects(0), nats.ClosedHandler(func(*nats.Conn) { close(closed) }))...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	inbox := fabrictest.NewInbox()
	k, err := kit.New(nc, kr, inbox, kit.Config{Gateway: "mybot", Medium: schemas.MediumBot}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	fabrictest.Start(t, "mybot", k.Run)

	// web → bot
	var id string
	fabrictest.Eventually(t, 10*time.Second, "alice's message to echo delivered to the bot", func() bool {
		code, body := httpJSON(t, "POST", "http://"+a.HTTP+"/api/v1/messages", "alice-token", `{"to":"echo","text":"hi bot"}`)
		id, _ = body["id"].(string)
		return code == 202 && body["status"] == "delivered"
	})
	if d := inbox.Get(id); d == nil || string(d.Content) != "hi bot" {
		t.Fatalf("the bot has %+v", d)
	}
	// bot → web
	res, err := k.Send(context.Background(), &kit.Submission{From: schemas.Endpoint{Medium: schemas.MediumBot, Address: "echo", Client: "echo"},
		To: "alice", Content: []byte("echo: hi bot")})
	if err != nil || res.Status != schemas.StatusDelivered {
		t.Fatalf("the bot's answer: %+v %v", res, err)
	}
	if _, body := httpJSON(t, "GET", "http://"+a.HTTP+"/api/v1/inbox", "alice-token", ""); !strings.Contains(mustJSON(body), "echo: hi bot") {
		t.Errorf("alice's inbox: %v", body)
	}
	// the bot may not speak for alice
	if _, err := k.Send(context.Background(), &kit.Submission{From: schemas.Endpoint{Medium: schemas.MediumWeb, Address: "alice", Client: "alice"},
		To: "bob", Content: []byte("I am alice")}); miap.CodeOf(err) != schemas.CodeNotAllowed {
		t.Errorf("the bot naming alice: %v, want NOT_ALLOWED", err)
	}

	out = mustRun(t, cmdParty, "remove", "mybot")
	if !strings.Contains(out, "closed its connections") {
		t.Errorf("party remove: %s", out)
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the removed party is still connected")
	}
	if _, err := nats.Connect(b.NATSURL, append(natsauth.Options(b.Party, filepath.Join(dir, "mybot.creds")), nats.MaxReconnects(0))...); !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("the removed party connects again: %v", err)
	}
	if out := mustRun(t, cmdParty, "list"); strings.Contains(out, "mybot") {
		t.Errorf("party list after remove:\n%s", out)
	}
}

func httpJSON(t *testing.T, method, url, token, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func mustJSON(v any) string { b, _ := json.Marshal(v); return string(b) }
