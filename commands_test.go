package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// tempData points UIMS_DATA_DIR at a fresh folder (and clears UIMS_KEYS) for
// the commands run by the test; it returns the folder.
func tempData(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("UIMS_DATA_DIR", dir)
	t.Setenv("UIMS_KEYS", "")
	t.Setenv("UIMS_LOG_LEVEL", "warn")
	return dir
}

// capture runs a command with stdout captured.
func capture(t *testing.T, cmd func(context.Context, []string) error, args ...string) (string, error) {
	t.Helper()
	var buf bytes.Buffer
	old := stdout
	stdout = &buf
	defer func() { stdout = old }()
	err := cmd(context.Background(), args)
	return buf.String(), err
}

func mustRun(t *testing.T, cmd func(context.Context, []string) error, args ...string) string {
	t.Helper()
	out, err := capture(t, cmd, args...)
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return out
}

func readKeys(t *testing.T, path string) (*miap.KeyFile, *miap.Keyring) {
	t.Helper()
	kf, err := miap.ReadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := kf.Keyring()
	if err != nil {
		t.Fatalf("the key file does not load: %v", err)
	}
	return kf, kr
}

func TestParseArgsFlagsAnywhere(t *testing.T) {
	for _, args := range [][]string{
		{"export", "web", "--out", "F"},
		{"--out", "F", "export", "web"},
		{"export", "--out=F", "web"},
		{"export", "-out", "F", "web", "-v"},
	} {
		o := newOpts("test")
		out := o.fs.String("out", "", "")
		v := o.fs.Bool("v", false, "")
		pos := o.parse(args)
		if !reflect.DeepEqual(pos, []string{"export", "web"}) || *out != "F" {
			t.Errorf("%q: positionals %q, out %q", args, pos, *out)
		}
		if *v != (len(args) == 5) {
			t.Errorf("%q: -v %v", args, *v)
		}
	}
	o := newOpts("test")
	subject := o.fs.String("subject", "", "")
	pos := o.parse([]string{"--subject", "s", "hello", "--", "-5", "--subject", "x"})
	if !reflect.DeepEqual(pos, []string{"hello", "-5", "--subject", "x"}) || *subject != "s" {
		t.Errorf("after --: positionals %q, subject %q", pos, *subject)
	}
}

func TestKeysExportFlagsAfterParty(t *testing.T) {
	dir := tempData(t)
	mustRun(t, cmdKeys, "generate")
	for i, args := range [][]string{
		{"export", "web", "--out", "F"},
		{"--out", "F", "export", "web"},
	} {
		out := filepath.Join(dir, "web"+string(rune('a'+i))+".json")
		args[slicesIndex(args, "F")] = out
		mustRun(t, cmdKeys, args...)
		kf, _ := readKeys(t, out)
		if len(kf.Keys) != 1 || kf.Keys[0].Party != "web" {
			t.Fatalf("%q exported %+v", args, kf.Keys)
		}
	}
}

