package broker

import (
	"context"
	"time"

	"github.com/uims/uims/miap"
	"github.com/uims/uims/miap/miapnats"
)

// keyRetry is how often a broker looks for a key registry that does not
// exist yet.
const keyRetry = 2 * time.Second

// followKeys keeps the engine's keys in step with the fabric's key registry
// (PROTOCOL.md §3.3): parties added, rotated and removed take effect within
// a second, without a restart. A registry without a broker key (K2) is not
// a complete registry and changes nothing.
func (b *Broker) followKeys(ctx context.Context) {
	err := miapnats.WatchKeys(ctx, b.js, keyRetry, func(kf *miap.KeyFile) {
		kr, err := kf.Keyring()
		if err != nil {
			b.log.Error().Err(err).Msg("key registry refused; keeping the current keys")
			return
		}
		if !kr.Has(miap.BrokerParty) {
			b.log.Warn().Msg("key registry holds no broker key; keeping the current keys")
			return
		}
		before := b.eng.Keys().Parties()
		b.eng.SetKeys(kr)
		b.reg.forget(kr.Has)
		after := kr.Parties()
		b.log.Info().Strs("parties", after).Strs("before", before).Msg("keys from the key registry")
	})
	if err != nil {
		b.log.Error().Err(err).Msg("key registry watch stopped")
	}
}
