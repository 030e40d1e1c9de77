// Package miapredis implements miap.Store on Redis (go-redis/v9
// UniversalClient: a single server, Sentinel or Cluster), following
// PROTOCOL.md §7: nonces with SET NX and a TTL, session keys consumed with
// GETDEL, and an epoch marker that reveals a store that lost its state.
//
// The store should be a Redis with maxmemory-policy noeviction: eviction
// would silently forget nonces and re-open replays.
package miapredis

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/uims/uims/miap"
)

// Key names (PROTOCOL.md §7.2).
const (
	EpochKey      = "miap:epoch"
	noncePrefix   = "miap:n:"
	sessionPrefix = "miap:s:"
)

// Store is a miap.Store on Redis.
type Store struct {
	rdb   redis.UniversalClient
	epoch atomic.Pointer[string] // the epoch this process knows; nil before Epoch
}

var _ miap.Store = (*Store)(nil)

// New returns a Store on rdb.
func New(rdb redis.UniversalClient) *Store { return &Store{rdb: rdb} }

// NonceKey is the Redis key of a party's nonce.
func NonceKey(party string, nonce [miap.NonceSize]byte) string {
	return noncePrefix + party + ":" + base64.RawURLEncoding.EncodeToString(nonce[:])
}

func sessionKey(party string, key []byte) string {
	sum := sha256.Sum256(key)
	return sessionPrefix + party + ":" + base64.RawURLEncoding.EncodeToString(sum[:])
}

// ClaimNonce implements miap.Store.
func (s *Store) ClaimNonce(ctx context.Context, party string, nonce [miap.NonceSize]byte, ttl time.Duration) error {
	pipe := s.rdb.Pipeline()
	check := s.QueueClaim(ctx, pipe, party, nonce, ttl)
	_, err := pipe.Exec(ctx)
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("miapredis: claim nonce: %w", err)
	}
	return check()
}

// QueueClaim queues a nonce claim on a caller's pipeline, so that a broker
// can claim the nonce in the same round trip as its other work. The
// returned function reports the claim's result after the pipeline ran.
func (s *Store) QueueClaim(ctx context.Context, pipe redis.Pipeliner, party string, nonce [miap.NonceSize]byte, ttl time.Duration) func() error {
	set := pipe.SetNX(ctx, NonceKey(party, nonce), 1, ttl)
	ep := pipe.Get(ctx, EpochKey)
	return func() error {
		if err := ep.Err(); err != nil && !errors.Is(err, redis.Nil) {
			return fmt.Errorf("miapredis: read epoch: %w", err)
		}
		if known := s.epoch.Load(); known != nil && ep.Val() != *known {
			return fmt.Errorf("%w: store has %q, we know %q", miap.ErrStateLost, ep.Val(), *known)
		}
		ok, err := set.Result()
		if err != nil {
			return fmt.Errorf("miapredis: claim nonce: %w", err)
		}
		if !ok {
			return miap.ErrReplay
		}
		return nil
	}
}

// PutSession implements miap.Store.
func (s *Store) PutSession(ctx context.Context, party string, key []byte, ttl time.Duration) error {
	if err := s.rdb.Set(ctx, sessionKey(party, key), 1, ttl).Err(); err != nil {
		return fmt.Errorf("miapredis: put session: %w", err)
	}
	return nil
}

// TakeSession implements miap.Store: GETDEL makes the key single-use even
// when two brokers race for it.
func (s *Store) TakeSession(ctx context.Context, party string, key []byte) error {
	err := s.rdb.GetDel(ctx, sessionKey(party, key)).Err()
	switch {
	case err == nil:
		return nil
	case errors.Is(err, redis.Nil):
		return miap.ErrBadSession
	}
	return fmt.Errorf("miapredis: take session: %w", err)
}

// Epoch implements miap.Store. After it returns, every claim also checks
// that the store still holds this epoch.
func (s *Store) Epoch(ctx context.Context) (string, bool, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", false, err
	}
	fresh := base64.RawURLEncoding.EncodeToString(b[:])
	created, err := s.rdb.SetNX(ctx, EpochKey, fresh, 0).Result()
	if err != nil {
		return "", false, fmt.Errorf("miapredis: epoch: %w", err)
	}
	epoch := fresh
	if !created {
		if epoch, err = s.rdb.Get(ctx, EpochKey).Result(); err != nil {
			return "", false, fmt.Errorf("miapredis: epoch: %w", err)
		}
	}
	s.epoch.Store(&epoch)
	return epoch, created, nil
}