func slicesIndex(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func TestKeyFileFollowsDataDir(t *testing.T) {
	dir := tempData(t)
	mustRun(t, cmdKeys, "generate")
	readKeys(t, filepath.Join(dir, "keys.json"))

	// --data wins over UIMS_DATA_DIR, --keys over both.
	other := t.TempDir()
	mustRun(t, cmdKeys, "generate", "--data", other)
	readKeys(t, filepath.Join(other, "keys.json"))
	named := filepath.Join(t.TempDir(), "k.json")
	mustRun(t, cmdKeys, "--keys", named, "--data", other, "generate")
	readKeys(t, named)
	t.Setenv("UIMS_KEYS", named)
	if out := mustRun(t, cmdKeys, "show"); !strings.Contains(out, "web") {
		t.Fatalf("show with UIMS_KEYS: %q", out)
	}

	// the client commands (send, broker, gateway, processor) read it there too
	for _, c := range []struct{ env, flag, want string }{
		{"", "", filepath.Join(dir, "keys.json")},
		{named, "", named},
		{named, "x.json", "x.json"},
	} {
		t.Setenv("UIMS_KEYS", c.env)
		o := newOpts("send")
		o.client()
		var args []string
		if c.flag != "" {
			args = []string{"--keys", c.flag}
		}
		o.parse(args)
		if o.keyFile() != c.want {
			t.Errorf("UIMS_KEYS=%q --keys %q: key file %q, want %q", c.env, c.flag, o.keyFile(), c.want)
		}
	}
	t.Setenv("UIMS_KEYS", "")
	o := newOpts("gateway")
	o.client()
	o.parse([]string{"web", "--data", other})
	if o.keyFile() != filepath.Join(other, "keys.json") {
		t.Errorf("gateway --data: key file %q", o.keyFile())
	}
	if _, err := o.keyring("web"); err != nil {
		t.Errorf("gateway keyring from --data: %v", err)
	}
}

// signedBy signs a fresh IMI frame of party with eng.
func signedBy(t *testing.T, eng *miap.Engine, party string) *miap.Frame {
	t.Helper()
	f := &miap.Frame{Purpose: miap.PurposeIMI, Party: party, Body: []byte(`{"v":1,"msg_id":"00112233445566778899aabbccddeeff","to":"bob"}`)}
	if err := eng.Sign(f); err != nil {
		t.Fatal(err)
	}
	return f
}

func newEngine(t *testing.T, kr *miap.Keyring) *miap.Engine {
	t.Helper()
	eng, err := miap.New(miap.Config{Keys: kr})
	if err != nil {
		t.Fatal(err)
	}
	return eng
}

func TestKeysRotate(t *testing.T) {
	dir := tempData(t)
	file := filepath.Join(dir, "keys.json")
	mustRun(t, cmdKeys, "generate")
	_, before := readKeys(t, file)
	running := newEngine(t, before) // a broker running since before the rotation
	old := signedBy(t, running, "web")

	out := mustRun(t, cmdKeys, "rotate", "web", "--overlap", "2h")
	if strings.Contains(strings.ToLower(out), "restart") {
		t.Errorf("rotate tells to restart: %q", out)
	}
	if !strings.Contains(out, "within a few seconds") {
		t.Errorf("rotate output: %q", out)
	}
	kf, after := readKeys(t, file)
	var web []miap.KeyEntry
	for _, e := range kf.Keys {
		if e.Party == "web" {
			web = append(web, e)
		}
	}
	if len(web) != 2 {
		t.Fatalf("web keys after rotation: %+v", web)
	}
	if web[1].NotBefore.IsZero() || time.Since(web[1].NotBefore) > time.Minute {
		t.Errorf("new key not_before %v, want now", web[1].NotBefore)
	}
	if d := web[0].NotAfter.Sub(web[1].NotBefore); d != 2*time.Hour {
		t.Errorf("old key not_after - new not_before = %v, want the overlap 2h", d)
	}

	// The running broker takes the new keyring (Engine.SetKeys).
	running.SetKeys(after)
	if err := running.Verify(old, miap.PurposeIMI); err != nil {
		t.Errorf("old kid during the overlap: %v", err)
	}
	fresh := signedBy(t, running, "web")
	if fresh.Kid != web[1].Kid || fresh.Kid == old.Kid {
		t.Errorf("signed with %s, want the new %s", fresh.Kid, web[1].Kid)
	}

	// Rotate, then restart: a broker started from the file verifies both.
	_, reloaded := readKeys(t, file)
	restarted := newEngine(t, reloaded)
	for _, f := range []*miap.Frame{old, fresh} {
		if err := restarted.Verify(f, miap.PurposeIMI); err != nil {
			t.Errorf("restarted broker, kid %s: %v", f.Kid, err)
		}
	}
	if f := signedBy(t, restarted, "web"); f.Kid != web[1].Kid {
		t.Errorf("restarted signer uses %s, want %s", f.Kid, web[1].Kid)
	}

	// A second rotation in the same second still makes a kid the loader takes.
	mustRun(t, cmdKeys, "rotate", "web")
	readKeys(t, file)
}

func TestKeysRotateFirstKeyAndGrant(t *testing.T) {
	dir := tempData(t)
	file := filepath.Join(dir, "keys.json")
	mustRun(t, cmdKeys, "generate")
	out := mustRun(t, cmdKeys, "rotate", "bot")
	if !strings.Contains(out, "first key") {
		t.Errorf("rotate of a party without a key: %q", out)
	}
	_, kr := readKeys(t, file)
	if !kr.Has("bot") {
		t.Fatal("no key for bot")
	}

	// role and media of the previous entry carry over
	kf, _ := readKeys(t, file)
	for i := range kf.Keys {
		if kf.Keys[i].Party == "sms" {
			kf.Keys[i].Role, kf.Keys[i].Media = "gateway", []string{schemas.MediumSMS}
		}
	}
	if err := miap.WriteKeyFile(file, kf); err != nil {
		t.Fatal(err)
	}
	mustRun(t, cmdKeys, "rotate", "sms")
	kf, kr = readKeys(t, file)
	last := kf.Keys[len(kf.Keys)-1]
	if last.Party != "sms" || last.Role != "gateway" || !reflect.DeepEqual(last.Media, []string{"sms"}) {
		t.Errorf("rotated entry %+v lost the grant", last)
	}
	if g, ok := kr.Grant("sms"); !ok || g.Role != "gateway" {
		t.Errorf("grant after rotation: %+v %v", g, ok)
	}
	if _, err := os.Stat(file + ".tmp"); err == nil {
		t.Error("temporary key file left behind")
	}
}
