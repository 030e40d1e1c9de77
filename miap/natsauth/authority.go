// Package natsauth gives every MIAP party its own NATS identity with least
// privilege (docs/SECURITY.md): NATS decentralised authentication, with an
// operator, a system account and one account "UIMS" whose key signs a user
// JWT per party, carrying that party's permissions (Permissions). The
// server holds only public keys and JWTs; a party connects with a standard
// .creds file. Adding a party needs no server change; removing one revokes
// its user in the account JWT, which is pushed to the servers through the
// system account ($SYS.REQ.CLAIMS.UPDATE) and closes its connections.
package natsauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Identity is one issued NATS user.
type Identity struct {
	Name   string    `json:"name"`
	Role   Role      `json:"role"`
	Media  []string  `json:"media,omitempty"`
	User   string    `json:"user"` // the user's public nkey
	Issued time.Time `json:"issued"`
	// Perms is PermsDigest of the permissions the user was issued with:
	// credentials issued before the permissions of their role changed
	// differ from it, and a supervisor issues them again (system.Auth.Creds).
	Perms string `json:"perms,omitempty"`
}

// Authority holds the operator, system account and UIMS account keys in a
// folder (mode 0700, seeds 0600) and the identities it issued. It is what
// the administrator has; servers need only ServerOptions' output.
type Authority struct {
	dir      string
	mu       sync.Mutex
	operator nkeys.KeyPair
	system   nkeys.KeyPair
	account  nkeys.KeyPair
	opJWT    string
	sysJWT   string
	accJWT   string
	ids      map[string]Identity
}

// Errors.
var (
	ErrUnknownParty = errors.New("natsauth: no such party")
	ErrBadName      = errors.New("natsauth: bad party name")
)

// AccountName is the name of the account every party is in.
const AccountName = "UIMS"

const (
	operatorFile = "operator.nk"
	systemFile   = "system.nk"
	accountFile  = "account.nk"
	accountJWT   = "account.jwt"
	partiesFile  = "parties.json"
)

// Open loads the authority in dir, creating its keys on first use.
func Open(dir string) (*Authority, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("natsauth: %w", err)
	}
	a := &Authority{dir: dir, ids: map[string]Identity{}}
	var err error
	if a.operator, err = a.seed(operatorFile, nkeys.CreateOperator); err != nil {
		return nil, err
	}
	if a.system, err = a.seed(systemFile, nkeys.CreateAccount); err != nil {
		return nil, err
	}
	if a.account, err = a.seed(accountFile, nkeys.CreateAccount); err != nil {
		return nil, err
	}
	sysPub, _ := a.system.PublicKey()
	opPub, _ := a.operator.PublicKey()
	oc := jwt.NewOperatorClaims(opPub)
	oc.Name = "uims"
	oc.SystemAccount = sysPub
	if a.opJWT, err = oc.Encode(a.operator); err != nil {
		return nil, fmt.Errorf("natsauth: operator: %w", err)
	}
	sc := jwt.NewAccountClaims(sysPub)
	sc.Name = "SYS"
	if a.sysJWT, err = sc.Encode(a.operator); err != nil {
		return nil, fmt.Errorf("natsauth: system account: %w", err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, accountJWT)); err == nil {
		a.accJWT = strings.TrimSpace(string(b))
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("natsauth: %w", err)
	}
	if a.accJWT == "" {
		accPub, _ := a.account.PublicKey()
		ac := jwt.NewAccountClaims(accPub)
		ac.Name = AccountName
		ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
		if err := a.saveAccount(ac); err != nil {
			return nil, err
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, partiesFile)); err == nil {
		if err := json.Unmarshal(b, &a.ids); err != nil {
			return nil, fmt.Errorf("natsauth: %s: %w", partiesFile, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("natsauth: %w", err)
	}
	return a, nil
}

// seed reads a seed file, creating it when absent.
func (a *Authority) seed(name string, create func() (nkeys.KeyPair, error)) (nkeys.KeyPair, error) {
	path := filepath.Join(a.dir, name)
	if b, err := os.ReadFile(path); err == nil {
		kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(b))))
		if err != nil {
			return nil, fmt.Errorf("natsauth: %s: %w", name, err)
		}
		return kp, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("natsauth: %w", err)
	}
	kp, err := create()
	if err != nil {
		return nil, fmt.Errorf("natsauth: %w", err)
	}
	seed, _ := kp.Seed()
	if err := writeFile(path, seed); err != nil {
		return nil, err
	}
	return kp, nil
}

