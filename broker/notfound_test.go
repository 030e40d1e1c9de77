package broker_test

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/internal/redistest"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// pause stops redis-server (SIGSTOP) until the returned func or the end
// of the test resumes it.
func pause(t *testing.T, pid int) (resume func()) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	done := false
	resume = func() {
		if !done {
			done = true
			syscall.Kill(pid, syscall.SIGCONT)
		}
	}
	t.Cleanup(resume)
	return resume
}

// quickClient is a Redis client that gives up on a silent server soon.
func quickClient(t *testing.T, addr string) *redis.Client {
	rdb := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, PoolSize: 64, MaxRetries: 1, DialTimeout: time.Second,
		ReadTimeout: 300 * time.Millisecond, WriteTimeout: 300 * time.Millisecond})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// Only redis.Nil means "no such client": a store that does not answer is
// an error other than ErrNoClient, for every lookup, and is not
// remembered as an unknown client (issue 13 item 4).
func TestProfileLookupStoreFailure(t *testing.T) {
	srv := redistest.Start(t)
	ps := broker.NewProfiles(quickClient(t, srv.Addr), nil)
	ctx := context.Background()
	hash := schemas.TokenSHA256("no-such-token")
	lookups := map[string]func() (*schemas.Profile, error){
		"ByID":      func() (*schemas.Profile, error) { return ps.ByID(ctx, "nobody") },
		"ByToken":   func() (*schemas.Profile, error) { return ps.ByToken(ctx, hash) },
		"ByAddress": func() (*schemas.Profile, error) { return ps.ByAddress(ctx, "sms", "+15550177") },
		"BySMPP":    func() (*schemas.Profile, error) { return ps.BySMPP(ctx, "nobody", "x") },
		"BySMTP":    func() (*schemas.Profile, error) { return ps.BySMTP(ctx, "nobody", "x") },
	}
	resume := pause(t, srv.PID())
	for name, fn := range lookups {
		if p, err := fn(); err == nil || errors.Is(err, broker.ErrNoClient) {
			t.Errorf("%s with the store paused: %v, %v; want a store error", name, p, err)
		}
	}
	if _, err := ps.List(ctx); err == nil {
		t.Error("List with the store paused: no error")
	}
	resume()
	for name, fn := range lookups {
		if _, err := fn(); !errors.Is(err, broker.ErrNoClient) {
			t.Errorf("%s with the store back: %v; want ErrNoClient", name, err)
		}
	}
}

// A message for a client the brokers cannot look up now gets
// STORE_UNAVAILABLE (retryable), not UNKNOWN_RECIPIENT; once the store is
// back, an unknown client is UNKNOWN_RECIPIENT.
func TestRouteStoreFailureIsRetryable(t *testing.T) {
	f := fabrictest.New(t)
	// A client that gives up on a silent store quickly (the default waits
	// 3 s per try and tries 4 times).
	f.RDB = quickClient(t, f.Redis.Addr)
	f.StartBroker(broker.Config{})
	profiles(f)
	og := fabrictest.NewInbox()
	ogKit, _ := f.StartKit(og, kit.Config{Gateway: "test", Medium: "test", RequestTimeout: 10 * time.Second})
	f.StartKit(fabrictest.NewInbox(), kit.Config{Gateway: "peer", Medium: "web"})
	waitRoute(t, ogKit) // alice's profile is now in the brokers' cache

	s := submission("for nobody")
	s.To = "nobody"
	resume := pause(t, f.Redis.PID())
	_, err := ogKit.Send(context.Background(), s)
	if code := miap.CodeOf(err); code != schemas.CodeStoreUnavailable || !code.Retryable() {
		t.Fatalf("send with the store paused: %v (code %s), want STORE_UNAVAILABLE", err, code)
	}
	resume()
	s.MsgID = ""
	_, err = ogKit.Send(context.Background(), s)
	if code := miap.CodeOf(err); code != schemas.CodeUnknownRecipient {
		t.Fatalf("send with the store back: %v (code %s), want UNKNOWN_RECIPIENT", err, code)
	}
}
