package miapnats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/uims/uims/schemas"
)

// Replicas is the replication a shared stream gets: one copy per server up
// to three, so that a 3-node cluster keeps every stream through the loss of
// a node and a single server needs none (docs/SCALE.md, Streams' replicas).
func Replicas(js jetstream.JetStream) int {
	n := len(js.Conn().Servers())
	if js.Conn().ConnectedClusterName() == "" {
		n = 1
	}
	return max(1, min(3, n))
}

// EnsureStream creates a stream the parties share if it does not exist yet,
// and leaves an existing one alone: several parties start at once, and
// concurrent stream updates race with consumer creation in the server.
// Replicas 0 means Replicas(js).
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) error {
	if cfg.Replicas == 0 {
		cfg.Replicas = Replicas(js)
	}
	if _, err := js.Stream(ctx, cfg.Name); err == nil {
		return nil
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return err
	}
	_, err := js.CreateStream(ctx, cfg)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return nil
	}
	return err
}

// EnsureKeyValue does the same for a key-value bucket.
func EnsureKeyValue(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) error {
	if cfg.Replicas == 0 {
		cfg.Replicas = Replicas(js)
	}
	if _, err := js.KeyValue(ctx, cfg.Bucket); err == nil {
		return nil
	} else if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return err
	}
	_, err := js.CreateKeyValue(ctx, cfg)
	if errors.Is(err, jetstream.ErrBucketExists) {
		return nil
	}
	return err
}

// KeyValue ensures a bucket (EnsureKeyValue) and returns it.
func KeyValue(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	if err := EnsureKeyValue(ctx, js, cfg); err != nil {
		return nil, err
	}
	return js.KeyValue(ctx, cfg.Bucket)
}

// EnsureStatusStream creates the stream of status notifications for
// originating gateways (PROTOCOL.md §6.9): the brokers publish into it, the
// gateways consume from it, and either side may start first.
func EnsureStatusStream(ctx context.Context, js jetstream.JetStream) error {
	return EnsureStream(ctx, js, jetstream.StreamConfig{
		Name:        schemas.StatusStream,
		Description: "status notifications for originating gateways (PROTOCOL.md §6.9)",
		Subjects:    []string{schemas.StatusSubjects},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      7 * 24 * time.Hour,
		Duplicates:  10 * time.Minute,
	})
}

// Await runs step until it succeeds or ctx is done, waiting 250 ms, then
// twice as long after each failure up to 5 s: a component whose
// dependencies (NATS, JetStream, the store) are not up yet waits for them
// instead of exiting. Each failure is told to retrying, if not nil.
func Await(ctx context.Context, step func(context.Context) error, retrying func(err error, next time.Duration)) error {
	wait := 250 * time.Millisecond
	for {
		err := step(ctx)
		if err == nil || ctx.Err() != nil {
			return err
		}
		if retrying != nil {
			retrying(err, wait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// GetJSON reads the JSON value of key into v; found is false, with no
// error, when the key is absent.
func GetJSON(ctx context.Context, kv jetstream.KeyValue, key string, v any) (found bool, err error) {
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("miapnats: get %s: %w", key, err)
	}
	if err := json.Unmarshal(e.Value(), v); err != nil {
		return false, fmt.Errorf("miapnats: decode %s: %w", key, err)
	}
	return true, nil
}

// PutJSON writes v as JSON under key.
func PutJSON(ctx context.Context, kv jetstream.KeyValue, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("miapnats: encode %s: %w", key, err)
	}
	if _, err := kv.Put(ctx, key, b); err != nil {
		return fmt.Errorf("miapnats: put %s: %w", key, err)
	}
	return nil
}
