package system_test

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/uims/uims/internal/system"
	"github.com/uims/uims/miap/natsauth"
)

// Credentials are reused while the party's role, media and permissions
// stay; credentials issued under older permissions (before a gateway
// owned uims_og_<self>, PROTOCOL.md §6.15) are issued again.
func TestCredsReissuedWhenPermissionsChange(t *testing.T) {
	dir := t.TempDir()
	au, err := system.OpenAuth(dir)
	if err != nil {
		t.Fatal(err)
	}
	id := system.Identity{Name: "web", Role: natsauth.RoleGateway, Media: []string{"web"}}
	c1, err := au.Creds(id)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := au.Creds(id)
	if err != nil || !bytes.Equal(c1, c2) {
		t.Fatalf("the same party's credentials were issued again: %v", err)
	}
	// the identity as recorded before permissions had a digest
	file := filepath.Join(dir, "auth", "parties.json")
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	old := regexp.MustCompile(`,\s*"perms": "[0-9a-f]+"`).ReplaceAll(b, nil)
	if bytes.Equal(old, b) {
		t.Fatalf("no perms recorded in %s", b)
	}
	if err := os.WriteFile(file, old, 0o600); err != nil {
		t.Fatal(err)
	}
	au, err = system.OpenAuth(dir)
	if err != nil {
		t.Fatal(err)
	}
	c3, err := au.Creds(id)
	if err != nil || bytes.Equal(c1, c3) {
		t.Fatalf("credentials of older permissions reused: %v", err)
	}
}