func writeFile(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("natsauth: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("natsauth: %w", err)
	}
	return nil
}

func (a *Authority) saveAccount(ac *jwt.AccountClaims) error {
	t, err := ac.Encode(a.operator)
	if err != nil {
		return fmt.Errorf("natsauth: account: %w", err)
	}
	if err := writeFile(filepath.Join(a.dir, accountJWT), []byte(t+"\n")); err != nil {
		return err
	}
	a.accJWT = t
	return nil
}

func (a *Authority) saveIdentities() error {
	b, err := json.MarshalIndent(a.ids, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(filepath.Join(a.dir, partiesFile), append(b, '\n'))
}

// AccountJWT returns the UIMS account's current JWT (with its revocations).
func (a *Authority) AccountJWT() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.accJWT
}

// ServerOptions makes opts trust this operator: the system account, and a
// nats-based account resolver storing account JWTs in resolverDir, loaded
// with the current ones. A CONNECT carries the user's JWT, whose
// permissions can exceed the default 4 KB control line: it is raised to 64 KB.
func (a *Authority) ServerOptions(opts *server.Options, resolverDir string) error {
	oc, err := jwt.DecodeOperatorClaims(a.opJWT)
	if err != nil {
		return fmt.Errorf("natsauth: %w", err)
	}
	res, err := server.NewDirAccResolver(resolverDir, 0, time.Minute, server.NoDelete)
	if err != nil {
		return fmt.Errorf("natsauth: resolver: %w", err)
	}
	sysPub, _ := a.system.PublicKey()
	accPub, _ := a.account.PublicKey()
	if err := res.Store(sysPub, a.sysJWT); err != nil {
		return fmt.Errorf("natsauth: resolver: %w", err)
	}
	if err := res.Store(accPub, a.AccountJWT()); err != nil {
		return fmt.Errorf("natsauth: resolver: %w", err)
	}
	opts.TrustedOperators = []*jwt.OperatorClaims{oc}
	opts.SystemAccount = sysPub
	opts.AccountResolver = res
	opts.MaxControlLine = 64 << 10
	return nil
}

// Issue makes a new NATS user for party name with role and media, records
// it, and returns its .creds file. A party issued again gets a new user;
// the previous one is revoked.
func (a *Authority) Issue(name string, role Role, media []string) ([]byte, error) {
	if !validName(name) || !role.Valid() {
		return nil, fmt.Errorf("%w: %q (role %q)", ErrBadName, name, role)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	creds, uc, err := newUser(a.account, name, func(uc *jwt.UserClaims) {
		uc.Tags.Add("role:" + string(role))
		uc.Permissions = Permissions(role, name, media)
	})
	if err != nil {
		return nil, err
	}
	if old, ok := a.ids[name]; ok {
		if err := a.revokeLocked(old.User); err != nil {
			return nil, err
		}
	}
	a.ids[name] = Identity{Name: name, Role: role, Media: media, User: uc.Subject, Issued: time.Unix(uc.IssuedAt, 0).UTC(),
		Perms: PermsDigest(role, name, media)}
	if err := a.saveIdentities(); err != nil {
		return nil, err
	}
	return creds, nil
}

// Revoke revokes party name's user and forgets the party. The caller
// pushes AccountJWT to the servers (Push).
func (a *Authority) Revoke(name string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	id, ok := a.ids[name]
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownParty, name)
	}
	if err := a.revokeLocked(id.User); err != nil {
		return err
	}
	delete(a.ids, name)
	return a.saveIdentities()
}

