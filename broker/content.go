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
	if _, err := pipe.Exec(ctx); err != nil {
		b.log.Debug().Err(err).Msg("content by reference: name not noted (the object expires)")
	}
}

// contentDone queues the deletion of the objects of the attempt whose ID
// is id, once it has its outcome; the queue is drained in batches
// (dropContents), so that an acknowledgement waits for none of it.
func (b *Broker) contentDone(id []byte) {
	if b.content == nil || len(id) == 0 {
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
