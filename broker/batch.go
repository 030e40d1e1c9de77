package broker

import (
	"context"
	"sync"

	"github.com/redis/go-redis/v9"
)

// batcher sends the Redis commands of concurrent requests in shared
// pipelines (group commit). A request that finds fewer than `leaders`
// pipelines in flight runs its own at once, in its own goroutine: a lone
// request costs no hand-off. Requests that come while the pipelines are in
// flight wait; when a pipeline returns, the first waiter takes every
// request waiting at that moment and runs them as the next pipeline. Under
// load one round trip and one pair of system calls serve many messages.
type batcher struct {
	rdb     redis.UniversalClient
	leaders int

	mu      sync.Mutex
	running int
	waiting []*batchReq
}

type batchReq struct {
	queue func(redis.Pipeliner)
	done  chan struct{}
	// batch, set before done is closed, makes this request's goroutine
	// the runner of the next pipeline.
	batch []*batchReq
}

const maxBatch = 128

func newBatcher(rdb redis.UniversalClient, leaders int) *batcher {
	return &batcher{rdb: rdb, leaders: leaders}
}

// do queues commands with queue and returns once they ran; the caller reads
// each command's own result (an error of one command is not the others').
func (b *batcher) do(_ context.Context, queue func(redis.Pipeliner)) {
	r := &batchReq{queue: queue}
	b.mu.Lock()
	if b.running < b.leaders {
		b.running++
		b.mu.Unlock()
		b.run([]*batchReq{r})
		return
	}
	r.done = make(chan struct{})
	b.waiting = append(b.waiting, r)
	b.mu.Unlock()
	<-r.done
	if r.batch != nil {
		b.run(r.batch)
	}
}

// run runs batch as one pipeline, then hands the next batch of waiting
// requests to the first of them, or gives its place up.
func (b *batcher) run(batch []*batchReq) {
	pipe := b.rdb.Pipeline()
	for _, r := range batch {
		r.queue(pipe)
	}
	pipe.Exec(context.Background()) // results are read per command
	for _, r := range batch[1:] {
		close(r.done)
	}
	b.mu.Lock()
	if len(b.waiting) == 0 {
		b.running--
		b.mu.Unlock()
		return
	}
	n := min(len(b.waiting), maxBatch)
	next := make([]*batchReq, n)
	copy(next, b.waiting)
	b.waiting = append(b.waiting[:0], b.waiting[n:]...)
	b.mu.Unlock()
	next[0].batch = next
	close(next[0].done)
}
