package broker

import (
	"context"
	"fmt"
	"sync"
	"time"

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
	// replicas, when above 0, ends every pipeline with WAIT: the writes
	// count only once that many replicas have them (Config.WaitReplicas).
	replicas int
	timeout  time.Duration

	mu      sync.Mutex
	running int
	waiting []*batchReq
}

type batchReq struct {
	queue func(redis.Pipeliner)
	err   error // the replicas did not confirm the pipeline's writes
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
// The error says the replicas did not confirm the writes in time.
func (b *batcher) do(_ context.Context, queue func(redis.Pipeliner)) error {
	r := &batchReq{queue: queue}
	b.mu.Lock()
	if b.running < b.leaders {
		b.running++
		b.mu.Unlock()
		b.run([]*batchReq{r})
		return r.err
	}
	r.done = make(chan struct{})
	b.waiting = append(b.waiting, r)
	b.mu.Unlock()
	<-r.done
	if r.batch != nil {
		b.run(r.batch)
	}
	return r.err
}

// runScript runs script with its source, after Redis answered NOSCRIPT
// (its script cache was flushed or it restarted), and, when replicas are
// asked for, WAIT in the same pipeline: WAIT counts the writes of its own
// connection, and another connection of the pool would not have made
// them. werr says the replicas did not confirm the writes.
func (b *batcher) runScript(ctx context.Context, script *redis.Script, keys []string, args []any) (res any, err, werr error) {
	pipe := b.rdb.Pipeline()
	cmd := script.Eval(ctx, pipe, keys, args...)
	var wait *redis.Cmd
	if b.replicas > 0 {
		wait = pipe.Do(ctx, "WAIT", b.replicas, b.timeout.Milliseconds())
	}
	pipe.Exec(ctx) // results are read per command
	if res, err = cmd.Result(); err != nil || wait == nil {
		return res, err, nil
	}
	n, werr := wait.Int64()
	return res, nil, replicated(n, b.replicas, werr)
}

func replicated(n int64, want int, err error) error {
	if err != nil {
		return fmt.Errorf("broker: replicas: %w", err)
	}
	if n < int64(want) {
		return fmt.Errorf("broker: %d of %d replicas took the writes", n, want)
	}
	return nil
}

// run runs batch as one pipeline, then hands the next batch of waiting
// requests to the first of them, or gives its place up.
func (b *batcher) run(batch []*batchReq) {
	pipe := b.rdb.Pipeline()
	for _, r := range batch {
		r.queue(pipe)
	}
	var wait *redis.Cmd
	if b.replicas > 0 {
		wait = pipe.Do(context.Background(), "WAIT", b.replicas, b.timeout.Milliseconds())
	}
	pipe.Exec(context.Background()) // results are read per command
	if wait != nil {
		n, err := wait.Int64()
		if err := replicated(n, b.replicas, err); err != nil {
			for _, r := range batch {
				r.err = err
			}
		}
	}
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
