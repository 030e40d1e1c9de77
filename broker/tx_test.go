package broker

import (
	"context"
	"slices"
	"testing"

	"github.com/uims/uims/internal/redistest"
)

// The create script names the transaction's fields itself; they must be
// the f* constants the Go code reads, with the values in argument order.
func TestCreateScriptFields(t *testing.T) {
	_, rdb := redistest.Run(t)
	ctx := context.Background()
	id := "00112233445566778899aabbccddeeff"
	keys := []string{keyTx + id, keyTxHistory + id, keyDeadlines, keyQuota + "-"}
	args := []any{"fp-v", id, 1000, 0, 60, "h1", "h2", "routed-v", "id-v", "idh-v", "kid2-v", "sess-v", "og-v", "dg-v",
		"dest-v", "state-v", "sender-v", "recipient-v", "medium-v", "note-v", "deadline-v", "created-v"}
	if err := createScript.Run(ctx, rdb, keys, args...).Err(); err != nil {
		t.Fatal(err)
	}
	got, err := rdb.HGetAll(ctx, keyTx+id).Result()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{fFingerprint: "fp-v", fRouted: "routed-v", fID: "id-v", fIDHash: "idh-v", fKid2: "kid2-v",
		fSession: "sess-v", fOG: "og-v", fDG: "dg-v", fDest: "dest-v", fState: "state-v", fSender: "sender-v",
		fRecipient: "recipient-v", fMedium: "medium-v", fNote: "note-v", fDeadline: "deadline-v", fCreated: "created-v"}
	if len(got) != len(want) {
		t.Fatalf("fields %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("field %s = %q, want %q", k, got[k], v)
		}
	}
	hist, _ := rdb.LRange(ctx, keyTxHistory+id, 0, -1).Result()
	if !slices.Equal(hist, []string{"h1", "h2"}) {
		t.Fatalf("history %v", hist)
	}
	if ttl := rdb.TTL(ctx, keyTx+id).Val(); ttl <= 0 {
		t.Fatalf("no expiry: %v", ttl)
	}
	// the same message again: the stored route
	res, err := createScript.Run(ctx, rdb, keys, args...).StringSlice()
	if err != nil || res[0] != "exists" || res[1] != "fp-v" || res[2] != "routed-v" {
		t.Fatalf("again: %v %v", res, err)
	}
}
