package miap

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nkeys"
	"golang.org/x/crypto/nacl/box"

	"github.com/uims/uims/schemas"
)

// Sealed content (PROTOCOL.md §14): content sealed from hop to hop, so
// that NATS, the brokers, the object store and anyone who captures
// traffic see ciphertext only; the two endpoints and the processors on
// the route see the content.
//
// The sealer seals the content once, under a content encryption key
// (CEK) of its own: the IMI (or a processor's report) describes the
// sealed bytes, which the ticket then binds. Once it knows the next hop,
// it wraps the CEK to that hop's encryption key (X25519, nkeys xkeys)
// in the header Miap-Seal-Key.
const (
	// SealScheme is the IMI's content.sealed for content sealed as §14
	// says.
	SealScheme = schemas.SealScheme
	// HdrSealKey carries the wrapped CEK (base64url), HdrSealFrom the
	// sealer's encryption key (its public xkey, "X…") that the wrap opens
	// with.
	HdrSealKey  = "Miap-Seal-Key"
	HdrSealFrom = "Miap-Seal-From"
	// SealVersion is the first byte of sealed content.
	SealVersion byte = 1
	// SealOverhead is what sealing adds to the content: the version byte
	// and the AES-GCM tag.
	SealOverhead = schemas.SealOverhead
	// sealAAD is the additional data of the content's AES-256-GCM.
	sealAAD = "uims-seal/1"
	// wrapSize is the wrapped plaintext: CEK ‖ ID ‖ SHA-256(sealed).
	wrapSize = 3 * 32
	// maxWrap bounds a decoded Miap-Seal-Key: xkv1, nonce, box of wrapSize.
	maxWrap = 4 + 24 + wrapSize + 16
)

// SealMode says when a sealer seals (§14.6): SealAuto (the default, "")
// when it has an encryption key and every hop of the route announces one,
// SealOff never, SealRequired always: it sends nothing unsealed.
type SealMode string

// Seal modes.
const (
	SealAuto     SealMode = "auto"
	SealOff      SealMode = "off"
	SealRequired SealMode = "required"
)

// ParseSealMode reads a mode; "" is SealAuto.
func ParseSealMode(s string) (SealMode, error) {
	switch m := SealMode(s); m {
	case "", SealAuto:
		return SealAuto, nil
	case SealOff, SealRequired:
		return m, nil
	}
	return "", fmt.Errorf("miap: seal mode %q: auto, off or required", s)
}

// ErrBadSeal is sealed content that does not open (BAD_SEAL, §9).
var ErrBadSeal = errors.New("miap: sealed content does not open")

// xkey is a party's encryption key pair with the secret its CEKs derive
// from.
type xkey struct {
	seed   string
	kp     nkeys.KeyPair
	pub    string
	secret []byte   // S = HMAC-SHA256(raw seed, "uims seal secret")
	priv   [32]byte // the raw curve private key
	// shared caches box.Precompute's key per peer public key: the
	// X25519 multiplication was most of a small message's sealing cost.
	shared  sync.Map // peer public key → *[32]byte
	nshared atomic.Int32
}

// maxShared bounds the cache of shared keys per key pair.
const maxShared = 4096

// xkeyVersion is the version prefix of an nkeys xkey box ("xkv1"): the
// wraps below are byte for byte those of nkeys' KeyPair.Seal and Open.
const xkeyVersion = nkeys.XKeyVersionV1

// sharedKey returns the precomputed box key of x and the peer's public
// curve key.
func (x *xkey) sharedKey(peer string) (*[32]byte, error) {
	if v, ok := x.shared.Load(peer); ok {
		return v.(*[32]byte), nil
	}
	raw, err := nkeys.Decode(nkeys.PrefixByteCurve, []byte(peer))
	if err != nil || len(raw) != 32 {
		return nil, fmt.Errorf("%w: %q is no encryption key", ErrMalformed, peer)
	}
	k := new([32]byte)
	box.Precompute(k, (*[32]byte)(raw), &x.priv)
	if x.nshared.Load() < maxShared {
		if v, loaded := x.shared.LoadOrStore(peer, k); loaded {
			return v.(*[32]byte), nil
		}
		x.nshared.Add(1)
	}
	return k, nil
}

