package broker

import (
	"context"
	"sort"
	"strings"
	"time"

	"github.com/uims/uims/schemas"
)

// xkey returns the encryption key of party's latest live announcement
// (PROTOCOL.md §6.12, §14), "" if it announced none.
func (r *registry) xkey(party string, now int64) string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var best *schemas.Announce
	for _, a := range r.instances[party] {
		if r.live(a, now) && (best == nil || a.At > best.At) {
			best = a
		}
	}
	if best == nil {
		return ""
	}
	return best.XKey
}

// sealKeys fills the routed IMI's seal keys for sealed content (§14.1):
// every hop of the route with the encryption key it announces. It returns
// the hops that announce none, sorted; content that is not sealed gets no
// keys.
func (b *Broker) sealKeys(routed *schemas.RoutedIMI, now int64) (missing []string) {
	routed.Seal = nil
	if routed.IMI.Content.Sealed == "" {
		return nil
	}
	hops := []string{routed.Dest.Gateway}
	for _, s := range routed.Conversions {
		hops = append(hops, s.Processor)
	}
	routed.Seal = map[string]string{}
	for _, p := range hops {
		if k := b.reg.xkey(p, now); k != "" {
			routed.Seal[p] = k
		} else if !contains(missing, p) {
			missing = append(missing, p)
		}
	}
	sort.Strings(missing)
	return missing
}

// decideSealable is decide for content that may be sealed (§14.1): a
// medium whose route has a hop announcing no encryption key is passed over,
// like one without a live gateway, since the originator cannot seal to it
// and the IMI binds the sealed bytes. passed names the media passed over;
// skip gets them too.
func (b *Broker) decideSealable(ctx context.Context, imi *schemas.IMI, sender string, skip map[string]bool, now time.Time) (dec *decision, h *hold, passed []string, err error) {
	for {
		dec, h, err = b.decide(ctx, imi, sender, skip, now)
		if err != nil || imi.Content.Sealed == "" || skip[dec.dest.Medium] {
			return dec, h, passed, err
		}
		probe := schemas.RoutedIMI{IMI: *imi, Dest: dec.dest, Conversions: dec.steps}
		if len(b.sealKeys(&probe, now.UnixMilli())) == 0 {
			return dec, h, passed, nil
		}
		passed = append(passed, dec.dest.Medium)
		skip[dec.dest.Medium] = true
	}
}

// sealRefusal is the answer to sealed content whose route has hops
// without an encryption key (§14.1): the originator sends it unsealed, or
// not at all.
func sealRefusal(missing []string) error {
	return schemas.Errorf(schemas.CodeSealUnavailable, nil, "no encryption key announced by "+strings.Join(missing, ", "))
}
