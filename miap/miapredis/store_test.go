package miapredis_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/uims/uims/internal/redistest"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/miap/miapredis"
	"github.com/uims/uims/schemas"
)

type clock struct{ t time.Time }

func (c *clock) Now() time.Time { return c.t }

func secret(n byte) string {
	return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{n}, miap.KeySize))
}

func keys(t testing.TB) *miap.Keyring {
	kr, err := miap.NewKeyring([]miap.KeyEntry{
		{Party: "web", Kid: "web-1", Secret: secret(1)},
		{Party: "email", Kid: "email-1", Secret: secret(2)},
		{Party: miap.BrokerParty, Kid: "k2-1", Secret: secret(3)},
	})
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

// broker returns a Guard as one broker instance would build it.
func broker(t testing.TB, rdb redis.UniversalClient, c *clock, known string) *miap.Guard {
	t.Helper()
	e, err := miap.New(miap.Config{Keys: keys(t), Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	g := miap.NewGuard(e, miapredis.New(rdb), nil)
	if _, err := g.Start(context.Background(), known, time.Time{}); err != nil {
		t.Fatal(err)
	}
	return g
}

func signed(t testing.TB, g *miap.Guard, party string) *miap.Frame {
	f := &miap.Frame{Purpose: miap.PurposeIMI, Party: party, Body: []byte(`{"v":1}`)}
	if err := g.Sign(f); err != nil {
		t.Fatal(err)
	}
	return f
}

// S1: a replay within the window is refused by the same broker and by a
// second broker instance sharing the store.
func TestReplayAcrossBrokers(t *testing.T) {
	_, rdb := redistest.Run(t)
	ctx := context.Background()
	c := &clock{time.Now()}
	b1 := broker(t, rdb, c, "")
	b2 := broker(t, rdb, c, b1.Epoch())
	f := signed(t, b1, "web")
	if err := b1.Check(ctx, f, miap.PurposeIMI); err != nil {
		t.Fatalf("first: %v", err)
	}
	if err := b1.Check(ctx, f, miap.PurposeIMI); !errors.Is(err, miap.ErrReplay) {
		t.Fatalf("replay to the same broker: %v", err)
	}
	if err := b2.Check(ctx, f, miap.PurposeIMI); !errors.Is(err, miap.ErrReplay) {
		t.Fatalf("replay to a second broker: %v", err)
	}
	// The nonce lives for 2 × window + skew.
	ttl := rdb.PTTL(ctx, miapredis.NonceKey("web", f.Nonce)).Val()
	if want := b1.NonceTTL(); ttl <= want-time.Second || ttl > want {
		t.Fatalf("nonce TTL %v, want about %v", ttl, want)
	}
}

// S2: a replay after the window is refused as stale before the store is asked.
func TestReplayAfterWindow(t *testing.T) {
	_, rdb := redistest.Run(t)
	ctx := context.Background()
	c := &clock{time.Now()}
	g := broker(t, rdb, c, "")
	f := signed(t, g, "web")
	if err := g.Check(ctx, f, miap.PurposeIMI); err != nil {
		t.Fatal(err)
	}
	c.t = c.t.Add(g.Window() + time.Second)
	if err := g.Check(ctx, f, miap.PurposeIMI); miap.CodeOf(err) != schemas.CodeStale {
		t.Fatalf("got %v, want STALE", err)
	}
}

// Invalid frames never create store keys (a flood cannot fill the store).
func TestInvalidFramesWriteNothing(t *testing.T) {
	_, rdb := redistest.Run(t)
	ctx := context.Background()
	c := &clock{time.Now()}
	g := broker(t, rdb, c, "")
	before := rdb.DBSize(ctx).Val()
	for i := range 100 {
		f := signed(t, g, "web")
		f.Body = []byte{byte(i)}
		if err := g.Check(ctx, f, miap.PurposeIMI); miap.CodeOf(err) != schemas.CodeBadMAC {
			t.Fatal(err)
		}
	}
	if after := rdb.DBSize(ctx).Val(); after != before {
		t.Fatalf("store grew from %d to %d keys on forged frames", before, after)
	}
}

// S12: a session key is single-use, bound to its party, and two brokers
// racing for it get it once.
func TestSessionKeySingleUse(t *testing.T) {
	_, rdb := redistest.Run(t)
	ctx := context.Background()
	c := &clock{time.Now()}
	b1 := broker(t, rdb, c, "")
	b2 := broker(t, rdb, c, b1.Epoch())
	k, err := b1.IssueSession(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if err := b2.TakeSession(ctx, "email", k); !errors.Is(err, miap.ErrBadSession) {
		t.Fatalf("another party's session key: %v", err)
	}
	results := make(chan error, 2)
	for _, g := range []*miap.Guard{b1, b2} {
		go func() { results <- g.TakeSession(ctx, "web", k) }()
	}
	ok := 0
	for range 2 {
		if err := <-results; err == nil {
			ok++
		} else if !errors.Is(err, miap.ErrBadSession) {
			t.Fatal(err)
		}
	}
	if ok != 1 {
		t.Fatalf("session key taken %d times", ok)
	}
}

// The store down: every frame is refused (fail closed), with a retryable code.
func TestStoreDownFailsClosed(t *testing.T) {
	srv, rdb := redistest.Run(t)
	ctx := context.Background()
	c := &clock{time.Now()}
	g := broker(t, rdb, c, "")
	srv.Stop()
	f := signed(t, g, "web")
	err := g.Check(ctx, f, miap.PurposeIMI)
	if code := miap.CodeOf(err); code != schemas.CodeStoreUnavailable || !code.Retryable() {
		t.Fatalf("store down: got %v (%v)", code, err)
	}
	if _, err := g.IssueSession(ctx, "web"); miap.CodeOf(err) != schemas.CodeStoreUnavailable {
		t.Fatalf("session with store down: %v", err)
	}
}

// S3: the store loses its state (restart without persistence). A frame
// accepted before is replayed: refused. Fresh frames are refused until the
// quarantine ends, then accepted again.
func TestStoreWipedQuarantine(t *testing.T) {
	srv, rdb := redistest.Run(t)
	ctx := context.Background()
	c := &clock{time.Now()}
	g := broker(t, rdb, c, "")
	old := signed(t, g, "web")
	if err := g.Check(ctx, old, miap.PurposeIMI); err != nil {
		t.Fatal(err)
	}
	srv.Restart(t)
	// The running broker notices on its next claim.
	if err := g.Check(ctx, old, miap.PurposeIMI); miap.CodeOf(err) != schemas.CodeQuarantine {
		t.Fatalf("replay after wipe: %v", err)
	}
	if err := g.Check(ctx, old, miap.PurposeIMI); miap.CodeOf(err) != schemas.CodeQuarantine {
		t.Fatalf("replay after wipe, second try: %v", err)
	}
	fresh := signed(t, g, "web")
	if err := g.Check(ctx, fresh, miap.PurposeIMI); miap.CodeOf(err) != schemas.CodeQuarantine {
		t.Fatalf("fresh frame during quarantine: %v", err)
	}
	// A broker that starts now, knowing the old epoch, quarantines too.
	late := broker(t, rdb, c, "epoch-before-the-wipe")
	if err := late.Check(ctx, signed(t, late, "web"), miap.PurposeIMI); miap.CodeOf(err) != schemas.CodeQuarantine {
		t.Fatalf("restarted broker: %v", err)
	}
	// After the skew has passed, frames signed now are accepted; the old
	// frame is stale by then or still refused.
	c.t = c.t.Add(g.Skew() + time.Millisecond)
	if err := g.Check(ctx, signed(t, g, "web"), miap.PurposeIMI); err != nil {
		t.Fatalf("after quarantine: %v", err)
	}
	if err := g.Check(ctx, old, miap.PurposeIMI); err == nil {
		t.Fatal("old frame accepted after the wipe")
	}
}

// A Redis the brokers have never used starts without quarantine.
func TestFirstStartNoQuarantine(t *testing.T) {
	_, rdb := redistest.Run(t)
	c := &clock{time.Now()}
	g := broker(t, rdb, c, "")
	if !g.QuarantineUntil().IsZero() {
		t.Fatal("quarantine on first start")
	}
	if err := g.Check(context.Background(), signed(t, g, "web"), miap.PurposeIMI); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkGuardCheck(b *testing.B) {
	_, rdb := redistest.Run(b)
	ctx := context.Background()
	e, _ := miap.New(miap.Config{Keys: keys(b)})
	g := miap.NewGuard(e, miapredis.New(rdb), nil)
	g.Start(ctx, "", time.Time{})
	body := bytes.Repeat([]byte("x"), 500)
	frames := make([]*miap.Frame, b.N)
	for i := range frames {
		frames[i] = &miap.Frame{Purpose: miap.PurposeIMI, Party: "web", Body: body}
		g.Sign(frames[i])
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if err := g.Check(ctx, frames[i], miap.PurposeIMI); err != nil {
			b.Fatal(err)
		}
	}
}
