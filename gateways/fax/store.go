package fax

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/miap/miapnats"
)

// Bucket is the fax gateway's JetStream key-value bucket: outgoing faxes
// waiting for their outcome (<party>.out.<msg id>), HylaFAX jobs being
// followed (<party>.job.<job id>) and the map from a T.37 mail's
// Message-ID to the message id (<party>.mid.<hash>). Several fax gateway
// parties share it; keys carry the party id.
const Bucket = "uims_fax"

// stateTTL bounds how long records are kept (beyond the brokers' 24 h
// deadline and HylaFAX's longest kill time we set).
const stateTTL = 10 * 24 * time.Hour

// Paths an outgoing fax takes.
const (
	pathT37     = "t37"
	pathHylaFAX = "hylafax"
)

// outRecord is an outgoing fax until its outcome.
type outRecord struct {
	Ref       kit.AckRef `json:"ref"`
	Path      string     `json:"path"`
	Number    string     `json:"number"`
	Pages     int        `json:"pages"`
	Job       string     `json:"job,omitempty"`        // HylaFAX job id
	MessageID string     `json:"message_id,omitempty"` // T.37 mail's Message-ID
	Submitted int64      `json:"submitted"`
	Outcome   string     `json:"outcome,omitempty"` // delivered, failed
}

type store struct {
	js jetstream.JetStream
	gw string
	kv jetstream.KeyValue
}

func (s *store) ensure(ctx context.Context) error {
	kv, err := miapnats.KeyValue(ctx, s.js, jetstream.KeyValueConfig{
		Bucket: Bucket, Description: "fax gateway: outgoing faxes, HylaFAX jobs, T.37 Message-IDs",
		Storage: jetstream.FileStorage, TTL: stateTTL,
	})
	if err != nil {
		return fmt.Errorf("fax: state bucket: %w", err)
	}
	s.kv = kv
	return nil
}

func (s *store) key(kind, id string) string { return s.gw + "." + kind + "." + id }

func midKey(messageID string) string {
	h := sha256.Sum256([]byte(messageID))
	return hex.EncodeToString(h[:20])
}

func (s *store) putOut(ctx context.Context, r *outRecord) error {
	if err := miapnats.PutJSON(ctx, s.kv, s.key("out", r.Ref.MsgID), r); err != nil {
		return fmt.Errorf("fax: store outgoing: %w", err)
	}
	if r.MessageID != "" {
		if _, err := s.kv.Put(ctx, s.key("mid", midKey(r.MessageID)), []byte(r.Ref.MsgID)); err != nil {
			return fmt.Errorf("fax: store message-id: %w", err)
		}
	}
	if r.Job != "" && r.Outcome == "" {
		if _, err := s.kv.Put(ctx, s.key("job", r.Job), []byte(r.Ref.MsgID)); err != nil {
			return fmt.Errorf("fax: store job %s: %w", r.Job, err)
		}
	}
	return nil
}

// getOut returns nil, nil when there is no record; an error means the
// store could not be read.
func (s *store) getOut(ctx context.Context, msgID string) (*outRecord, error) {
	var r outRecord
	found, err := miapnats.GetJSON(ctx, s.kv, s.key("out", msgID), &r)
	if err != nil || !found {
		return nil, err
	}
	return &r, nil
}

// lookupMessageID returns the message id of a T.37 mail's Message-ID;
// found is false when it is not ours.
func (s *store) lookupMessageID(ctx context.Context, messageID string) (string, bool, error) {
	e, err := s.kv.Get(ctx, s.key("mid", midKey(messageID)))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("fax: load message-id: %w", err)
	}
	return string(e.Value()), true, nil
}

// jobs lists the HylaFAX jobs being followed: job id → message id.
func (s *store) jobs(ctx context.Context) (map[string]string, error) {
	lister, err := s.kv.ListKeysFiltered(ctx, s.gw+".job.*")
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil, nil
		}
		return nil, fmt.Errorf("fax: list jobs: %w", err)
	}
	out := map[string]string{}
	for k := range lister.Keys() {
		e, err := s.kv.Get(ctx, k)
		if err != nil {
			continue
		}
		out[k[len(s.gw)+5:]] = string(e.Value())
	}
	return out, nil
}

func (s *store) dropJob(ctx context.Context, job string) error {
	return s.kv.Delete(ctx, s.key("job", job))
}
