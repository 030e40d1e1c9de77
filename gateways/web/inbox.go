package web

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"mime"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	json "github.com/goccy/go-json"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/internal/groupcommit"
	"github.com/uims/uims/miap/miapnats"
	"github.com/uims/uims/schemas"
)

// The inboxes live in JetStream streams (docs/RELIABILITY.md, Ownership: a
// message waiting for an outside party sits in a stream), spread over a fixed number of shards
// by a hash of the client id: uims.inbox.<shard>.<client>.<msgid> holds a
// delivered message, uims.read.<shard>.<client>.<msgid> the read marker,
// in stream UIMS_INBOX_<shard>. A stream stores its messages one after the
// other, and with sync always each write waits for its own fsync; shards
// write, and sync, side by side. The streams' duplicate window (longer than
// any ticket) makes a redelivered message a no-op.
const (
	InboxStream = "UIMS_INBOX"
	maxText     = 1 << 20

	// DefaultInboxShards is the number of inbox streams unless configured.
	DefaultInboxShards = 8
	// shardsMeta is the stream metadata that records the shard count, so
	// that an instance configured otherwise refuses to start.
	shardsMeta = "uims-inbox-shards"
)

// InboxStreamName returns the name of inbox shard i.
func InboxStreamName(i int) string { return InboxStream + "_" + strconv.Itoa(i) }

// shard returns the inbox shard of a message id.
func (in *inbox) shard(msgID string) int { return InboxShard(msgID, in.shards) }

// InboxShard returns the shard of a message id among n: FNV-1a of the id
// modulo n.
func InboxShard(msgID string, n int) int {
	h := uint32(2166136261)
	for i := 0; i < len(msgID); i++ {
		h ^= uint32(msgID[i])
		h *= 16777619
	}
	return int(h % uint32(n))
}

func (in *inbox) inboxSubject(client, msgID string) string {
	return "uims.inbox." + strconv.Itoa(in.shard(msgID)) + "." + client + "." + msgID
}

func (in *inbox) readSubject(client, msgID string) string {
	return "uims.read." + strconv.Itoa(in.shard(msgID)) + "." + client + "." + msgID
}

// EventsSubject is the core NATS subject of a client's live events; every
// web gateway instance holding an event stream for the client hears them.
func EventsSubject(client string) string { return "uims.web.events." + client }

// Message is an inbox entry as the API shows it.
type Message struct {
	ID          string               `json:"id"`
	From        schemas.Endpoint     `json:"from"`
	To          string               `json:"to"`
	Subject     string               `json:"subject,omitempty"`
	Medium      string               `json:"medium"` // the medium it came from
	Type        string               `json:"type"`
	Text        string               `json:"text"`
	HTML        string               `json:"html,omitempty"`
	Attachments []schemas.Attachment `json:"attachments,omitempty"`
	Partial     bool                 `json:"partial,omitempty"`
	At          int64                `json:"at"`
	ReadAt      int64                `json:"read_at,omitempty"`
}

// stored is the inbox entry in the stream. The content is in the entry
// (Content) up to inlineContent bytes; larger content is in Chunks stream
// messages of its own (content.go), Size bytes in all.
type stored struct {
	Message
	Ref     kit.AckRef `json:"ref"`
	Content []byte     `json:"content,omitempty"`
	Chunks  int        `json:"chunks,omitempty"`
	Size    int64      `json:"size,omitempty"`
}

// Event is a live event for a client.
type Event struct {
	Type    string               `json:"type"` // "message" or "status"
	Message *Message             `json:"message,omitempty"`
	Status  *schemas.StatusEvent `json:"status,omitempty"`
}

type inbox struct {
	js     jetstream.JetStream
	nc     *nats.Conn
	shards int
	// eachWrite makes new inbox streams fsync each write (the persist
	// mode of before group commit).
	eachWrite bool
	log       zerolog.Logger
	// gc writes to the shards in asynchronous persist mode (async[k])
	// through the group-commit journal; the others are written directly.
	gc    *groupcommit.Writer
	async []bool
}

// Journal is the stream and subject of the inbox's group-commit journal
// (internal/groupcommit).
const (
	JournalStream  = "UIMS_INBOX_JOURNAL"
	JournalSubject = "uims.journal.inbox"
)

