package miap

import (
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"regexp"
	"sort"
	"sync"
	"time"
)

// BrokerParty is the reserved party name of the broker key K2 in key files (§3.1).
const BrokerParty = "broker"

// KeySize is the size of every master key (§3.1).
const KeySize = 32

// KeyFile is the on-disk key file (§3.3): JSON, mode 0600.
type KeyFile struct {
	// MIAP is the key file format version, 1.
	MIAP int        `json:"miap"`
	Keys []KeyEntry `json:"keys"`
}

// KeyEntry is one master key.
type KeyEntry struct {
	// Party is the gateway or processor id (K1), or "broker" (K2).
	Party string `json:"party"`
	// Kid is the key id, unique per party; it is carried in every frame.
	Kid string `json:"kid"`
	// Secret is 32 random bytes, standard base64.
	Secret string `json:"secret"`
	// NotBefore and NotAfter bound the key's use (§3.4). Zero means unbounded.
	// A signer uses the valid key with the latest NotBefore; verifiers accept
	// every valid key, which gives the rotation overlap.
	NotBefore time.Time `json:"not_before,omitzero"`
	NotAfter  time.Time `json:"not_after,omitzero"`
	// Role is what the party is: "gateway", "processor" or "client" (the
	// command-line sender); empty for the broker key (§3.5).
	Role string `json:"role,omitempty"`
	// Media are the media whose senders the party may name in an IMI's
	// from (§3.5, §6.2). A gateway provisioned for none speaks for no one.
	Media []string `json:"media,omitempty"`
	// XKey is the party's encryption key beside this master key: an
	// X25519 curve seed in nkeys form ("SX…"), with the entry's validity
	// (§14.2). It stays in the party's own key file: the key registry and
	// the brokers never hold it (Public strips it).
	XKey string `json:"xkey,omitempty"`
	// XKeySealed carries XKey through the key registry: the seed sealed
	// (nkeys xkeys) by the party's previous XKey to itself, so that only
	// the party opens it and a rotation needs no restart (§14.2).
	XKeySealed string `json:"xkey_sealed,omitempty"`
}

// Key errors.
var (
	ErrKeyFile = errors.New("miap: bad key file")
	ErrNoKey   = errors.New("miap: no valid key")
)

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// ValidName reports whether s may be a party id or key id (§3.1): lowercase
// letters, digits, '-' and '_', 1 to 64 characters, usable as a NATS subject token.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// subkey is one derived HMAC key with a pool of ready MAC states.
type subkey struct {
	key  []byte
	pool sync.Pool
}

// macState is a reusable HMAC with scratch space for the MAC input head
// and the sum, so that signing and verifying do not allocate.
type macState struct {
	h   hash.Hash
	buf [512]byte
	sum [MACSize]byte
}

func (s *subkey) get() *macState {
	if m, ok := s.pool.Get().(*macState); ok {
		m.h.Reset()
		return m
	}
	return &macState{h: hmac.New(sha256.New, s.key)}
}

func (s *subkey) put(m *macState) { s.pool.Put(m) }

// key is a master key with its subkeys.
type key struct {
	party     string
	kid       string
	notBefore time.Time
	notAfter  time.Time
	sub       [purposeEnd]*subkey
	audit     ed25519.PrivateKey // K2 only: the audit signing key (§15)
	x         *xkey              // nil: no encryption key beside this master key
}

func (k *key) validAt(t time.Time) bool {
	if !k.notBefore.IsZero() && t.Before(k.notBefore) {
		return false
	}
	if !k.notAfter.IsZero() && !t.Before(k.notAfter) {
		return false
	}
	return true
}

// DeriveSubkey returns the subkey of a master key for one purpose (§3.2):
//
//	HKDF-SHA256(secret = master, salt = "MIAP/1",
//	            info = "MIAP/1 subkey" ‖ u8 purpose ‖ u8 direction ‖
//	                   u16be len(party) ‖ party ‖ u16be len(kid) ‖ kid, L = 32)
func DeriveSubkey(master []byte, p Purpose, party, kid string) ([]byte, error) {
	info := make([]byte, 0, 64)
	info = append(info, "MIAP/1 subkey"...)
	info = append(info, byte(p), byte(p.Direction()))
	info = binary.BigEndian.AppendUint16(info, uint16(len(party)))
	info = append(info, party...)
	info = binary.BigEndian.AppendUint16(info, uint16(len(kid)))
	info = append(info, kid...)
	return hkdf.Key(sha256.New, master, []byte("MIAP/1"), string(info), KeySize)
}