func (a *Authority) revokeLocked(user string) error {
	ac, err := jwt.DecodeAccountClaims(a.accJWT)
	if err != nil {
		return fmt.Errorf("natsauth: account: %w", err)
	}
	// one second past now: a user JWT issued within this second is covered
	ac.RevokeAt(user, time.Now().Add(time.Second))
	return a.saveAccount(ac)
}

// Identities returns the issued identities, by name.
func (a *Authority) Identities() []Identity {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Identity, 0, len(a.ids))
	for _, id := range a.ids {
		out = append(out, id)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Identity returns one issued identity.
func (a *Authority) Identity(name string) (Identity, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	id, ok := a.ids[name]
	return id, ok
}

// SystemCreds returns a .creds file for a user of the system account, which
// may push account updates. It is issued anew each call and never stored.
func (a *Authority) SystemCreds() ([]byte, error) {
	creds, _, err := newUser(a.system, "uims-admin-sys", func(uc *jwt.UserClaims) {
		uc.Expires = time.Now().Add(10 * time.Minute).Unix()
	})
	return creds, err
}

// newUser makes a user key, a JWT for it signed by account (set up by
// claims) and its .creds file.
func newUser(account nkeys.KeyPair, name string, claims func(*jwt.UserClaims)) ([]byte, *jwt.UserClaims, error) {
	ukp, err := nkeys.CreateUser()
	if err != nil {
		return nil, nil, fmt.Errorf("natsauth: %w", err)
	}
	upub, _ := ukp.PublicKey()
	useed, _ := ukp.Seed()
	uc := jwt.NewUserClaims(upub)
	uc.Name = name
	claims(uc)
	t, err := uc.Encode(account)
	if err != nil {
		return nil, nil, fmt.Errorf("natsauth: user %s: %w", name, err)
	}
	creds, err := jwt.FormatUserConfig(t, useed)
	if err != nil {
		return nil, nil, fmt.Errorf("natsauth: user %s: %w", name, err)
	}
	return creds, uc, nil
}

// Push sends the account JWT to the servers through a system account
// connection ($SYS.REQ.CLAIMS.UPDATE); every server of the cluster applies
// it, closing the connections of revoked users.
func Push(sys *nats.Conn, accountJWT string) error {
	m, err := sys.Request("$SYS.REQ.CLAIMS.UPDATE", []byte(accountJWT), 5*time.Second)
	if err != nil {
		return fmt.Errorf("natsauth: push account: %w", err)
	}
	var r struct {
		Error *struct {
			Code        int    `json:"code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return fmt.Errorf("natsauth: push account: %w", err)
	}
	if r.Error != nil {
		return fmt.Errorf("natsauth: push account: %d %s", r.Error.Code, r.Error.Description)
	}
	return nil
}

// Options returns the options a party connects with: its credentials and
// its inbox prefix.
func Options(name, credsFile string) []nats.Option {
	return []nats.Option{nats.UserCredentials(credsFile), nats.CustomInboxPrefix(InboxPrefix(name))}
}

// CredsOption returns the options for in-memory credentials (the parties
// of `uims run`, which never touch the disk for them).
func CredsOption(name string, creds []byte) ([]nats.Option, error) {
	t, err := jwt.ParseDecoratedJWT(creds)
	if err != nil {
		return nil, fmt.Errorf("natsauth: creds of %s: %w", name, err)
	}
	kp, err := jwt.ParseDecoratedNKey(creds)
	if err != nil {
		return nil, fmt.Errorf("natsauth: creds of %s: %w", name, err)
	}
	seed, _ := kp.Seed()
	opts := []nats.Option{nats.UserJWTAndSeed(t, string(seed))}
	if name != "" {
		opts = append(opts, nats.CustomInboxPrefix(InboxPrefix(name)))
	}
	return opts, nil
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '-' || c == '_') && i > 0:
		default:
			return false
		}
	}
	return true
}

// Dir returns the authority's folder.
func (a *Authority) Dir() string { return a.dir }
