package web_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/web"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/schemas"
)

// startWeb starts a fabric with a broker and the web gateway on a free port.
func startWeb(t *testing.T) (string, *fabrictest.Fabric) {
	f := fabrictest.New(t)
	f.StartBroker(broker.Config{})
	f.PutProfiles(
		&schemas.Profile{ID: "alice", Name: "Alice", Token: "alice-token", Addresses: map[string]string{"web": "alice"}},
		&schemas.Profile{ID: "bob", Name: "Bob", Token: "bob-token", Addresses: map[string]string{"web": "bob"}},
	)
	g, err := web.New(web.Config{Addr: "127.0.0.1:0", MaxBody: 64 << 10}, f.Conn("web"), f.Keyring("web"), f.Log)
	if err != nil {
		t.Fatal(err)
	}
	fabrictest.Start(t, "web gateway", g.Run)
	return "http://" + g.Addr(), f
}

func call(t *testing.T, method, url, token string, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// events opens an SSE stream and returns a channel of (event, data).
func events(t *testing.T, url, token string) <-chan [2]string {
	req, _ := http.NewRequest("GET", url+"/api/v1/events?access_token="+token, nil)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("events: %v %v", err, resp)
	}
	ch := make(chan [2]string, 64)
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var ev string
		for sc.Scan() {
			line := sc.Text()
			if e, ok := strings.CutPrefix(line, "event: "); ok {
				ev = e
			} else if d, ok := strings.CutPrefix(line, "data: "); ok {
				ch <- [2]string{ev, d}
			}
		}
	}()
	return ch
}

func waitEvent(t *testing.T, ch <-chan [2]string, kind, contains string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e := <-ch:
			if e[0] == kind && strings.Contains(e[1], contains) {
				return
			}
		case <-timeout:
			t.Fatalf("no %s event containing %q", kind, contains)
		}
	}
}

// send posts until the fabric routes (gateway heartbeats take a moment).
func send(t *testing.T, url, token, body string) map[string]any {
	t.Helper()
	var out map[string]any
	fabrictest.Eventually(t, 10*time.Second, "202 Accepted", func() bool {
		var code int
		code, out = call(t, "POST", url+"/api/v1/messages", token, body)
		return code == http.StatusAccepted
	})
	return out
}

func TestAliceToBobDeliveredAndRead(t *testing.T) {
	url, _ := startWeb(t)
	aliceEv, bobEv := events(t, url, "alice-token"), events(t, url, "bob-token")
	res := send(t, url, "alice-token", `{"to":"bob","subject":"lunch","text":"at noon?"}`)
	id := res["id"].(string)
	if res["status"] != "delivered" {
		t.Fatalf("POST answer %v", res)
	}
	waitEvent(t, bobEv, "message", id)
	code, inbox := call(t, "GET", url+"/api/v1/inbox", "bob-token", "")
	msgs := inbox["messages"].([]any)
	if code != 200 || len(msgs) == 0 || msgs[0].(map[string]any)["text"] != "at noon?" || msgs[0].(map[string]any)["subject"] != "lunch" {
		t.Fatalf("bob's inbox %d %v", code, inbox)
	}
	if code, _ := call(t, "POST", url+"/api/v1/messages/"+id+"/read", "bob-token", ""); code != 200 {
		t.Fatalf("read: %d", code)
	}
	waitEvent(t, aliceEv, "status", `"status":"read"`)
	code, st := call(t, "GET", url+"/api/v1/messages/"+id, "alice-token", "")
	if code != 200 {
		t.Fatalf("status: %d %v", code, st)
	}
	var got []string
	var last float64
	for _, h := range st["history"].([]any) {
		e := h.(map[string]any)
		got = append(got, e["status"].(string))
		if at := e["at"].(float64); at < last {
			t.Fatalf("history not in time order: %v", st["history"])
		} else {
			last = at
		}
	}
	if fmt.Sprint(got) != "[accepted routed delivered read]" || st["state"] != "read" {
		t.Fatalf("history %v state %v", got, st["state"])
	}
	// Bob may see the status too (he is the recipient); a third party may not.
	if code, _ := call(t, "GET", url+"/api/v1/messages/"+id, "bob-token", ""); code != 200 {
		t.Fatalf("recipient status: %d", code)
	}
}