// Keyring holds master keys by party and key id. It is safe for concurrent use.
type Keyring struct {
	byParty map[string][]*key // sorted by notBefore, oldest first
	grants  map[string]Grant
}

// Roles of a party (§3.5).
const (
	RoleGateway   = "gateway"   // speaks for senders on its media
	RoleProcessor = "processor" // converts content; originates no IMI
	RoleClient    = "client"    // the operator's command-line sender: any existing client, on medium "cli" only
)

// Grant is what a party was provisioned as (§3.5): its role and the media
// it speaks for.
type Grant struct {
	Role  string
	Media []string
}

// Speaks reports whether the grant covers senders on medium.
func (g Grant) Speaks(medium string) bool {
	for _, m := range g.Media {
		if m == medium {
			return true
		}
	}
	return false
}

// NewKeyring checks the entries and derives every subkey.
func NewKeyring(entries []KeyEntry) (*Keyring, error) {
	kr := &Keyring{byParty: make(map[string][]*key), grants: make(map[string]Grant)}
	seen := make(map[string]bool)
	grantFrom := make(map[string]time.Time)
	for _, e := range entries {
		if !ValidName(e.Party) || !ValidName(e.Kid) {
			return nil, fmt.Errorf("%w: invalid party %q or kid %q", ErrKeyFile, e.Party, e.Kid)
		}
		if seen[e.Party+"\x00"+e.Kid] {
			return nil, fmt.Errorf("%w: duplicate kid %q for %q", ErrKeyFile, e.Kid, e.Party)
		}
		seen[e.Party+"\x00"+e.Kid] = true
		secret, err := base64.StdEncoding.DecodeString(e.Secret)
		if err != nil || len(secret) != KeySize {
			return nil, fmt.Errorf("%w: key %s/%s must be %d bytes of base64", ErrKeyFile, e.Party, e.Kid, KeySize)
		}
		k := &key{party: e.Party, kid: e.Kid, notBefore: e.NotBefore, notAfter: e.NotAfter}
		if e.XKey != "" {
			if k.x, err = parseXKey(e.XKey); err != nil {
				return nil, fmt.Errorf("%w: xkey of %s/%s: %w", ErrKeyFile, e.Party, e.Kid, err)
			}
		}
		for p := PurposeLogin; p < purposeEnd; p++ {
			// K2 derives only the ID subkey; K1 keys everything but ID.
			if (e.Party == BrokerParty) != (p == PurposeID) {
				continue
			}
			party := e.Party
			if p == PurposeID {
				party = ""
			}
			sk, err := DeriveSubkey(secret, p, party, e.Kid)
			if err != nil {
				return nil, fmt.Errorf("%w: %w", ErrKeyFile, err)
			}
			k.sub[p] = &subkey{key: sk}
		}
		if e.Party == BrokerParty {
			if k.audit, err = DeriveAuditKey(secret, e.Kid); err != nil {
				return nil, fmt.Errorf("%w: %w", ErrKeyFile, err)
			}
		}
		kr.byParty[e.Party] = append(kr.byParty[e.Party], k)
		if (e.Role != "" || len(e.Media) > 0) && !e.NotBefore.Before(grantFrom[e.Party]) {
			// the grant of a party's newest entry that carries one
			grantFrom[e.Party] = e.NotBefore
			kr.grants[e.Party] = Grant{Role: e.Role, Media: append([]string(nil), e.Media...)}
		}
	}
	for _, ks := range kr.byParty {
		sort.SliceStable(ks, func(i, j int) bool { return ks[i].notBefore.Before(ks[j].notBefore) })
	}
	return kr, nil
}

// current returns the key a signer uses for party at t: the valid key with
// the latest NotBefore (§3.4).
func (kr *Keyring) current(party string, t time.Time) *key {
	ks := kr.byParty[party]
	for i := len(ks) - 1; i >= 0; i-- {
		if ks[i].validAt(t) {
			return ks[i]
		}
	}
	return nil
}

