package broker

import (
	"fmt"

	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// checkGrant checks that party, the signer of an IMI, was provisioned to
// speak for senders on from.Medium (PROTOCOL.md §3.5, §6.2). kr is the
// keyring of this request: keys can change while the broker runs. It costs
// a map lookup and a scan of a few media.
func checkGrant(kr *miap.Keyring, party string, from *schemas.Endpoint) (miap.Grant, error) {
	g, ok := kr.Grant(party)
	if !ok {
		return g, schemas.Errorf(schemas.CodeNotAllowed, nil, "party not provisioned for any medium")
	}
	switch g.Role {
	case miap.RoleGateway, "":
	case miap.RoleClient:
		// The operator's command-line sender names any existing client, on
		// medium cli only, with the client id as its address.
		if from.Medium != schemas.MediumCLI {
			return g, schemas.Errorf(schemas.CodeNotAllowed, nil, fmt.Sprintf("client party %q sends on medium cli only, not %q", party, from.Medium))
		}
		if from.Client == "" || from.Address != from.Client {
			return g, schemas.Errorf(schemas.CodeNotAllowed, nil, "on medium cli the sender is a client and its address is the client id")
		}
	default:
		return g, schemas.Errorf(schemas.CodeNotAllowed, nil, fmt.Sprintf("a party of role %q originates no IMI", g.Role))
	}
	if !g.Speaks(from.Medium) {
		return g, schemas.Errorf(schemas.CodeNotAllowed, nil, fmt.Sprintf("party %q is not provisioned for medium %q", party, from.Medium))
	}
	return g, nil
}

// checkOwner checks that the client a gateway names as the sender owns the
// sender address on its medium (PROTOCOL.md §6.2), compared in the
// canonical form of NormalizeAddress (e-mail case-insensitively). A
// profile without a web address has its id as web address, as ReadProfiles
// sets it and as the web gateway names its clients.
func checkOwner(p *schemas.Profile, from *schemas.Endpoint) error {
	a := p.Addresses[from.Medium]
	if a == "" && from.Medium == schemas.MediumWeb {
		a = p.ID
	}
	if a == "" || NormalizeAddress(from.Medium, a) != NormalizeAddress(from.Medium, from.Address) {
		return schemas.Errorf(schemas.CodeNotAllowed, nil, fmt.Sprintf("client %q does not own %s address %q", p.ID, from.Medium, from.Address))
	}
	return nil
}
