package web_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/uims/uims/internal/fabrictest"
)

// Scheduled messages over HTTP (docs/WEB.md, "Scheduled messages";
// PROTOCOL.md §6.16): send_at holds a message, DELETE cancels it while it
// is held, and each refusal says why.
func TestScheduledSendAndCancel(t *testing.T) {
	url, _ := startWeb(t)
	aliceEv, bobEv := events(t, url, "alice-token"), events(t, url, "bob-token")

	// in two seconds: held, then delivered, not before
	at := time.Now().Add(2 * time.Second).UTC().Truncate(time.Second).Add(time.Second)
	res := send(t, url, "alice-token", `{"to":"bob","text":"soon","send_at":"`+at.Format(time.RFC3339)+`"}`)
	id := res["id"].(string)
	if res["status"] != "held" || res["held_until"] != at.Format(time.RFC3339) || !strings.HasPrefix(res["held"].(string), "scheduled for ") {
		t.Fatalf("POST answer %v", res)
	}
	if code, st := call(t, "GET", url+"/api/v1/messages/"+id, "alice-token", ""); code != 200 || st["state"] != "held" {
		t.Fatalf("status while held: %d %v", code, st)
	}
	waitEvent(t, bobEv, "message", id)
	if now := time.Now(); now.Before(at) {
		t.Fatalf("delivered at %v, before %v", now, at)
	}
	waitEvent(t, aliceEv, "status", `"status":"delivered"`)
	if code, _ := call(t, "DELETE", url+"/api/v1/messages/"+id, "alice-token", ""); code != http.StatusConflict {
		t.Fatalf("DELETE of a delivered message: %d, want 409", code)
	}

	// in an hour: cancelled; only by its sender; once
	later := time.Now().Add(time.Hour).Format(time.RFC3339)
	res = send(t, url, "alice-token", `{"to":"bob","text":"never mind","send_at":"`+later+`"}`)
	id = res["id"].(string)
	if code, _ := call(t, "DELETE", url+"/api/v1/messages/"+id, "bob-token", ""); code != http.StatusNotFound {
		t.Fatalf("DELETE by the recipient: %d, want 404", code)
	}
	code, st := call(t, "DELETE", url+"/api/v1/messages/"+id, "alice-token", "")
	if code != 200 || st["state"] != "failed" {
		t.Fatalf("DELETE: %d %v", code, st)
	}
	h := st["history"].([]any)
	if last := h[len(h)-1].(map[string]any); last["status"] != "failed" || last["code"] != "CANCELLED" {
		t.Fatalf("history %v", h)
	}
	waitEvent(t, aliceEv, "status", `"code":"CANCELLED"`)
	if code, body := call(t, "DELETE", url+"/api/v1/messages/"+id, "alice-token", ""); code != http.StatusConflict || body["code"] != "SETTLED" {
		t.Fatalf("DELETE again: %d %v", code, body)
	}
	if code, _ := call(t, "DELETE", url+"/api/v1/messages/not-an-id", "alice-token", ""); code != http.StatusBadRequest {
		t.Fatalf("DELETE of a bad id: %d", code)
	}
}

func TestScheduledBadInput(t *testing.T) {
	url, _ := startWeb(t)
	send(t, url, "alice-token", `{"to":"bob","text":"warm-up"}`)
	for _, c := range []struct{ body, want string }{
		{`{"to":"bob","text":"x","send_at":"tomorrow"}`, "send_at must be an RFC 3339 time"},
		{`{"to":"bob","text":"x","expires_at":"12:00"}`, "expires_at must be an RFC 3339 time"},
		{`{"to":"bob","text":"x","send_at":"` + time.Now().Add(8*24*time.Hour).Format(time.RFC3339) + `"}`, "more than 7 days ahead"},
		{`{"to":"bob","text":"x","send_at":"` + time.Now().Add(time.Hour).Format(time.RFC3339) + `","expires_at":"` + time.Now().Add(time.Minute).Format(time.RFC3339) + `"}`, "expires before"},
	} {
		code, body := call(t, "POST", url+"/api/v1/messages", "alice-token", c.body)
		if code != http.StatusBadRequest || body["code"] != "MALFORMED" || !strings.Contains(body["error"].(string), c.want) {
			t.Errorf("%s: %d %v, want 400 naming %q", c.body, code, body, c.want)
		}
	}
	// everything accepted before is still there
	fabrictest.Eventually(t, 5*time.Second, "bob's inbox", func() bool {
		_, inbox := call(t, "GET", url+"/api/v1/inbox", "bob-token", "")
		msgs, _ := inbox["messages"].([]any)
		return len(msgs) == 1
	})
}
