package web

import (
	"bytes"
	"context"
	stdjson "encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/internal/natstest"
	"github.com/uims/uims/schemas"
)

// jetStreamForTest connects to a fresh embedded server.
func jetStreamForTest(t testing.TB) (*nats.Conn, jetstream.JetStream, context.Context) {
	t.Helper()
	nc := natstest.Connect(t, natstest.Run(t), "inbox")
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return nc, js, ctx
}

// The inbox spreads one client's messages over its shards by message id,
// lists them newest first from every shard, and an instance configured
// with another shard count refuses to start.
func TestInboxShards(t *testing.T) {
	nc, js, ctx := jetStreamForTest(t)
	in := &inbox{js: js, nc: nc, shards: 4}
	if err := in.ensure(ctx); err != nil {
		t.Fatal(err)
	}
	var ids []string
	used := map[int]bool{}
	for i := range 24 {
		s := &stored{Message: Message{ID: kit.NewMsgID(), From: schemas.Endpoint{Client: "alice"}, To: "bob", Text: string(rune('a' + i))}}
		if _, err := in.deliver(ctx, "bob", s); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, s.ID)
		used[in.shard(s.ID)] = true
	}
	if len(used) < 2 {
		t.Fatalf("24 messages all in one shard: %v", used)
	}
	if dup, err := in.deliver(ctx, "bob", &stored{Message: Message{ID: ids[3]}}); err != nil || !dup {
		t.Fatalf("redelivery: duplicate %v, %v; want a duplicate", dup, err)
	}
	if err := in.markRead(ctx, "bob", ids[5], 42); err != nil {
		t.Fatal(err)
	}
	p, err := in.page(ctx, "bob", nil, false, 100)
	if err != nil {
		t.Fatal(err)
	}
	got := p.Messages
	if len(got) != len(ids) {
		t.Fatalf("listed %d messages, want %d", len(got), len(ids))
	}
	for i, m := range got {
		if want := ids[len(ids)-1-i]; m.ID != want {
			t.Fatalf("entry %d is %s, want %s (newest first across shards)", i, m.ID, want)
		}
	}
	if got[len(ids)-1-5].ReadAt != 42 {
		t.Fatalf("read marker lost: %+v", got[len(ids)-1-5])
	}
	if s, err := in.get(ctx, "bob", ids[7]); err != nil || s.Text != "h" {
		t.Fatalf("get: %+v, %v", s, err)
	}
	other := &inbox{js: js, nc: nc, shards: 8}
	if err := other.ensure(ctx); err == nil || !strings.Contains(err.Error(), "same count") {
		t.Fatalf("an instance with 8 shards over 4: %v, want a refusal", err)
	}
	if _, err := js.Stream(ctx, InboxStreamName(4)); err == nil {
		t.Fatal("the refused instance created shard 4")
	}
}

// The entry and the event made from one encoding of the message are the
// documents encoding the whole values makes.
func TestEncodeEntry(t *testing.T) {
	for _, s := range []*stored{
		{Message: Message{ID: "m1", From: schemas.Endpoint{Client: "alice"}, To: "bob", Text: "hé \"<x>\"\n", At: 7},
			Ref: kit.AckRef{MsgID: "m1", Tx: "m1", ID: "abc"}},
		{Message: Message{ID: "m2", Attachments: []schemas.Attachment{{Name: "a", Type: "image/png", Length: 3}}},
			Ref: kit.AckRef{MsgID: "m2"}, Content: []byte{0, 1, 2}},
	} {
		entry, event, err := encodeEntry(s)
		if err != nil {
			t.Fatal(err)
		}
		wantEntry, _ := stdjson.Marshal(s)
		wantEvent, _ := stdjson.Marshal(&Event{Type: "message", Message: &s.Message})
		if string(entry) != string(wantEntry) {
			t.Errorf("entry\n got %s\nwant %s", entry, wantEntry)
		}
		if string(event) != string(wantEvent) {
			t.Errorf("event\n got %s\nwant %s", event, wantEvent)
		}
	}
}

