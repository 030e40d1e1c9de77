package voice

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/miap/miapnats"
)

// Bucket is the name of a voice gateway party's JetStream key-value
// bucket, calls out until their outcome (out.<msg id>), and of its object
// store, the audio each of them plays (<msg id>), so that a call retried
// after a restart still has it. Each party has its own: no other voice
// gateway may read or purge them (miap/natsauth).
func Bucket(party string) string { return "uims_voice_" + party }

// stateTTL bounds how long records and audio are kept: beyond the
// brokers' deadline of a delivery and the longest retry policy.
const stateTTL = 8 * 24 * time.Hour

// outRecord is one message to be spoken in a call, until its outcome.
type outRecord struct {
	Ref kit.AckRef `json:"ref"`
	// Target is the SIP URI called; Address the recipient's address.
	Target  string `json:"target"`
	Address string `json:"address"`
	// Intro is spoken before the message ("A message from alice.").
	Intro string `json:"intro,omitempty"`
	// Policy, from the recipient's profile options and the gateway's
	// defaults.
	Retries  int   `json:"retries"`
	Interval int64 `json:"interval_ms"`
	Ring     int64 `json:"ring_ms"`
	Deadline int64 `json:"deadline,omitempty"` // Unix ms: the brokers' deadline

	Attempts  int    `json:"attempts"`
	NextAt    int64  `json:"next_at,omitempty"` // Unix ms of the next attempt
	Last      string `json:"last,omitempty"`    // what the last attempt ended with
	Delivered bool   `json:"delivered,omitempty"`
	Outcome   string `json:"outcome,omitempty"` // delivered, read, failed; expired: past the brokers' deadline, not placed
}

type store struct {
	js  jetstream.JetStream
	gw  string
	kv  jetstream.KeyValue
	obj jetstream.ObjectStore
}

func (s *store) ensure(ctx context.Context) error {
	kv, err := miapnats.KeyValue(ctx, s.js, jetstream.KeyValueConfig{
		Bucket: Bucket(s.gw), Description: "voice gateway: calls out until their outcome",
		Storage: jetstream.FileStorage, TTL: stateTTL,
	})
	if err != nil {
		return fmt.Errorf("voice: state bucket: %w", err)
	}
	obj, err := s.js.ObjectStore(ctx, Bucket(s.gw))
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		obj, err = s.js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: Bucket(s.gw),
			Description: "voice gateway: the audio of calls out", TTL: stateTTL,
			Storage: jetstream.FileStorage, Replicas: miapnats.Replicas(s.js)})
		if errors.Is(err, jetstream.ErrBucketExists) {
			obj, err = s.js.ObjectStore(ctx, Bucket(s.gw))
		}
	}
	if err != nil {
		return fmt.Errorf("voice: audio objects: %w", err)
	}
	s.kv, s.obj = kv, obj
	return nil
}

func (s *store) key(msgID string) string { return "out." + msgID }

func (s *store) putOut(ctx context.Context, r *outRecord) error {
	if err := miapnats.PutJSON(ctx, s.kv, s.key(r.Ref.MsgID), r); err != nil {
		return fmt.Errorf("voice: store call: %w", err)
	}
	return nil
}

// getOut returns nil, nil when there is no record.
func (s *store) getOut(ctx context.Context, msgID string) (*outRecord, error) {
	var r outRecord
	found, err := miapnats.GetJSON(ctx, s.kv, s.key(msgID), &r)
	if err != nil || !found {
		return nil, err
	}
	return &r, nil
}

// pending lists the calls without an outcome (to resume after a restart).
func (s *store) pending(ctx context.Context) ([]*outRecord, error) {
	lister, err := s.kv.ListKeysFiltered(ctx, "out.*")
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil, nil
		}
		return nil, fmt.Errorf("voice: list calls: %w", err)
	}
	var out []*outRecord
	for k := range lister.Keys() {
		r, err := s.getOut(ctx, k[len("out."):])
		if err != nil || r == nil || r.Outcome != "" {
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

func (s *store) objName(msgID string) string { return msgID }

func (s *store) putAudio(ctx context.Context, msgID string, wav []byte) error {
	if _, err := s.obj.Put(ctx, jetstream.ObjectMeta{Name: s.objName(msgID)}, bytes.NewReader(wav)); err != nil {
		return fmt.Errorf("voice: store audio %s: %w", msgID, err)
	}
	return nil
}

func (s *store) audio(ctx context.Context, msgID string) ([]byte, error) {
	b, err := s.obj.GetBytes(ctx, s.objName(msgID))
	if err != nil {
		return nil, fmt.Errorf("voice: load audio %s: %w", msgID, err)
	}
	return b, nil
}

func (s *store) dropAudio(ctx context.Context, msgID string) error {
	return s.obj.Delete(ctx, s.objName(msgID))
}
