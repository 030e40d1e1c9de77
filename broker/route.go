package broker

import (
	"context"
	"errors"
	"slices"

	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// defaultPrefer is the delivery order for clients that state none.
var defaultPrefer = [...]string{schemas.MediumWeb, schemas.MediumEmail, schemas.MediumSMS, schemas.MediumFax, schemas.MediumVoice, schemas.MediumBot}

// decision is a routing decision (patent phase 2).
type decision struct {
	recipient *schemas.Profile // nil for an outside address
	dest      schemas.Hop
	steps     []schemas.Step
}

// resolveRecipient finds the client a message is for: by client id, then by
// address on the medium the address names ("xmpp:bob@chat.example") or
// looks like. It returns nil, medium and the normalised address for an
// outside address.
func (b *Broker) resolveRecipient(ctx context.Context, to string) (*schemas.Profile, string, string, error) {
	if miap.ValidName(to) {
		p, err := b.profiles.ByID(ctx, to)
		if err == nil {
			return p, "", "", nil
		}
		if !errors.Is(err, ErrNoClient) {
			return nil, "", "", err
		}
	}
	medium, addr, ok := SplitAddress(to)
	if !ok {
		medium, addr = GuessMedium(to), to
	}
	p, err := b.profiles.ByAddress(ctx, medium, addr)
	if err == nil {
		return p, "", "", nil
	}
	if !errors.Is(err, ErrNoClient) {
		return nil, "", "", err
	}
	return nil, medium, NormalizeAddress(medium, addr), nil
}

// route picks the destination gateway, address and conversions for a
// message from the recipient's profile and the live gateways (patent phase 2):
// the first medium in the recipient's preference order that has a live
// gateway able to take the content, directly or through a chain of
// processors (plan). A client's media in skip are not tried (a reroute
// skips those tried before, fallback.go).
func (b *Broker) route(ctx context.Context, imi *schemas.IMI, skip map[string]bool) (*decision, error) {
	now := b.cfg.Now().UnixMilli()
	rcpt, medium, addr, err := b.resolveRecipient(ctx, imi.To)
	if err != nil {
		return nil, schemas.Errorf(schemas.CodeStoreUnavailable, err, "profile lookup")
	}
	if rcpt == nil {
		// An outside address: a gateway of its medium that reaches it.
		if medium == schemas.MediumWeb {
			return nil, schemas.Errorf(schemas.CodeUnknownRecipient, nil, "no client "+imi.To)
		}
		for _, gw := range b.reg.gateways(medium, now) {
			if !reaches(gw.Reach, addr) {
				continue
			}
			if steps, ok := b.plan(imi.Content.Type, gw, now); ok {
				return &decision{dest: schemas.Hop{Gateway: gw.Gateway, Medium: medium, Address: addr}, steps: steps}, nil
			}
		}
		if !b.provisioned(medium) {
			// no party may ever serve it: waiting will not help
			return nil, &reasonError{schemas.Errorf(schemas.CodeUnreachable, nil, "no gateway is provisioned for medium "+medium+" ("+addr+")")}
		}
		fits := func(a *schemas.Announce) bool { return a.Medium == medium && reaches(a.Reach, addr) }
		return nil, b.noRoute(imi.Content.Type, fits, now, "no live "+medium+" gateway reaches "+addr)
	}
	tried := 0
	order := mediaOrder(rcpt)
	for _, m := range order {
		a := rcpt.Addresses[m]
		if a == "" || skip[m] {
			continue
		}
		tried++
		for _, gw := range b.reg.gateways(m, now) {
			if steps, ok := b.plan(imi.Content.Type, gw, now); ok {
				return &decision{recipient: rcpt, dest: schemas.Hop{Gateway: gw.Gateway, Medium: m, Address: NormalizeAddress(m, a)}, steps: steps}, nil
			}
		}
	}
	if tried == 0 {
		return nil, schemas.Errorf(schemas.CodeUnknownRecipient, nil, "client "+rcpt.ID+" has no address")
	}
	fits := func(a *schemas.Announce) bool {
		return rcpt.Addresses[a.Medium] != "" && !skip[a.Medium] && slices.Contains(order, a.Medium)
	}
	return nil, b.noRoute(imi.Content.Type, fits, now, "no live gateway for "+rcpt.ID)
}

// plan returns the conversions needed for gw to take content of type ctype
// (PROTOCOL.md §6.12, "Chains"): none if it accepts it, else the cheapest
// chain of live processors' conversions to a type it accepts.
func (b *Broker) plan(ctype string, gw *schemas.Announce, now int64) ([]schemas.Step, bool) {
	if len(gw.Accepts) == 0 || accepts(gw.Accepts, ctype) {
		return nil, true
	}
	return cheapest(ctype, gw.Accepts, b.reg.conversions(now, true))
}

// deliveryOptions are the recipient-side options a routed IMI carries to
// the destination (profile options). A client with SMPP credentials is an
// SMS application: its messages wait for its bind (sms.via smpp) unless its
// profile says otherwise — the SMS gateway cannot see credentials
// (docs/SMS.md, "Known but unreachable").
func deliveryOptions(p *schemas.Profile, medium string) map[string]string {
	if medium != schemas.MediumSMS || p.SMPP == nil || p.Options["sms.via"] != "" {
		return p.Options
	}
	o := make(map[string]string, len(p.Options)+1)
	for k, v := range p.Options {
		o[k] = v
	}
	o["sms.via"] = "smpp"
	return o
}

// provisioned reports whether some party of the keyring is a gateway
// provisioned for medium (PROTOCOL.md §3.5): when none is, an outside
// address on it is UNREACHABLE, not NO_ROUTE (PROTOCOL.md §9). Without a
// keyring it cannot tell, and says yes.
func (b *Broker) provisioned(medium string) bool {
	if b.eng == nil {
		return true
	}
	kr := b.eng.Keys()
	for _, p := range kr.Parties() {
		if g, ok := kr.Grant(p); ok && (g.Role == miap.RoleGateway || g.Role == "") && g.Speaks(medium) {
			return true
		}
	}
	return false
}
