package miapnats_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/uims/uims/internal/natstest"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/miap/miapnats"
	"github.com/uims/uims/schemas"
)

// An encryption key rotates without a restart (PROTOCOL.md §14.2): the
// key registry holds no seed, the new key's seed travels sealed to the
// party's previous key, and a party that follows its entry opens with the
// old and the new key during the overlap and seals with the new one.
func TestSealKeyRotationThroughTheRegistry(t *testing.T) {
	ns := natstest.Run(t)
	nc := natstest.Connect(t, ns, "admin")
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	old, err := miap.NewKeyEntry(rand.Reader, "proc", "proc-1", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	kf := &miap.KeyFile{MIAP: 1, Keys: []miap.KeyEntry{old}}
	kr, _ := kf.Keyring()
	eng, _ := miap.New(miap.Config{Keys: kr})
	before := eng.SealPublic("proc")
	oldSealed, _ := eng.Seal("proc", "0123456789abcdef0123456789abcdef", []byte("before the rotation"))

	now := time.Now()
	next, _ := miap.NewKeyEntry(rand.Reader, "proc", "proc-2", now.Add(-time.Second))
	kf.Keys[0].NotAfter = now.Add(time.Hour)
	kf.Keys = append(kf.Keys, next)
	if err := miapnats.PublishKeys(ctx, js, kf, false); err != nil {
		t.Fatal(err)
	}
	kv, _ := js.KeyValue(ctx, schemas.KeyBucket)
	e, err := kv.Get(ctx, "proc")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(e.Value(), []byte(old.XKey)) || bytes.Contains(e.Value(), []byte(next.XKey)) || bytes.Contains(e.Value(), []byte(`"xkey":`)) {
		t.Fatalf("the key registry holds a seed: %s", e.Value())
	}
	fctx, fcancel := context.WithCancel(ctx)
	defer fcancel()
	go miapnats.FollowOwnKeys(fctx, js, "proc", 50*time.Millisecond, eng, nil)
	want, _ := miap.XKeyPublic(next.XKey)
	for eng.SealPublic("proc") != want {
		if ctx.Err() != nil {
			t.Fatalf("the new encryption key did not arrive: %s, want %s", eng.SealPublic("proc"), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// during the overlap, a wrap to the old key still opens
	og, _ := miap.NewKeyEntry(rand.Reader, "web", "web-1", time.Time{})
	okr, _ := miap.NewKeyring([]miap.KeyEntry{og})
	oge, _ := miap.New(miap.Config{Keys: okr})
	s, _ := oge.Seal("web", "0123456789abcdef0123456789abcdef", []byte("hello"))
	id := bytes.Repeat([]byte{1}, 32)
	for _, to := range []string{before, want} {
		h := map[string][]string{}
		if err := oge.Wrap(h, s, to, id); err != nil {
			t.Fatal(err)
		}
		tr := &miap.Transfer{Ticket: &miap.Frame{ID: id, CSHA: s.SHA256[:]}, Content: s.Content}
		if err := eng.Unseal("proc", h, tr, true); err != nil || string(tr.Content) != "hello" {
			t.Fatalf("wrap to %s: %v", to, err)
		}
	}
	// content sealed before the rotation seals again to the same bytes
	if again, err := eng.Reseal("proc", "0123456789abcdef0123456789abcdef", []byte("before the rotation"), oldSealed.SHA256[:]); err != nil || !bytes.Equal(again.Content, oldSealed.Content) {
		t.Fatalf("reseal after the rotation: %v", err)
	}
}
