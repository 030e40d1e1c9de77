package broker

import (
	"context"
	"encoding/hex"
	"time"

	"github.com/uims/uims/miap"
)

// Content by reference (PROTOCOL.md §10): a sender puts content of
// miap.MinContentRef bytes or more in the object store under
// miap.ContentName(ID, length). The brokers never read it, but they mint
// the ID and sign each hop's length, so they know the names: ticket notes
// them, and an attempt's outcome deletes its objects. What is never
// acknowledged expires with the bucket's TTL.

// keyRefs + hex(ID) → set of object names of one attempt's hops.
const keyRefs = keyPrefix + "refs:"

// keyRefsLive exists while some attempt's objects may still exist: set by
// every note, expiring with it. Brokers look at it every refsPoll, and
// queue no deletion when it is absent, so that a fabric that carries no
// content by reference pays no Redis command per message for it. (A
// broker that has not looked since another one's first note, up to
// refsPoll, leaves that attempt's objects to the bucket's 24 h TTL.)
const (
	keyRefsLive = keyPrefix + "refs-live"
	refsPoll    = time.Second
)

// followRefs keeps b.refsLive from keyRefsLive until ctx is done.
func (b *Broker) followRefs(ctx context.Context) {
	t := time.NewTicker(refsPoll)
	defer t.Stop()
	for {
		n, err := b.rdb.Exists(ctx, keyRefsLive).Result()
		if err == nil {
			b.refsLive.Store(n > 0)
		} else {
			b.refsLive.Store(true) // cannot tell: look for objects
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// noteContent remembers the object name of a hop of n bytes, when it may
// travel by reference; expiry is the route's deadline (Unix ms).
func (b *Broker) noteContent(id []byte, n, expiry int64) {
	if n < miap.MinContentRef || b.content == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	key := keyRefs + hex.EncodeToString(id)
	pipe := b.rdb.Pipeline()
	pipe.SAdd(ctx, key, miap.ContentName(id, n))
	pipe.PExpireAt(ctx, key, time.UnixMilli(expiry).Add(24*time.Hour))
	pipe.Set(ctx, keyRefsLive, 1, time.Until(time.UnixMilli(expiry).Add(24*time.Hour)))
	b.refsLive.Store(true)
	if _, err := pipe.Exec(ctx); err != nil {
		b.log.Debug().Err(err).Msg("content by reference: name not noted (the object expires)")
	}
}

// contentDone queues the deletion of the objects of the attempt whose ID
// is id, once it has its outcome; the queue is drained in batches
// (dropContents), so that an acknowledgement waits for none of it.
func (b *Broker) contentDone(id []byte) {
	if b.content == nil || len(id) == 0 || !b.refsLive.Load() {
		return
	}
	select {
	case b.dropQ <- hex.EncodeToString(id):
	default: // full: the objects expire
	}
}

// dropContents deletes, in batches, the objects of attempts that ended,
// until ctx is done.
func (b *Broker) dropContents(ctx context.Context) {
	for {
		var ids []string
		select {
		case <-ctx.Done():
			return
		case id := <-b.dropQ:
			ids = append(ids, id)
		}
	more:
		for len(ids) < 256 {
			select {
			case id := <-b.dropQ:
				ids = append(ids, id)
			default:
				break more
			}
		}
		b.dropBatch(ctx, ids)
	}
}

func (b *Broker) dropBatch(ctx context.Context, ids []string) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	pipe := b.rdb.Pipeline()
	cmds := make([]func() ([]string, error), len(ids))
	for i, id := range ids {
		cmds[i] = pipe.SMembers(rctx, keyRefs+id).Result
	}
	pipe.Exec(rctx)
	for i, id := range ids {
		names, err := cmds[i]()
		if err != nil || len(names) == 0 {
			continue
		}
		ok := true
		for _, n := range names {
			if err := b.content.Delete(rctx, n); err != nil {
				b.log.Warn().Err(err).Str("object", n).Msg("content by reference not deleted (it expires)")
				ok = false
			}
		}
		if ok {
			b.rdb.Del(rctx, keyRefs+id)
		}
		b.metrics.contentDeleted.Add(float64(len(names)))
	}
}
