package broker

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// batcher sends the Redis commands of concurrent requests in shared
// pipelines: a request queues its commands and waits; a few loops each take
// every request waiting at that moment and run them as one pipeline (group
// commit). Under load one round trip and one pair of system calls serve
// many messages; a lone request goes out at once.
type batcher struct {
	rdb redis.UniversalClient
	ch  chan *batchReq
}

type batchReq struct {
	queue func(redis.Pipeliner)
	done  chan struct{}
}

const maxBatch = 128

func newBatcher(rdb redis.UniversalClient, loops int) *batcher {
	b := &batcher{rdb: rdb, ch: make(chan *batchReq, 4*maxBatch)}
	for range loops {
		go b.loop()
	}
	return b
}

// do queues commands with queue and returns once they ran; the caller reads
// each command's own result (an error of one command is not the others').
func (b *batcher) do(ctx context.Context, queue func(redis.Pipeliner)) {
	r := &batchReq{queue: queue, done: make(chan struct{})}
	select {
	case b.ch <- r:
		<-r.done
	case <-ctx.Done():
		// Run alone rather than fail: the loops may be gone at shutdown.
		pipe := b.rdb.Pipeline()
		queue(pipe)
		pipe.Exec(context.Background())
	}
}

func (b *batcher) loop() {
	reqs := make([]*batchReq, 0, maxBatch)
	for first := range b.ch {
		reqs = append(reqs[:0], first)
	gather:
		for len(reqs) < maxBatch {
			select {
			case r, ok := <-b.ch:
				if !ok {
					break gather
				}
				reqs = append(reqs, r)
			default:
				break gather
			}
		}
		pipe := b.rdb.Pipeline()
		for _, r := range reqs {
			r.queue(pipe)
		}
		pipe.Exec(context.Background()) // results are read per command
		for _, r := range reqs {
			close(r.done)
		}
	}
}
