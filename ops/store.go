package ops

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	json "github.com/goccy/go-json"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/uims/uims/miap/miapnats"
	"github.com/uims/uims/schemas"
)

// The timelines the observer hears are shared by every instance of the
// operator view and survive restarts: each lives in the JetStream key-value
// bucket uims_ops (DefaultBucket), one entry per message under
// tl.<message id>, for an hour after its last change (DefaultTTL).
//
// Every instance hears every trace event, so two instances write the same
// timeline. An entry is written with optimistic concurrency: an instance
// updates it at the revision it last wrote or read, and when another
// instance wrote in between (the server refuses: wrong last sequence), it
// reads the entry, merges it with its own (the union of the events, each
// known by what its publisher said; the furthest state) and tries again.
// So an event either instance heard is never lost, and both converge on
// the same timeline; an instance adopts the merged events too. One entry
// per message, rather than one per event, keeps the bucket to a write or
// two per message and a timeline to one read: each instance writes the
// timelines that changed once per Flush (1 s), not once per event.
//
// The observer's identity may not publish on uims.>, and needs nothing of
// the fabric's streams but their listings: its permissions add exactly this
// bucket (miap/natsauth perms.go, RoleObserver).

// DefaultBucket is the key-value bucket of the operator view's timelines.
const DefaultBucket = schemas.OpsBucket

// DefaultTTL is how long a timeline stays after its last change.
const DefaultTTL = time.Hour

// storedTimeline is one entry of the bucket.
type storedTimeline struct {
	TxSummary
	Events  []Event                `json:"events"`
	History []schemas.HistoryEntry `json:"history,omitempty"`
}

func timelineKey(msgID string) string { return "tl." + msgID }

// store is the bucket of the observer's timelines.
type store struct {
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	bucket string
	max    int // events kept per timeline
}

// openStore creates the bucket if it is missing and returns it.
func openStore(ctx context.Context, nc *nats.Conn, bucket string, ttl time.Duration, maxEvents int) (*store, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("ops: jetstream: %w", err)
	}
	kv, err := miapnats.KeyValue(ctx, js, jetstream.KeyValueConfig{Bucket: bucket, TTL: ttl, History: 1,
		Storage: jetstream.FileStorage, Description: "the operator view's message timelines (docs/OPS.md)"})
	if err != nil {
		return nil, fmt.Errorf("ops: bucket %s: %w", bucket, err)
	}
	return &store{js: js, kv: kv, bucket: bucket, max: maxEvents}, nil
}

// errBusy is a timeline that other instances kept changing while this one
// tried to write it.
var errBusy = errors.New("ops: timeline changed by other instances on every attempt")

// write stores doc at revision rev (0: a timeline this instance has not
// seen in the bucket), merging what other instances wrote in between. It
// returns what the bucket now holds and its revision.
func (s *store) write(ctx context.Context, doc *storedTimeline, rev uint64) (*storedTimeline, uint64, error) {
	key := timelineKey(doc.MsgID)
	for range 8 {
		data, err := json.Marshal(doc)
		if err != nil {
			return nil, 0, err
		}
		var nrev uint64
		if rev == 0 {
			nrev, err = s.kv.Create(ctx, key, data)
		} else {
			nrev, err = s.kv.Update(ctx, key, data, rev)
		}
		if err == nil {
			return doc, nrev, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return nil, 0, err
		}
		// another instance wrote it: merge and try again at its revision
		cur, crev, err := s.get(ctx, doc.MsgID)
		if err != nil {
			return nil, 0, err
		}
		if cur != nil {
			doc = merge(doc, cur, s.max)
		}
		rev = crev
	}
	return nil, 0, errBusy
}