// publish stores one message in shard k of the inbox, idempotently by id.
func (in *inbox) publish(ctx context.Context, k int, subject string, data []byte, id string) (*jetstream.PubAck, error) {
	if in.gc != nil && in.async[k] {
		return in.gc.Publish(ctx, subject, data, id)
	}
	return in.js.Publish(ctx, subject, data, jetstream.WithMsgID(id))
}

// shardOf returns the shard number in an inbox subject
// (uims.inbox.<k>.… or uims.read.<k>.…), -1 if none.
func shardOf(subject string) int {
	rest, ok := strings.CutPrefix(subject, "uims.inbox.")
	if !ok {
		if rest, ok = strings.CutPrefix(subject, "uims.read."); !ok {
			return -1
		}
	}
	k, _, _ := strings.Cut(rest, ".")
	n, err := strconv.Atoi(k)
	if err != nil {
		return -1
	}
	return n
}

// startGroupCommit starts the journal writer when a shard stream is in
// asynchronous persist mode, after recovering what those streams lost.
func (in *inbox) startGroupCommit(ctx context.Context) error {
	in.async = make([]bool, in.shards)
	var names []string
	for i := range in.shards {
		st, err := in.js.Stream(ctx, InboxStreamName(i))
		if err != nil {
			return fmt.Errorf("web: inbox stream: %w", err)
		}
		if st.CachedInfo().Config.PersistMode == jetstream.AsyncPersistMode {
			in.async[i] = true
			names = append(names, InboxStreamName(i))
		}
	}
	if len(names) == 0 {
		return nil
	}
	gc, err := groupcommit.New(ctx, in.nc, in.js, groupcommit.Config{
		Journal: JournalStream, Subject: JournalSubject, Streams: names,
		StreamOf: func(subject string) string { return InboxStreamName(shardOf(subject)) },
		Prefixes: []string{"uims.inbox.", "uims.read."},
		Log:      in.log,
	})
	if err != nil {
		return fmt.Errorf("web: inbox journal: %w", err)
	}
	in.gc = gc
	return nil
}

// close stops the group-commit writer.
func (in *inbox) close() {
	if in.gc != nil {
		in.gc.Close()
	}
}

// ensure creates the inbox streams, or checks that the existing ones were
// made with the same number of shards.
func (in *inbox) ensure(ctx context.Context) error {
	legacy, err := in.legacyStream(ctx)
	if err != nil {
		return err
	}
	n := strconv.Itoa(in.shards)
	if st, err := in.js.Stream(ctx, InboxStreamName(0)); err == nil {
		if have := st.CachedInfo().Config.Metadata[shardsMeta]; have != n {
			return fmt.Errorf("web: the inbox streams have %q shards, this instance is configured with %s: every web gateway instance must use the same count", have, n)
		}
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("web: inbox stream: %w", err)
	}
	// New streams of one server (replicas 1) are written with group
	// commit (internal/groupcommit): asynchronous persist mode behind a
	// journal. A replicated stream is synced by the server on its
	// own terms (its Raft log), and existing streams keep their mode.
	persist := jetstream.DefaultPersistMode
	if !in.eachWrite && miapnats.Replicas(in.js) == 1 {
		persist = jetstream.AsyncPersistMode
	}
	for i := range in.shards {
		name, k := InboxStreamName(i), strconv.Itoa(i)
		err := miapnats.EnsureStream(ctx, in.js, jetstream.StreamConfig{
			PersistMode: persist,
			Name:        name,
			Description: "web inboxes and read markers, shard " + k + " of " + n,
			Subjects:    []string{"uims.inbox." + k + ".>", "uims.read." + k + ".>"},
			Storage:     jetstream.FileStorage,
			MaxAge:      30 * 24 * time.Hour,
			Duplicates:  10 * time.Minute,
			AllowDirect: true, // paging.go reads with batched direct gets
			Metadata:    map[string]string{shardsMeta: n},
		})
		if err != nil {
			return fmt.Errorf("web: inbox stream %s: %w", name, err)
		}
		if err := in.allowDirect(ctx, name); err != nil {
			return fmt.Errorf("web: inbox stream %s: %w", name, err)
		}
	}
	if legacy != nil {
		if err := in.migrate(ctx, legacy); err != nil {
			return err
		}
	}
	return in.startGroupCommit(ctx)
}

// allowDirect turns on direct gets on a stream made before inbox paging.
func (in *inbox) allowDirect(ctx context.Context, name string) error {
	st, err := in.js.Stream(ctx, name)
	if err != nil {
		return err
	}
	cfg := st.CachedInfo().Config
	if cfg.AllowDirect {
		return nil
	}
	cfg.AllowDirect = true
	_, err = in.js.UpdateStream(ctx, cfg)
	return err
}

