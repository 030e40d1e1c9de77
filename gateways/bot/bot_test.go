package bot_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/bot"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// world is a fabric with a broker, alice on the test gateway (an
// originator and destination of its own) and a bot "echo" on medium bot.
type world struct {
	f     *fabrictest.Fabric
	alice *kit.Kit
	inbox *fabrictest.Inbox
}

func newWorld(t *testing.T) *world {
	t.Helper()
	f := fabrictest.New(t)
	f.AddParty("echobot", miap.Grant{Role: miap.RoleGateway, Media: []string{schemas.MediumBot}})
	f.StartBroker(broker.Config{})
	f.PutProfiles(
		&schemas.Profile{ID: "alice", Name: "Alice", Addresses: map[string]string{"test": "alice"}, Prefer: []string{"test"}},
		&schemas.Profile{ID: "echo", Name: "Echo", Addresses: map[string]string{schemas.MediumBot: "echo"}, Prefer: []string{schemas.MediumBot}},
	)
	w := &world{f: f, inbox: fabrictest.NewInbox()}
	w.alice, _ = f.StartKit(w.inbox, kit.Config{Gateway: "test", Medium: "test"})
	return w
}

// startBot runs a bot with handlers set by setup until the test ends.
func (w *world) startBot(t *testing.T, cfg bot.Config, setup func(b *bot.Bot)) *bot.Bot {
	t.Helper()
	cfg.Party, cfg.Medium = "echobot", schemas.MediumBot
	if cfg.Address == "" {
		cfg.Address = "echo"
	}
	b, err := bot.New(w.f.Conn("echobot"), w.f.Keyring("echobot"), cfg, w.f.Log)
	if err != nil {
		t.Fatal(err)
	}
	setup(b)
	fabrictest.Start(t, "bot", b.Run)
	return b
}

// send has alice send text to the bot, retrying until a route exists.
func (w *world) send(t *testing.T, text string) *kit.Result {
	t.Helper()
	var res *kit.Result
	var err error
	id := kit.NewMsgID()
	fabrictest.Eventually(t, 10*time.Second, "a route to the bot", func() bool {
		res, err = w.alice.Send(context.Background(), &kit.Submission{MsgID: id, From: schemas.Endpoint{Medium: "test", Address: "alice", Client: "alice"},
			To: "echo", Subject: "hello", Content: []byte(text)})
		return err == nil || !miap.CodeOf(err).Retryable()
	})
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	return res
}

func (w *world) note(t *testing.T, msgID, status string) *schemas.StatusEvent {
	t.Helper()
	var ev *schemas.StatusEvent
	fabrictest.Eventually(t, 15*time.Second, status+" notification for "+msgID, func() bool {
		ev = w.inbox.NoteOf(msgID, status)
		return ev != nil
	})
	return ev
}

// An auto-reply bot: the message reaches the handler with its sender and
// content, the reply reaches alice as a reply, and alice gets delivered and
// then read receipts.
func TestBotReceivesRepliesAndReportsRead(t *testing.T) {
	w := newWorld(t)
	got := make(chan *bot.Message, 1)
	var b *bot.Bot
	b = w.startBot(t, bot.Config{}, func(bb *bot.Bot) {
		bb.Handle(func(ctx context.Context, m *bot.Message) error {
			got <- m
			if _, err := bb.Reply(ctx, m, "you said: "+m.Text()); err != nil {
				return err
			}
			return nil
		})
	})
	res := w.send(t, "ping")
	if res.Status != schemas.StatusDelivered || res.Dest.Gateway != "echobot" {
		t.Fatalf("result %+v", res)
	}
	m := <-got
	if m.ID != res.MsgID || m.From.Client != "alice" || m.From.Medium != "test" || m.To != "echo" || m.Recipient != "echo" ||
		m.Subject != "hello" || m.Text() != "ping" || !strings.HasPrefix(m.Type, "text/plain") {
		t.Fatalf("message %+v", m)
	}
	var reply *kit.Delivery
	fabrictest.Eventually(t, 10*time.Second, "the reply in alice's inbox", func() bool {
		for _, d := range w.inbox.All() {
			if d.Routed.IMI.InReplyTo == res.MsgID {
				reply = d
				return true
			}
		}
		return false
	})
	if string(reply.Content) != "you said: ping" || reply.Routed.IMI.From.Address != "echo" || reply.Routed.Sender != "echo" ||
		reply.Routed.IMI.Subject != "Re: hello" {
		t.Fatalf("reply %+v %q", reply.Routed, reply.Content)
	}
	w.note(t, res.MsgID, schemas.StatusDelivered)
	if err := b.Read(context.Background(), m.Ref); err != nil {
		t.Fatal(err)
	}
	w.note(t, res.MsgID, schemas.StatusRead)
}

