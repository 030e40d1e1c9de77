package bench

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/uims/uims/internal/system"
)

// runUIMS starts `uims run` in this process on free ports, with its demo
// clients, and returns its web API's base URL.
func runUIMS(t *testing.T) string {
	t.Helper()
	addrs := make(chan system.Addrs, 1)
	cfg := system.Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0", SMTPAddr: "off", SMPPAddr: "off",
		OpsAddr: "off", Ready: func(a system.Addrs) { addrs <- a }}
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
		return "http://" + a.HTTP
	case err := <-done:
		t.Fatalf("run stopped: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("run not ready")
	}
	return ""
}

// `uims bench http` against `uims run` in this process, 4 clients for
// about a second: messages accepted, every one delivered, no error, one
// connection per client, and the trivial server's row beside it.
func TestBenchHTTP(t *testing.T) {
	base := runUIMS(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out := t.TempDir()
	cfg := HTTPConfig{URL: base, Senders: []HTTPSender{{Token: "alice-token", To: "bob"}}, Clients: 4, Size: 100,
		Warmup: 200 * time.Millisecond, Duration: time.Second, CheckTimeout: 20 * time.Second, OutDir: out, Progress: io.Discard}
	rep, err := RunHTTP(ctx, cfg, []string{"test"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Warnings) > 0 { // the demo clients have no quota, and their usage answers
		t.Errorf("warnings %q", rep.Warnings)
	}
	u, tr := rep.row(TargetUIMS), rep.row(TargetTrivial)
	if u == nil || tr == nil {
		t.Fatalf("rows %+v", rep.Rows)
	}
	for _, r := range []*HTTPResult{u, tr} {
		// one connection each, kept alive; a busy machine may make the
		// client open one again now and then
		if r.Accepted == 0 || len(r.Errors) > 0 || len(r.WarmupErrors) > 0 || r.Conns < 4 || r.Conns > 8 {
			t.Errorf("%s: %d accepted, errors %v, warm-up errors %v, %d connections", r.Target, r.Accepted, r.Errors, r.WarmupErrors, r.Conns)
		}
	}
	c := u.Check
	if c == nil || c.Accepted != u.Accepted+u.Unmeasured || c.Delivered != c.Accepted || len(c.Undelivered) > 0 {
		t.Fatalf("check %+v (row: %d measured, %d not)", c, u.Accepted, u.Unmeasured)
	}
	if tr.Check != nil || rep.Ratio <= 0 {
		t.Errorf("trivial check %+v, ratio %v", tr.Check, rep.Ratio)
	}
	md, err := os.ReadFile(filepath.Join(out, "results.md"))
	if err != nil || !strings.Contains(string(md), "trivial (in process") || !strings.Contains(string(md), "delivered or read") {
		t.Errorf("results.md (%v):\n%s", err, md)
	}
	var back HTTPReport
	if b, err := os.ReadFile(filepath.Join(out, "results.json")); err != nil || json.Unmarshal(b, &back) != nil ||
		len(back.Rows) != 2 || back.row(TargetUIMS).Check == nil || strings.Contains(string(b), "alice-token") {
		t.Errorf("results.json (%v): %d rows; tokens stay out of it", err, len(back.Rows))
	}
	t.Logf("uims %.0f msg/s, trivial %.0f msg/s, %d of %d delivered", u.Rate, tr.Rate, c.Delivered, c.Accepted)
}

// The check names each message that did not end delivered, with its
// state: failed at once, or still on its way when the time is up.
func TestHTTPCheckReportsUndelivered(t *testing.T) {
	var mu sync.Mutex
	asked := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := strings.TrimPrefix(r.URL.Path, "/api/v1/messages/")
		mu.Lock()
		asked[id]++
		n := asked[id]
		mu.Unlock()
		switch {
		case r.Header.Get("Authorization") != "Bearer tok":
			w.WriteHeader(http.StatusUnauthorized)
		case id == "gone":
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":"unknown","code":"UNKNOWN_TX"}`)
		case id == "late" && n < 3:
			io.WriteString(w, `{"state":"routed"}`)
		default:
			io.WriteString(w, `{"state":"`+map[string]string{"late": "delivered", "bad": "failed", "slow": "transferred"}[id]+`"}`)
		}
	}))
	defer srv.Close()
	cfg := &HTTPConfig{URL: srv.URL, CheckTimeout: 500 * time.Millisecond, CheckParallel: 2, PollEvery: 20 * time.Millisecond}
	var msgs []sentMsg
	for _, id := range []string{"late", "bad", "slow", "gone"} {
		msgs = append(msgs, sentMsg{id: id, token: "tok"})
	}
	c := checkDelivered(context.Background(), cfg, msgs)
	got := map[string]string{}
	for _, u := range c.Undelivered {
		got[u.ID] = u.State
	}
	if c.Accepted != 4 || c.Delivered != 1 || !c.TimedOut || got["bad"] != "failed" || got["slow"] != "transferred" || got["gone"] != "404 UNKNOWN_TX" {
		t.Fatalf("check %+v", c)
	}
	mu.Lock()
	defer mu.Unlock()
	if asked["bad"] != 1 || asked["late"] != 3 {
		t.Errorf("asked %v: a failed message is asked once, a late one until it is delivered", asked)
	}
	if !strings.Contains(c.Line(), "not delivered: gone 404 UNKNOWN_TX") {
		t.Errorf("line: %s", c.Line())
	}
}

func TestParseHTTPSenders(t *testing.T) {
	s, err := ParseHTTPSenders("alice-token:bob, bob-token:alice")
	if err != nil || len(s) != 2 || s[1] != (HTTPSender{Token: "bob-token", To: "alice"}) {
		t.Fatalf("%+v %v", s, err)
	}
	for _, bad := range []string{"", "alice-token", ":bob", "alice-token:"} {
		if _, err := ParseHTTPSenders(bad); err == nil {
			t.Errorf("%q taken", bad)
		}
	}
}

// A token whose client has a daily quota is named before the run; one
// that the gateway refuses too.
func TestQuotaWarnings(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Header.Get("Authorization") {
		case "Bearer capped":
			io.WriteString(w, `{"client":"dave","quota":{"limit":100,"used":40,"left":60}}`)
		case "Bearer free":
			io.WriteString(w, `{"client":"alice","quota":{"limit":0}}`)
		default:
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":"invalid bearer token","code":"UNAUTHORIZED"}`)
		}
	}))
	defer srv.Close()
	cfg := &HTTPConfig{URL: srv.URL, Senders: []HTTPSender{{"free", "bob"}, {"capped", "bob"}, {"free", "carol"}, {"wrong", "bob"}}}
	ws := quotaWarnings(context.Background(), cfg)
	if len(ws) != 2 || !strings.Contains(ws[0], "dave has a daily quota of 100 messages, 60 left") || !strings.Contains(ws[1], "sender 4") || !strings.Contains(ws[1], "401 UNAUTHORIZED") {
		t.Fatalf("warnings %q", ws)
	}
}
