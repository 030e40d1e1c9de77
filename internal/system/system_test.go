package system_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/uims/uims/internal/redistest"
	"github.com/uims/uims/internal/system"
	"github.com/uims/uims/miap"
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