// A data folder from before the shards: the single UIMS_INBOX stream's
// messages and read markers move into the shards, and the stream goes.
func TestInboxMigratesLegacyStream(t *testing.T) {
	nc, js, ctx := jetStreamForTest(t)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: InboxStream, Subjects: []string{"uims.inbox.>", "uims.read.>"},
		Storage: jetstream.FileStorage, Duplicates: 10 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range 5 {
		id := kit.NewMsgID()
		entry, _, err := encodeEntry(&stored{Message: Message{ID: id, To: "bob", Text: string(rune('a' + i)), At: int64(i)}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.Publish(ctx, "uims.inbox.bob."+id, entry, jetstream.WithMsgID(id)); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if _, err := js.Publish(ctx, "uims.read.bob."+ids[1], []byte("99"), jetstream.WithMsgID("read:"+ids[1])); err != nil {
		t.Fatal(err)
	}

	in := &inbox{js: js, nc: nc, shards: 4}
	if err := in.ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Stream(ctx, InboxStream); err == nil {
		t.Fatal("the legacy stream is still there")
	}
	p, err := in.page(ctx, "bob", nil, false, 10)
	if err != nil {
		t.Fatal(err)
	}
	got := p.Messages
	if len(got) != 5 {
		t.Fatalf("%d messages after the migration, want 5", len(got))
	}
	for i, m := range got {
		if want := ids[4-i]; m.ID != want {
			t.Fatalf("entry %d is %s, want %s (order kept)", i, m.ID, want)
		}
	}
	if got[3].ReadAt != 99 {
		t.Fatalf("read marker lost: %+v", got[3])
	}
	// A second start finds nothing to move.
	again := &inbox{js: js, nc: nc, shards: 4}
	if err := again.ensure(ctx); err != nil {
		t.Fatal(err)
	}
}

// Content over inlineContent is stored in chunks beside its entry, which
// stays small; it reads back whole, and a chunk gone is errContentLost,
// not a cut file. A redelivery adds nothing.
func TestInboxChunkedContent(t *testing.T) {
	nc, js, ctx := jetStreamForTest(t)
	in := &inbox{js: js, nc: nc, shards: 2}
	if err := in.ensure(ctx); err != nil {
		t.Fatal(err)
	}
	content := make([]byte, 2*in.chunkSize()+12345)
	for i := range content {
		content[i] = byte(i * 31)
	}
	s := &stored{Message: Message{ID: kit.NewMsgID(), Type: "application/pdf"}, Content: content}
	if _, err := in.deliver(ctx, "bob", s); err != nil {
		t.Fatal(err)
	}
	got, err := in.get(ctx, "bob", s.ID)
	if err != nil || got.Chunks != 3 || got.Size != int64(len(content)) || got.Content != nil {
		t.Fatalf("entry: chunks %d, size %d, inline %d bytes, %v", got.Chunks, got.Size, len(got.Content), err)
	}
	st, _ := js.Stream(ctx, InboxStreamName(in.shard(s.ID)))
	entry, _ := st.GetLastMsgForSubject(ctx, in.inboxSubject("bob", s.ID))
	if len(entry.Data) > 4<<10 {
		t.Fatalf("entry of %d bytes", len(entry.Data))
	}
	read := func() ([]byte, error) {
		r, err := in.content(ctx, "bob", got)
		if err != nil {
			return nil, err
		}
		return io.ReadAll(r)
	}
	if b, err := read(); err != nil || !bytes.Equal(b, content) {
		t.Fatalf("content: %d bytes, %v", len(b), err)
	}
	before := st.CachedInfo().State.Msgs
	if dup, err := in.deliver(ctx, "bob", &stored{Message: s.Message, Content: content}); err != nil || !dup {
		t.Fatalf("redelivery: duplicate %v, %v", dup, err)
	}
	if info, _ := st.Info(ctx); info.State.Msgs != before {
		t.Fatalf("a redelivery added %d stream messages", info.State.Msgs-before)
	}
	if err := st.Purge(ctx, jetstream.WithPurgeSubject(in.chunkSubject("bob", s.ID, 2))); err != nil {
		t.Fatal(err)
	}
	if _, err := read(); !errors.Is(err, errContentLost) {
		t.Fatalf("a chunk gone: %v, want errContentLost", err)
	}
}

// New inbox streams of one server are written with group commit: in
// asynchronous persist mode behind the journal, which holds every entry,
// chunk and read marker; an entry the stream lost comes back when the
// inbox starts again. InboxEachWrite keeps the mode of before.
func TestInboxGroupCommit(t *testing.T) {
	nc, js, ctx := jetStreamForTest(t)
	in := &inbox{js: js, nc: nc, shards: 2}
	if err := in.ensure(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		st, _ := js.Stream(ctx, InboxStreamName(i))
		if st.CachedInfo().Config.PersistMode != jetstream.AsyncPersistMode || in.gc == nil || !in.async[i] {
			t.Fatalf("shard %d: persist mode %v, writer %v", i, st.CachedInfo().Config.PersistMode, in.gc != nil)
		}
	}
	s := &stored{Message: Message{ID: kit.NewMsgID(), Type: "text/plain", Text: "kept"}}
	if _, err := in.deliver(ctx, "bob", s); err != nil {
		t.Fatal(err)
	}
	if err := in.markRead(ctx, "bob", s.ID, 1234); err != nil {
		t.Fatal(err)
	}
	if records, writes := in.gc.Stats(); records == 0 || writes != 2 {
		t.Fatalf("journal: %d records, %d writes", records, writes)
	}
	in.close()

	// the stream loses the entry (a crash before its sync); a new start
	// restores it from the journal, read marker and all
	st, _ := js.Stream(ctx, InboxStreamName(in.shard(s.ID)))
	m, err := st.GetLastMsgForSubject(ctx, in.inboxSubject("bob", s.ID))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteMsg(ctx, m.Sequence); err != nil {
		t.Fatal(err)
	}
	if _, err := in.get(ctx, "bob", s.ID); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Fatalf("lost entry: %v", err)
	}
	in2 := &inbox{js: js, nc: nc, shards: 2}
	if err := in2.ensure(ctx); err != nil {
		t.Fatal(err)
	}
	defer in2.close()
	got, err := in2.get(ctx, "bob", s.ID)
	if err != nil || got.Text != "kept" || got.ReadAt != 1234 {
		t.Fatalf("restored entry: %+v %v", got, err)
	}

	// each write, as before group commit
	nc2, js2, ctx2 := jetStreamForTest(t)
	each := &inbox{js: js2, nc: nc2, shards: 2, eachWrite: true}
	if err := each.ensure(ctx2); err != nil {
		t.Fatal(err)
	}
	st2, _ := js2.Stream(ctx2, InboxStreamName(0))
	if st2.CachedInfo().Config.PersistMode != jetstream.DefaultPersistMode || each.gc != nil {
		t.Fatalf("each write: persist mode %v, writer %v", st2.CachedInfo().Config.PersistMode, each.gc != nil)
	}
}