// boxSeal is nkeys' KeyPair.SealWithRand with the shared key cached.
func (x *xkey) boxSeal(in []byte, to string, rnd io.Reader) ([]byte, error) {
	k, err := x.sharedKey(to)
	if err != nil {
		return nil, err
	}
	var nonce [24]byte
	if _, err := io.ReadFull(rnd, nonce[:]); err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(xkeyVersion)+len(nonce)+len(in)+box.Overhead)
	out = append(append(out, xkeyVersion...), nonce[:]...)
	return box.SealAfterPrecomputation(out, in, &nonce, k), nil
}

// boxOpen is nkeys' KeyPair.Open with the shared key cached.
func (x *xkey) boxOpen(in []byte, from string) ([]byte, error) {
	if len(in) <= len(xkeyVersion)+24 || string(in[:len(xkeyVersion)]) != xkeyVersion {
		return nil, nkeys.ErrInvalidEncrypted
	}
	k, err := x.sharedKey(from)
	if err != nil {
		return nil, err
	}
	var nonce [24]byte
	copy(nonce[:], in[len(xkeyVersion):])
	out, ok := box.OpenAfterPrecomputation(nil, in[len(xkeyVersion)+24:], &nonce, k)
	if !ok {
		return nil, nkeys.ErrCouldNotDecrypt
	}
	return out, nil
}

func parseXKey(seed string) (*xkey, error) {
	kp, err := nkeys.FromCurveSeed([]byte(seed))
	if err != nil {
		return nil, err
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, err
	}
	_, raw, err := nkeys.DecodeSeed([]byte(seed))
	if err != nil {
		return nil, err
	}
	x := &xkey{seed: seed, kp: kp, pub: pub, secret: hmacSum(raw, []byte("uims seal secret"))}
	if len(raw) != len(x.priv) {
		return nil, fmt.Errorf("miap: curve seed of %d bytes", len(raw))
	}
	copy(x.priv[:], raw)
	return x, nil
}

func hmacSum(key []byte, parts ...[]byte) []byte {
	m := hmac.New(sha256.New, key)
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil)
}

// NewXKey returns a fresh encryption key: an X25519 curve seed in nkeys
// form, for KeyEntry.XKey.
func NewXKey(rand io.Reader) (string, error) {
	kp, err := nkeys.CreateCurveKeysWithRand(rand)
	if err != nil {
		return "", fmt.Errorf("miap: xkey generation: %w", err)
	}
	seed, err := kp.Seed()
	if err != nil {
		return "", err
	}
	return string(seed), nil
}

// XKeyPublic returns the public key ("X…") of a curve seed.
func XKeyPublic(seed string) (string, error) {
	x, err := parseXKey(seed)
	if err != nil {
		return "", err
	}
	return x.pub, nil
}

// ValidXKeyPublic reports whether s is a public encryption key ("X…").
func ValidXKeyPublic(s string) bool { return nkeys.IsValidPublicCurveKey(s) }

// DeriveCEK is the content encryption key a sealer derives (§14.3):
// HMAC-SHA256(S, "uims seal cek" ‖ msg_id ‖ SHA-256(plaintext)), S being
// HMAC-SHA256(the raw 32-byte curve seed, "uims seal secret"). The same
// message sealed again, a retry, is the same ciphertext, so the brokers
// see the same IMI.
func DeriveCEK(secret []byte, msgID string, plain []byte) []byte {
	sum := sha256.Sum256(plain)
	return hmacSum(secret, []byte("uims seal cek"), []byte(msgID), sum[:])
}

