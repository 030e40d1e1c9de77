package system

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/uims/uims/miap"
	"github.com/uims/uims/miap/miapnats"
	"github.com/uims/uims/miap/natsauth"
	"github.com/uims/uims/schemas"
)

// Auth is the fabric's trust material under a data folder
// (docs/SECURITY.md): the NATS authority in <data>/auth and the parties'
// credentials in <data>/creds/<party>.creds, all readable by the owner only.
type Auth struct {
	*natsauth.Authority
	CredsDir string
}

// Identity is a party that `uims run` and `uims nats` provision.
type Identity struct {
	Name  string
	Role  natsauth.Role
	Media []string
}

// Builtin are the identities of the built-in parties: the administrator,
// the brokers, the processor, the web, e-mail and SMS gateways, the
// command-line sender and the operator's observer.
var Builtin = []Identity{
	{"admin", natsauth.RoleAdmin, nil},
	{miap.BrokerParty, natsauth.RoleBroker, nil},
	{"proc", natsauth.RoleProcessor, nil},
	{"web", natsauth.RoleGateway, []string{schemas.MediumWeb}},
	{"email", natsauth.RoleGateway, []string{schemas.MediumEmail}},
	{"sms", natsauth.RoleGateway, []string{schemas.MediumSMS}},
	{"fax", natsauth.RoleGateway, []string{schemas.MediumFax}},
	{"voice", natsauth.RoleGateway, []string{schemas.MediumVoice}},
	{"cli", natsauth.RoleClient, []string{schemas.MediumCLI}},
	{"ops", natsauth.RoleObserver, nil},
}

// signs reports whether the party has a MIAP key: gateways, processors and
// the command-line sender sign frames; the administrator and the observer
// do not, and the brokers' key is K2.
func (id Identity) signs() bool {
	switch id.Role {
	case natsauth.RoleGateway, natsauth.RoleProcessor, natsauth.RoleClient:
		return true
	}
	return false
}

// OpenAuth opens (creating on first use) the trust material of dataDir.
func OpenAuth(dataDir string) (*Auth, error) {
	a, err := natsauth.Open(filepath.Join(dataDir, "auth"))
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(dataDir, "creds")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("system: %w", err)
	}
	return &Auth{Authority: a, CredsDir: dir}, nil
}

// CredsFile is where party name's credentials are kept.
func (au *Auth) CredsFile(name string) string { return filepath.Join(au.CredsDir, name+".creds") }

// Creds returns the credentials of a party, issuing (and saving) new ones
// when it has none, was issued with another role or media, or under
// permissions its role no longer has (natsauth.PermsDigest).
func (au *Auth) Creds(id Identity) ([]byte, error) {
	if cur, ok := au.Identity(id.Name); ok && cur.Role == id.Role && slices.Equal(cur.Media, id.Media) &&
		cur.Perms == natsauth.PermsDigest(id.Role, id.Name, id.Media) {
		if b, err := os.ReadFile(au.CredsFile(id.Name)); err == nil {
			return b, nil
		}
	}
	b, err := au.Issue(id.Name, id.Role, id.Media)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(au.CredsFile(id.Name), b, 0o600); err != nil {
		return nil, fmt.Errorf("system: %w", err)
	}
	return b, nil
}

// ConnectAs connects to url as party id (its credentials and inbox prefix).
func (au *Auth) ConnectAs(url string, id Identity, extra ...nats.Option) (*nats.Conn, error) {
	creds, err := au.Creds(id)
	if err != nil {
		return nil, err
	}
	name := id.Name
	if id.Role == natsauth.RoleObserver || id.Role == natsauth.RoleAdmin {
		name = "" // the default inbox prefix, as the nats CLI uses
	}
	opts, err := natsauth.CredsOption(name, creds)
	if err != nil {
		return nil, err
	}
	return nats.Connect(url, append(append(opts, nats.Name("uims-"+id.Name), nats.MaxReconnects(-1)), extra...)...)
}

// PushAccount sends the authority's current account JWT (its revocations)
// to the servers at url through a system account connection.
func (au *Auth) PushAccount(url string, extra ...nats.Option) error {
	creds, err := au.SystemCreds()
	if err != nil {
		return err
	}
	opts, err := natsauth.CredsOption("", creds)
	if err != nil {
		return err
	}
	sys, err := nats.Connect(url, append(append(opts, nats.Name("uims-admin-sys")), extra...)...)
	if err != nil {
		return fmt.Errorf("system: system account connection: %w", err)
	}
	defer sys.Close()
	return natsauth.Push(sys, au.AccountJWT())
}

// RotationLead is how long after a rotation the new key starts signing:
// longer than a gateway's poll of its key registry entry (kit.KeyRefresh),
// so that every verifier has the key before the first frame under it.
const RotationLead = 10 * time.Second

// PublishKeyFile writes the key file to the fabric's key registry through
// an administrator connection, deleting parties the file no longer holds.
func PublishKeyFile(ctx context.Context, admin *nats.Conn, kf *miap.KeyFile) error {
	js, err := jetstream.New(admin)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return miapnats.PublishKeys(ctx, js, kf, true)
}

// Provision opens the trust material of a fabric folder: its NATS
// authority, credentials for every built-in party, and the key file
// (keys.json, created with keys for the built-in parties when absent).
func Provision(dir string, log zerolog.Logger) (*Auth, *miap.KeyFile, error) {
	kf, err := LoadOrCreateKeys(filepath.Join(dir, "keys.json"), Parties, log)
	if err != nil {
		return nil, nil, err
	}
	au, err := OpenAuth(dir)
	if err != nil {
		return nil, nil, err
	}
	for _, id := range Builtin {
		if _, err := au.Creds(id); err != nil {
			return nil, nil, err
		}
	}
	return au, kf, nil
}

// PublishKeysWhenReady publishes kf to the key registry as the
// administrator, in process, retrying until JetStream takes it (a cluster
// member starts before its peers) or ctx is done.
func PublishKeysWhenReady(ctx context.Context, ns *server.Server, au *Auth, kf *miap.KeyFile, log zerolog.Logger) {
	for {
		err := func() error {
			admin, err := au.ConnectAs(ns.ClientURL(), Identity{"admin", natsauth.RoleAdmin, nil}, nats.InProcessServer(ns))
			if err != nil {
				return err
			}
			defer admin.Close()
			return PublishKeyFile(ctx, admin, kf)
		}()
		if err == nil {
			log.Info().Int("keys", len(kf.Keys)).Msg("key registry published")
			return
		}
		log.Debug().Err(err).Msg("key registry not published yet")
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}
