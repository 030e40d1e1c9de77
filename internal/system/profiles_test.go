package system_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

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
	p, err := store.ByToken(ctx, "dave-token")
	if err != nil || p.ID != "dave" || p.Quota != 5 || p.Addresses["sms"] != "+15550199" || p.Prefer[0] != "sms" {
		t.Fatalf("dave after restart: %+v %v", p, err)
	}
	if _, err := store.BySMPP(ctx, "dave", "dave-pw"); err != nil {
		t.Errorf("dave's SMPP credentials after restart: %v", err)
	}
	if _, err := store.ByID(ctx, "carol"); err == nil {
		t.Error("carol, deleted before the restart, is back")
	}
	if _, err := store.ByToken(ctx, "alice-token"); err != nil {
		t.Errorf("alice after restart: %v", err)
	}
}