// get reads one timeline; nil when the bucket does not have it.
func (s *store) get(ctx context.Context, msgID string) (*storedTimeline, uint64, error) {
	e, err := s.kv.Get(ctx, timelineKey(msgID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	var doc storedTimeline
	if err := json.Unmarshal(e.Value(), &doc); err != nil || doc.MsgID != msgID {
		return nil, e.Revision(), nil // not ours: overwritten on the next write
	}
	return &doc, e.Revision(), nil
}

// recent calls fn with the newest timelines in the bucket, oldest first,
// at most about n: the entries' order in the bucket's stream is the order
// of their last change.
func (s *store) recent(ctx context.Context, n int, fn func(doc *storedTimeline, rev uint64)) error {
	stream := "KV_" + s.bucket
	st, err := s.js.Stream(ctx, stream)
	if err != nil {
		return err
	}
	state := st.CachedInfo().State
	if state.Msgs == 0 {
		return nil
	}
	start := state.FirstSeq
	if span := uint64(4 * n); state.LastSeq > span && state.LastSeq-span+1 > start {
		start = state.LastSeq - span + 1
	}
	cons, err := s.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"$KV." + s.bucket + ".tl.>"},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy, OptStartSeq: start,
	})
	if err != nil {
		return err
	}
	for {
		batch, err := cons.Fetch(256, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return err
		}
		got, done := 0, false
		for m := range batch.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			if op := m.Headers().Get("KV-Operation"); op == "" {
				var doc storedTimeline
				if json.Unmarshal(m.Data(), &doc) == nil && schemas.ValidMsgID(doc.MsgID) {
					fn(&doc, md.Sequence.Stream)
				}
			}
			if md.NumPending == 0 || md.Sequence.Stream >= state.LastSeq {
				done = true
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return err
		}
		if done || got == 0 {
			return nil
		}
	}
}

// eventKey identifies an event by what its publisher said, not when an
// instance heard it: two instances hear the same event at different times.
func eventKey(ev *Event) string {
	return ev.Source + "\x00" + string(ev.TraceEvent.AppendJSON(nil))
}

// mergeEvents returns the union of a and b in the order they were heard,
// at most max.
func mergeEvents(a, b []Event, max int) []Event {
	seen := make(map[string]bool, len(a)+len(b))
	out := make([]Event, 0, len(a)+len(b))
	for _, list := range [][]Event{a, b} {
		for i := range list {
			k := eventKey(&list[i])
			if !seen[k] {
				seen[k] = true
				out = append(out, list[i])
			}
		}
	}
	slices.SortStableFunc(out, func(x, y Event) int { return cmp.Compare(x.Seen, y.Seen) })
	if max > 0 && len(out) > max {
		out = out[:max]
	}
	return out
}

// mergeSummary returns a's summary completed by b's: the furthest state,
// the widest span, what either knows of the parties.
func mergeSummary(a, b TxSummary) TxSummary {
	if stateRank[b.State] > stateRank[a.State] {
		a.State = b.State
		if b.Code != "" {
			a.Code = b.Code
		}
	}
	fill := func(dst *string, src string) {
		if *dst == "" {
			*dst = src
		}
	}
	fill(&a.Tx, b.Tx)
	fill(&a.Origin, b.Origin)
	fill(&a.Dest, b.Dest)
	fill(&a.Sender, b.Sender)
	fill(&a.Recipient, b.Recipient)
	fill(&a.To, b.To)
	fill(&a.Code, b.Code)
	if b.First != 0 && (a.First == 0 || b.First < a.First) {
		a.First = b.First
	}
	a.Last = max(a.Last, b.Last)
	if a.LatencyMs == 0 {
		a.LatencyMs = b.LatencyMs
	}
	return a
}

// merge returns the union of two versions of a timeline.
func merge(a, b *storedTimeline, max int) *storedTimeline {
	out := &storedTimeline{TxSummary: mergeSummary(a.TxSummary, b.TxSummary), Events: mergeEvents(a.Events, b.Events, max), History: a.History}
	if len(b.History) > len(a.History) {
		out.History = b.History
	}
	out.Steps = len(out.Events)
	return out
}
