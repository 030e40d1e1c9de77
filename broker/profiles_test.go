package broker_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/internal/redistest"
	"github.com/uims/uims/schemas"
)

// rawStore returns every key and value of the Redis database, read as raw
// strings and sets, so that a test sees what the store itself holds.
func rawStore(t *testing.T, rdb *redis.Client) string {
	t.Helper()
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k + " = ")
		switch typ := rdb.Type(ctx, k).Val(); typ {
		case "string":
			b.WriteString(rdb.Get(ctx, k).Val())
		case "set":
			b.WriteString(strings.Join(rdb.SMembers(ctx, k).Val(), ","))
		default:
			t.Fatalf("key %s of type %s: teach rawStore", k, typ)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// The store keeps credentials only as hashes (PROTOCOL.md §6.11): neither a
// key nor a value holds the clear token or a clear password, and lookups take
// the hashes, not the secrets.
func TestProfilesKeepOnlyHashes(t *testing.T) {
	_, rdb := redistest.Run(t)
	ctx := context.Background()
	ps := broker.NewProfiles(rdb, nil)
	in := &schemas.Profile{ID: "alice", Token: "alice-secret-token", Addresses: map[string]string{"web": "alice"},
		SMPP: &schemas.SMPPCredentials{SystemID: "alice", Password: "smpp-pw1"},
		SMTP: &schemas.SMTPCredentials{Username: "Alice", Password: "smtp-password-1"}}
	if err := ps.Put(ctx, in); err != nil {
		t.Fatal(err)
	}
	if in.Token != "alice-secret-token" || in.SMPP.Password != "smpp-pw1" || in.SMTP.Password != "smtp-password-1" {
		t.Errorf("Put changed the caller's profile: %+v", in)
	}
	raw := rawStore(t, rdb)
	for _, secret := range []string{"alice-secret-token", "smpp-pw1", "smtp-password-1"} {
		if strings.Contains(raw, secret) {
			t.Errorf("the store holds %q in clear:\n%s", secret, raw)
		}
	}
	for _, h := range []string{`"token_sha256":"` + schemas.TokenSHA256("alice-secret-token") + `"`,
		`"password_hash":"` + schemas.CredentialHash(schemas.CredentialSMPP, "alice", "smpp-pw1") + `"`,
		`"password_hash":"` + schemas.CredentialHash(schemas.CredentialSMTP, "alice", "smtp-password-1") + `"`} {
		if !strings.Contains(raw, h) {
			t.Errorf("the store lacks %s:\n%s", h, raw)
		}
	}

	p, err := ps.ByToken(ctx, schemas.TokenSHA256("alice-secret-token"))
	if err != nil || p.ID != "alice" {
		t.Fatalf("ByToken(hash) = %v, %v", p, err)
	}
	if p.Token != "" || p.SMPP.Password != "" || p.SMTP.Password != "" {
		t.Errorf("a profile read back carries a clear secret: %+v %+v %+v", p, p.SMPP, p.SMTP)
	}
	for name, lookup := range map[string]func() (*schemas.Profile, error){
		"token: the clear token": func() (*schemas.Profile, error) { return ps.ByToken(ctx, "alice-secret-token") },
		"token: a wrong hash":    func() (*schemas.Profile, error) { return ps.ByToken(ctx, schemas.TokenSHA256("alice-token")) },
		"token: empty":           func() (*schemas.Profile, error) { return ps.ByToken(ctx, "") },
		"smpp: the clear secret": func() (*schemas.Profile, error) { return ps.BySMPP(ctx, "alice", "smpp-pw1") },
		"smpp: another id's hash": func() (*schemas.Profile, error) {
			return ps.BySMPP(ctx, "alice", schemas.CredentialHash("smpp", "bob", "smpp-pw1"))
		},
		"smpp: the smtp hash": func() (*schemas.Profile, error) {
			return ps.BySMPP(ctx, "alice", schemas.CredentialHash("smtp", "alice", "smpp-pw1"))
		},
		"smtp: the clear secret": func() (*schemas.Profile, error) { return ps.BySMTP(ctx, "alice", "smtp-password-1") },
		"smtp: empty":            func() (*schemas.Profile, error) { return ps.BySMTP(ctx, "alice", "") },
	} {
		if p, err := lookup(); !errors.Is(err, broker.ErrNoClient) {
			t.Errorf("%s: %v, %v; want ErrNoClient", name, p, err)
		}
	}
	if p, err := ps.BySMPP(ctx, "alice", schemas.CredentialHash(schemas.CredentialSMPP, "alice", "smpp-pw1")); err != nil || p.ID != "alice" {
		t.Errorf("BySMPP(hash) = %v, %v", p, err)
	}
	if p, err := ps.BySMTP(ctx, "ALICE", schemas.CredentialHash(schemas.CredentialSMTP, "aLiCe", "smtp-password-1")); err != nil || p.ID != "alice" {
		t.Errorf("BySMTP(hash), usernames without case = %v, %v", p, err)
	}
	list, err := ps.List(ctx)
	if err != nil || len(list) != 1 || list[0].Token != "" || list[0].SMPP.Password != "" || list[0].SMTP.Password != "" {
		t.Errorf("List = %+v, %v", list, err)
	}
}

// A profile stored before PROTOCOL.md rev 1.2 holds its token and passwords in
// clear, with the token index keyed by the token's SHA-256: it keeps working
// (hashed on read, never handed out in clear) and the next Put rewrites it
// without the clear values.
func TestProfilesLegacyClearSecrets(t *testing.T) {
	_, rdb := redistest.Run(t)
	ctx := context.Background()
	legacy := `{"v":1,"id":"old","token":"old-token","addresses":{"web":"old"},` +
		`"smpp":{"system_id":"old","password":"old-pw"},"smtp":{"username":"old","password":"old-smtp"}}`
	rdb.Set(ctx, "{uims}:client:old", legacy, 0)
	rdb.SAdd(ctx, "{uims}:clients", "old")
	rdb.Set(ctx, "{uims}:addr:web:old", "old", 0)
	rdb.Set(ctx, "{uims}:token:"+schemas.TokenSHA256("old-token"), "old", 0) // as the code before rev 1.2 wrote it
	rdb.Set(ctx, "{uims}:smpp:old", "old", 0)
	rdb.Set(ctx, "{uims}:smtp:old", "old", 0)
	ps := broker.NewProfiles(rdb, nil)

	p, err := ps.ByToken(ctx, schemas.TokenSHA256("old-token"))
	if err != nil || p.ID != "old" {
		t.Fatalf("ByToken on a legacy profile = %v, %v", p, err)
	}
	if p.Token != "" || p.SMPP.Password != "" || p.SMTP.Password != "" {
		t.Errorf("a legacy profile is handed out with a clear secret: %+v %+v %+v", p, p.SMPP, p.SMTP)
	}
	if _, err := ps.ByToken(ctx, "old-token"); !errors.Is(err, broker.ErrNoClient) {
		t.Errorf("the clear token is accepted: %v", err)
	}
	if _, err := ps.BySMPP(ctx, "old", schemas.CredentialHash(schemas.CredentialSMPP, "old", "old-pw")); err != nil {
		t.Errorf("BySMPP on a legacy profile: %v", err)
	}
	if _, err := ps.BySMTP(ctx, "old", schemas.CredentialHash(schemas.CredentialSMTP, "old", "old-smtp")); err != nil {
		t.Errorf("BySMTP on a legacy profile: %v", err)
	}

	if err := ps.Put(ctx, p); err != nil {
		t.Fatal(err)
	}
	raw := rawStore(t, rdb)
	for _, secret := range []string{"old-token", "old-pw", "old-smtp"} {
		if strings.Contains(raw, secret) {
			t.Errorf("after Put the store still holds %q in clear:\n%s", secret, raw)
		}
	}
	if p, err := ps.ByToken(ctx, schemas.TokenSHA256("old-token")); err != nil || p.ID != "old" {
		t.Errorf("ByToken after the rewrite = %v, %v", p, err)
	}
}

// A profile file may give the hashes instead of the secrets.
func TestProfilesFileWithHashes(t *testing.T) {
	_, rdb := redistest.Run(t)
	ctx := context.Background()
	file := `clients:
  - id: hashed
    token_sha256: ` + schemas.TokenSHA256("h-token") + `
    smpp: {system_id: hashed, password_hash: ` + schemas.CredentialHash(schemas.CredentialSMPP, "hashed", "h-pw") + `}
`
	in, err := broker.ReadProfiles(strings.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	ps := broker.NewProfiles(rdb, nil)
	if err := ps.Put(ctx, in[0]); err != nil {
		t.Fatal(err)
	}
	if p, err := ps.ByToken(ctx, schemas.TokenSHA256("h-token")); err != nil || p.ID != "hashed" {
		t.Errorf("ByToken = %v, %v", p, err)
	}
	if p, err := ps.BySMPP(ctx, "hashed", schemas.CredentialHash(schemas.CredentialSMPP, "hashed", "h-pw")); err != nil || p.ID != "hashed" {
		t.Errorf("BySMPP = %v, %v", p, err)
	}
}

// The fallback settings read from YAML (docs/ROUTING.md, "Settings"), and
// a file with a setting that means nothing is refused with the field.
func TestProfilesFileFallback(t *testing.T) {
	file := `clients:
  - id: bob
    addresses: {email: bob@example.test, sms: "+15550100"}
    prefer: [email, sms]
    fallback:
      on: [permanent, REJECTED]
      after: {sms: 2m, email: 10m}
      last_resort: web
`
	in, err := broker.ReadProfiles(strings.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	f := in[0].Fallback
	if f == nil || len(f.On) != 2 || f.On[1] != "REJECTED" || f.AfterFor("sms") != 2*time.Minute || f.LastResort != "web" {
		t.Fatalf("fallback %+v", f)
	}
	for _, bad := range []string{"on: [sometimes]", "after: {sms: 120}", "last_resort: Web Page", "after: {sms: 1ms}"} {
		_, err := broker.ReadProfiles(strings.NewReader("clients:\n  - id: bob\n    fallback: {" + bad + "}\n"))
		if err == nil || !strings.Contains(err.Error(), "fallback") {
			t.Errorf("%s: err %v", bad, err)
		}
	}
}