func sealAEAD(cek []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(cek)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// SealBody seals content under cek (§14.3): the version byte 0x01, then
// AES-256-GCM with a nonce of 12 zero bytes (a CEK seals one plaintext)
// and additional data "uims-seal/1", the tag after the ciphertext.
func SealBody(cek, plain []byte) ([]byte, error) {
	a, err := sealAEAD(cek)
	if err != nil {
		return nil, fmt.Errorf("miap: seal: %w", err)
	}
	out := make([]byte, 1, 1+len(plain)+a.Overhead())
	out[0] = SealVersion
	return a.Seal(out, make([]byte, a.NonceSize()), plain, []byte(sealAAD)), nil
}

// OpenBody opens content sealed by SealBody; anything else is ErrBadSeal.
func OpenBody(cek, sealed []byte) ([]byte, error) {
	if len(sealed) < SealOverhead || sealed[0] != SealVersion {
		return nil, fmt.Errorf("%w: not sealed content of version %d", ErrBadSeal, SealVersion)
	}
	a, err := sealAEAD(cek)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSeal, err)
	}
	out, err := a.Open(nil, make([]byte, a.NonceSize()), sealed[1:], []byte(sealAAD))
	if err != nil {
		return nil, fmt.Errorf("%w: the ciphertext does not open under the wrapped key", ErrBadSeal)
	}
	return out, nil
}

// Sealed is content sealed by a party: the bytes that travel (and that the
// IMI or the conversion report describe), their CEK, the key whose secret
// derived the CEK, and the key that wraps it (the sealer's current key: the
// same one, but for content sealed again with an earlier key, §14.3).
type Sealed struct {
	Content []byte
	SHA256  [32]byte
	cek     []byte
	derived *xkey
	by      *xkey
}

// From is the sealer's public encryption key, the wrap's Miap-Seal-From.
func (s *Sealed) From() string { return s.by.pub }

// sealWith seals plain with x for message msgID.
func sealWith(x *xkey, msgID string, plain []byte) (*Sealed, error) {
	cek := DeriveCEK(x.secret, msgID, plain)
	b, err := SealBody(cek, plain)
	if err != nil {
		return nil, err
	}
	return &Sealed{Content: b, SHA256: sha256.Sum256(b), cek: cek, derived: x, by: x}, nil
}

// sealAgain seals plain as x sealed it before (the same bytes, a message
// sealed before a rotation of party's key) but wraps with party's current
// key when it has one: an earlier seed, which may have been retired because
// it leaked, then only derives the CEK again and never opens a new wrap
// (§14.3, §14.4).
func (e *Engine) sealAgain(party string, x *xkey, msgID string, plain []byte) (*Sealed, error) {
	s, err := sealWith(x, msgID, plain)
	if err != nil {
		return nil, err
	}
	if cur := e.Keys().sealKey(party, e.now()); cur != nil {
		s.by = cur
	}
	return s, nil
}

// CanSeal reports whether party has an encryption key valid now.
func (e *Engine) CanSeal(party string) bool { return e.Keys().sealKey(party, e.now()) != nil }

// SealPublic returns party's current public encryption key, what it
// announces (§6.12); "" when it has none.
func (e *Engine) SealPublic(party string) string {
	if x := e.Keys().sealKey(party, e.now()); x != nil {
		return x.pub
	}
	return ""
}

// Seal seals content of message msgID with party's current encryption key
// (§14.3).
func (e *Engine) Seal(party, msgID string, plain []byte) (*Sealed, error) {
	x := e.Keys().sealKey(party, e.now())
	if x == nil {
		return nil, fmt.Errorf("%w: no encryption key for %q", ErrNoKey, party)
	}
	return sealWith(x, msgID, plain)
}

