package web_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/web"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/schemas"
)

// GET /api/v1/usage (docs/WEB.md, "Usage"): each client reads its own
// figures, never another's; alice, whose quota is 5 messages a day, finds
// the brokers' quota warning in her inbox after her 4th.
func TestUsageAPI(t *testing.T) {
	f := fabrictest.New(t)
	f.StartBroker(broker.Config{SweepInterval: 50 * time.Millisecond})
	f.PutProfiles(
		&schemas.Profile{ID: "alice", Name: "Alice", Token: "alice-token", Quota: 5, Addresses: map[string]string{"web": "alice"}},
		&schemas.Profile{ID: "bob", Name: "Bob", Token: "bob-token", Addresses: map[string]string{"web": "bob"}},
	)
	g, err := web.New(web.Config{Addr: "127.0.0.1:0"}, f.Conn("web"), f.Keyring("web"), f.Log)
	if err != nil {
		t.Fatal(err)
	}
	fabrictest.Start(t, "web gateway", g.Run)
	url := "http://" + g.Addr()
	for range 4 {
		send(t, url, "alice-token", `{"to":"bob","text":"hello"}`)
	}
	var u map[string]any
	fabrictest.Eventually(t, 10*time.Second, "alice's four messages counted", func() bool {
		_, u = call(t, "GET", url+"/api/v1/usage", "alice-token", "")
		return jsonPath(u, "today", "media", "web", "sent") == 4.0
	})
	if u["client"] != "alice" || jsonPath(u, "today", "media", "web", "sent_bytes") != 20.0 || jsonPath(u, "today", "total", "sent") != 4.0 ||
		jsonPath(u, "quota", "limit") != 5.0 || jsonPath(u, "quota", "used") != 4.0 || jsonPath(u, "quota", "left") != 1.0 ||
		len(u["days"].([]any)) != 7 || jsonPath(u, "today", "day") != time.Now().UTC().Format(time.DateOnly) {
		t.Errorf("alice's usage %v", u)
	}
	// the warning: a message from UIMS in alice's inbox
	fabrictest.Eventually(t, 10*time.Second, "the quota warning in alice's inbox", func() bool {
		_, inbox := call(t, "GET", url+"/api/v1/inbox", "alice-token", "")
		msgs, _ := inbox["messages"].([]any)
		for _, m := range msgs {
			m := m.(map[string]any)
			if jsonPath(m, "from", "name") == "UIMS" && jsonPath(m, "from", "medium") == "system" && strings.Contains(m["text"].(string), "You have sent 4 of the 5 messages") {
				return true
			}
		}
		return false
	})
	fabrictest.Eventually(t, 10*time.Second, "the warning counted as received", func() bool {
		_, u = call(t, "GET", url+"/api/v1/usage?days=2", "alice-token", "")
		return jsonPath(u, "today", "media", "web", "received") == 1.0 && jsonPath(u, "quota", "warned") == true
	})
	if len(u["days"].([]any)) != 2 {
		t.Errorf("?days=2: %v", u)
	}
	code, b := call(t, "GET", url+"/api/v1/usage", "bob-token", "")
	if code != 200 || b["client"] != "bob" || jsonPath(b, "today", "media", "web", "received") != 4.0 || jsonPath(b, "quota", "limit") != 0.0 {
		t.Errorf("bob's usage %d %v", code, b)
	}
	// another's usage: refused, and nothing of it answered
	code, out := call(t, "GET", url+"/api/v1/usage?client=bob", "alice-token", "")
	if code != http.StatusForbidden || out["code"] != "NOT_ALLOWED" || out["client"] != nil || out["today"] != nil {
		t.Errorf("alice asking bob's usage: %d %v", code, out)
	}
	if code, out := call(t, "GET", url+"/api/v1/usage?client=alice", "alice-token", ""); code != 200 || out["client"] != "alice" {
		t.Errorf("?client= naming herself: %d %v", code, out)
	}
	if code, _ := call(t, "GET", url+"/api/v1/usage", "", ""); code != http.StatusUnauthorized {
		t.Errorf("no token: %d", code)
	}
	if code, _ := call(t, "GET", url+"/api/v1/usage", "mallory-token", ""); code != http.StatusUnauthorized {
		t.Errorf("unknown token: %d", code)
	}
	for _, days := range []string{"0", "32", "x"} {
		if code, out := call(t, "GET", url+"/api/v1/usage?days="+days, "alice-token", ""); code != http.StatusBadRequest || out["code"] != "MALFORMED" {
			t.Errorf("days=%s: %d %v", days, code, out)
		}
	}
}

// jsonPath walks decoded JSON objects by keys.
func jsonPath(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}
