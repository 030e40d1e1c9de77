package groupcommit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/uims/uims/internal/natstest"
)

const target = "T_INBOX"

// fixture: one target stream in asynchronous persist mode on subjects t.>
func fixture(t *testing.T, ns interface{ ClientURL() string }) (*nats.Conn, jetstream.JetStream, Config) {
	t.Helper()
	nc, err := nats.Connect(ns.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: target, Subjects: []string{"t.>"},
		Storage: jetstream.FileStorage, PersistMode: jetstream.AsyncPersistMode, Duplicates: time.Minute}); err != nil {
		t.Fatal(err)
	}
	return nc, js, Config{Journal: "T_JOURNAL", Subject: "t-journal", Streams: []string{target},
		StreamOf: func(string) string { return target }, Prefixes: []string{"t."}, Log: zerolog.Nop()}
}

func newWriter(t *testing.T, nc *nats.Conn, js jetstream.JetStream, cfg Config) *Writer {
	t.Helper()
	w, err := New(context.Background(), nc, js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return w
}

// subjects returns how many messages target holds per subject.
func subjects(t *testing.T, js jetstream.JetStream) map[string]uint64 {
	t.Helper()
	st, err := js.Stream(context.Background(), target)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background(), jetstream.WithSubjectFilter(">"))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects
}

