package schemas_test

import (
	"testing"

	"github.com/uims/uims/schemas"
)

// TestCredentialHashPinned pins the credential hashes of PROTOCOL.md §6.11:
// gateways and brokers of different builds must agree on them, and stored
// profiles keep them. The values were computed independently with Python's
// hashlib and struct (see the construction in CredentialHash's comment).
func TestCredentialHashPinned(t *testing.T) {
	if got, want := schemas.TokenSHA256("alice-token"), "9c220f200955d76c0a38d308225e0ef10c5f971acaf2f8d1d8f732affa5bd1dc"; got != want {
		t.Errorf("TokenSHA256(alice-token) = %s, want %s", got, want)
	}
	for _, c := range []struct{ kind, id, secret, want string }{
		{schemas.CredentialSMPP, "alice", "alice-pw", "d10b30405b38188b0f8c12b33f7a9f028921b0b5ea8956d6fbfbfdc5d2b14f0b"},
		{schemas.CredentialSMTP, "alice", "alice-smtp", "d975f7bd1cbac5c24b24047297ba9ce77cc6135e31b90d7659b26b3081cdd47d"},
		{schemas.CredentialSMTP, "Alice", "alice-smtp", "d975f7bd1cbac5c24b24047297ba9ce77cc6135e31b90d7659b26b3081cdd47d"}, // usernames without case
		{schemas.CredentialSMPP, "", "", "eb0696695242313d56489f54cfa30a458ac97c52a44f104cff0ea20a384d93ed"},
	} {
		if got := schemas.CredentialHash(c.kind, c.id, c.secret); got != c.want {
			t.Errorf("CredentialHash(%q, %q, %q) = %s, want %s", c.kind, c.id, c.secret, got, c.want)
		}
	}
	// The lengths keep the fields apart; kinds and ids separate clients.
	distinct := map[string]bool{}
	for _, h := range []string{
		schemas.CredentialHash(schemas.CredentialSMPP, "ab", "c"),
		schemas.CredentialHash(schemas.CredentialSMPP, "a", "bc"),
		schemas.CredentialHash(schemas.CredentialSMTP, "ab", "c"),
		schemas.CredentialHash(schemas.CredentialSMPP, "bob", "c"),
	} {
		if distinct[h] {
			t.Errorf("two credentials hash to %s", h)
		}
		distinct[h] = true
	}
}
