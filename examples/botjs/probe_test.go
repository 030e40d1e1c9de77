package botjs_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os/exec"
	"testing"
	"time"

	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/schemas"
)

// TestProbeMalformed: `node bot.js probe` sends the brokers, on one
// connection with the bot's credentials, frames they must refuse; each
// answer is the code PROTOCOL.md §8 and §9 name, with its number and its
// reason ("NAME: text", schemas.Code.Text), and the connection stays: a
// valid message on it is delivered to alice.
func TestProbeMalformed(t *testing.T) {
	node := requireNode(t)
	f := startFabric(t, fabricConfig{})

	cmd := exec.Command(node, "bot.js", "probe", "--bundle", f.bundle, "--from", "echo", "--client", "echo", "--to", "alice")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	t.Logf("bot.js probe:\n%s", out.String())
	if err != nil {
		t.Errorf("bot.js probe: %v\nstderr: %s", err, errb.String())
	}
	got := map[string]map[string]any{}
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var r map[string]any
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("probe line %q: %v", sc.Text(), err)
		}
		name, _ := r["case"].(string)
		got[name] = r
	}

	for name, want := range map[string]schemas.Code{
		"not-json":             schemas.CodeMalformed,  // §8 step 6c
		"missing-fields":       schemas.CodeMalformed,  // §8 step 6c
		"bad-mac":              schemas.CodeBadMAC,     // §8 step 5
		"replay":               schemas.CodeReplay,     // §7.2, §8 step 6e
		"too-large":            schemas.CodeTooLarge,   // §8 step 2, §10
		"medium-outside-grant": schemas.CodeNotAllowed, // §3.5, §6.2
	} {
		r := got[name]
		if r == nil {
			t.Errorf("%s: no answer printed", name)
			continue
		}
		reason, _ := r["reason"].(string)
		if r["error"] != want.String() || r["code"] != float64(want) || reason != want.String()+": "+want.Text() {
			t.Errorf("%s: answered %v, want %s (%d) with reason %q", name, r, want, want, want.String()+": "+want.Text())
		}
	}
	// the replayed frame's first copy was routed and delivered, once
	if r := got["replay"]; r == nil || r["first"] != schemas.StatusDelivered {
		t.Errorf("replay: the first copy %v", r)
	}
	if r := got["valid"]; r == nil || r["status"] != schemas.StatusDelivered {
		t.Errorf("the valid message after the refusals: %v", r)
	}
	if r := got["connection"]; r == nil || r["disconnects"] != float64(0) || r["closed"] != false {
		t.Errorf("the connection: %v", r)
	}
	fabrictest.Eventually(t, 10*time.Second, "the probe's valid message in alice's inbox", func() bool {
		return inboxHas(t, f, "echo", "probe: valid after errors") != ""
	})
	if n := inboxCount(t, f, "probe: replayed frame, first copy"); n != 1 {
		t.Errorf("the replayed frame's message is %d times in alice's inbox, want 1", n)
	}
	for _, text := range []string{"probe: bad MAC", "probe: too large", "probe: medium outside the grant"} {
		if n := inboxCount(t, f, text); n != 0 {
			t.Errorf("%q is %d times in alice's inbox", text, n)
		}
	}
}

// inboxCount counts the messages with text in alice's web inbox.
func inboxCount(t *testing.T, f *fabric, text string) int {
	t.Helper()
	code, inbox := call(t, "GET", f.web+"/api/v1/inbox?limit=100", "alice-token", "")
	if code != 200 {
		t.Fatalf("inbox: %d %v", code, inbox)
	}
	msgs, _ := inbox["messages"].([]any)
	n := 0
	for _, m := range msgs {
		if m, _ := m.(map[string]any); m["text"] == text {
			n++
		}
	}
	return n
}
