package web_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/uims/uims/schemas"
)

// startGroups is startWeb with carol, and alice's named group "team".
func startGroups(t *testing.T) string {
	url, f := startWeb(t)
	f.PutProfiles(
		&schemas.Profile{ID: "alice", Name: "Alice", Token: "alice-token", Addresses: map[string]string{"web": "alice"},
			Groups: map[string][]string{"team": {"bob", "carol"}, "ops": {"carol", "nobody"}}},
		&schemas.Profile{ID: "carol", Name: "Carol", Token: "carol-token", Addresses: map[string]string{"web": "carol"}},
	)
	send(t, url, "alice-token", `{"to":"bob","text":"warm-up"}`)
	return url
}

// postKey posts a message with an Idempotency-Key.
func postKey(t *testing.T, url, token, key, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", url+"/api/v1/messages", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%d %s: %v", resp.StatusCode, b, err)
	}
	return resp.StatusCode, out
}

// recipients returns a group answer's recipients by "to".
func recipients(t *testing.T, out map[string]any) map[string]map[string]any {
	t.Helper()
	list, ok := out["recipients"].([]any)
	if !ok {
		t.Fatalf("no recipients: %v", out)
	}
	m := map[string]map[string]any{}
	for _, r := range list {
		r := r.(map[string]any)
		m[r["to"].(string)] = r
	}
	return m
}

// inboxCount counts the messages with id in a client's inbox.
func inboxCount(t *testing.T, url, token, id string) int {
	t.Helper()
	_, inbox := call(t, "GET", url+"/api/v1/inbox?limit=1000", token, "")
	n := 0
	for _, m := range inbox["messages"].([]any) {
		if m.(map[string]any)["id"] == id {
			n++
		}
	}
	return n
}

// A group message to three recipients, one unknown: one transaction per
// recipient, each with its outcome; the aggregate is partial; each
// delivered recipient has it in its inbox once, also after a retry of the
// group; the sender's status events name the member and the group; only
// the sender reads the group's status.
func TestGroupMessage(t *testing.T) {
	url := startGroups(t)
	aliceEv := events(t, url, "alice-token")
	body := `{"to":["bob","nobody","carol"],"subject":"standup","text":"in 5"}`
	code, out := postKey(t, url, "alice-token", "g-1", body)
	if code != 202 || out["status"] != schemas.GroupPartial || !schemas.ValidMsgID(fmt.Sprint(out["id"])) {
		t.Fatalf("POST: %d %v", code, out)
	}
	gid := out["id"].(string)
	rs := recipients(t, out)
	if len(rs) != 3 || rs["bob"]["status"] != "delivered" || rs["carol"]["status"] != "delivered" ||
		rs["nobody"]["status"] != "failed" || rs["nobody"]["code"] != "UNKNOWN_RECIPIENT" {
		t.Fatalf("recipients %v", rs)
	}
	for to, r := range rs {
		if r["id"] != schemas.GroupMemberID(gid, to) {
			t.Errorf("%s: id %v, want the derived one", to, r["id"])
		}
	}
	bobID, carolID := rs["bob"]["id"].(string), rs["carol"]["id"].(string)
	// A status event per recipient, with its id and the group.
	deadline := time.After(10 * time.Second)
	for seen := map[string]bool{}; len(seen) < 2; {
		select {
		case e := <-aliceEv:
			for _, id := range []string{bobID, carolID} {
				if e[0] == "status" && strings.Contains(e[1], id) && strings.Contains(e[1], `"group":"`+gid+`"`) {
					seen[id] = true
				}
			}
		case <-deadline:
			t.Fatal("no status event per recipient with the group")
		}
	}

	code, st := call(t, "GET", url+"/api/v1/messages/"+gid, "alice-token", "")
	if code != 200 || st["status"] != schemas.GroupPartial || st["id"] != gid {
		t.Fatalf("group status: %d %v", code, st)
	}
	srs := recipients(t, st)
	if srs["bob"]["status"] != "delivered" || srs["nobody"]["code"] != "UNKNOWN_RECIPIENT" || srs["bob"]["history"] == nil {
		t.Fatalf("group status recipients %v", srs)
	}
	if counts := st["counts"].(map[string]any); counts["delivered"] != 2.0 || counts["failed"] != 1.0 {
		t.Fatalf("counts %v", counts)
	}
	// A member's id answers the member's status, as any message's.
	if code, m := call(t, "GET", url+"/api/v1/messages/"+bobID, "alice-token", ""); code != 200 || m["state"] != "delivered" {
		t.Fatalf("member status: %d %v", code, m)
	}
	// Neither a recipient nor anyone else reads the group.
	for _, tok := range []string{"bob-token", "carol-token"} {
		if code, e := call(t, "GET", url+"/api/v1/messages/"+gid, tok, ""); code != 404 || e["code"] != "UNKNOWN_TX" {
			t.Errorf("%s reads the group: %d %v", tok, code, e)
		}
	}

	// The client retries the same group: the same ids, nothing twice.
	code, again := postKey(t, url, "alice-token", "g-1", body)
	if code != 202 || again["id"] != gid || recipients(t, again)["bob"]["id"] != bobID {
		t.Fatalf("retry: %d %v", code, again)
	}
	if n, m := inboxCount(t, url, "bob-token", bobID), inboxCount(t, url, "carol-token", carolID); n != 1 || m != 1 {
		t.Fatalf("inboxes hold the group message %d and %d times, want once each", n, m)
	}
}

