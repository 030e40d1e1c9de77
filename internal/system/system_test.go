package system_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"mime/multipart"
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
	"github.com/uims/uims/internal/redistest"
	"github.com/uims/uims/internal/system"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/miap/natsauth"
	"github.com/uims/uims/schemas"
)

// runSystem starts `uims run` in-process on free ports.
func runSystem(t *testing.T, cfg system.Config) system.Addrs {
	t.Helper()
	cfg.HTTPAddr, cfg.NATSAddr, cfg.SMTPAddr, cfg.SMPPAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	addrs := make(chan system.Addrs, 1)
	cfg.Ready = func(a system.Addrs) { addrs <- a }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- system.Run(ctx, cfg, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	select {
	case a := <-addrs:
		return a
	case err := <-done:
		t.Fatalf("run stopped: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("run not ready")
	}
	return system.Addrs{}
}

func post(t *testing.T, url, token, body string) (int, map[string]any) {
	return postWith(t, http.DefaultClient, url, token, body)
}

func postWith(t *testing.T, hc *http.Client, url, token, body string) (int, map[string]any) {
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// The one-command system with its demo clients delivers alice → bob, with
// the embedded store and with a real Redis, and writes its key file.
func TestRunDeliversWithDemoClients(t *testing.T) {
	for _, store := range []string{"embedded", "redis"} {
		t.Run(store, func(t *testing.T) {
			cfg := system.Config{DataDir: t.TempDir()}
			if store == "redis" {
				srv := redistest.Start(t)
				cfg.RedisURL = "redis://" + srv.Addr + "/0"
			}
			a := runSystem(t, cfg)
			var code int
			var out map[string]any
			deadline := time.Now().Add(10 * time.Second)
			for time.Now().Before(deadline) {
				if code, out = post(t, "http://"+a.HTTP+"/api/v1/messages", "alice-token", `{"to":"bob","text":"hello"}`); code == 202 {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if code != 202 || out["status"] != "delivered" {
				t.Fatalf("%d %v", code, out)
			}
			kf, err := miap.ReadKeyFile(filepath.Join(cfg.DataDir, "keys.json"))
			if err != nil || len(kf.Keys) < 6 {
				t.Fatalf("key file: %v", err)
			}
			if fi, _ := os.Stat(filepath.Join(cfg.DataDir, "keys.json")); fi.Mode().Perm() != 0o600 {
				t.Fatalf("key file mode %v", fi.Mode())
			}
		})
	}
}

// A key file written before grants (PROTOCOL.md §3.5): loading it gives the
// built-in parties their grants, writes them, adds the missing parties with
// theirs, and leaves other parties alone.
func TestOldKeyFileGetsGrants(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	old := &miap.KeyFile{MIAP: 1}
	for _, p := range []string{miap.BrokerParty, "web", "email", "proc", "bot"} {
		e, err := miap.NewKeyEntry(rand.Reader, p, p+"-1", time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		e.XKey = "" // a key file written before PROTOCOL.md §14
		old.Keys = append(old.Keys, e)
	}
	if err := miap.WriteKeyFile(path, old); err != nil {
		t.Fatal(err)
	}
	if _, err := system.LoadOrCreateKeys(path, system.Parties, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	kf, err := miap.ReadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := kf.Keyring()
	if err != nil {
		t.Fatal(err)
	}
	for party, want := range system.Grants {
		g, ok := kr.Grant(party)
		if !ok || g.Role != want.Role || strings.Join(g.Media, ",") != strings.Join(want.Media, ",") {
			t.Errorf("grant of %s = %+v, %v; want %+v", party, g, ok, want)
		}
	}
	if g, ok := kr.Grant("web"); !ok || !g.Speaks("web") || g.Speaks("email") {
		t.Errorf("web grant %+v", g)
	}
	for _, p := range []string{"bot", miap.BrokerParty} {
		if g, ok := kr.Grant(p); ok {
			t.Errorf("%s got a grant %+v", p, g)
		}
	}
	// every party but the brokers gets an encryption key (PROTOCOL.md §14.2)
	for _, e := range kf.Keys {
		if (e.XKey == "") != (e.Party == miap.BrokerParty) {
			t.Errorf("%s/%s: xkey %v", e.Party, e.Kid, e.XKey != "")
		}
	}
	for _, p := range system.Parties {
		if e, _ := miap.New(miap.Config{Keys: kr}); !e.CanSeal(p) {
			t.Errorf("built-in party %s cannot seal", p)
		}
	}
}

// The command-line sender (party cli, `uims send`) names any existing
// client on medium cli, and nothing else (PROTOCOL.md §3.5, §6.2).
func TestCLISenderNamesClients(t *testing.T) {
	cfg := system.Config{DataDir: t.TempDir()}
	a := runSystem(t, cfg)
	kf, err := miap.ReadKeyFile(filepath.Join(cfg.DataDir, "keys.json"))
	if err != nil {
		t.Fatal(err)
	}
	kr, err := kf.For("cli").Keyring()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(a.NATS, natsauth.Options("cli", filepath.Join(a.Creds, "cli.creds"))...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	k, err := kit.New(nc, kr, fabrictest.NewInbox(), kit.Config{Gateway: "cli", Medium: "cli"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	send := func(from schemas.Endpoint) error {
		_, err := k.Send(context.Background(), &kit.Submission{From: from, To: "bob", Type: "text/plain; charset=utf-8", Content: []byte("hi")})
		return err
	}
	fabrictest.Eventually(t, 10*time.Second, "uims send as carol", func() bool {
		return send(schemas.Endpoint{Medium: "cli", Address: "carol", Client: "carol"}) == nil
	})
	if err := send(schemas.Endpoint{Medium: "web", Address: "carol", Client: "carol"}); miap.CodeOf(err) != schemas.CodeNotAllowed {
		t.Fatalf("cli naming a web sender: %v", err)
	}
}

// A text of 900 KB goes web to web by reference through the object store,
// under the NATS permissions of uims run (every party its own user): the
// bucket is created by a party that may not reconfigure it, read by the
// destination, and its object deleted by a broker.
func TestRunLargeTextByReference(t *testing.T) {
	a := runSystem(t, system.Config{DataDir: t.TempDir()})
	text := strings.Repeat("a large text, by reference. ", 900000/28) // the inbox keeps 1 MiB of text
	body, _ := json.Marshal(map[string]string{"to": "bob", "text": text})
	var code int
	var out map[string]any
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if code, out = post(t, "http://"+a.HTTP+"/api/v1/messages", "alice-token", string(body)); code == 202 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if code != 202 || out["status"] != "delivered" {
		t.Fatalf("%d %v", code, out)
	}
	req, _ := http.NewRequest("GET", "http://"+a.HTTP+"/api/v1/messages/"+out["id"].(string)+"/content", nil)
	req.Header.Set("Authorization", "Bearer bob-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(got) != text {
		t.Fatalf("bob reads %d: %d bytes of %d", resp.StatusCode, len(got), len(text))
	}
	// a broker deleted the object, with its own permissions
	deadline = time.Now().Add(10 * time.Second)
	var metrics string
	for time.Now().Before(deadline) {
		if r, err := http.Get("http://" + a.HTTP + "/metrics"); err == nil {
			b, _ := io.ReadAll(r.Body)
			r.Body.Close()
			if metrics = string(b); strings.Contains(metrics, "uims_broker_content_objects_deleted_total 1") {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	i := strings.Index(metrics, "uims_broker_content")
	t.Fatalf("no object deleted: %q", metrics[max(0, i):min(len(metrics), max(0, i)+200)])
}

// A 20 MB file through the web form, alice to bob, under uims run's NATS
// permissions: over the 8 MiB max_payload, so by reference, and back
// byte-exact from bob's inbox.
func TestRunLargeUpload(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 40 MB: not in -short")
	}
	a := runSystem(t, system.Config{DataDir: t.TempDir()})
	data := make([]byte, 20_000_000)
	rand.Read(data)
	var body bytes.Buffer
	w := multipart.NewWriter(&body)
	w.WriteField("to", "bob")
	w.WriteField("text", "twenty megabytes")
	p, _ := w.CreateFormFile("file", "big.bin")
	p.Write(data)
	w.Close()
	var id string
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) && id == "" {
		req, _ := http.NewRequest("POST", "http://"+a.HTTP+"/api/v1/messages", bytes.NewReader(body.Bytes()))
		req.Header.Set("Authorization", "Bearer alice-token")
		req.Header.Set("Content-Type", w.FormDataContentType())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if resp.StatusCode == 202 && out["status"] == "delivered" {
			id, _ = out["id"].(string)
			break
		}
		t.Logf("upload: %d %v", resp.StatusCode, out)
		time.Sleep(500 * time.Millisecond)
	}
	if id == "" {
		t.Fatal("the upload was not delivered")
	}
	req, _ := http.NewRequest("GET", "http://"+a.HTTP+"/api/v1/messages/"+id+"/attachments/0", nil)
	req.Header.Set("Authorization", "Bearer bob-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !bytes.Equal(got, data) {
		t.Fatalf("bob downloads %d: %d bytes of %d", resp.StatusCode, len(got), len(data))
	}
}
