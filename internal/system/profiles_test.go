package system_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/internal/system"
	"github.com/uims/uims/schemas"
)

// TestSavedProfilesSurviveRestart: a profile put into the embedded store is
// saved to profiles.yaml and is there again after the store restarts and
// loads the file, as `uims run` does.
func TestSavedProfilesSurviveRestart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), system.SavedProfiles)
	rdb, stop, err := system.OpenStore("", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := system.LoadProfiles(ctx, rdb, nil, ""); err != nil { // the demo clients
		t.Fatal(err)
	}
	store := broker.NewProfiles(rdb, nil)
	dave := &schemas.Profile{ID: "dave", Name: "Dave", Token: "dave-token", Addresses: map[string]string{"web": "dave", "sms": "+15550199"},
		Prefer: []string{"sms", "web"}, SMPP: &schemas.SMPPCredentials{SystemID: "dave", Password: "dave-pw"}, Quota: 5}
	if err := store.Put(ctx, dave); err != nil {
		t.Fatal(err)
	}
	if err := store.Delete(ctx, "carol"); err != nil {
		t.Fatal(err)
	}
	if err := system.SaveProfiles(ctx, rdb, path); err != nil {
		t.Fatal(err)
	}
	stop()
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("saved file: %v %v", fi, err)
	}

	rdb, stop, err = system.OpenStore("", zerolog.Nop()) // a new, empty embedded store
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if _, err := system.LoadProfiles(ctx, rdb, nil, path); err != nil {
		t.Fatal(err)
	}
	store = broker.NewProfiles(rdb, nil)
	p, err := store.ByToken(ctx, schemas.TokenSHA256("dave-token"))
	if err != nil || p.ID != "dave" || p.Quota != 5 || p.Addresses["sms"] != "+15550199" || p.Prefer[0] != "sms" {
		t.Fatalf("dave after restart: %+v %v", p, err)
	}
	if _, err := store.BySMPP(ctx, "dave", schemas.CredentialHash(schemas.CredentialSMPP, "dave", "dave-pw")); err != nil {
		t.Errorf("dave's SMPP credentials after restart: %v", err)
	}
	if _, err := store.ByID(ctx, "carol"); err == nil {
		t.Error("carol, deleted before the restart, is back")
	}
	if _, err := store.ByToken(ctx, schemas.TokenSHA256("alice-token")); err != nil {
		t.Errorf("alice after restart: %v", err)
	}
}

// TestRunKeepsProfileChanges: a profile put through the broker of `uims
// run` (embedded store) is there again after `uims run` restarts on the same
// data folder.
func TestRunKeepsProfileChanges(t *testing.T) {
	dir := t.TempDir()
	start := func() (stop func(), natsURL string) {
		cfg := system.Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0", SMTPAddr: "off", SMPPAddr: "off"}
		addrs := make(chan system.Addrs, 1)
		cfg.Ready = func(a system.Addrs) { addrs <- a }
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- system.Run(ctx, cfg, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)) }()
		stop = func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		}
		select {
		case a := <-addrs:
			return stop, a.NATS
		case err := <-done:
			t.Fatalf("run stopped: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatal("run not ready")
		}
		return nil, ""
	}
	request := func(url string, q schemas.ProfileRequest) schemas.ProfileReply {
		t.Helper()
		nc, err := nats.Connect(url, nats.UserCredentials(filepath.Join(dir, "creds", "admin.creds")))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		body, _ := json.Marshal(q)
		m, err := nc.Request(schemas.SubjectBrokerProfile, body, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if e := m.Header.Get("Nats-Service-Error"); e != "" {
			t.Fatalf("%+v: %s", q, e)
		}
		var r schemas.ProfileReply
		json.Unmarshal(m.Data, &r)
		return r
	}

	stop, url := start()
	request(url, schemas.ProfileRequest{Op: schemas.ProfilePut, Profile: &schemas.Profile{ID: "erin", Token: "erin-token", Addresses: map[string]string{"web": "erin"}}})
	request(url, schemas.ProfileRequest{Op: schemas.ProfileDelete, ID: "carol"})
	stop()

	stop, url = start()
	defer stop()
	ids := map[string]bool{}
	for _, p := range request(url, schemas.ProfileRequest{Op: schemas.ProfileList}).Profiles {
		ids[p.ID] = true
	}
	if !ids["erin"] || ids["carol"] || !ids["alice"] {
		t.Errorf("profiles after the restart: %v", ids)
	}
}
