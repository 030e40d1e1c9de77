package email

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/miap/miapnats"
)

// JetStream names of the e-mail gateway (docs/RELIABILITY.md, Ownership:
// what waits for an outside party sits in JetStream). Several e-mail gateway parties share
// them; subjects and keys carry the party id.
const (
	// OutStream is the durable outbound queue: one message per mail to
	// hand to the smarthost (work queue, retried with backoff).
	OutStream = "UIMS_MAIL_OUT"
	// Bucket holds the gateway's state: inbound SMTP outcomes per message
	// id, outbound records (AckRef, sender) per message id, and the map
	// from RFC 5322 Message-ID to message id used to match bounces.
	Bucket = "uims_mail"
	// ObjectBucket holds outbound mail too large for one stream message.
	ObjectBucket = "uims_mail_out"

	// stateTTL bounds how long records are kept.
	stateTTL = 10 * 24 * time.Hour
	// inlineMax is the largest raw mail kept in the stream message itself.
	inlineMax = 1 << 20
)

// States of a message received over SMTP.
const (
	statePending  = "pending"  // kit.Send in progress, no SMTP reply yet
	stateAccepted = "accepted" // the destination took it; a 250 follows
	stateRejected = "rejected" // the SMTP client got a 4xx/5xx for it
	stateBounced  = "bounced"  // 250 for the others; we sent the bounce
)

// inRecord is the SMTP outcome of one received message.
type inRecord struct {
	State     string `json:"state"`
	At        int64  `json:"at"`
	MessageID string `json:"message_id,omitempty"`
}

// outRecord remembers an outbound message until its outcome.
type outRecord struct {
	Ref       kit.AckRef `json:"ref"`
	Sender    string     `json:"sender,omitempty"` // client id of the sender
	To        string     `json:"to"`
	Subject   string     `json:"subject,omitempty"`
	MessageID string     `json:"message_id"`
	Queued    int64      `json:"queued"`
	LastError string     `json:"last_error,omitempty"`
	Outcome   string     `json:"outcome,omitempty"` // delivered, failed
}

// outJob is one queued outbound mail.
type outJob struct {
	// MsgID is the UIMS message id; Ref is set for fabric messages (the
	// outcome is acknowledged) and nil for notices we originate.
	MsgID  string      `json:"msg_id"`
	Ref    *kit.AckRef `json:"ref,omitempty"`
	From   string      `json:"from"` // envelope sender, "" for <>
	To     string      `json:"to"`
	EnvID  string      `json:"envid,omitempty"`
	Raw    []byte      `json:"raw,omitempty"`
	RawRef string      `json:"raw_ref,omitempty"` // object name when Raw is too large
	Queued int64       `json:"queued"`
}

type store struct {
	js  jetstream.JetStream
	gw  string
	kv  jetstream.KeyValue
	obj jetstream.ObjectStore
}

func (s *store) outSubject() string { return "uims.mail." + s.gw + ".out" }

func (s *store) ensure(ctx context.Context) error {
	err := miapnats.EnsureStream(ctx, s.js, jetstream.StreamConfig{
		Name:        OutStream,
		Description: "e-mail gateway: outbound mail waiting for the smarthost (docs/RELIABILITY.md, Ownership)",
		Subjects:    []string{"uims.mail.*.out"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.WorkQueuePolicy,
		MaxAge:      7 * 24 * time.Hour,
		Duplicates:  time.Hour,
	})
	if err != nil {
		return fmt.Errorf("email: outbound stream: %w", err)
	}
	if s.kv, err = miapnats.KeyValue(ctx, s.js, jetstream.KeyValueConfig{
		Bucket: Bucket, Description: "e-mail gateway: SMTP outcomes, outbound records, Message-ID map",
		Storage: jetstream.FileStorage, TTL: stateTTL,
	}); err != nil {
		return fmt.Errorf("email: state bucket: %w", err)
	}
	if s.obj, err = s.js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket: ObjectBucket, Description: "e-mail gateway: large outbound mail", Storage: jetstream.FileStorage,
		TTL: 8 * 24 * time.Hour,
	}); err != nil {
		return fmt.Errorf("email: object store: %w", err)
	}
	return nil
}

