package system_test

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/internal/system"
	"github.com/uims/uims/schemas"
)

// uims run starts the operator view on a port of its own, as the observer
// party with its permissions: it shows a message's timeline and keeps it in
// its bucket, and the web gateway sends /ops.html there.
func TestRunOperatorView(t *testing.T) {
	a := runSystem(t, system.Config{Operator: "op-secret"})
	if a.Ops == "" || a.Ops == a.HTTP {
		t.Fatalf("operator view at %q (web at %q)", a.Ops, a.HTTP)
	}
	var id string
	fabrictest.Eventually(t, 10*time.Second, "alice → bob", func() bool {
		code, out := post(t, "http://"+a.HTTP+"/api/v1/messages", "alice-token", `{"to":"bob","text":"hello"}`)
		id, _ = out["id"].(string)
		return code == 202
	})
	get := func(url, token string) (int, string) {
		req, _ := http.NewRequest("GET", url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	var body string
	fabrictest.Eventually(t, 10*time.Second, "the message's timeline in the operator view", func() bool {
		var code int
		code, body = get("http://"+a.Ops+"/ops/api/messages/"+id, "op-secret")
		return code == 200 && strings.Contains(body, `"state":"delivered"`) && strings.Contains(body, `"step":"accepted"`)
	})
	if code, _ := get("http://"+a.Ops+"/ops/api/messages/"+id, "alice-token"); code != 401 {
		t.Fatalf("a client token opened the operator API: %d", code)
	}
	// the web gateway's old address of the page
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := noFollow.Get("http://" + a.HTTP + "/ops.html")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if loc := res.Header.Get("Location"); res.StatusCode != http.StatusFound || loc != "http://"+a.Ops+"/ops.html" {
		t.Fatalf("/ops.html on the web gateway: %d %q, want a redirect to the operator view at %s", res.StatusCode, loc, a.Ops)
	}
	// the timeline is in the bucket, written with the observer's own credentials
	nc, err := nats.Connect(a.NATS, nats.UserCredentials(filepath.Join(a.Creds, "ops.creds")))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	fabrictest.Eventually(t, 10*time.Second, "the timeline in the bucket "+schemas.OpsBucket, func() bool {
		kv, err := js.KeyValue(context.Background(), schemas.OpsBucket)
		if err != nil {
			return false
		}
		e, err := kv.Get(context.Background(), "tl."+id)
		return err == nil && strings.Contains(string(e.Value()), `"step":"accepted"`)
	})
	// the usage panel reads the brokers' accounting records with the
	// observer's permissions (docs/OPS.md, "Usage")
	fabrictest.Eventually(t, 15*time.Second, "alice's message in the usage panel", func() bool {
		code, body := get("http://"+a.Ops+"/ops/api/usage?q=alice", "op-secret")
		return code == 200 && strings.Contains(body, `"client":"alice","media":{"web":{"sent":1,`) && !strings.Contains(body, `"error"`)
	})
	// and so may a billing system connected as an observer
	s, err := js.Stream(context.Background(), schemas.AccountingStream)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := s.OrderedConsumer(context.Background(), jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatalf("an observer reading %s: %v", schemas.AccountingStream, err)
	}
	m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil || !strings.Contains(string(m.Data()), `"msg_id":"`+id+`"`) {
		t.Fatalf("first record: %v %v", m, err)
	}
	// a durable consumer that keeps its place: acknowledged records
	billing, err := s.CreateOrUpdateConsumer(context.Background(), jetstream.ConsumerConfig{Durable: "billing", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatalf("a durable consumer on %s: %v", schemas.AccountingStream, err)
	}
	m, err = billing.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.DoubleAck(context.Background()); err != nil {
		t.Fatalf("acknowledge a record: %v", err)
	}
}