// lookup returns party's key kid if it is valid at t.
func (kr *Keyring) lookup(party, kid string, t time.Time) *key {
	for _, k := range kr.byParty[party] {
		if k.kid == kid {
			if k.validAt(t) {
				return k
			}
			return nil
		}
	}
	return nil
}

// lookupK2 returns a broker key by kid regardless of NotAfter: an ID minted
// under a K2 key must stay checkable until its transaction ends (§3.4).
func (kr *Keyring) lookupK2(kid string) *key {
	for _, k := range kr.byParty[BrokerParty] {
		if k.kid == kid {
			return k
		}
	}
	return nil
}

// Parties returns the party ids with keys, without the broker.
func (kr *Keyring) Parties() []string {
	var out []string
	for p := range kr.byParty {
		if p != BrokerParty {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

// Grant returns what party was provisioned as; ok is false when the key
// entries of party carry no grant (key files written before §3.5).
func (kr *Keyring) Grant(party string) (g Grant, ok bool) {
	g, ok = kr.grants[party]
	return g, ok
}

// Has reports whether the keyring holds a key for party.
func (kr *Keyring) Has(party string) bool { return len(kr.byParty[party]) > 0 }

// ReadKeyFile reads and parses a key file.
func ReadKeyFile(path string) (*KeyFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("miap: read key file: %w", err)
	}
	var kf KeyFile
	if err := json.Unmarshal(b, &kf); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeyFile, err)
	}
	if kf.MIAP != 1 {
		return nil, fmt.Errorf("%w: format version %d, want 1", ErrKeyFile, kf.MIAP)
	}
	return &kf, nil
}

// WriteKeyFile writes kf to path with mode 0600, atomically.
func WriteKeyFile(path string, kf *KeyFile) error {
	b, err := json.MarshalIndent(kf, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("miap: write key file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("miap: write key file: %w", err)
	}
	return nil
}

// NewKeyEntry returns a fresh key for party with 32 bytes from rand and,
// for any party but the brokers, an encryption key beside it (§14.2).
func NewKeyEntry(rand io.Reader, party, kid string, notBefore time.Time) (KeyEntry, error) {
	secret := make([]byte, KeySize)
	if _, err := io.ReadFull(rand, secret); err != nil {
		return KeyEntry{}, fmt.Errorf("miap: key generation: %w", err)
	}
	e := KeyEntry{Party: party, Kid: kid, Secret: base64.StdEncoding.EncodeToString(secret), NotBefore: notBefore}
	if party != BrokerParty {
		x, err := NewXKey(rand)
		if err != nil {
			return KeyEntry{}, err
		}
		e.XKey = x
	}
	return e, nil
}

// Public returns the key file as the brokers and the key registry hold
// it: without encryption key seeds (§14.2).
func (kf *KeyFile) Public() *KeyFile { return &KeyFile{MIAP: kf.MIAP, Keys: Public(kf.Keys)} }

// AddXKeys gives every entry of a party other than the brokers that has
// no encryption key one (a key file written before §14); it reports
// whether it added any.
func (kf *KeyFile) AddXKeys(rand io.Reader) (bool, error) {
	added := false
	for i := range kf.Keys {
		e := &kf.Keys[i]
		if e.Party == BrokerParty || e.XKey != "" {
			continue
		}
		x, err := NewXKey(rand)
		if err != nil {
			return added, err
		}
		e.XKey, added = x, true
	}
	return added, nil
}

// Keyring parses the file's entries.
func (kf *KeyFile) Keyring() (*Keyring, error) { return NewKeyring(kf.Keys) }

// For returns a key file holding only party's own keys: what a gateway or
// processor process needs. Brokers hold the whole file (§3.3).
func (kf *KeyFile) For(party string) *KeyFile {
	out := &KeyFile{MIAP: kf.MIAP}
	for _, e := range kf.Keys {
		if e.Party == party {
			out.Keys = append(out.Keys, e)
		}
	}
	return out
}

// NewKid returns a key id for a key of party made at t (§3.1): the party
// (cut to 40 characters) and the UTC time to the second, in the characters
// a key id allows, for example "web-20261204t221033".
func NewKid(party string, t time.Time) string {
	if len(party) > 40 {
		party = party[:40]
	}
	return party + "-" + t.UTC().Format("20060102t150405")
}
