package web_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/sms"
	"github.com/uims/uims/gateways/web"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/schemas"
)

// post sends a message and returns the status, the Retry-After header and
// the JSON body.
func post(t *testing.T, url, token, to string) (int, string, map[string]any) {
	t.Helper()
	body, _ := json.Marshal(web.SendRequest{To: to, Text: "hello"})
	req, _ := http.NewRequest("POST", url+"/api/v1/messages", strings.NewReader(string(body)))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, resp.Header.Get("Retry-After"), out
}

// Temporary and permanent told apart over HTTP (issue 15), with a real SMS
// gateway that has no SMS centre:
//   - a number no client owns is 422 UNREACHABLE at once ("no SMS centre
//     configured"), no Retry-After; it was 503 NO_ROUTE with Retry-After;
//   - so is erin, who takes SMS and is no SMPP application;
//   - frank, an SMPP application that has not bound yet (sms.via: smpp),
//     is 202 transferred: his message waits for his application;
//   - an unknown recipient is 404;
//   - with the SMS gateway down, the same number is 503 NO_ROUTE with
//     Retry-After: 1 — no live gateway now, try again.
func TestErrorsByClass(t *testing.T) {
	f := fabrictest.New(t)
	f.StartBroker(broker.Config{})
	f.PutProfiles(
		&schemas.Profile{ID: "alice", Token: "alice-token", Addresses: map[string]string{"web": "alice"}},
		// SMS only: what the brokers do on a failure with a next medium is theirs.
		&schemas.Profile{ID: "erin", Addresses: map[string]string{"sms": "+15550199", "web": "erin"}, Prefer: []string{"sms"}},
		&schemas.Profile{ID: "frank", Addresses: map[string]string{"sms": "+15550198", "web": "frank"}, Prefer: []string{"sms"},
			SMPP: &schemas.SMPPCredentials{SystemID: "frank", Password: "frank-pw"}, Options: map[string]string{"sms.via": "smpp"}},
	)
	g, err := web.New(web.Config{Addr: "127.0.0.1:0"}, f.Conn("web"), f.Keyring("web"), f.Log)
	if err != nil {
		t.Fatal(err)
	}
	fabrictest.Start(t, "web gateway", g.Run)
	sg, err := sms.New(sms.Config{Addr: "127.0.0.1:0"}, f.Conn("sms"), f.Keyring("sms"), f.Log)
	if err != nil {
		t.Fatal(err)
	}
	smsRun := fabrictest.Start(t, "sms gateway", sg.Run)
	url := "http://" + g.Addr()

	var code int
	var ra string
	var out map[string]any
	fabrictest.Eventually(t, 10*time.Second, "both gateways known to the brokers", func() bool {
		code, ra, out = post(t, url, "alice-token", "frank")
		return code == http.StatusAccepted
	})
	if out["status"] != schemas.StatusTransferred || ra != "" {
		t.Errorf("to frank, an application not bound yet: %d %v, want 202 transferred", code, out)
	}

	for _, to := range []string{"+15550123", "erin"} {
		code, ra, out = post(t, url, "alice-token", to)
		if code != http.StatusUnprocessableEntity || ra != "" || out["code"] != "UNREACHABLE" ||
			!strings.Contains(out["error"].(string), "no SMS centre configured") {
			t.Errorf("to %s without an SMS centre: %d Retry-After %q %v, want 422 UNREACHABLE without Retry-After", to, code, ra, out)
		}
	}
	code, ra, out = post(t, url, "alice-token", "nobody")
	if code != http.StatusNotFound || ra != "" || out["code"] != "UNKNOWN_RECIPIENT" {
		t.Errorf("to nobody: %d Retry-After %q %v, want 404", code, ra, out)
	}

	smsRun.Stop()
	// a message routed in the moment before the brokers heard the
	// gateway's goodbye finds no one to take it: 503 BUSY; then NO_ROUTE
	fabrictest.Eventually(t, 10*time.Second, "503 NO_ROUTE once the SMS gateway is gone", func() bool {
		code, ra, out = post(t, url, "alice-token", "+15550123")
		return code == http.StatusServiceUnavailable && out["code"] == "NO_ROUTE"
	})
	if ra != "1" || out["code"] != "NO_ROUTE" {
		t.Errorf("to a number with no SMS gateway live: %d Retry-After %q %v, want 503 NO_ROUTE with Retry-After: 1", code, ra, out)
	}
}
