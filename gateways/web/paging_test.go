package web

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/schemas"
)

// fillInbox delivers n messages to client (and one to other after each
// third, so that the shards hold other inboxes in between) and returns
// client's ids, oldest first.
func fillInbox(t *testing.T, ctx context.Context, in *inbox, client, other string, n int) []string {
	t.Helper()
	var ids []string
	for i := range n {
		s := &stored{Message: Message{ID: kit.NewMsgID(), From: schemas.Endpoint{Client: "alice"}, To: client, Text: strconv.Itoa(i)}}
		if _, err := in.deliver(ctx, client, s); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, s.ID)
		if i%3 == 0 {
			o := &stored{Message: Message{ID: kit.NewMsgID(), To: other, Text: "not yours"}}
			if _, err := in.deliver(ctx, other, o); err != nil {
				t.Fatal(err)
			}
		}
	}
	return ids
}

// pageAll follows the "next" cursors from the newest page to the end.
func pageAll(t *testing.T, ctx context.Context, in *inbox, client string, limit int) (ids []string, pages int) {
	t.Helper()
	var c cursor
	for {
		p, err := in.page(ctx, client, c, false, limit)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(p.Messages) > limit {
			t.Fatalf("page of %d over limit %d", len(p.Messages), limit)
		}
		for _, m := range p.Messages {
			if m.To != client {
				t.Fatalf("%s's page holds a message to %s", client, m.To)
			}
			ids = append(ids, m.ID)
		}
		if p.Next == "" {
			return ids, pages
		}
		if len(p.Messages) != limit {
			t.Fatalf("a page of %d (limit %d) with a next cursor", len(p.Messages), limit)
		}
		if c, err = decodeCursor(p.Next, in.shards); err != nil {
			t.Fatal(err)
		}
		if pages > 1000 {
			t.Fatal("paging does not end")
		}
	}
}

// Paging through an inbox spread over 8 shards, with another client's
// messages in between, returns each message once, newest first, for any
// page size; the read markers appear on the paged messages.
func TestInboxPaging(t *testing.T) {
	nc, js, ctx := jetStreamForTest(t)
	in := &inbox{js: js, nc: nc, shards: 8}
	if err := in.ensure(ctx); err != nil {
		t.Fatal(err)
	}
	ids := fillInbox(t, ctx, in, "bob", "carol", 300)
	read := map[string]int64{}
	for i := 0; i < len(ids); i += 7 {
		if err := in.markRead(ctx, "bob", ids[i], int64(1000+i)); err != nil {
			t.Fatal(err)
		}
		read[ids[i]] = int64(1000 + i)
	}
	want := slices.Clone(ids)
	slices.Reverse(want)
	for _, limit := range []int{1, 7, 50, 299, 300, 1000} {
		got, pages := pageAll(t, ctx, in, "bob", limit)
		if !slices.Equal(got, want) {
			t.Fatalf("limit %d: %d messages in %d pages, not each once newest first", limit, len(got), pages)
		}
		if wantPages := (len(ids) + limit - 1) / limit; pages != wantPages {
			t.Errorf("limit %d: %d pages, want %d", limit, pages, wantPages)
		}
	}
	p, err := in.page(ctx, "bob", nil, false, 50)
	if err != nil {
		t.Fatal(err)
	}
	marked := 0
	for c := cursor(nil); ; {
		for _, m := range p.Messages {
			if m.ReadAt != read[m.ID] {
				t.Fatalf("%s: read_at %d, want %d", m.ID, m.ReadAt, read[m.ID])
			}
			if m.ReadAt != 0 {
				marked++
			}
		}
		if p.Next == "" {
			break
		}
		c, _ = decodeCursor(p.Next, 8)
		if p, err = in.page(ctx, "bob", c, false, 50); err != nil {
			t.Fatal(err)
		}
	}
	if marked != len(read) {
		t.Fatalf("%d read markers on the pages, want %d", marked, len(read))
	}
	if got, _ := pageAll(t, ctx, in, "dave", 10); len(got) != 0 {
		t.Fatalf("an empty inbox lists %d messages", len(got))
	}
}

