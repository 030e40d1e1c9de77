package miapnats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// The key registry (PROTOCOL.md §3.3) is the key-value bucket
// schemas.KeyBucket: one entry per party, the party's key entries as JSON.
// The administrator writes it; brokers watch it whole (WatchKeys); each
// gateway and processor polls its own entry (PollOwnKeys). NATS
// permissions keep a party from reading any other entry.

func keyBucket(ctx context.Context, js jetstream.JetStream, create bool) (jetstream.KeyValue, error) {
	if !create {
		return js.KeyValue(ctx, schemas.KeyBucket)
	}
	return KeyValue(ctx, js, jetstream.KeyValueConfig{Bucket: schemas.KeyBucket,
		Description: "MIAP keys by party (PROTOCOL.md §3.3); administrator only",
		History:     1, Storage: jetstream.FileStorage})
}

// PublishKeys writes every party of kf to the registry, creating the bucket,
// and deletes registry entries of parties kf does not hold when prune is set.
func PublishKeys(ctx context.Context, js jetstream.JetStream, kf *miap.KeyFile, prune bool) error {
	kv, err := keyBucket(ctx, js, true)
	if err != nil {
		return fmt.Errorf("miapnats: key registry: %w", err)
	}
	byParty := map[string][]miap.KeyEntry{}
	for _, e := range miap.Public(kf.Keys) { // no encryption key seed (PROTOCOL.md §14.2)
		byParty[e.Party] = append(byParty[e.Party], e)
	}
	for p, es := range byParty {
		if err := putParty(ctx, kv, p, es); err != nil {
			return err
		}
	}
	if !prune {
		return nil
	}
	keys, err := kv.Keys(ctx)
	if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
		return fmt.Errorf("miapnats: key registry: %w", err)
	}
	for _, k := range keys {
		if _, ok := byParty[k]; !ok {
			if err := kv.Delete(ctx, k); err != nil {
				return fmt.Errorf("miapnats: key registry: delete %s: %w", k, err)
			}
		}
	}
	return nil
}

func putParty(ctx context.Context, kv jetstream.KeyValue, party string, es []miap.KeyEntry) error {
	b, err := json.Marshal(es)
	if err != nil {
		return err
	}
	if cur, err := kv.Get(ctx, party); err == nil && string(cur.Value()) == string(b) {
		return nil
	}
	if _, err := kv.Put(ctx, party, b); err != nil {
		return fmt.Errorf("miapnats: key registry: put %s: %w", party, err)
	}
	return nil
}

// DecodeKeyEntries parses a registry entry: the key entries of party, each
// naming that party, valid for a keyring (PROTOCOL.md §3.3).
func DecodeKeyEntries(party string, b []byte) ([]miap.KeyEntry, error) {
	var es []miap.KeyEntry
	if err := json.Unmarshal(b, &es); err != nil {
		return nil, fmt.Errorf("miapnats: key entry of %s: %w", party, err)
	}
	if len(es) == 0 {
		return nil, fmt.Errorf("miapnats: key entry of %s holds no key", party)
	}
	for _, e := range es {
		if e.Party != party {
			return nil, fmt.Errorf("miapnats: key entry of %s holds a key of %q", party, e.Party)
		}
	}
	if _, err := miap.NewKeyring(es); err != nil {
		return nil, fmt.Errorf("miapnats: key entry of %s: %w", party, err)
	}
	return es, nil
}

// DeleteParty removes a party's keys from the registry: brokers refuse its
// frames from then on.
func DeleteParty(ctx context.Context, js jetstream.JetStream, party string) error {
	kv, err := keyBucket(ctx, js, true)
	if err != nil {
		return fmt.Errorf("miapnats: key registry: %w", err)
	}
	if err := kv.Delete(ctx, party); err != nil {
		return fmt.Errorf("miapnats: key registry: delete %s: %w", party, err)
	}
	return nil
}

// WatchKeys calls apply with the whole registry once it has been read and
// again after every change, until ctx is done. The bucket may not exist
// yet: WatchKeys waits for it, checking every retry.
func WatchKeys(ctx context.Context, js jetstream.JetStream, retry time.Duration, apply func(*miap.KeyFile)) error {
	for {
		kv, err := keyBucket(ctx, js, false)
		if err == nil {
			err = watch(ctx, kv, apply)
		}
		if ctx.Err() != nil {
			return nil
		}
		if err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(retry):
		}
	}
}

func watch(ctx context.Context, kv jetstream.KeyValue, apply func(*miap.KeyFile)) error {
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("miapnats: watch keys: %w", err)
	}
	defer w.Stop()
	parties := map[string][]miap.KeyEntry{}
	initial := true
	emit := func() {
		kf := &miap.KeyFile{MIAP: 1}
		for _, es := range parties {
			kf.Keys = append(kf.Keys, es...)
		}
		apply(kf)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("miapnats: key watch ended")
			}
			if e == nil { // the initial values are all in
				initial = false
				emit()
				continue
			}
			if e.Operation() != jetstream.KeyValuePut {
				delete(parties, e.Key())
			} else {
				es, err := DecodeKeyEntries(e.Key(), e.Value())
				if err != nil {
					continue // a bad entry changes nothing; the brokers log none of its secrets
				}
				parties[e.Key()] = es
			}
			if !initial {
				emit()
			}
		}
	}
}

// OwnKeys reads party's own entry of the registry; found is false when
// the registry or the entry does not exist.
func OwnKeys(ctx context.Context, js jetstream.JetStream, party string) (es []miap.KeyEntry, found bool, err error) {
	kv, err := keyBucket(ctx, js, false)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	e, err := kv.Get(ctx, party)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	if es, err = DecodeKeyEntries(party, e.Value()); err != nil {
		return nil, false, err
	}
	return es, true, nil
}

// FollowOwnKeys polls party's own registry entry every interval until ctx
// is done and gives eng the keyring it holds whenever it changes, so that
// a rotation reaches a gateway or processor without a restart (PROTOCOL.md
// §3.4). changed, if not nil, is told the new key ids. Without a registry
// (or an entry) the engine keeps the keys it was started with.
func FollowOwnKeys(ctx context.Context, js jetstream.JetStream, party string, interval time.Duration, eng *miap.Engine, changed func(kids []string, err error)) {
	var last string
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		es, found, err := OwnKeys(ctx, js, party)
		if err == nil && found {
			b, _ := json.Marshal(es)
			if string(b) != last {
				var kr *miap.Keyring
				// the registry holds no encryption key seed: keep those
				// of the keys we hold, open those sealed to them (§14.2)
				es = eng.Keys().WithSeeds(party, es)
				if kr, err = miap.NewKeyring(es); err == nil && kr.Has(party) {
					eng.SetKeys(kr)
					last = string(b)
					if changed != nil {
						kids := make([]string, len(es))
						for i, e := range es {
							kids[i] = e.Kid
						}
						changed(kids, nil)
					}
				}
			}
		}
		if err != nil && changed != nil && ctx.Err() == nil {
			changed(nil, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
