package miap

import (
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"sort"
	"time"
)

// DeriveAuditKey returns the brokers' Ed25519 audit signing key of a K2
// master key (PROTOCOL.md §15.3):
//
//	seed = HKDF-SHA256(secret = K2, salt = "MIAP/1",
//	                   info = "MIAP/1 audit" ‖ u16be len(kid) ‖ kid, L = 32)
//
// Every broker holding K2 derives the same key; its public half lets
// anyone verify the audit trail without holding any secret.
func DeriveAuditKey(k2 []byte, kid string) (ed25519.PrivateKey, error) {
	info := make([]byte, 0, 32+len(kid))
	info = append(info, "MIAP/1 audit"...)
	info = binary.BigEndian.AppendUint16(info, uint16(len(kid)))
	info = append(info, kid...)
	seed, err := hkdf.Key(sha256.New, k2, []byte("MIAP/1"), string(info), ed25519.SeedSize)
	if err != nil {
		return nil, err
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// AuditSigner returns the audit signing key of the K2 key a broker signs
// with at t (§3.4: the valid one with the latest not_before) and its kid.
func (kr *Keyring) AuditSigner(t time.Time) (kid string, key ed25519.PrivateKey, ok bool) {
	k := kr.current(BrokerParty, t)
	if k == nil || k.audit == nil {
		return "", nil, false
	}
	return k.kid, k.audit, true
}

// AuditPublicKeys returns the public audit keys of every K2 key, by kid,
// retired ones included: a record stays verifiable after its key retired.
func (kr *Keyring) AuditPublicKeys() map[string]ed25519.PublicKey {
	out := make(map[string]ed25519.PublicKey)
	for _, k := range kr.byParty[BrokerParty] {
		if k.audit != nil {
			out[k.kid] = k.audit.Public().(ed25519.PublicKey)
		}
	}
	return out
}

// AuditKids returns the kids of AuditPublicKeys, sorted.
func AuditKids(keys map[string]ed25519.PublicKey) []string {
	out := make([]string, 0, len(keys))
	for k := range keys {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