// The bot's own messages: Send finds the sender's client, and OnStatus
// hears delivered and read.
func TestBotSendsAndHearsStatus(t *testing.T) {
	w := newWorld(t)
	var mu sync.Mutex
	statuses := map[string][]string{}
	b := w.startBot(t, bot.Config{}, func(b *bot.Bot) {
		b.OnStatus(func(ctx context.Context, s *bot.Status) error {
			mu.Lock()
			statuses[s.ID] = append(statuses[s.ID], s.Status)
			mu.Unlock()
			return nil
		})
	})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	sent, err := b.Send(ctx, bot.Outgoing{To: "alice", Subject: "reminder", Text: "stand-up in 5 minutes", Meta: map[string]string{"bot.kind": "reminder"}})
	if err != nil {
		t.Fatal(err)
	}
	d := w.inbox.Get(sent.ID)
	if sent.Status != schemas.StatusDelivered || d == nil || string(d.Content) != "stand-up in 5 minutes" || d.Routed.Sender != "echo" {
		t.Fatalf("sent %+v, delivery %+v", sent, d)
	}
	if err := w.alice.Ack(ctx, d.Ref, schemas.StatusRead, "", ""); err != nil {
		t.Fatal(err)
	}
	fabrictest.Eventually(t, 10*time.Second, "delivered and read statuses", func() bool {
		mu.Lock()
		defer mu.Unlock()
		s := statuses[sent.ID]
		return len(s) >= 2 && s[0] == schemas.StatusDelivered && s[len(s)-1] == schemas.StatusRead
	})
	// an unknown recipient is an error with its code, at once
	_, err = b.Send(ctx, bot.Outgoing{To: "nobody-here", Text: "x"})
	if bot.Code(err) != "UNKNOWN_RECIPIENT" || bot.Temporary(err) {
		t.Fatalf("send to nobody: %v (%s)", err, bot.Code(err))
	}
}

// What a handler returns decides what the sender hears: a rejection with
// its reason, a timeout, a panic, a later failure — each a non-delivery
// report with code REJECTED, never silence.
func TestBotFailuresReachTheSender(t *testing.T) {
	w := newWorld(t)
	block := make(chan struct{})
	defer close(block)
	later := make(chan bot.Ref, 1)
	b := w.startBot(t, bot.Config{HandlerTimeout: 500 * time.Millisecond}, func(b *bot.Bot) {
		b.Handle(func(ctx context.Context, m *bot.Message) error {
			switch m.Text() {
			case "reject":
				return bot.Reject("I only understand 'help'")
			case "stall":
				<-block // a bot that stops answering
				return nil
			case "panic":
				panic("bug in the bot")
			case "later":
				later <- m.Ref
				return bot.ErrLater
			case "error":
				return errors.New("the database is gone")
			}
			return nil
		})
	})
	for text, reason := range map[string]string{
		"reject": "I only understand 'help'",
		"stall":  "did not answer within 500ms",
		"panic":  "panicked",
		"error":  "the database is gone",
	} {
		t.Run(text, func(t *testing.T) {
			id := kit.NewMsgID()
			var err error
			fabrictest.Eventually(t, 10*time.Second, "the bot's answer", func() bool {
				_, err = w.alice.Send(context.Background(), &kit.Submission{MsgID: id, From: schemas.Endpoint{Medium: "test", Address: "alice", Client: "alice"},
					To: "echo", Content: []byte(text)})
				return err == nil || !miap.CodeOf(err).Retryable()
			})
			if miap.CodeOf(err) != schemas.CodeRejected {
				t.Fatalf("send: %v, want REJECTED", err)
			}
			ev := w.note(t, id, schemas.StatusFailed)
			if ev.Code != "REJECTED" || !strings.Contains(ev.Reason, reason) {
				t.Fatalf("non-delivery report %+v, want reason %q", ev, reason)
			}
		})
	}
	t.Run("later", func(t *testing.T) {
		res := w.send(t, "later")
		if res.Status != schemas.StatusTransferred {
			t.Fatalf("result %+v", res)
		}
		ref := <-later
		// the reference survives a round trip through a string (a chat id, a database)
		ref2, err := bot.ParseRef(ref.String())
		if err != nil || ref2 != ref {
			t.Fatalf("ParseRef: %+v %v", ref2, err)
		}
		if err := b.Failed(context.Background(), ref2, "the printer is out of paper"); err != nil {
			t.Fatal(err)
		}
		ev := w.note(t, res.MsgID, schemas.StatusFailed)
		if ev.Code != "REJECTED" || ev.Reason != "the printer is out of paper" {
			t.Fatalf("non-delivery report %+v", ev)
		}
	})
	for _, bad := range []string{"", "not-base64!", "e30", bot.Ref{MsgID: "x"}.String()} {
		if _, err := bot.ParseRef(bad); err == nil {
			t.Errorf("ParseRef(%q) accepted", bad)
		}
	}
}

