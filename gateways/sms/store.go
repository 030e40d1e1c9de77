package sms

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/miap/miapnats"
)

// JetStream names of the SMS gateway. Several SMS gateway parties share
// them; subjects and keys carry the party id.
const (
	// QueueStream holds messages and receipts for applications until they
	// are bound and acknowledged them (work queue, one consumer per client).
	QueueStream = "UIMS_SMS"
	// AppBucket remembers which clients bind as SMPP applications.
	AppBucket = "uims_sms_apps"
	// SMSCBucket maps message ids of the SMS centre to ours and keeps the
	// state of messages awaiting the centre's receipts; and the message
	// ids of submissions an application was refused (it got an error
	// status, not the id), so that no receipt names them (receipt.go,
	// Refusals).
	SMSCBucket = "uims_sms_smsc"
)

// store is the gateway's JetStream state.
type store struct {
	js   jetstream.JetStream
	gw   string
	apps jetstream.KeyValue
	smsc jetstream.KeyValue
}

func (s *store) queueSubject(client string) string { return "uims.sms." + s.gw + ".q." + client }

func (s *store) ensure(ctx context.Context, maxAge time.Duration) error {
	err := miapnats.EnsureStream(ctx, s.js, jetstream.StreamConfig{
		Name:        QueueStream,
		Description: "SMS gateway: messages and delivery receipts waiting for SMPP applications (docs/RELIABILITY.md, Ownership)",
		Subjects:    []string{"uims.sms.*.q.*"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.WorkQueuePolicy,
		MaxAge:      maxAge,
		Duplicates:  time.Hour,
	})
	if err != nil {
		return fmt.Errorf("sms: queue stream: %w", err)
	}
	if s.apps, err = miapnats.KeyValue(ctx, s.js, jetstream.KeyValueConfig{
		Bucket: AppBucket, Description: "SMS gateway: clients that bind as SMPP applications", Storage: jetstream.FileStorage,
	}); err != nil {
		return fmt.Errorf("sms: app bucket: %w", err)
	}
	if s.smsc, err = miapnats.KeyValue(ctx, s.js, jetstream.KeyValueConfig{
		Bucket: SMSCBucket, Description: "SMS gateway: SMS centre message ids awaiting receipts", Storage: jetstream.FileStorage,
		TTL: 7 * 24 * time.Hour,
	}); err != nil {
		return fmt.Errorf("sms: smsc bucket: %w", err)
	}
	return nil
}

// refusedKey is the key of the ids refused for message msgID, in
// SMSCBucket (whose 7-day TTL outlasts the brokers' 24-hour deadline: a
// receipt waiting longer for an unbound application may slip through).
func (s *store) refusedKey(msgID string) string { return s.gw + ".r." + msgID }

// markRefused records that the application was refused ids (the message
// id, or "<id>-<part>") of message msgID.
func (s *store) markRefused(ctx context.Context, msgID string, ids []string) error {
	old, err := s.refusedIDs(ctx, msgID)
	if err != nil {
		return err
	}
	for _, id := range old {
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	b, _ := json.Marshal(ids)
	_, err = s.smsc.Put(ctx, s.refusedKey(msgID), b)
	return err
}

// refusedIDs returns the ids of message msgID the application was
// refused; none when it got them all. An error means the gateway could not
// look.
func (s *store) refusedIDs(ctx context.Context, msgID string) ([]string, error) {
	e, err := s.smsc.Get(ctx, s.refusedKey(msgID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sms: refused ids: %w", err)
	}
	var ids []string
	if err := json.Unmarshal(e.Value(), &ids); err != nil {
		return nil, fmt.Errorf("sms: refused %s: %w", msgID, err)
	}
	return ids, nil
}

// markApp records that client binds as an SMPP application, so that
// messages to the client's phone number go to the application.
func (s *store) markApp(ctx context.Context, client string) error {
	_, err := s.apps.Put(ctx, s.gw+"."+client, []byte(time.Now().UTC().Format(time.RFC3339)))
	return err
}

// isApp reports whether client has bound as an SMPP application. An
// error means the gateway could not look (a temporary failure), never
// that the client is no application.
func (s *store) isApp(ctx context.Context, client string) (bool, error) {
	_, err := s.apps.Get(ctx, s.gw+"."+client)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("sms: app bucket: %w", err)
	}
	return true, nil
}

// smscRecord is the state of one message sent to the SMS centre.
type smscRecord struct {
	Ref    kit.AckRef `json:"ref"`
	UDHRef uint8      `json:"udh_ref"`
	// IDs are the centre's message ids per part ("" until submitted);
	// Final the final stat per part from its receipts.
	IDs   []string `json:"ids"`
	Final []string `json:"final"`
	Err   []string `json:"err,omitempty"`
	// Acked is the status acknowledged to the brokers.
	Acked string `json:"acked,omitempty"`
}

// idRef is the value stored under an SMS centre message id.
type idRef struct {
	MsgID string `json:"msg_id"`
	Part  int    `json:"part"`
}

func (s *store) recordKey(msgID string) string { return s.gw + ".m." + msgID }

// idKey is the key of one NormalizeID key of a centre's message id. Ids
// are free text, so the key is hex.
func (s *store) idKey(norm string) string { return s.gw + ".i." + hex.EncodeToString([]byte(norm)) }

func (s *store) getRecord(ctx context.Context, msgID string) (*smscRecord, uint64, error) {
	e, err := s.smsc.Get(ctx, s.recordKey(msgID))
	if err != nil {
		return nil, 0, err
	}
	var r smscRecord
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return nil, 0, fmt.Errorf("sms: record %s: %w", msgID, err)
	}
	return &r, e.Revision(), nil
}

// createRecord stores a new record; ok is false when one exists.
func (s *store) createRecord(ctx context.Context, msgID string, r *smscRecord) (bool, error) {
	b, _ := json.Marshal(r)
	_, err := s.smsc.Create(ctx, s.recordKey(msgID), b)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return false, nil
	}
	return err == nil, err
}

// updateRecord applies fn to the stored record with optimistic
// concurrency, retrying on a concurrent change.
func (s *store) updateRecord(ctx context.Context, msgID string, fn func(*smscRecord) error) (*smscRecord, error) {
	for attempt := 0; ; attempt++ {
		r, rev, err := s.getRecord(ctx, msgID)
		if err != nil {
			return nil, err
		}
		if err := fn(r); err != nil {
			return r, err
		}
		b, _ := json.Marshal(r)
		_, err = s.smsc.Update(ctx, s.recordKey(msgID), b, rev)
		if err == nil {
			return r, nil
		}
		if attempt >= 20 || ctx.Err() != nil {
			return nil, fmt.Errorf("sms: update record %s: %w", msgID, err)
		}
	}
}

func (s *store) putID(ctx context.Context, norm string, ref idRef) error {
	b, _ := json.Marshal(ref)
	_, err := s.smsc.Put(ctx, s.idKey(norm), b)
	return err
}

// lookupID finds our message for one key of a centre's message id; found
// is false when no message has it.
func (s *store) lookupID(ctx context.Context, norm string) (idRef, bool, error) {
	e, err := s.smsc.Get(ctx, s.idKey(norm))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return idRef{}, false, nil
	}
	if err != nil {
		return idRef{}, false, err
	}
	var r idRef
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return idRef{}, false, nil
	}
	return r, true, nil
}