// "group:<name>" names a group of the sender's profile, alone or in a
// list; another client cannot use it.
func TestNamedGroup(t *testing.T) {
	url := startGroups(t)
	code, out := call(t, "POST", url+"/api/v1/messages", "alice-token", `{"to":"group:team","text":"hello team"}`)
	rs := recipients(t, out)
	if code != 202 || out["status"] != schemas.GroupDelivered || len(rs) != 2 || rs["bob"]["status"] != "delivered" || rs["carol"] == nil {
		t.Fatalf("group:team: %d %v", code, out)
	}
	if inboxCount(t, url, "carol-token", rs["carol"]["id"].(string)) != 1 {
		t.Fatal("carol did not get the team's message")
	}
	// In a list, with a member named again: each once.
	code, out = call(t, "POST", url+"/api/v1/messages", "alice-token", `{"to":["group:team","bob"],"text":"again"}`)
	if rs := recipients(t, out); code != 202 || len(rs) != 2 {
		t.Fatalf("team and bob: %d %v", code, out)
	}
	for name, c := range map[string]struct {
		token, body string
		want        int
		says        string
	}{
		"unknown group":       {"alice-token", `{"to":"group:nope","text":"x"}`, 404, "group:nope"},
		"unknown in a list":   {"alice-token", `{"to":["bob","group:nope"],"text":"x"}`, 404, "group:nope"},
		"another's group":     {"bob-token", `{"to":"group:team","text":"x"}`, 404, "group:team"},
		"empty list":          {"alice-token", `{"to":[],"text":"x"}`, 400, "empty"},
		"not strings":         {"alice-token", `{"to":[5],"text":"x"}`, 400, "list of strings"},
		"a bad recipient":     {"alice-token", `{"to":["bob","carol\ndave"],"text":"x"}`, 400, `carol\\ndave`},
		"no text":             {"alice-token", `{"to":["bob"]}`, 400, "text"},
		"unknown field":       {"alice-token", `{"to":["bob"],"text":"x","cc":"eve"}`, 400, "cc"},
		"101 recipients":      {"alice-token", `{"to":[` + strings.Repeat(`"bob",`, 100) + `"bob"],"text":"x"}`, 400, "at most 100"},
		"101 after expansion": {"alice-token", `{"to":["group:team",` + many(99) + `],"text":"x"}`, 400, "at most 100"},
		"every one unknown":   {"alice-token", `{"to":["nobody","nobody2"],"text":"x"}`, 404, "UNKNOWN_RECIPIENT"},
		"an unknown member":   {"alice-token", `{"to":"group:ops","text":"x"}`, 202, "partial"},
	} {
		code, out := call(t, "POST", url+"/api/v1/messages", c.token, c.body)
		b, _ := json.Marshal(out)
		if code != c.want || !strings.Contains(string(b), c.says) {
			t.Errorf("%s: %d %s, want %d saying %q", name, code, b, c.want, c.says)
		}
	}
	// Every recipient refused: the error status, and the list.
	code, out = call(t, "POST", url+"/api/v1/messages", "alice-token", `{"to":["nobody","nobody2"],"text":"x"}`)
	if rs := recipients(t, out); code != 404 || out["code"] != "UNKNOWN_RECIPIENT" || out["status"] != schemas.GroupFailed || len(rs) != 2 {
		t.Fatalf("all unknown: %d %v", code, out)
	}
}

// many returns n distinct quoted phone numbers, comma-separated.
func many(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Quote("+1555" + strconv.Itoa(10000+i)))
	}
	return b.String()
}
