package miapnats

import (
	"context"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ContentBucket is the JetStream object store bucket of content carried by
// reference (PROTOCOL.md §10).
const ContentBucket = "uims_content"

// ContentStore keeps content too large for one NATS message. Objects are
// named after the transaction's ID and expire after a day; the receiver
// checks length and SHA-256 against its ticket, so the store need not be
// trusted.
type ContentStore struct {
	js jetstream.JetStream
}

// NewContentStore returns the store on js.
func NewContentStore(js jetstream.JetStream) *ContentStore { return &ContentStore{js: js} }

func (s *ContentStore) bucket(ctx context.Context) (jetstream.ObjectStore, error) {
	os, err := s.js.ObjectStore(ctx, ContentBucket)
	if err == nil {
		return os, nil
	}
	return s.js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket: ContentBucket, Description: "content carried by reference (PROTOCOL.md §10)",
		TTL: 24 * time.Hour, Storage: jetstream.FileStorage, Replicas: Replicas(s.js),
	})
}

// Put stores content under name.
func (s *ContentStore) Put(ctx context.Context, name string, content []byte) error {
	os, err := s.bucket(ctx)
	if err != nil {
		return fmt.Errorf("miapnats: content bucket: %w", err)
	}
	if _, err := os.PutBytes(ctx, name, content); err != nil {
		return fmt.Errorf("miapnats: put content: %w", err)
	}
	return nil
}

// Fetch returns a function that gets content by name, for miap.OpenTransfer.
func (s *ContentStore) Fetch(ctx context.Context) func(string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		os, err := s.bucket(ctx)
		if err != nil {
			return nil, err
		}
		return os.GetBytes(ctx, name)
	}
}

// objectName names one hop's content: the ID and the length, so that each
// conversion step gets its own object.
func objectName(id []byte, n int) string {
	return hex.EncodeToString(id[:12]) + "-" + strconv.Itoa(n)
}
