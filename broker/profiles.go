package broker

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	json "github.com/goccy/go-json"
	"github.com/redis/go-redis/v9"
	"go.yaml.in/yaml/v3"

	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
	"github.com/uims/uims/schemas/quiet"
)

// Redis keys of the client profile database. Every broker key carries the
// hash tag {uims}, so that the broker's Lua scripts stay atomic on a Redis
// Cluster (all UIMS keys then live in one slot; see README "Redis").
const (
	keyPrefix     = "{uims}:"
	keyClient     = keyPrefix + "client:" // + id → JSON profile
	keyClients    = keyPrefix + "clients" // set of ids
	keyAddr       = keyPrefix + "addr:"   // + medium:address → id
	keyToken      = keyPrefix + "token:"  // + schemas.TokenSHA256(token) → id
	keySMPP       = keyPrefix + "smpp:"   // + system_id → id
	keySMTP       = keyPrefix + "smtp:"   // + username → id
	profileMaxAge = 30 * time.Second
)

// ErrNoClient is returned when no profile matches (redis.Nil). Any other
// error of a lookup means the store could not be read: a temporary
// failure (schemas.CodeStoreUnavailable), never an unknown client.
var ErrNoClient = errors.New("broker: no such client")

// Profiles is the client profile database on Redis, with a read cache that
// is dropped when any broker publishes a change on schemas.SubjectProfilesChanged.
type Profiles struct {
	rdb   redis.UniversalClient
	now   func() time.Time
	mu    sync.RWMutex
	cache map[string]cached // "id:x", "addr:m:a", "token:h" ...
}

type cached struct {
	p   *schemas.Profile
	at  time.Time
	neg bool // a cached miss
}

// NewProfiles returns the profile database on rdb.
func NewProfiles(rdb redis.UniversalClient, now func() time.Time) *Profiles {
	if now == nil {
		now = time.Now
	}
	return &Profiles{rdb: rdb, now: now, cache: make(map[string]cached)}
}

// Invalidate drops the cache.
func (ps *Profiles) Invalidate() {
	ps.mu.Lock()
	clear(ps.cache)
	ps.mu.Unlock()
}

// NormalizeAddress returns the canonical form of an address on a medium:
// e-mail addresses in lower case; phone numbers as digits with a leading '+'
// (international form, with or without '+' on input); others trimmed.
func NormalizeAddress(medium, addr string) string {
	addr = strings.TrimSpace(addr)
	switch medium {
	case schemas.MediumEmail:
		return strings.ToLower(addr)
	case schemas.MediumXMPP:
		// a bare JID: the resource names one of the user's clients, not the
		// user; localpart and domain compare case-insensitively
		if i := strings.IndexByte(addr, '/'); i >= 0 {
			addr = addr[:i]
		}
		return strings.ToLower(addr)
	case schemas.MediumSMS, schemas.MediumFax, schemas.MediumVoice:
		var b strings.Builder
		b.WriteByte('+')
		s := strings.TrimPrefix(strings.TrimPrefix(addr, "+"), "00")
		for _, r := range s {
			if r >= '0' && r <= '9' {
				b.WriteRune(r)
			} else if r != ' ' && r != '-' && r != '(' && r != ')' && r != '.' {
				return addr // not a phone number
			}
		}
		return b.String()
	}
	return addr
}

// SplitAddress splits a recipient written as "medium:address" (an xmpp
// JID, say, which GuessMedium would take for an e-mail address): medium is
// the scheme when it is a medium name or one of the URI schemes mailto, tel
// and sms; ok is false for anything else (PROTOCOL.md §6.2, to).
func SplitAddress(to string) (medium, addr string, ok bool) {
	scheme, rest, found := strings.Cut(to, ":")
	if !found || rest == "" {
		return "", "", false
	}
	switch scheme {
	case "mailto":
		return schemas.MediumEmail, rest, true
	case "tel":
		return schemas.MediumSMS, rest, true
	case schemas.MediumEmail, schemas.MediumSMS, schemas.MediumFax, schemas.MediumVoice, schemas.MediumBot,
		schemas.MediumXMPP, schemas.MediumWeb:
		return scheme, rest, true
	}
	return "", "", false
}

