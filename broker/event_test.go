package broker

import (
	"encoding/json"
	"testing"

	"github.com/uims/uims/schemas"
)

// eventJSON splices a status into the stored template; the result must be
// exactly what json.Marshal writes for the whole event.
func TestEventJSON(t *testing.T) {
	tmpl := schemas.StatusEvent{V: 1, Tx: "0123456789abcdef0123456789abcdef", MsgID: "0123456789abcdef0123456789abcdef", Sender: "alice",
		From: schemas.Endpoint{Medium: "web", Address: `a"b`, Client: "alice"}, To: "bob", Dest: schemas.Hop{Gateway: "web", Medium: "web", Address: "bob"},
		Subject: `"status":"","at":0 <tricky>`, Meta: map[string]string{"k": "v\n"}}
	note, _ := json.Marshal(tmpl)
	for _, c := range []struct{ status, code, reason string }{
		{"delivered", "", ""}, {"failed", "EXPIRED", `no "ack" before the deadline <x> ✓`}, {"read", "", ""},
	} {
		want := tmpl
		want.Status, want.Code, want.Reason, want.At = c.status, c.code, c.reason, 1790000000123
		w, _ := json.Marshal(want)
		if got := eventJSON(string(note), c.status, c.code, c.reason, 1790000000123); string(got) != string(w) {
			t.Fatalf("spliced\n%s\nwant\n%s", got, w)
		}
	}
}
