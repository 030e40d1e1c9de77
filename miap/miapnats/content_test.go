package miapnats_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/uims/uims/internal/natstest"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/miap/miapnats"
	"github.com/uims/uims/schemas"
)

// Content that is not in the store and a store that cannot be read are
// different answers: the first fails the transfer's digest check, the
// second is STORE_UNAVAILABLE, which the sender retries (issue 13 item 4).
func TestContentFetchNotFoundAndStoreFailure(t *testing.T) {
	ns := natstest.Run(t)
	js, err := jetstream.New(natstest.Connect(t, ns, "content"))
	if err != nil {
		t.Fatal(err)
	}
	cs := miapnats.NewContentStore(js)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := cs.Put(ctx, "here", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	fetch := cs.Fetch(ctx)
	if b, err := fetch("here"); err != nil || string(b) != "hello" {
		t.Fatalf("fetch: %q %v", b, err)
	}
	_, err = fetch("missing")
	if !errors.Is(err, jetstream.ErrObjectNotFound) || miap.CodeOf(err) == schemas.CodeStoreUnavailable {
		t.Fatalf("fetch of missing content: %v (code %s), want ErrObjectNotFound", err, miap.CodeOf(err))
	}

	ns.Shutdown()
	ns.WaitForShutdown()
	sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer scancel()
	_, err = cs.Fetch(sctx)("here")
	if code := miap.CodeOf(err); code != schemas.CodeStoreUnavailable || !code.Retryable() {
		t.Fatalf("fetch with the server down: %v (code %s), want STORE_UNAVAILABLE", err, code)
	}
}
