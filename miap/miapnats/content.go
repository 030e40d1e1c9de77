package miapnats

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// ContentBucket is the JetStream object store bucket of content carried by
// reference (PROTOCOL.md §10).
const ContentBucket = "uims_content"

// ContentStore keeps content sent by reference (§10): content of
// Threshold bytes or more, or too large for one NATS message. Objects are
// sealed with a key of the transfer (miap.SealContent), named after the
// transfer's ID (miap.ContentName), deleted by the brokers when the
// attempt ends and expire after a day otherwise; the receiver checks
// length and SHA-256 against its ticket, so the store need not be trusted.
type ContentStore struct {
	js jetstream.JetStream
	mu sync.Mutex
	os jetstream.ObjectStore // bound on first use
	// Threshold is the size from which content goes by reference; 0 is
	// miap.DefaultContentRef, and below miap.MinContentRef it is raised to
	// that (the brokers delete no smaller object).
	Threshold int
}

// NewContentStore returns the store on js.
func NewContentStore(js jetstream.JetStream) *ContentStore { return &ContentStore{js: js} }

// ByReference reports whether n bytes of content go by reference.
func (s *ContentStore) ByReference(n int) bool {
	t := s.Threshold
	if t == 0 {
		t = miap.DefaultContentRef
	}
	return n >= max(t, miap.MinContentRef)
}

// Delete removes an object; one that is not there is no error.
func (s *ContentStore) Delete(ctx context.Context, name string) error {
	os, err := s.bucket(ctx)
	if err != nil {
		return fmt.Errorf("miapnats: content bucket: %w", err)
	}
	if err := os.Delete(ctx, name); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("miapnats: delete content %s: %w", name, err)
	}
	return nil
}

func (s *ContentStore) bucket(ctx context.Context) (jetstream.ObjectStore, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.os != nil {
		return s.os, nil
	}
	os, err := s.js.ObjectStore(ctx, ContentBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		// create, never update: a party may create the bucket, not
		// reconfigure it (miap/natsauth). In memory: an object lives for
		// one hop, and its sender still holds the content and sends it
		// again if the server lost it (no fsync of every chunk).
		os, err = s.js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket: ContentBucket, Description: "content carried by reference for one hop (PROTOCOL.md §10)",
			TTL: 24 * time.Hour, Storage: jetstream.MemoryStorage, Replicas: Replicas(s.js),
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			os, err = s.js.ObjectStore(ctx, ContentBucket)
		}
	}
	if err != nil {
		return nil, err
	}
	s.os = os
	return os, nil
}

// Put stores content under name.
func (s *ContentStore) Put(ctx context.Context, name string, content []byte) error {
	os, err := s.bucket(ctx)
	if err != nil {
		return fmt.Errorf("miapnats: content bucket: %w", err)
	}
	// Chunks as large as the connection allows (the default is 128 KiB):
	// fewer stream messages to write, read and delete per object.
	chunk := uint32(1 << 20)
	if mp := s.js.Conn().MaxPayload(); mp > 0 && mp-(64<<10) < int64(chunk) {
		chunk = uint32(max(mp-(64<<10), 64<<10))
	}
	meta := jetstream.ObjectMeta{Name: name, Opts: &jetstream.ObjectMetaOptions{ChunkSize: chunk}}
	if _, err := os.Put(ctx, meta, bytes.NewReader(content)); err != nil {
		return fmt.Errorf("miapnats: put content: %w", err)
	}
	return nil
}

// Fetch returns a function that gets content by name, for miap.OpenTransfer.
// Content that is not there is jetstream.ErrObjectNotFound (the transfer
// fails its digest check); a store that could not be read is a
// *schemas.Error with CodeStoreUnavailable, so the sender tries again.
func (s *ContentStore) Fetch(ctx context.Context) func(string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		os, err := s.bucket(ctx)
		if err != nil {
			return nil, schemas.Errorf(schemas.CodeStoreUnavailable, err, "content bucket")
		}
		b, err := os.GetBytes(ctx, name)
		if err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			return nil, schemas.Errorf(schemas.CodeStoreUnavailable, err, "content "+name)
		}
		return b, err
	}
}