// GuessMedium says on which medium an address written by a sender lives:
// e-mail for user@domain, SMS for phone numbers, web otherwise.
func GuessMedium(addr string) string {
	switch {
	case strings.Contains(addr, "@"):
		return schemas.MediumEmail
	case isPhone(addr):
		return schemas.MediumSMS
	}
	return schemas.MediumWeb
}

func isPhone(s string) bool {
	s = strings.TrimPrefix(strings.TrimSpace(s), "+")
	digits := 0
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			digits++
		case r == ' ' || r == '-' || r == '(' || r == ')' || r == '.':
		default:
			return false
		}
	}
	return digits >= 3
}

// sealed returns a copy of p that keeps its credentials only as hashes
// (PROTOCOL.md §6.11): a clear token or password, from a profile file or
// from a profile stored before rev 1.2, is hashed and dropped. p itself is
// not changed.
func sealed(p *schemas.Profile) *schemas.Profile {
	c := *p
	if c.Token != "" {
		c.TokenSHA256 = schemas.TokenSHA256(c.Token)
		c.Token = ""
	}
	if p.SMPP != nil {
		s := *p.SMPP
		if s.Password != "" {
			s.PasswordHash = schemas.CredentialHash(schemas.CredentialSMPP, s.SystemID, s.Password)
			s.Password = ""
		}
		c.SMPP = &s
	}
	if p.SMTP != nil {
		s := *p.SMTP
		if s.Password != "" {
			s.PasswordHash = schemas.CredentialHash(schemas.CredentialSMTP, s.Username, s.Password)
			s.Password = ""
		}
		c.SMTP = &s
	}
	return &c
}

// Put stores a profile and its indexes (addresses, token, SMPP and SMTP
// credentials), replacing any earlier version and its stale indexes. The
// store keeps credentials only as hashes: a clear Token or Password in p is
// hashed (schemas.TokenSHA256, schemas.CredentialHash) and not stored; p
// itself is not changed.
func (ps *Profiles) Put(ctx context.Context, p *schemas.Profile) error {
	if err := checkProfile(p); err != nil {
		return err
	}
	p = sealed(p)
	p.V = schemas.Version
	old, err := ps.load(ctx, p.ID)
	if err != nil && !errors.Is(err, ErrNoClient) {
		return err
	}
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	pipe := ps.rdb.TxPipeline()
	if old != nil {
		for _, k := range indexKeys(old) {
			pipe.Del(ctx, k)
		}
	}
	pipe.Set(ctx, keyClient+p.ID, b, 0)
	pipe.SAdd(ctx, keyClients, p.ID)
	for _, k := range indexKeys(p) {
		pipe.Set(ctx, k, p.ID, 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("broker: store profile %s: %w", p.ID, err)
	}
	ps.Invalidate()
	return nil
}

// Delete removes a profile and its indexes.
func (ps *Profiles) Delete(ctx context.Context, id string) error {
	old, err := ps.load(ctx, id)
	if err != nil {
		return err
	}
	pipe := ps.rdb.TxPipeline()
	for _, k := range indexKeys(old) {
		pipe.Del(ctx, k)
	}
	pipe.Del(ctx, keyClient+id)
	pipe.SRem(ctx, keyClients, id)
	_, err = pipe.Exec(ctx)
	ps.Invalidate()
	return err
}

func indexKeys(p *schemas.Profile) []string {
	var keys []string
	for m, a := range p.Addresses {
		if a != "" {
			keys = append(keys, keyAddr+m+":"+NormalizeAddress(m, a))
		}
	}
	if p.TokenSHA256 != "" {
		keys = append(keys, keyToken+p.TokenSHA256)
	}
	if p.SMPP != nil && p.SMPP.SystemID != "" {
		keys = append(keys, keySMPP+p.SMPP.SystemID)
	}
	if p.SMTP != nil && p.SMTP.Username != "" {
		keys = append(keys, keySMTP+strings.ToLower(p.SMTP.Username))
	}
	return keys
}

// List returns every profile, sorted by id.
func (ps *Profiles) List(ctx context.Context) ([]*schemas.Profile, error) {
	ids, err := ps.rdb.SMembers(ctx, keyClients).Result()
	if err != nil {
		return nil, fmt.Errorf("broker: list profiles: %w", err)
	}
	sort.Strings(ids)
	out := make([]*schemas.Profile, 0, len(ids))
	for _, id := range ids {
		p, err := ps.load(ctx, id)
		if errors.Is(err, ErrNoClient) || errors.Is(err, errBadProfile) {
			continue // removed since SMembers, or unreadable
		}
		if err != nil {
			return nil, err // could not look: not an empty list
		}
		out = append(out, p)
	}
	return out, nil
}

func (ps *Profiles) load(ctx context.Context, id string) (*schemas.Profile, error) {
	b, err := ps.rdb.Get(ctx, keyClient+id).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNoClient
	}
	if err != nil {
		return nil, fmt.Errorf("broker: read profile %s: %w", id, err)
	}
	var p schemas.Profile
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("%w %s: %w", errBadProfile, id, err)
	}
	// A profile stored before PROTOCOL.md rev 1.2 may hold a clear token or
	// password: hash it on read (its token index, keyed by the same SHA-256,
	// stays valid), so that nothing past the store sees it. The next Put of
	// the profile rewrites it without.
	return sealed(&p), nil
}

