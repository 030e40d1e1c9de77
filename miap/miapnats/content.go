package miapnats

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/uims/uims/schemas"
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

// objectName names one hop's content: the ID and the length, so that each
// conversion step gets its own object.
func objectName(id []byte, n int) string {
	return hex.EncodeToString(id[:12]) + "-" + strconv.Itoa(n)
}
