package chaos

import (
	"reflect"
	"testing"

	"github.com/uims/uims/schemas"
)

// TestClassify: the checker counts what it should, so that a suite at 0
// means something.
func TestClassify(t *testing.T) {
	st := func(state string, hist ...string) *schemas.TxStatus {
		s := &schemas.TxStatus{State: state}
		for _, h := range hist {
			s.History = append(s.History, schemas.HistoryEntry{Status: h})
		}
		return s
	}
	out := []Outcome{
		{ID: "ok", Accepted: true, Tries: 1},       // delivered, in the inbox
		{ID: "read", Accepted: true, Tries: 3},     // read, in the inbox; 2 retries
		{ID: "failed", Accepted: true, Tries: 1},   // failed, not in the inbox: told, not lost
		{ID: "lost", Accepted: true, Tries: 1},     // delivered per the brokers, not in the inbox
		{ID: "lost2", Accepted: true, Tries: 1},    // routed, not in the inbox
		{ID: "dup", Accepted: true, Tries: 1},      // twice in the inbox
		{ID: "conflict", Accepted: true, Tries: 1}, // in the inbox, failed
		{ID: "two", Accepted: true, Tries: 1},      // delivered and failed in the history
		{ID: "open", Accepted: true, Tries: 1},     // in the inbox, routed
		{ID: "gone", Accepted: true, Tries: 1},     // in the inbox, the brokers forgot it
		{ID: "refused", Code: 404, Tries: 1},       // refused for good, delivered all the same
		{ID: "refused2", Code: 400, Tries: 1},      // refused, not delivered
		{ID: "unknown", Unknown: true, Tries: 9},   // no answer, delivered: allowed
		{ID: "unknown2", Unknown: true, Tries: 1},  // no answer, not delivered: allowed
	}
	status := map[string]*schemas.TxStatus{
		"ok": st("delivered", "routed", "delivered"), "read": st("read", "routed", "delivered", "read"),
		"failed": st("failed", "routed", "failed"), "lost": st("delivered"), "lost2": st("routed"),
		"dup": st("delivered"), "conflict": st("failed"), "two": st("delivered", "failed", "delivered"),
		"open": st("routed"), "gone": st(unknownTx),
	}
	inbox := map[string]int{"ok": 1, "read": 1, "dup": 2, "conflict": 1, "two": 1, "open": 1, "gone": 1, "refused": 1, "unknown": 1, "other": 3}
	f := Classify("t", 0, out, status, inbox)
	want := Figures{Scenario: "t", Sent: 14, Accepted: 10, Refused: 2, Unknown: 2, Delivered: 7, Failed: 2,
		Lost: 2, Duplicated: 1, Conflicting: 3, Open: 2, Retries: 10}
	got := *f
	got.Problems = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("figures\n got %+v\nwant %+v", got, want)
	}
	if len(f.Problems) != 8 {
		t.Errorf("%d problems, want 8: %q", len(f.Problems), f.Problems)
	}
}