func (s *store) key(kind, id string) string { return s.gw + "." + kind + "." + id }

// midKey maps any RFC 5322 Message-ID to a valid KV key.
func midKey(messageID string) string {
	h := sha256.Sum256([]byte(messageID))
	return hex.EncodeToString(h[:20])
}

func (s *store) put(ctx context.Context, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := s.kv.Put(ctx, key, b); err != nil {
		return fmt.Errorf("email: store %s: %w", key, err)
	}
	return nil
}

// get loads key into v; it reports false when the key does not exist.
func (s *store) get(ctx context.Context, key string, v any) (bool, error) {
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("email: load %s: %w", key, err)
	}
	if err := json.Unmarshal(e.Value(), v); err != nil {
		return false, fmt.Errorf("email: decode %s: %w", key, err)
	}
	return true, nil
}

func (s *store) putIn(ctx context.Context, msgID string, r inRecord) error {
	return s.put(ctx, s.key("in", msgID), r)
}

func (s *store) getIn(ctx context.Context, msgID string) (*inRecord, error) {
	var r inRecord
	ok, err := s.get(ctx, s.key("in", msgID), &r)
	if !ok || err != nil {
		return nil, err
	}
	return &r, nil
}

func (s *store) putOut(ctx context.Context, msgID string, r *outRecord) error {
	if err := s.put(ctx, s.key("out", msgID), r); err != nil {
		return err
	}
	return s.mapMessageID(ctx, r.MessageID, msgID)
}

func (s *store) getOut(ctx context.Context, msgID string) (*outRecord, error) {
	var r outRecord
	ok, err := s.get(ctx, s.key("out", msgID), &r)
	if !ok || err != nil {
		return nil, err
	}
	return &r, nil
}

// mapMessageID remembers which UIMS message an RFC 5322 Message-ID names.
func (s *store) mapMessageID(ctx context.Context, messageID, msgID string) error {
	if messageID == "" {
		return nil
	}
	if _, err := s.kv.Put(ctx, s.key("mid", midKey(messageID)), []byte(msgID)); err != nil {
		return fmt.Errorf("email: store message-id: %w", err)
	}
	return nil
}

// lookupMessageID returns the UIMS message id of an RFC 5322 Message-ID;
// found is false when the Message-ID is not ours. An error means the
// store could not be read: a temporary failure, not an unknown id.
func (s *store) lookupMessageID(ctx context.Context, messageID string) (id string, found bool, err error) {
	if messageID == "" {
		return "", false, nil
	}
	e, err := s.kv.Get(ctx, s.key("mid", midKey(messageID)))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("email: load message-id: %w", err)
	}
	return string(e.Value()), true, nil
}

// queue stores an outbound mail in the stream (deduplicated by dedup
// within the stream's window); large mail goes to the object store first.
func (s *store) queue(ctx context.Context, job *outJob, dedup string) error {
	if len(job.Raw) > inlineMax {
		job.RawRef = s.gw + "-" + dedup
		if _, err := s.obj.PutBytes(ctx, job.RawRef, job.Raw); err != nil {
			return fmt.Errorf("email: store large mail: %w", err)
		}
		job.Raw = nil
	}
	b, err := json.Marshal(job)
	if err != nil {
		return err
	}
	if _, err := s.js.Publish(ctx, s.outSubject(), b, jetstream.WithMsgID(s.gw+":"+dedup)); err != nil {
		return fmt.Errorf("email: queue mail: %w", err)
	}
	return nil
}

// raw returns a job's mail.
func (s *store) raw(ctx context.Context, job *outJob) ([]byte, error) {
	if job.RawRef == "" {
		return job.Raw, nil
	}
	b, err := s.obj.GetBytes(ctx, job.RawRef)
	if err != nil {
		return nil, fmt.Errorf("email: load large mail: %w", err)
	}
	return b, nil
}

// done drops a finished job's stored mail.
func (s *store) done(ctx context.Context, job *outJob) {
	if job.RawRef != "" {
		s.obj.Delete(ctx, job.RawRef)
	}
}