// The same message delivered twice (an originator's retry after a lost
// reply) reaches the handler once and gets the first outcome.
func TestBotHandlesAMessageOnce(t *testing.T) {
	w := newWorld(t)
	var calls atomic.Int32
	b, err := bot.New(w.f.Conn("echobot"), w.f.Keyring("echobot"), bot.Config{Party: "echobot", Medium: schemas.MediumBot}, w.f.Log)
	if err != nil {
		t.Fatal(err)
	}
	b.Handle(func(ctx context.Context, m *bot.Message) error {
		calls.Add(1)
		time.Sleep(50 * time.Millisecond)
		return nil
	})
	d := &kit.Delivery{Routed: &schemas.RoutedIMI{IMI: schemas.IMI{MsgID: kit.NewMsgID()}, Tx: "t1"}, Type: "text/plain", Content: []byte("x")}
	d.Ref = kit.AckRef{MsgID: d.Routed.IMI.MsgID, Tx: "t1", ID: "AAAA"}
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if st, err := b.Deliver(context.Background(), d); st != schemas.StatusDelivered || err != nil {
				t.Errorf("deliver: %q %v", st, err)
			}
		}()
	}
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Fatalf("handler called %d times", n)
	}
	if ref, _ := b.Held(context.Background(), &schemas.HeldQuery{MsgID: d.Ref.MsgID}); ref == nil || ref.Tx != "t1" {
		t.Fatalf("held: %+v", ref)
	}
	if ref, _ := b.Held(context.Background(), &schemas.HeldQuery{MsgID: kit.NewMsgID()}); ref != nil {
		t.Fatalf("held an unknown message: %+v", ref)
	}
	if _, err := bot.New(w.f.Conn("x"), w.f.Keyring("echobot"), bot.Config{Party: "echobot", HandlerTimeout: time.Minute}, w.f.Log); err == nil {
		t.Fatal("a handler timeout beyond the originator's transfer timeout was accepted")
	}
}

// A handler that marks its message read at once: the sender hears
// delivered, then read (a read before delivered would be refused, and a
// medium such as SMS has receipts for delivery only).
func TestBotReadInHandler(t *testing.T) {
	w := newWorld(t)
	w.startBot(t, bot.Config{}, func(b *bot.Bot) {
		b.Handle(func(ctx context.Context, m *bot.Message) error { return b.Read(ctx, m.Ref) })
	})
	res := w.send(t, "read me")
	if res.Status != schemas.StatusDelivered {
		t.Fatalf("result %+v", res)
	}
	w.note(t, res.MsgID, schemas.StatusDelivered)
	w.note(t, res.MsgID, schemas.StatusRead)
	st, err := w.alice.Query(context.Background(), res.MsgID)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, h := range st.History {
		got = append(got, h.Status)
	}
	if st.State != schemas.StatusRead || !strings.Contains(strings.Join(got, ","), "delivered,read") {
		t.Fatalf("state %s, history %v", st.State, got)
	}
}