func TestBadInputClearErrors(t *testing.T) {
	url, _ := startWeb(t)
	first := send(t, url, "alice-token", `{"to":"bob","text":"before"}`)
	cases := []struct {
		name, token, body string
		want              int
	}{
		{"malformed JSON", "alice-token", `{"to":"bob","text":`, 400},
		{"unknown field", "alice-token", `{"to":"bob","text":"x","cc":"eve"}`, 400},
		{"missing to", "alice-token", `{"text":"x"}`, 400},
		{"missing text", "alice-token", `{"to":"bob"}`, 400},
		{"subject with CR/LF", "alice-token", `{"to":"bob","subject":"a\r\nBcc: eve","text":"x"}`, 400},
		{"body over the limit", "alice-token", `{"to":"bob","text":"` + strings.Repeat("x", 70<<10) + `"}`, 413},
		{"unknown recipient", "alice-token", `{"to":"nobody","text":"x"}`, 404},
		{"missing token", "", `{"to":"bob","text":"x"}`, 401},
		{"wrong token", "mallory-token", `{"to":"bob","text":"x"}`, 401},
	}
	for _, tc := range cases {
		code, out := call(t, "POST", url+"/api/v1/messages", tc.token, tc.body)
		if code != tc.want || out["error"] == nil || out["error"] == "" {
			t.Errorf("%s: %d %v, want %d with a reason", tc.name, code, out, tc.want)
		}
	}
	last := send(t, url, "alice-token", `{"to":"bob","text":"after"}`)
	_, inbox := call(t, "GET", url+"/api/v1/inbox", "bob-token", "")
	var texts []string
	for _, m := range inbox["messages"].([]any) {
		texts = append(texts, m.(map[string]any)["text"].(string))
	}
	if fmt.Sprint(texts) != "[after before]" {
		t.Fatalf("inbox after bad input: %v (ids %v %v)", texts, first["id"], last["id"])
	}
}

// A retry with the same Idempotency-Key is the same message: one delivery.
func TestIdempotencyKey(t *testing.T) {
	url, _ := startWeb(t)
	send(t, url, "alice-token", `{"to":"bob","text":"warm"}`)
	var ids []string
	for range 2 {
		req, _ := http.NewRequest("POST", url+"/api/v1/messages", bytes.NewBufferString(`{"to":"bob","text":"once"}`))
		req.Header.Set("Authorization", "Bearer alice-token")
		req.Header.Set("Idempotency-Key", "k-1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 202 {
			t.Fatalf("%v %v", err, resp.StatusCode)
		}
		var out web.SendResponse
		b, _ := io.ReadAll(resp.Body)
		json.Unmarshal(b, &out)
		ids = append(ids, out.ID)
	}
	if ids[0] != ids[1] {
		t.Fatalf("ids differ: %v", ids)
	}
	_, inbox := call(t, "GET", url+"/api/v1/inbox", "bob-token", "")
	if n := len(inbox["messages"].([]any)); n != 2 {
		t.Fatalf("%d messages in bob's inbox, want 2 (warm + once)", n)
	}
}

// GET /api/v1/inbox pages with limit and the cursors of earlier answers;
// a limit out of 1..1000, a non-number or a bad cursor is a 400 with a
// reason; a message read shows its read_at on its page.
func TestInboxPagingAPI(t *testing.T) {
	url, _ := startWeb(t)
	var ids []string
	for i := range 3 {
		ids = append(ids, send(t, url, "alice-token", fmt.Sprintf(`{"to":"bob","text":"m%d"}`, i))["id"].(string))
	}
	if code, _ := call(t, "POST", url+"/api/v1/messages/"+ids[1]+"/read", "bob-token", ""); code != 200 {
		t.Fatalf("read: %d", code)
	}
	var got []string
	q := "?limit=2"
	for pages := 0; ; pages++ {
		code, p := call(t, "GET", url+"/api/v1/inbox"+q, "bob-token", "")
		if code != 200 || pages > 2 {
			t.Fatalf("page %d: %d %v", pages, code, p)
		}
		for _, m := range p["messages"].([]any) {
			m := m.(map[string]any)
			got = append(got, m["id"].(string))
			if read := m["read_at"] != nil; read != (m["id"] == ids[1]) {
				t.Fatalf("read_at of %s: %v", m["id"], m["read_at"])
			}
		}
		if p["newer"] == nil {
			t.Fatalf("no newer cursor: %v", p)
		}
		next, ok := p["next"].(string)
		if !ok {
			break
		}
		q = "?limit=2&before=" + next
	}
	if fmt.Sprint(got) != fmt.Sprint([]string{ids[2], ids[1], ids[0]}) {
		t.Fatalf("pages %v, want %v newest first", got, ids)
	}
	for _, q := range []string{"?limit=0", "?limit=1001", "?limit=-3", "?limit=ten", "?before=%21%21", "?after=AAAA",
		"?before=AQE", "?before=x&after=y"} {
		code, body := call(t, "GET", url+"/api/v1/inbox"+q, "bob-token", "")
		if code != 400 || body["error"] == "" {
			t.Errorf("%s: %d %v, want 400 with a reason", q, code, body)
		}
	}
	if code, p := call(t, "GET", url+"/api/v1/inbox?limit=1000", "bob-token", ""); code != 200 || len(p["messages"].([]any)) != 3 {
		t.Fatalf("limit=1000: %d %v", code, p)
	}
}