// after= returns only messages newer than the cursor, the oldest of them
// first when more than the limit came, and a cursor to poll with.
func TestInboxPagingAfter(t *testing.T) {
	nc, js, ctx := jetStreamForTest(t)
	in := &inbox{js: js, nc: nc, shards: 8}
	if err := in.ensure(ctx); err != nil {
		t.Fatal(err)
	}
	old := fillInbox(t, ctx, in, "bob", "carol", 40)
	first, err := in.page(ctx, "bob", nil, false, 10)
	if err != nil {
		t.Fatal(err)
	}
	if first.Messages[0].ID != old[len(old)-1] {
		t.Fatalf("first page starts with %s, want the newest %s", first.Messages[0].ID, old[len(old)-1])
	}
	fresh := fillInbox(t, ctx, in, "bob", "carol", 25)
	var got []string
	newer := first.Newer
	for polls := 0; ; polls++ {
		c, err := decodeCursor(newer, 8)
		if err != nil {
			t.Fatal(err)
		}
		p, err := in.page(ctx, "bob", c, true, 10)
		if err != nil {
			t.Fatal(err)
		}
		if p.Next != "" {
			t.Fatal("a page read forwards has a next cursor")
		}
		// newest first within the page, the pages oldest first
		for i := len(p.Messages) - 1; i >= 0; i-- {
			got = append(got, p.Messages[i].ID)
		}
		newer = p.Newer
		if !p.More {
			if len(p.Messages) != 5 || polls != 2 {
				t.Fatalf("poll %d: %d messages without more, want 5 on the third", polls, len(p.Messages))
			}
			break
		}
		if len(p.Messages) != 10 {
			t.Fatalf("poll %d: %d messages with more, want 10", polls, len(p.Messages))
		}
	}
	if !slices.Equal(got, fresh) {
		t.Fatalf("polling returned %d messages, want the %d new ones each once in order", len(got), len(fresh))
	}
	// Nothing new: an empty page, the same cursor.
	c, _ := decodeCursor(newer, 8)
	p, err := in.page(ctx, "bob", c, true, 10)
	if err != nil || len(p.Messages) != 0 || p.More || p.Newer != newer {
		t.Fatalf("poll with nothing new: %+v, %v", p, err)
	}
	// One more arrives.
	last := fillInbox(t, ctx, in, "bob", "carol", 1)
	if p, err = in.page(ctx, "bob", c, true, 10); err != nil || len(p.Messages) != 1 || p.Messages[0].ID != last[0] {
		t.Fatalf("poll after one more: %+v, %v", p, err)
	}
}

// A cursor decodes only for an inbox of its shard count, and only whole.
func TestInboxPagingCursor(t *testing.T) {
	c := cursor{1, 0, 300, 1 << 40}
	s := encodeCursor(c)
	if got, err := decodeCursor(s, 4); err != nil || !slices.Equal(got, c) {
		t.Fatalf("round trip: %v, %v", got, err)
	}
	for _, bad := range []string{"", "!!", s + "A", s[:len(s)-2], encodeCursor(cursor{1, 2, 3}), encodeCursor(cursor{1, 2, 3, 4, 5}),
		"AAAA", "_____________________w"} {
		if _, err := decodeCursor(bad, 4); err == nil {
			t.Errorf("cursor %q decodes", bad)
		}
	}
}

// BenchmarkInboxPage reads the newest page of 50 (and one from the
// middle) of an inbox of 1,000 and 20,000 messages over 8 shards, with
// as many messages of another client in between: the cost follows the
// page, not the inbox.
//
//	go test -run '^$' -bench InboxPage -benchtime 200x ./gateways/web/
func BenchmarkInboxPage(b *testing.B) {
	for _, size := range []int{1000, 20000} {
		nc, js, ctx := jetStreamForTest(b)
		in := &inbox{js: js, nc: nc, shards: 8}
		if err := in.ensure(ctx); err != nil {
			b.Fatal(err)
		}
		// A typical inbox entry: a few hundred bytes of JSON.
		var ids []string
		for i := range size {
			for _, client := range []string{"bob", "carol"} {
				s := &stored{Message: Message{ID: kit.NewMsgID(), From: schemas.Endpoint{Medium: "web", Client: "alice", Address: "alice"},
					To: client, Subject: "hello", Medium: "web", Type: "text/plain; charset=utf-8",
					Text: fmt.Sprintf("message %d: %0200d", i, i)}, Ref: kit.AckRef{MsgID: "x", Tx: "y", ID: "z"}}
				data, _, err := encodeEntry(s)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := js.PublishAsync(in.inboxSubject(client, s.ID), data, jetstream.WithMsgID(s.ID)); err != nil {
					b.Fatal(err)
				}
				if client == "bob" {
					ids = append(ids, s.ID)
				}
			}
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-ctx.Done():
			b.Fatal(ctx.Err())
		}
		first, err := in.page(ctx, "bob", nil, false, 50)
		if err != nil || len(first.Messages) != 50 {
			b.Fatalf("first page: %d messages, %v", len(first.Messages), err)
		}
		// The cursor of the page holding the middle of the inbox.
		var middle cursor
		for p, seen := first, 50; seen < size/2; seen += 50 {
			middle, _ = decodeCursor(p.Next, 8)
			if p, err = in.page(ctx, "bob", middle, false, 50); err != nil {
				b.Fatal(err)
			}
		}
		for _, at := range []struct {
			name string
			c    cursor
		}{{"newest", nil}, {"middle", middle}} {
			b.Run(fmt.Sprintf("inbox=%d/%s", size, at.name), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					p, err := in.page(ctx, "bob", at.c, false, 50)
					if err != nil {
						b.Fatal(err)
					}
					if len(p.Messages) != 50 {
						b.Fatalf("%d messages", len(p.Messages))
					}
				}
			})
		}
	}
}
