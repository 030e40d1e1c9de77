package broker_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/schemas"
)

// adminRequest sends one profile request and returns the reply, or the
// service error's code.
func adminRequest(t *testing.T, nc *nats.Conn, q schemas.ProfileRequest) (r schemas.ProfileReply, errHdr string, raw []byte) {
	t.Helper()
	body, _ := json.Marshal(q)
	m, err := nc.Request(schemas.SubjectBrokerProfile, body, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code := m.Header.Get("Nats-Service-Error-Code"); code != "" {
		return r, m.Header.Get("Nats-Service-Error"), m.Data
	}
	if err := json.Unmarshal(m.Data, &r); err != nil {
		t.Fatalf("reply %q: %v", m.Data, err)
	}
	return r, "", m.Data
}

func TestProfileEndpoint(t *testing.T) {
	f := fabrictest.New(t)
	var saved atomic.Int32
	b, _ := f.StartBroker(broker.Config{OnProfilesChanged: func(context.Context) error { saved.Add(1); return nil }})
	f.PutProfiles(&schemas.Profile{ID: "alice", Token: "alice-secret", Addresses: map[string]string{"web": "alice"},
		SMPP: &schemas.SMPPCredentials{SystemID: "alice", Password: "pw"}, SMTP: &schemas.SMTPCredentials{Username: "alice", Password: "smtp-pw"}})
	nc := f.Conn("admin")
	changed := make(chan struct{}, 4)
	sub, _ := nc.Subscribe(schemas.SubjectProfilesChanged, func(*nats.Msg) { changed <- struct{}{} })
	defer sub.Unsubscribe()
	nc.Flush()

	r, errHdr, raw := adminRequest(t, nc, schemas.ProfileRequest{Op: schemas.ProfileList})
	if errHdr != "" || len(r.Profiles) != 1 || r.Profiles[0].ID != "alice" || r.Profiles[0].SMPPSystemID != "alice" {
		t.Fatalf("list: %+v %s", r, errHdr)
	}
	for _, secret := range []string{"alice-secret", "pw", "smtp-pw", "token", "password"} {
		if strings.Contains(string(raw), `"`+secret+`"`) {
			t.Errorf("list answer carries %q: %s", secret, raw)
		}
	}

	// put: stored, announced, saved; the broker resolves it at once
	bob := &schemas.Profile{ID: "bob", Token: "bob-token", Addresses: map[string]string{"web": "bob", "email": "bob@example.test"}}
	if r, errHdr, _ := adminRequest(t, nc, schemas.ProfileRequest{Op: schemas.ProfilePut, Profile: bob}); errHdr != "" || r.ID != "bob" {
		t.Fatalf("put: %+v %s", r, errHdr)
	}
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("put not announced on " + schemas.SubjectProfilesChanged)
	}
	if saved.Load() != 1 {
		t.Errorf("OnProfilesChanged called %d times after a put", saved.Load())
	}
	if p, err := b.Profiles().ByToken(context.Background(), schemas.TokenSHA256("bob-token")); err != nil || p.ID != "bob" {
		t.Errorf("stored bob: %v %v", p, err)
	}
	r, _, _ = adminRequest(t, nc, schemas.ProfileRequest{Op: schemas.ProfileList})
	if len(r.Profiles) != 2 || r.Profiles[1].Addresses["email"] != "bob@example.test" {
		t.Errorf("list after put: %+v", r.Profiles)
	}

	// delete
	if r, errHdr, _ := adminRequest(t, nc, schemas.ProfileRequest{Op: schemas.ProfileDelete, ID: "bob"}); errHdr != "" || r.ID != "bob" {
		t.Fatalf("delete: %+v %s", r, errHdr)
	}
	if _, err := b.Profiles().ByID(context.Background(), "bob"); err == nil {
		t.Error("bob still there after delete")
	}
	if saved.Load() != 2 {
		t.Errorf("OnProfilesChanged called %d times after put and delete", saved.Load())
	}

	// refusals carry their code and change nothing
	for _, c := range []struct {
		q    schemas.ProfileRequest
		code schemas.Code
	}{
		{schemas.ProfileRequest{Op: schemas.ProfileDelete, ID: "nobody"}, schemas.CodeUnknownRecipient},
		{schemas.ProfileRequest{Op: schemas.ProfilePut, Profile: &schemas.Profile{ID: "Bad Id"}}, schemas.CodeMalformed},
		{schemas.ProfileRequest{Op: schemas.ProfilePut}, schemas.CodeMalformed},
		{schemas.ProfileRequest{Op: "drop"}, schemas.CodeMalformed},
	} {
		body, _ := json.Marshal(c.q)
		m, err := nc.Request(schemas.SubjectBrokerProfile, body, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.Header.Get("Nats-Service-Error-Code"); got != strconv.Itoa(int(c.code)) {
			t.Errorf("%+v: error code %q, want %d (%s)", c.q, got, c.code, m.Header.Get("Nats-Service-Error"))
		}
	}
	if saved.Load() != 2 {
		t.Errorf("a refused request called OnProfilesChanged")
	}
}