// cachedLookup resolves key through the cache, then through fetch.
func (ps *Profiles) cachedLookup(ctx context.Context, key string, fetch func() (*schemas.Profile, error)) (*schemas.Profile, error) {
	now := ps.now()
	ps.mu.RLock()
	c, ok := ps.cache[key]
	ps.mu.RUnlock()
	if ok && now.Sub(c.at) < profileMaxAge {
		if c.neg {
			return nil, ErrNoClient
		}
		return c.p, nil
	}
	p, err := fetch()
	if err != nil && !errors.Is(err, ErrNoClient) {
		return nil, err
	}
	ps.mu.Lock()
	if len(ps.cache) > 100_000 {
		clear(ps.cache)
	}
	ps.cache[key] = cached{p: p, at: now, neg: p == nil}
	ps.mu.Unlock()
	if p == nil {
		return nil, ErrNoClient
	}
	return p, nil
}

// errBadProfile is a stored profile that does not decode.
var errBadProfile = errors.New("broker: bad stored profile")

// ByID returns the profile of client id.
func (ps *Profiles) ByID(ctx context.Context, id string) (*schemas.Profile, error) {
	if !miap.ValidName(id) {
		return nil, ErrNoClient
	}
	return ps.cachedLookup(ctx, "id:"+id, func() (*schemas.Profile, error) { return ps.load(ctx, id) })
}

func (ps *Profiles) byIndex(ctx context.Context, key string) (*schemas.Profile, error) {
	return ps.cachedLookup(ctx, key, func() (*schemas.Profile, error) {
		id, err := ps.rdb.Get(ctx, key).Result()
		if errors.Is(err, redis.Nil) {
			return nil, ErrNoClient
		}
		if err != nil {
			return nil, fmt.Errorf("broker: profile index: %w", err)
		}
		return ps.load(ctx, id)
	})
}

// ByAddress returns the client with address addr on medium.
func (ps *Profiles) ByAddress(ctx context.Context, medium, addr string) (*schemas.Profile, error) {
	return ps.byIndex(ctx, keyAddr+medium+":"+NormalizeAddress(medium, addr))
}

// equalHash compares two credential hashes in constant time; an empty
// stored hash (no such credential) matches nothing.
func equalHash(stored, given string) bool {
	return stored != "" && subtle.ConstantTimeCompare([]byte(stored), []byte(given)) == 1
}

// ByToken returns the client whose bearer token hashes to tokenSHA256
// (schemas.TokenSHA256; PROTOCOL.md §6.11).
func (ps *Profiles) ByToken(ctx context.Context, tokenSHA256 string) (*schemas.Profile, error) {
	if len(tokenSHA256) != sha256.Size*2 {
		return nil, ErrNoClient
	}
	p, err := ps.byIndex(ctx, keyToken+tokenSHA256)
	if err != nil {
		return nil, err
	}
	if !equalHash(p.TokenSHA256, tokenSHA256) {
		return nil, ErrNoClient
	}
	return p, nil
}

// BySMPP returns the client that binds with systemID and the password whose
// schemas.CredentialHash is passwordHash.
func (ps *Profiles) BySMPP(ctx context.Context, systemID, passwordHash string) (*schemas.Profile, error) {
	p, err := ps.byIndex(ctx, keySMPP+systemID)
	if err != nil {
		return nil, err
	}
	if p.SMPP == nil || !equalHash(p.SMPP.PasswordHash, passwordHash) {
		return nil, ErrNoClient
	}
	return p, nil
}

