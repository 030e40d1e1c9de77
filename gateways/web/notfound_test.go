package web_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/gateways/web"
)

// A message the inbox does not hold is 404; an inbox that cannot be read
// (its streams are gone) is 503 with Retry-After, not 404 (issue 13
// item 4).
func TestInboxStoreFailureIs503(t *testing.T) {
	url, f := startWeb(t)
	id := kit.NewMsgID()
	for _, p := range []struct{ method, path string }{
		{"GET", "/api/v1/messages/" + id + "/content"},
		{"POST", "/api/v1/messages/" + id + "/read"},
	} {
		if code, out := call(t, p.method, url+p.path, "alice-token", ""); code != http.StatusNotFound {
			t.Fatalf("%s %s of a message not held: %d %v", p.method, p.path, code, out)
		}
	}

	js, err := jetstream.New(f.Conn("admin"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := range web.DefaultInboxShards {
		if err := js.DeleteStream(ctx, web.InboxStreamName(i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []struct{ method, path string }{
		{"GET", "/api/v1/messages/" + id + "/content"},
		{"POST", "/api/v1/messages/" + id + "/read"},
	} {
		if code, out := call(t, p.method, url+p.path, "alice-token", ""); code != http.StatusServiceUnavailable {
			t.Errorf("%s %s while the inbox cannot be read: %d %v, want 503", p.method, p.path, code, out)
		}
	}
}
