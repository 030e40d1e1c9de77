package broker

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/uims/uims/audit"
	"github.com/uims/uims/schemas"
)

// The audit trail's anchors (PROTOCOL.md §15.5). After JetStream stored a
// batch, the publisher hands the broker its boot's anchor, and the broker
// records it in Redis, the store it has anyway and a trust domain apart
// from NATS: someone who deletes the stream's last batches, or the whole
// stream, with NATS rights alone leaves anchors that name batches the
// stream no longer holds, and `uims audit verify --redis` reports them.
// Nothing of this is on a request's path: the write happens on the
// publisher's goroutine, once per batch (at most every 20 ms per broker).

// Keys of the anchors; keyPrefix's hash tag keeps them in the slot of the
// other UIMS keys, which the anchor script needs under Redis Cluster.
const (
	keyAuditAnchors  = keyPrefix + "audit:anchors"  // hash: audit.Anchor.Field → audit.Anchor.Value
	keyAuditAnchored = keyPrefix + "audit:anchored" // sorted set: the same fields by the Unix ms of their anchor, to expire them
)

// anchorTimeout bounds one anchor write: a store that does not answer
// delays the next batch by at most this. After a failed write the
// anchorer pauses for anchorPause, so that a store away does not slow the
// audit trail to a batch per timeout: each anchor supersedes the one
// before, so the first written after the pause makes up for those skipped.
const (
	anchorTimeout = 2 * time.Second
	anchorPause   = 5 * time.Second
)

// anchorScript records one boot's anchor (KEYS[1] the anchors, KEYS[2]
// their index by time) unless the stored one is of the same or a later
// batch: ARGV[1] the field, ARGV[2] the batch seq, ARGV[3] the value,
// ARGV[4] its Unix ms, ARGV[5] the Unix ms before which anchors are past
// the stream's retention and go, ARGV[6] the keys' TTL in ms (refreshed by
// every write: the keys go when no broker wrote for a whole retention).
// A value that does not start with a seq (edited by hand) is replaced.
var anchorScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local seq = tonumber(string.match(cur, '^(%d+)|'))
  if seq and seq >= tonumber(ARGV[2]) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[5], 'LIMIT', 0, 100)
if #old > 0 then
  redis.call('HDEL', KEYS[1], unpack(old))
  redis.call('ZREM', KEYS[2], unpack(old))
end
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return 1
`)

// putAnchor records an anchor unless a later one of its boot is stored,
// and drops the anchors older than retention before it; it reports
// whether it wrote.
func putAnchor(ctx context.Context, rdb redis.Scripter, a audit.Anchor, retention time.Duration) (bool, error) {
	n, err := anchorScript.Run(ctx, rdb, []string{keyAuditAnchors, keyAuditAnchored}, a.Field(),
		strconv.FormatUint(a.Seq, 10), a.Value(), a.At, a.At-retention.Milliseconds(), retention.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("broker: audit anchor %s: %w", a.Field(), err)
	}
	return n == 1, nil
}

// AuditAnchors reads the brokers' audit anchors from their store, by
// audit.Anchor.Field, for audit.Verifier.Anchors: read them before the
// stream. A Redis failure is an error and no anchors; anchors that do not
// parse are left out and reported in an error wrapping audit.ErrFormat,
// beside the others.
func AuditAnchors(ctx context.Context, rdb redis.UniversalClient) (map[string]audit.Anchor, error) {
	fields, err := rdb.HGetAll(ctx, keyAuditAnchors).Result()
	if err != nil {
		return nil, fmt.Errorf("broker: audit anchors: %w", err)
	}
	return audit.ParseAnchors(fields)
}

// anchorer returns the publisher's OnStored hook: it records each anchor
// with the stream's retention, pauses after a failure (anchorPause), and
// logs when recording starts failing and when it works again, not at
// every batch while the store is away.
func (b *Broker) anchorer() func(audit.Anchor) {
	// touched by the publisher's goroutine alone
	failing := false
	var pauseUntil time.Time
	return func(a audit.Anchor) {
		if time.Now().Before(pauseUntil) {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), anchorTimeout)
		defer cancel()
		_, err := putAnchor(ctx, b.rdb, a, schemas.AuditMaxAge)
		switch {
		case err != nil && !failing:
			b.log.Warn().Err(err).Msg("audit anchors not recorded: a deleted tail of the audit stream goes unseen until they are")
		case err == nil && failing:
			b.log.Info().Uint64("batch", a.Seq).Msg("audit anchors recorded again")
		}
		failing = err != nil
		if failing {
			pauseUntil = time.Now().Add(anchorPause)
		}
	}
}
