package kit_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/miap/miapnats"
	"github.com/uims/uims/schemas"
)

// wire watches NATS subjects and keeps what a canary tells.
type wire struct {
	mu                sync.Mutex
	brokerMax         int  // the largest message on uims.broker.>
	canaryAtBroker    bool // the canary on a broker subject
	chunks, canaryObj int  // object chunks seen, with the canary in clear
}

func watch(t *testing.T, nc *nats.Conn, canary []byte) *wire {
	w := &wire{}
	sub := func(subject string, fn func(m *nats.Msg)) {
		s, err := nc.Subscribe(subject, func(m *nats.Msg) { w.mu.Lock(); defer w.mu.Unlock(); fn(m) })
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Unsubscribe() })
	}
	sub("uims.broker.>", func(m *nats.Msg) {
		w.brokerMax = max(w.brokerMax, len(m.Data))
		w.canaryAtBroker = w.canaryAtBroker || bytes.Contains(m.Data, canary)
	})
	sub("$O."+miapnats.ContentBucket+".C.>", func(m *nats.Msg) {
		w.chunks++
		if bytes.Contains(m.Data, canary) {
			w.canaryObj++
		}
	})
	nc.Flush()
	return w
}

// Content of 256 KiB or more goes by reference (PROTOCOL.md §10): through
// the object store, sealed (the canary never shows in a chunk), byte-exact
// at the destination, never on a broker subject, and the object is deleted
// once the attempt ends; content below the threshold stays inline.
func TestContentByReferenceSealedAndDeleted(t *testing.T) {
	f := fabrictest.New(t)
	f.StartBroker(broker.Config{})
	f.PutProfiles(&schemas.Profile{ID: "alice", Addresses: map[string]string{"test": "alice"}},
		&schemas.Profile{ID: "bob", Addresses: map[string]string{"web": "bob"}})
	og, dg := fabrictest.NewInbox(), fabrictest.NewInbox()
	ogKit, _ := f.StartKit(og, kit.Config{Gateway: "test", Medium: "test"})
	f.StartKit(dg, kit.Config{Gateway: "peer", Medium: "web"})
	canary := []byte("CANARY-8d1f0c2e-the-content-itself")
	obs := f.Conn("observer")
	w := watch(t, obs, canary)

	send := func(n int) (string, []byte) {
		t.Helper()
		content := make([]byte, n)
		rand.Read(content)
		copy(content[n/2:], canary)
		var res *kit.Result
		fabrictest.Eventually(t, 20*time.Second, "a route to bob", func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var err error
			res, err = ogKit.Send(ctx, &kit.Submission{From: schemas.Endpoint{Medium: "test", Address: "alice", Client: "alice"},
				To: "bob", Type: "application/octet-stream", Content: content})
			return err == nil
		})
		return res.MsgID, content
	}

	small, smallContent := send(200 << 10)
	w.mu.Lock()
	if w.chunks != 0 {
		t.Fatalf("200 KiB went by reference (%d chunks)", w.chunks)
	}
	w.mu.Unlock()
	if d := dg.Get(small); d == nil || !bytes.Equal(d.Content, smallContent) {
		t.Fatal("200 KiB not delivered intact")
	}

	for _, n := range []int{300 << 10, 5 << 20} {
		id, content := send(n)
		if d := dg.Get(id); d == nil || !bytes.Equal(d.Content, content) {
			t.Fatalf("%d bytes not delivered intact", n)
		}
	}
	w.mu.Lock()
	if w.chunks == 0 || w.canaryObj != 0 || w.canaryAtBroker || w.brokerMax > 32<<10 {
		t.Fatalf("%d chunks, %d with the canary in clear; canary at a broker %v; largest broker message %d bytes",
			w.chunks, w.canaryObj, w.canaryAtBroker, w.brokerMax)
	}
	w.mu.Unlock()

	// the brokers delete the objects once delivered
	js, err := jetstream.New(obs)
	if err != nil {
		t.Fatal(err)
	}
	os, err := js.ObjectStore(context.Background(), miapnats.ContentBucket)
	if err != nil {
		t.Fatal(err)
	}
	fabrictest.Eventually(t, 10*time.Second, "the objects deleted", func() bool {
		_, err := os.List(context.Background())
		return errors.Is(err, jetstream.ErrNoObjectsFound)
	})
	st, err := js.Stream(context.Background(), "OBJ_"+miapnats.ContentBucket)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := st.Info(context.Background())
	if info.State.Bytes > 64<<10 { // the delete markers are left, not the chunks
		t.Fatalf("the content stream still holds %d bytes", info.State.Bytes)
	}
}