// Reseal seals content again as it was sealed before, to the SHA-256
// want: with the key, among all of party's, that gives those bytes (a
// message kept across a rotation, §6.15); the wrap is made with party's
// current key (sealAgain).
func (e *Engine) Reseal(party, msgID string, plain, want []byte) (*Sealed, error) {
	for _, x := range e.Keys().xkeys(party, time.Time{}) {
		s, err := e.sealAgain(party, x, msgID, plain)
		if err != nil {
			return nil, err
		}
		if bytes.Equal(s.SHA256[:], want) {
			return s, nil
		}
	}
	return nil, fmt.Errorf("%w: no encryption key of %q seals the kept content to its digest", ErrNoKey, party)
}

// SealEarlier seals content of message msgID again with party's encryption
// key next older than the one that derived prev's CEK, skipping keys of the
// same seed; nil when party holds no older key (or no longer holds prev's).
// An originator whose sealed IMI is DUPLICATE tries them in turn, newest
// first: the first try of a client's retry may have been sealed before its
// key rotated, and only that key seals the same bytes again (§14.3,
// "Retries across a rotation"). The wrap is made with party's current key
// (sealAgain).
func (e *Engine) SealEarlier(party, msgID string, plain []byte, prev *Sealed) (*Sealed, error) {
	keys := e.Keys().xkeys(party, time.Time{}) // newest first, retired ones too
	tried := map[string]bool{}
	found := false
	for _, x := range keys {
		switch {
		case !found:
			tried[x.pub] = true
			found = x.pub == prev.derived.pub
		case !tried[x.pub]:
			return e.sealAgain(party, x, msgID, plain)
		}
	}
	return nil, nil
}

// Wrap puts into h the CEK of s wrapped to the next hop's public
// encryption key to, bound to the transfer's ID (§14.4): Miap-Seal-Key
// and Miap-Seal-From.
func (e *Engine) Wrap(h map[string][]string, s *Sealed, to string, id []byte) error {
	if !ValidXKeyPublic(to) {
		return fmt.Errorf("%w: %q is no encryption key", ErrMalformed, to)
	}
	in := make([]byte, 0, wrapSize)
	in = append(append(append(in, s.cek...), id...), s.SHA256[:]...)
	w, err := s.by.boxSeal(in, to, e.rand)
	if err != nil {
		return fmt.Errorf("miap: wrap: %w", err)
	}
	h[HdrSealKey] = []string{EncodeB64(w)}
	h[HdrSealFrom] = []string{s.by.pub}
	return nil
}

// Unseal opens the content of a transfer to party whose ticket and digest
// verified (§14.5): with a Miap-Seal-Key, the wrap opens with one of
// party's encryption keys valid now, binds the ticket's ID and content
// digest, and its CEK opens the content, which t then holds in clear.
// Without one, the content is taken as it is unless want says the
// content comes sealed (the routed IMI's content.sealed and a key of
// party in its seal keys). Failures are BAD_SEAL, a header that does not
// parse MALFORMED.
func (e *Engine) Unseal(party string, h map[string][]string, t *Transfer, want bool) error {
	w := get(h, HdrSealKey)
	if w == "" {
		if want {
			return fmt.Errorf("%w: sealed content without %s", ErrBadSeal, HdrSealKey)
		}
		return nil
	}
	from := get(h, HdrSealFrom)
	if !ValidXKeyPublic(from) {
		return fmt.Errorf("%w: %s %q", ErrMalformed, HdrSealFrom, from)
	}
	raw, err := DecodeB64(w)
	if err != nil || len(raw) > maxWrap {
		return fmt.Errorf("%w: %s", ErrMalformed, HdrSealKey)
	}
	keys := e.Keys().xkeys(party, e.now())
	if len(keys) == 0 {
		return fmt.Errorf("%w: %q holds no encryption key", ErrBadSeal, party)
	}
	var in []byte
	for _, x := range keys {
		if in, err = x.boxOpen(raw, from); err == nil {
			break
		}
	}
	if err != nil || len(in) != wrapSize {
		return fmt.Errorf("%w: the wrap opens with no key of %q", ErrBadSeal, party)
	}
	if !hmac.Equal(in[32:64], t.Ticket.ID) || !hmac.Equal(in[64:], t.Ticket.CSHA) {
		return fmt.Errorf("%w: the wrap binds another transfer", ErrBadSeal)
	}
	plain, err := OpenBody(in[:32], t.Content)
	if err != nil {
		return err
	}
	t.Content, t.Sealed = plain, true
	return nil
}

