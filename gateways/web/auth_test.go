package web_test

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/schemas"
)

// wiretap records every message on NATS (any subject, replies included), as
// a plain connection that any party could open.
type wiretap struct {
	mu   sync.Mutex
	msgs []*nats.Msg
}

func tap(t *testing.T, f *fabrictest.Fabric) *wiretap {
	t.Helper()
	w := &wiretap{}
	nc := f.Conn("wiretap")
	if _, err := nc.Subscribe(">", func(m *nats.Msg) {
		w.mu.Lock()
		w.msgs = append(w.msgs, m)
		w.mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return w
}

// find returns the subjects of the messages whose body or headers contain s.
func (w *wiretap) find(s string) (subjects []string, seen int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range w.msgs {
		in := strings.Contains(string(m.Data), s)
		for k, vs := range m.Header {
			in = in || strings.Contains(k, s) || strings.Contains(strings.Join(vs, "\n"), s)
		}
		if in {
			subjects = append(subjects, m.Subject)
		}
		if m.Subject == schemas.SubjectBrokerClient {
			seen++
		}
	}
	return subjects, seen
}

// The bearer token never crosses NATS in clear (PROTOCOL.md §6.11): while the
// web gateway authenticates requests, a wiretap on every subject sees only
// its SHA-256 on uims.broker.client. The right token works; a wrong one is
// still 401.
func TestAuthTokenNeverCrossesNATSInClear(t *testing.T) {
	url, f := startWeb(t)
	const token = "tap-Zq9-secret-bearer"
	f.PutProfiles(&schemas.Profile{ID: "tapped", Token: token, Addresses: map[string]string{"web": "tapped"}})
	w := tap(t, f)

	if code, out := call(t, "GET", url+"/api/v1/inbox", token, ""); code != 200 {
		t.Fatalf("the right token: %d %v", code, out)
	}
	if code, _ := call(t, "GET", url+"/api/v1/inbox", token+"x", ""); code != 401 {
		t.Errorf("a wrong token: %d, want 401", code)
	}
	if code, _ := call(t, "GET", url+"/api/v1/inbox", schemas.TokenSHA256(token), ""); code != 401 {
		t.Errorf("the token's hash as a bearer token: %d, want 401", code)
	}
	send(t, url, token, `{"to":"bob","text":"tapped"}`)
	if code, out := call(t, "GET", url+"/api/v1/usage", token, ""); code != 200 || out["client"] != "tapped" {
		t.Fatalf("usage: %d %v", code, out) // uims.broker.usage carries the hash too
	}

	fabrictest.Eventually(t, 5*time.Second, "the hashed token on "+schemas.SubjectBrokerClient, func() bool {
		subjects, seen := w.find(schemas.TokenSHA256(token))
		return seen >= 3 && len(subjects) > 0 && subjects[0] == schemas.SubjectBrokerClient && slices.Contains(subjects, schemas.SubjectBrokerUsage)
	})
	if subjects, _ := w.find(token); len(subjects) > 0 {
		t.Errorf("the clear token crossed NATS on %v", subjects)
	}
}
