package miap

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// Store remembers nonces and session keys for the brokers (§7.2, §7.3). All
// broker instances share one Store, so a frame replayed to another instance
// is caught. Every error other than ErrReplay, ErrBadSession and
// ErrStateLost means the store could not answer; the Guard then refuses the
// frame (fail closed).
type Store interface {
	// ClaimNonce records nonce for party for ttl. It returns ErrReplay when
	// the nonce was recorded before, and ErrStateLost when the store's epoch
	// is not the one this process knows (the store lost its state, §7.4).
	ClaimNonce(ctx context.Context, party string, nonce [NonceSize]byte, ttl time.Duration) error
	// PutSession records session key key as issued to party, for ttl.
	PutSession(ctx context.Context, party string, key []byte, ttl time.Duration) error
	// TakeSession consumes key atomically: it succeeds once for a key issued
	// to party and returns ErrBadSession otherwise.
	TakeSession(ctx context.Context, party string, key []byte) error
	// Epoch returns the store's epoch marker, creating one if there is none.
	// created is true when this call created it.
	Epoch(ctx context.Context) (epoch string, created bool, err error)
}

// SessionTTL is how long an issued session key may wait for its use (§7.3).
const SessionTTL = 60 * time.Second

// Guard is the broker side of MIAP: an Engine plus the shared Store.
type Guard struct {
	*Engine
	store   Store
	epoch   atomic.Pointer[string]
	onEpoch func(epoch string)
}

// NewGuard returns a Guard over e and store.
// onEpoch, if not nil, is called with every new epoch the Guard adopts after
// the store lost its state, so that the caller can record it durably.
func NewGuard(e *Engine, store Store, onEpoch func(epoch string)) *Guard {
	return &Guard{Engine: e, store: store, onEpoch: onEpoch}
}

// Start reads the store's epoch and compares it with the epoch this
// deployment last knew (kept durably outside the store by the caller;
// empty on the very first start). If they differ, the store lost its state
// and the Guard refuses every frame that the lost state could have seen:
// those stamped up to lastAlive (when the old state was last known good,
// or now if later) plus the skew (§7.4). It returns the current epoch,
// which the caller records.
func (g *Guard) Start(ctx context.Context, known string, lastAlive time.Time) (string, error) {
	epoch, created, err := g.store.Epoch(ctx)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrStore, err)
	}
	if known != "" && (epoch != known || created) {
		g.Quarantine(latest(lastAlive, g.now()))
	}
	g.epoch.Store(&epoch)
	return epoch, nil
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Check verifies f as purpose want (Engine.Verify) and then claims its nonce
// in the shared store (§8). Only authenticated, fresh frames reach the store.
func (g *Guard) Check(ctx context.Context, f *Frame, want Purpose) error {
	if err := g.Verify(f, want); err != nil {
		return err
	}
	return g.Claim(ctx, f)
}

// Claim records f's nonce, mapping store failures to the protocol errors.
func (g *Guard) Claim(ctx context.Context, f *Frame) error {
	if f.Nonce == ([NonceSize]byte{}) {
		return fmt.Errorf("%w: no nonce", ErrMalformed)
	}
	return g.StoreResult(ctx, g.store.ClaimNonce(ctx, f.Party, f.Nonce, g.NonceTTL()))
}

// StoreResult maps an error from a nonce claim, done by the Store or by a
// caller's own script following §7.2, to the protocol error, entering
// quarantine when the store lost its state.
func (g *Guard) StoreResult(ctx context.Context, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrReplay):
		return err
	case errors.Is(err, ErrStateLost):
		g.Quarantine(g.now())
		// Adopt the store's new epoch (or create it), so that claims work
		// again once the quarantine is over.
		if epoch, _, eerr := g.store.Epoch(ctx); eerr == nil {
			g.epoch.Store(&epoch)
			if g.onEpoch != nil {
				g.onEpoch(epoch)
			}
		}
		return fmt.Errorf("%w: %w", ErrQuarantine, err)
	}
	return fmt.Errorf("%w: %w", ErrStore, err)
}

// IssueSession creates a single-use session key for party (strict mode
// TSCS acknowledgement, §6.1).
func (g *Guard) IssueSession(ctx context.Context, party string) ([]byte, error) {
	k, err := g.NewSessionKey()
	if err != nil {
		return nil, err
	}
	if err := g.store.PutSession(ctx, party, k, SessionTTL); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStore, err)
	}
	return k, nil
}

// TakeSession consumes the session key a strict-mode frame is bound to.
func (g *Guard) TakeSession(ctx context.Context, party string, key []byte) error {
	if len(key) != KeySize {
		return fmt.Errorf("%w: session key of %d bytes", ErrBadSession, len(key))
	}
	err := g.store.TakeSession(ctx, party, key)
	if err == nil || errors.Is(err, ErrBadSession) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrStore, err)
}

// Epoch returns the store epoch seen at Start.
func (g *Guard) Epoch() string {
	if e := g.epoch.Load(); e != nil {
		return *e
	}
	return ""
}