// BySMTP returns the client that authenticates with username and the
// password whose schemas.CredentialHash is passwordHash.
func (ps *Profiles) BySMTP(ctx context.Context, username, passwordHash string) (*schemas.Profile, error) {
	p, err := ps.byIndex(ctx, keySMTP+strings.ToLower(username))
	if err != nil {
		return nil, err
	}
	if p.SMTP == nil || !equalHash(p.SMTP.PasswordHash, passwordHash) {
		return nil, ErrNoClient
	}
	return p, nil
}

// checkProfile refuses what no medium could use.
func checkProfile(p *schemas.Profile) error {
	if !miap.ValidName(p.ID) {
		return fmt.Errorf("broker: invalid client id %q (lowercase letters, digits, '-', '_')", p.ID)
	}
	// SMPP 3.4 §4.1.1: system_id at most 15 octets, password at most 8.
	if p.SMPP != nil && (len(p.SMPP.SystemID) > 15 || len(p.SMPP.Password) > 8) {
		return fmt.Errorf("broker: client %s: SMPP system_id is at most 15 and password at most 8 characters (SMPP 3.4 §4.1.1)", p.ID)
	}
	if err := p.Fallback.Validate(); err != nil {
		return fmt.Errorf("broker: client %s: %w", p.ID, err)
	}
	if p.TimeZone != "" {
		if _, err := time.LoadLocation(p.TimeZone); err != nil {
			return fmt.Errorf("broker: client %s: time_zone %q: %w", p.ID, p.TimeZone, err)
		}
	}
	for m, s := range p.QuietHours {
		if m != "*" && !miap.ValidName(m) {
			return fmt.Errorf("broker: client %s: quiet_hours for %q, not a medium", p.ID, m)
		}
		if _, err := quiet.Parse(s); err != nil {
			return fmt.Errorf("broker: client %s: quiet_hours.%s: %w", p.ID, m, err)
		}
	}
	switch p.Quiet {
	case "", schemas.QuietHold, schemas.QuietNext:
	default:
		return fmt.Errorf("broker: client %s: quiet %q: want %s or %s", p.ID, p.Quiet, schemas.QuietHold, schemas.QuietNext)
	}
	for _, u := range p.UrgentFrom {
		if !miap.ValidName(u) {
			return fmt.Errorf("broker: client %s: urgent_from %q is not a client id", p.ID, u)
		}
	}
	if err := schemas.ValidateGroups(p.Groups); err != nil {
		return fmt.Errorf("broker: client %s: %w", p.ID, err)
	}
	return nil
}

// ProfileFile is the YAML profile file (UIMS_PROFILES).
type ProfileFile struct {
	Clients []*schemas.Profile `yaml:"clients"`
}

// ReadProfiles parses a YAML profile file.
func ReadProfiles(r io.Reader) ([]*schemas.Profile, error) {
	var pf ProfileFile
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	if err := dec.Decode(&pf); err != nil {
		return nil, fmt.Errorf("broker: profiles: %w", err)
	}
	seen := map[string]bool{}
	for _, p := range pf.Clients {
		if err := checkProfile(p); err != nil {
			return nil, err
		}
		if seen[p.ID] {
			return nil, fmt.Errorf("broker: profiles: duplicate client id %q", p.ID)
		}
		seen[p.ID] = true
		if p.Addresses == nil {
			p.Addresses = map[string]string{}
		}
		if p.Addresses[schemas.MediumWeb] == "" {
			p.Addresses[schemas.MediumWeb] = p.ID
		}
	}
	return pf.Clients, nil
}

// Info returns the public part of a profile. Its named groups are the
// client's own: only the answer to a credential query, which the client's
// own gateway asks for it, carries them (OwnerInfo).
func Info(p *schemas.Profile) *schemas.ClientInfo {
	return &schemas.ClientInfo{V: schemas.Version, ID: p.ID, Name: p.Name, Addresses: p.Addresses, Prefer: p.Prefer, Receipts: p.ReceiptsOrDefault()}
}

// OwnerInfo is Info for the client's own gateway (a credential query,
// PROTOCOL.md §6.11): with its named groups, which the gateway expands
// (§6.3, "Group messages").
func OwnerInfo(p *schemas.Profile) *schemas.ClientInfo {
	ci := Info(p)
	ci.Groups = p.Groups
	return ci
}
