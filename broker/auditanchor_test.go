package broker

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/uims/uims/audit"
	"github.com/uims/uims/internal/redistest"
)

// The store keeps a boot's latest anchor only (a late write of an earlier
// batch does not move it back), drops the boots whose anchor is past the
// retention, and AuditAnchors reads what it keeps; a real redis-server.
func TestAuditAnchorStore(t *testing.T) {
	_, rdb := redistest.Run(t)
	ctx := context.Background()
	const hour = time.Hour
	t0 := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC).UnixMilli()
	anchor := func(boot string, seq uint64, at int64) audit.Anchor {
		return audit.Anchor{Broker: "b1", Boot: boot, Seq: seq, StreamSeq: seq + 10, Digest: strings.Repeat("a", 64), At: at}
	}
	put := func(a audit.Anchor) bool {
		t.Helper()
		wrote, err := putAnchor(ctx, rdb, a, hour)
		if err != nil {
			t.Fatal(err)
		}
		return wrote
	}
	read := func() map[string]audit.Anchor {
		t.Helper()
		got, err := AuditAnchors(ctx, rdb)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if !put(anchor("aa", 2, t0)) || put(anchor("aa", 1, t0+1)) || put(anchor("aa", 2, t0+2)) {
		t.Fatal("an anchor of the same or an earlier batch replaced the stored one")
	}
	if got := read()["b1/aa"]; got != anchor("aa", 2, t0) {
		t.Fatalf("stored %+v", got)
	}
	if !put(anchor("aa", 3, t0+3)) || read()["b1/aa"].Seq != 3 {
		t.Fatal("a later batch's anchor not stored")
	}
	if ttl := rdb.PTTL(ctx, keyAuditAnchors).Val(); ttl <= 0 || ttl > hour {
		t.Errorf("anchors' TTL %v", ttl)
	}

	// another boot, two hours on: the first is past the retention
	put(anchor("bb", 1, t0+2*hour.Milliseconds()))
	if got := read(); len(got) != 1 || got["b1/bb"].Seq != 1 {
		t.Errorf("after the retention: %v", got)
	}
	if n := rdb.ZCard(ctx, keyAuditAnchored).Val(); n != 1 {
		t.Errorf("%d fields in the index", n)
	}

	// a value edited by hand: reported, and replaced by the next anchor
	rdb.HSet(ctx, keyAuditAnchors, "b1/cc", "garbage")
	if got, err := AuditAnchors(ctx, rdb); !errors.Is(err, audit.ErrFormat) || len(got) != 1 {
		t.Errorf("a malformed anchor: %v %v", got, err)
	}
	if !put(anchor("cc", 1, t0+2*hour.Milliseconds())) || len(read()) != 2 {
		t.Error("a malformed anchor not replaced")
	}
}

// A store away does not stop the publisher: the anchorer fails within
// its timeout, then skips the anchors of its pause without a round trip
// (the first after the pause supersedes them).
func TestAuditAnchorerPausesWhileTheStoreIsAway(t *testing.T) {
	srv, rdb := redistest.Run(t)
	b := &Broker{rdb: rdb, log: zerolog.New(zerolog.NewTestWriter(t))}
	hook := b.anchorer()
	a := audit.Anchor{Broker: "b1", Boot: "aa", Seq: 1, StreamSeq: 1, Digest: strings.Repeat("a", 64), At: time.Now().UnixMilli()}
	srv.Server.Stop()
	start := time.Now()
	hook(a)
	if d := time.Since(start); d > anchorTimeout+time.Second {
		t.Errorf("the hook took %v with the store away", d)
	}
	srv.Restart(t)
	a.Seq++
	hook(a) // paused: not written
	if got, err := AuditAnchors(context.Background(), rdb); err != nil || len(got) != 0 {
		t.Errorf("written during the pause: %v %v", got, err)
	}
}
