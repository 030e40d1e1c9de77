package schemas

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strings"
)

// Credential kinds of a ClientQuery (PROTOCOL.md §6.11).
const (
	CredentialToken = "token" // bearer token of the HTTP API and the web page
	CredentialSMPP  = "smpp"  // SMPP bind: system_id and password
	CredentialSMTP  = "smtp"  // SMTP AUTH PLAIN: username and password
)

// credentialDomain separates credential hashes from every other SHA-256 in
// UIMS; the "/1" is the version of the construction.
const credentialDomain = "uims-credential/1"

// TokenSHA256 returns the hex SHA-256 of a bearer token: what the web
// gateway sends on uims.broker.client (kind "token") and what profiles keep
// (Profile.TokenSHA256). Tokens are meant to be long random strings, so a
// plain digest is enough; it is also the key of the brokers' token index,
// which therefore did not change when profiles stopped keeping the clear
// token (PROTOCOL.md §6.11).
func TokenSHA256(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// CredentialHash returns the hash of a password that a gateway sends to the
// brokers instead of the password, and that profiles keep instead of it
// (PROTOCOL.md §6.11):
//
//	hex(SHA-256("uims-credential/1" ‖ u32be(len kind) ‖ kind ‖ u32be(len id) ‖ id ‖ secret))
//
// kind is CredentialSMPP or CredentialSMTP; id is the SMPP system_id or the
// SMTP username (in lower case: SMTP usernames are compared without case,
// so CredentialHash lowers it for CredentialSMTP). The lengths make the
// encoding unambiguous; the domain and the id make the same password of two
// clients, or of SMPP and SMTP, hash differently, so one precomputed table
// does not serve every client.
//
// Why not a salted slow hash (bcrypt, scrypt, Argon2), which would protect
// low-entropy passwords at rest better: the gateway must send something the
// broker can compare without the clear password crossing NATS, and without
// the broker's per-profile salt and cost the gateway cannot compute a slow
// salted hash. The value is therefore a password equivalent for the client
// query (anyone who reads it from the store and holds a gateway's MIAP key
// can resolve the client), but not for SMTP AUTH or an SMPP bind, which
// still take the clear password from the client.
func CredentialHash(kind, id, secret string) string {
	if kind == CredentialSMTP {
		id = strings.ToLower(id)
	}
	h := sha256.New()
	h.Write([]byte(credentialDomain))
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(kind)))
	h.Write(n[:])
	h.Write([]byte(kind))
	binary.BigEndian.PutUint32(n[:], uint32(len(id)))
	h.Write(n[:])
	h.Write([]byte(id))
	h.Write([]byte(secret))
	return hex.EncodeToString(h.Sum(nil))
}