// legacySubjects is where the stream of the layout before shards is moved
// while its messages are copied into the shards.
const legacySubjects = "uims.legacy-inbox.>"

// legacyStream returns the stream of the layout before shards (UIMS_INBOX,
// subjects uims.inbox.<client>.<id>) if there is one, moved off the
// subjects the shards take; nil if there is none.
func (in *inbox) legacyStream(ctx context.Context) (jetstream.Stream, error) {
	st, err := in.js.Stream(ctx, InboxStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("web: inbox stream: %w", err)
	}
	cfg := st.CachedInfo().Config
	if len(cfg.Subjects) != 1 || cfg.Subjects[0] != legacySubjects {
		cfg.Subjects = []string{legacySubjects}
		if st, err = in.js.UpdateStream(ctx, cfg); err != nil {
			return nil, fmt.Errorf("web: move %s aside: %w", InboxStream, err)
		}
	}
	return st, nil
}

// migrate copies the messages and read markers of the stream of the layout
// before shards into the shards, then deletes it. Each copy carries its
// message id, so that a migration cut short and run again adds nothing
// twice (within the streams' duplicate window).
func (in *inbox) migrate(ctx context.Context, legacy jetstream.Stream) error {
	cons, err := legacy.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return fmt.Errorf("web: migrate %s: %w", InboxStream, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("web: migrate %s: %w", InboxStream, err)
	}
	for pending := int(info.NumPending); pending > 0; {
		batch, err := cons.Fetch(min(pending, 256), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return fmt.Errorf("web: migrate %s: %w", InboxStream, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			// uims.inbox.<client>.<id> or uims.read.<client>.<id>
			parts := strings.Split(m.Subject(), ".")
			if len(parts) != 4 {
				continue
			}
			client, id := parts[2], parts[3]
			subject, msgID := in.inboxSubject(client, id), id
			if parts[1] == "read" {
				subject, msgID = in.readSubject(client, id), "read:"+id
			}
			if _, err := in.js.Publish(ctx, subject, m.Data(), jetstream.WithMsgID(msgID)); err != nil {
				return fmt.Errorf("web: migrate %s: %w", InboxStream, err)
			}
		}
		if err := batch.Error(); err != nil {
			return fmt.Errorf("web: migrate %s: %w", InboxStream, err)
		}
		if n == 0 {
			return fmt.Errorf("web: migrate %s: %d messages still pending", InboxStream, pending)
		}
		pending -= n
	}
	if err := in.js.DeleteStream(ctx, InboxStream); err != nil {
		return fmt.Errorf("web: migrate %s: %w", InboxStream, err)
	}
	return nil
}

// entry builds an inbox entry from a delivery: the text, the HTML and the
// attachments of multipart content (mimeparts.go). The content itself is
// kept when there is more to it than the text: attachments, or text or
// HTML too large to show (the whole is then an attachment,
// message.txt or message.html).
func entry(d *kit.Delivery) *stored {
	imi := &d.Routed.IMI
	s := &stored{Message: Message{ID: imi.MsgID, From: imi.From, To: imi.To, Subject: imi.Subject, Medium: imi.From.Medium,
		Type: d.Type, At: time.Now().UnixMilli(), Partial: imi.Meta["partial"] == "true"}, Ref: d.Ref}
	mt, params, err := mime.ParseMediaType(d.Type)
	switch {
	case err == nil && strings.HasPrefix(mt, "multipart/"):
		s.Text, s.HTML, s.Attachments, _, _ = scanMultipart(bytes.NewReader(d.Content), params["boundary"], -1, nil)
		s.Content = d.Content
	case err == nil && mt == "text/plain" && len(d.Content) <= maxText:
		s.Text = string(d.Content)
	case err == nil && mt == "text/plain":
		s.Text = cutUTF8(string(d.Content[:maxText+utf8.UTFMax]), maxText)
		s.Attachments = []schemas.Attachment{{Name: "message.txt", Type: "text/plain", Length: int64(len(d.Content))}}
		s.Content = d.Content
	case err == nil && mt == "text/html" && len(d.Content) <= maxText:
		s.HTML = string(d.Content)
		s.Text = "(HTML message)"
	case err == nil && mt == "text/html":
		s.Text = fmt.Sprintf("(HTML message of %d bytes, too large to show here: download it)", len(d.Content))
		s.Attachments = []schemas.Attachment{{Name: "message.html", Type: "text/html", Length: int64(len(d.Content))}}
		s.Content = d.Content
	default:
		s.Attachments = []schemas.Attachment{{Name: "content", Type: d.Type, Length: int64(len(d.Content))}}
		if err == nil {
			s.Attachments[0].Type = mt
		}
		s.Content = d.Content
	}
	if len(s.Text) > maxText {
		s.Text = cutUTF8(s.Text[:maxText+utf8.UTFMax], maxText)
	}
	if len(s.HTML) > maxText {
		s.HTML = "" // cut HTML would not render; the content has it
	}
	return s
}

// deliver stores a message in the recipient's inbox (idempotent per message
// id) and tells the recipient's live event streams. Large content goes
// first, in chunks (content.go), so that an entry never names content that
// is not there.
func (in *inbox) deliver(ctx context.Context, client string, s *stored) (bool, error) {
	if len(s.Content) > inlineContent {
		if err := in.putChunks(ctx, client, s); err != nil {
			return false, err
		}
	}
	data, ev, err := encodeEntry(s)
	if err != nil {
		return false, err
	}
	ack, err := in.publish(ctx, in.shard(s.ID), in.inboxSubject(client, s.ID), data, s.ID)
	if err != nil {
		return false, fmt.Errorf("web: store in inbox: %w", err)
	}
	if !ack.Duplicate {
		in.nc.Publish(EventsSubject(client), ev)
	}
	return ack.Duplicate, nil
}

// encodeEntry returns the stored entry (json.Marshal(s)) and the live event
// (json.Marshal(&Event{Type: "message", Message: &s.Message})) from one
// encoding of the message: the entry is the message's JSON object with the
// reference and the raw content added, the event wraps the same bytes. The
// text was encoded twice before, a third of the gateway's CPU at 1 MB.
func encodeEntry(s *stored) (entry, event []byte, err error) {
	msg, err := json.Marshal(&s.Message)
	if err != nil {
		return nil, nil, err
	}
	rest, err := json.Marshal(struct {
		Ref     kit.AckRef `json:"ref"`
		Content []byte     `json:"content,omitempty"`
		Chunks  int        `json:"chunks,omitempty"`
		Size    int64      `json:"size,omitempty"`
	}{s.Ref, s.Content, s.Chunks, s.Size})
	if err != nil {
		return nil, nil, err
	}
	// {message fields} + {"ref":…} → {message fields,"ref":…}
	entry = make([]byte, 0, len(msg)+len(rest))
	entry = append(append(append(entry, msg[:len(msg)-1]...), ','), rest[1:]...)
	event = make([]byte, 0, len(msg)+32)
	event = append(append(append(event, `{"type":"message","message":`...), msg...), '}')
	return entry, event, nil
}

func (in *inbox) event(client string, ev *Event) {
	data, _ := json.Marshal(ev)
	in.nc.Publish(EventsSubject(client), data)
}

// errBadEntry is an inbox entry that does not decode.
var errBadEntry = errors.New("web: bad inbox entry")

// get returns one inbox entry of client. It returns an error wrapping
// jetstream.ErrMsgNotFound when the inbox does not hold the message; any
// other error means the inbox could not be read (a temporary failure).
func (in *inbox) get(ctx context.Context, client, msgID string) (*stored, error) {
	st, err := in.js.Stream(ctx, InboxStreamName(in.shard(msgID)))
	if err != nil {
		return nil, err
	}
	raw, err := st.GetLastMsgForSubject(ctx, in.inboxSubject(client, msgID))
	if err != nil {
		return nil, err
	}
	var s stored
	if err := json.Unmarshal(raw.Data, &s); err != nil {
		return nil, fmt.Errorf("%w %s: %w", errBadEntry, msgID, err)
	}
	r, err := st.GetLastMsgForSubject(ctx, in.readSubject(client, msgID))
	switch {
	case err == nil:
		fmt.Sscan(string(r.Data), &s.ReadAt)
	case !errors.Is(err, jetstream.ErrMsgNotFound):
		return nil, err // unread is not "could not look"
	}
	return &s, nil
}

// markRead records that client read msgID.
func (in *inbox) markRead(ctx context.Context, client, msgID string, at int64) error {
	_, err := in.publish(ctx, in.shard(msgID), in.readSubject(client, msgID), []byte(fmt.Sprint(at)), "read:"+msgID)
	return err
}