func publishAll(t *testing.T, w *Writer, n int, prefix string) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			id := fmt.Sprintf("%s%d", prefix, i)
			ack, err := w.Publish(ctx, "t."+id, []byte("body "+id), id)
			if err == nil && (ack == nil || ack.Stream != target) {
				err = fmt.Errorf("ack %+v", ack)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// restartAndReconnect restarts ns on its data in dir and waits until nc
// has reconnected to the new server.
func restartAndReconnect(t *testing.T, ns *server.Server, nc *nats.Conn, dir string) *server.Server {
	t.Helper()
	ns = natstest.Restart(t, ns, dir, 100*time.Millisecond)
	deadline := time.Now().Add(10 * time.Second)
	for nc.Stats().Reconnects == 0 || !nc.IsConnected() {
		if time.Now().After(deadline) {
			t.Fatal("no reconnection")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return ns
}

// Concurrent writes are all stored, each once, and share journal records.
func TestWritesShareJournalRecords(t *testing.T) {
	ns := natstest.Run(t)
	nc, js, cfg := fixture(t, ns)
	w := newWriter(t, nc, js, cfg)
	const n = 400
	publishAll(t, w, n, "m")
	got := subjects(t, js)
	if len(got) != n {
		t.Fatalf("target holds %d subjects, want %d", len(got), n)
	}
	for s, c := range got {
		if c != 1 {
			t.Fatalf("%s stored %d times", s, c)
		}
	}
	records, writes := w.Stats()
	if writes != n || records >= n {
		t.Fatalf("%d writes in %d journal records: want %d writes grouped in fewer records", writes, records, n)
	}
	t.Logf("%d writes in %d journal records", writes, records)

	// the journal holds every message, byte for byte
	jst, _ := js.Stream(context.Background(), cfg.Journal)
	info, _ := jst.Info(context.Background())
	seen := map[string]bool{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := jst.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		entries, err := DecodeRecord(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if want := "body " + e.MsgID; string(e.Data) != want || e.Subject != "t."+e.MsgID {
				t.Fatalf("journal entry %+v", e)
			}
			seen[e.MsgID] = true
		}
	}
	if len(seen) != n {
		t.Fatalf("journal holds %d messages, want %d", len(seen), n)
	}

	// a message written again (a retry) is a duplicate, not a second copy
	ack, err := w.Publish(context.Background(), "t.m7", []byte("body m7"), "m7")
	if err != nil || !ack.Duplicate {
		t.Fatalf("retry: %+v %v", ack, err)
	}
}

// What a target stream lost is put back from the journal, once, and what
// it kept is not written again.
func TestRecoverRestoresLostMessages(t *testing.T) {
	ns := natstest.Run(t)
	nc, js, cfg := fixture(t, ns)
	w := newWriter(t, nc, js, cfg)
	publishAll(t, w, 50, "a")
	w.Close()

	// lose five messages, as a crash loses an unsynced tail
	st, _ := js.Stream(context.Background(), target)
	lost := []string{"t.a3", "t.a17", "t.a30", "t.a41", "t.a49"}
	for _, s := range lost {
		m, err := st.GetLastMsgForSubject(context.Background(), s)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.DeleteMsg(context.Background(), m.Sequence); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(subjects(t, js)); got != 45 {
		t.Fatalf("after the loss: %d subjects", got)
	}
	w2 := newWriter(t, nc, js, cfg) // New recovers
	got := subjects(t, js)
	if len(got) != 50 {
		t.Fatalf("after recovery: %d subjects, want 50", len(got))
	}
	for _, s := range lost {
		if got[s] != 1 {
			t.Fatalf("%s: %d copies after recovery", s, got[s])
		}
		m, _ := st.GetLastMsgForSubject(context.Background(), s)
		if want := "body " + strings.TrimPrefix(s, "t."); string(m.Data) != want {
			t.Fatalf("%s restored as %q", s, m.Data)
		}
	}
	// a second recovery finds nothing to do
	info, _ := st.Info(context.Background())
	if err := w2.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	if info2, _ := st.Info(context.Background()); info2.State.LastSeq != info.State.LastSeq {
		t.Fatalf("second recovery wrote %d messages", info2.State.LastSeq-info.State.LastSeq)
	}
}

// After the connection reconnects (the server restarted), the next write
// first recovers what the server lost.
func TestRecoverAfterReconnect(t *testing.T) {
	dir := t.TempDir()
	ns := natstest.RunDir(t, dir)
	nc, js, cfg := fixture(t, ns)
	w := newWriter(t, nc, js, cfg)
	publishAll(t, w, 20, "b")

	ns = restartAndReconnect(t, ns, nc, dir)
	deadline := time.Now().Add(10 * time.Second)
	// the restarted server "lost" b5 (delete it through another connection)
	nc2 := natstest.Connect(t, ns, "other")
	js2, _ := jetstream.New(nc2)
	st, _ := js2.Stream(context.Background(), target)
	m, err := st.GetLastMsgForSubject(context.Background(), "t.b5")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteMsg(context.Background(), m.Sequence); err != nil {
		t.Fatal(err)
	}
	var ack *jetstream.PubAck
	for time.Now().Before(deadline) { // JetStream may need a moment after the restart
		if ack, err = w.Publish(context.Background(), "t.after", []byte("after"), "after"); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	got := subjects(t, js2)
	if got["t.b5"] != 1 || got["t.after"] != 1 || len(got) != 21 {
		t.Fatalf("after reconnect: %v (ack %+v)", got, ack)
	}
}

// A server that restarts and then stays away leaves the next write
// recovering until it gives up; Close abandons that recovery and returns,
// and the write fails instead of hanging (a broker stopping after its
// server died once waited on Close for good: the journal's ordered
// consumer recreated itself without end).
func TestCloseAbandonsRecovery(t *testing.T) {
	dir := t.TempDir()
	ns := natstest.RunDir(t, dir)
	nc, js, cfg := fixture(t, ns)
	w, err := New(context.Background(), nc, js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	publishAll(t, w, 5, "c")
	ns = restartAndReconnect(t, ns, nc, dir)
	ns.Shutdown()
	ns.WaitForShutdown()

	published := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err := w.Publish(ctx, "t.lost", []byte("x"), "lost")
		published <- err
	}()
	time.Sleep(300 * time.Millisecond) // the committer is recovering now
	closed := make(chan struct{})
	go func() { w.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(20 * time.Second):
		t.Fatal("Close still waiting on a recovery against a server that is gone")
	}
	select {
	case err := <-published:
		if err == nil {
			t.Fatal("a write was reported stored with the server gone")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the write was not answered after Close")
	}
}

// A write whose journal record cannot be stored fails: it is not
// reported stored when it is not durably stored.
func TestJournalFailureFailsTheWrite(t *testing.T) {
	ns := natstest.Run(t)
	nc, js, cfg := fixture(t, ns)
	w := newWriter(t, nc, js, cfg)
	if err := js.DeleteStream(context.Background(), cfg.Journal); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := w.Publish(ctx, "t.x", []byte("x"), "x")
	if err == nil || !strings.Contains(err.Error(), "journal") {
		t.Fatalf("write without a journal: %v", err)
	}
}

func TestTooLargeAndClosed(t *testing.T) {
	ns := natstest.Run(t)
	nc, js, cfg := fixture(t, ns)
	cfg.MaxBytes = 1024
	w := newWriter(t, nc, js, cfg)
	if _, err := w.Publish(context.Background(), "t.big", bytes.Repeat([]byte("x"), 2000), "big"); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("2000 bytes with a 1024-byte record: %v", err)
	}
	// many writes just under the limit each go in records of their own
	publishAll(t, w, 3, "c")
	w.Close()
	if _, err := w.Publish(context.Background(), "t.late", []byte("x"), "late"); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

func TestDecodeRecord(t *testing.T) {
	rec := appendEntry(appendEntry(nil, "a.b", "id1", []byte("one")), "c", "", nil)
	got, err := DecodeRecord(rec)
	if err != nil || len(got) != 2 || got[0].Subject != "a.b" || got[0].MsgID != "id1" || string(got[0].Data) != "one" ||
		got[1].Subject != "c" || got[1].MsgID != "" || len(got[1].Data) != 0 {
		t.Fatalf("%+v %v", got, err)
	}
	for _, bad := range [][]byte{{0}, {0, 3, 'a'}, {0, 0, 0, 0, 0, 0, 0, 0}, append(rec, 0, 1, 'x', 0, 0, 0, 0, 0, 9)} {
		if _, err := DecodeRecord(bad); !errors.Is(err, ErrBadRecord) {
			t.Errorf("%x: %v", bad, err)
		}
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add(appendEntry(appendEntry(nil, "uims.inbox.3.bob.m1", "m1", []byte(`{"id":"m1"}`)), "uims.read.3.bob.m1", "read:m1", []byte("1700000000000")))
	f.Add([]byte{0, 1, 'x', 0, 0, 0, 0, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := DecodeRecord(b)
		if err != nil {
			return
		}
		// what decodes encodes back to the same bytes
		var again []byte
		for _, e := range entries {
			again = appendEntry(again, e.Subject, e.MsgID, e.Data)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("%x decodes to %+v, which encodes to %x", b, entries, again)
		}
	})
}

// Without StreamOf (subjects shared by many messages, as accounting
// records' are) recovery writes the journal's messages again with their
// ids: every one is in the stream at least once afterwards.
func TestRecoverAtLeastOnceWithoutStreamOf(t *testing.T) {
	ns := natstest.Run(t)
	nc, js, cfg := fixture(t, ns)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T_SHARED", Subjects: []string{"s.>"},
		Storage: jetstream.FileStorage, PersistMode: jetstream.AsyncPersistMode, Duplicates: 500 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	cfg.Streams, cfg.StreamOf, cfg.Prefixes = []string{"T_SHARED"}, nil, []string{"s."}
	w := newWriter(t, nc, js, cfg)
	for i := range 5 {
		if _, err := w.Publish(ctx, "s.web.web", []byte(fmt.Sprint(i)), fmt.Sprint("r", i)); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	st, _ := js.Stream(ctx, "T_SHARED")
	for _, seq := range []uint64{2, 4} { // lost
		if err := st.DeleteMsg(ctx, seq); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Second) // past the duplicate window: the ids are forgotten, as after a crash
	newWriter(t, nc, js, cfg)
	seen := map[string]int{}
	info, _ := st.Info(ctx)
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		if m, err := st.GetMsg(ctx, seq); err == nil {
			seen[m.Header.Get(jetstream.MsgIDHeader)]++
		}
	}
	for i := range 5 {
		if seen[fmt.Sprint("r", i)] < 1 {
			t.Fatalf("record r%d missing after recovery: %v", i, seen)
		}
	}
}

// Recovery writes back only subjects the writer writes: an entry for any
// other subject in the journal (from whoever could publish there) is
// skipped, and the rest of the record is restored.
func TestRecoverSkipsForeignSubjects(t *testing.T) {
	ns := natstest.Run(t)
	nc, js, cfg := fixture(t, ns)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T_OTHER", Subjects: []string{"u.>"}}); err != nil {
		t.Fatal(err)
	}
	newWriter(t, nc, js, cfg).Close() // the journal stream
	rec := appendEntry(appendEntry(nil, "u.evil", "e1", []byte("injected")), "t.kept", "k1", []byte("kept"))
	if _, err := js.Publish(ctx, cfg.Subject, rec); err != nil {
		t.Fatal(err)
	}
	newWriter(t, nc, js, cfg)
	if got := subjects(t, js); got["t.kept"] != 1 {
		t.Fatalf("the writer's own entry not restored: %v", got)
	}
	other, _ := js.Stream(ctx, "T_OTHER")
	if info, _ := other.Info(ctx); info.State.Msgs != 0 {
		t.Fatalf("recovery wrote %d messages on a subject the writer does not write", info.State.Msgs)
	}
}