// sealKey returns the encryption key a sealer of party uses at t: of its
// entries valid at t that carry one, the one with the latest NotBefore.
func (kr *Keyring) sealKey(party string, t time.Time) *xkey {
	ks := kr.byParty[party]
	for i := len(ks) - 1; i >= 0; i-- {
		if ks[i].x != nil && ks[i].validAt(t) {
			return ks[i].x
		}
	}
	return nil
}

// xkeys returns party's encryption keys valid at t, newest first; a zero
// t: all of them.
func (kr *Keyring) xkeys(party string, t time.Time) []*xkey {
	ks := kr.byParty[party]
	var out []*xkey
	for i := len(ks) - 1; i >= 0; i-- {
		if ks[i].x != nil && (t.IsZero() || ks[i].validAt(t)) {
			out = append(out, ks[i].x)
		}
	}
	return out
}

// Public returns the entries as the key registry and the brokers may hold
// them (§14.2): without the encryption keys' seeds. An entry's seed
// travels instead sealed by the party's previous encryption key to itself
// (XKeySealed), which only the party can open: a rotation reaches it
// without a restart, and the brokers never see a seed.
func Public(es []KeyEntry) []KeyEntry {
	out := make([]KeyEntry, len(es))
	copy(out, es)
	idx := make([]int, len(out))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return out[idx[a]].NotBefore.Before(out[idx[b]].NotBefore) })
	prev := map[string]*xkey{}
	for _, i := range idx {
		e := &out[i]
		e.Media = append([]string(nil), e.Media...)
		if e.XKey == "" {
			continue
		}
		x, err := parseXKey(e.XKey)
		e.XKey = ""
		if err != nil {
			continue
		}
		if p := prev[e.Party]; p != nil {
			if b, err := p.kp.Seal([]byte(x.seed), p.pub); err == nil {
				e.XKeySealed = EncodeB64(b)
			}
		}
		prev[e.Party] = x
	}
	return out
}

// WithSeeds returns registry entries of party (Public) with the seeds of
// its encryption keys filled in from what kr holds: a known key id keeps
// its seed, and a new entry's XKeySealed opens with one of party's keys.
// An entry whose seed cannot be had stays without one.
func (kr *Keyring) WithSeeds(party string, es []KeyEntry) []KeyEntry {
	out := make([]KeyEntry, len(es))
	copy(out, es)
	byKid := map[string]*xkey{}
	for _, k := range kr.byParty[party] {
		if k.x != nil {
			byKid[k.kid] = k.x
		}
	}
	known := kr.xkeys(party, time.Time{})
	// oldest first, so that a chain of rotations opens link by link
	idx := make([]int, len(out))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return out[idx[a]].NotBefore.Before(out[idx[b]].NotBefore) })
	for _, i := range idx {
		e := &out[i]
		if e.XKey != "" {
			continue
		}
		if x := byKid[e.Kid]; x != nil {
			e.XKey = x.seed
		} else if e.XKeySealed != "" {
			raw, err := DecodeB64(e.XKeySealed)
			for _, x := range known {
				if err != nil {
					break
				}
				if seed, err := x.kp.Open(raw, x.pub); err == nil {
					if nx, err := parseXKey(string(seed)); err == nil {
						e.XKey = nx.seed
						known = append([]*xkey{nx}, known...)
					}
					break
				}
			}
		}
		e.XKeySealed = ""
	}
	return out
}
