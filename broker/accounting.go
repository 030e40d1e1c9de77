package broker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	json "github.com/goccy/go-json"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/uims/uims/internal/groupcommit"
	"github.com/uims/uims/miap/miapnats"
	"github.com/uims/uims/schemas"
)

// Accounting (docs/ACCOUNTING.md). Every script that ends an attempt —
// ackScript (delivered, read, failed; a late success), sweepScript
// (expired), rerouteScript (the attempt that moved on), endHoldScript
// (cancelled, expired) — puts the attempt's outcome mark into the outbox
// keyAcct in the same step, so that no outcome goes unaccounted whatever
// happens to the broker next. The broker that ran the script publishes the
// record at once (account); the sweeper publishes those of the marks that
// are still there after acctRetry (a broker that stopped in between, a
// JetStream that did not answer). A mark leaves the outbox only once
// JetStream stored its record, in the same script (acctDoneScript) that
// counts the usage the record makes, so a usage is counted once while the
// record may be published twice: the stream drops the second by its
// Nats-Msg-Id, the record's ID, within schemas.AccountingDuplicates.

const (
	// acctRetry is how old a mark is before the sweeper publishes it.
	acctRetry = 10 * time.Second
	// acctBatch bounds the marks published in one round; acctLinger is how
	// long a round waits for more; acctWorkers publish rounds at once.
	acctBatch   = 256
	acctLinger  = 10 * time.Millisecond
	acctWorkers = 2
	// acctSweepRounds bounds the rounds of one sweep of the outbox.
	acctSweepRounds = 16
	// usageTTL is how long a client's daily usage is kept.
	usageTTL = 40 * 24 * time.Hour
)

// acctMark is an outcome mark as the scripts write it:
// "<msg id>|<attempt>|<outcome>|<code>|<at>|<flags>", flags a subset of
// "r" (rerouted), "f" (final), "l" (late).
type acctMark struct {
	raw      string
	msgID    string
	attempt  int
	outcome  string
	code     string
	at       int64
	rerouted bool
	final    bool
	late     bool
}

func parseMark(s string) (acctMark, bool) {
	p := strings.Split(s, "|")
	if len(p) != 6 || !schemas.ValidMsgID(p[0]) {
		return acctMark{}, false
	}
	m := acctMark{raw: s, msgID: p[0], outcome: p[2], code: p[3]}
	var err1, err2 error
	m.attempt, err1 = strconv.Atoi(p[1])
	m.at, err2 = strconv.ParseInt(p[4], 10, 64)
	if err1 != nil || err2 != nil || m.attempt < 1 {
		return acctMark{}, false
	}
	m.rerouted, m.final, m.late = strings.Contains(p[5], "r"), strings.Contains(p[5], "f"), strings.Contains(p[5], "l")
	return m, true
}

// EnsureAccountingStream creates the stream of accounting records
// (docs/ACCOUNTING.md): file storage, records kept schemas.AccountingMaxAge,
// de-duplicated by Nats-Msg-Id within schemas.AccountingDuplicates.
//
// On one server (replicas 1) a new stream is written with group commit
// (internal/groupcommit): in asynchronous persist mode, every record also in
// a journal record shared with the records written at the same time, so
// that a record costs a fraction of an fsync and "stored" still means on
// disk. A replicated stream is synced through its Raft log.
func EnsureAccountingStream(ctx context.Context, js jetstream.JetStream) error {
	persist := jetstream.AsyncPersistMode
	if miapnats.Replicas(js) > 1 {
		persist = jetstream.DefaultPersistMode
	}
	return miapnats.EnsureStream(ctx, js, jetstream.StreamConfig{
		PersistMode: persist,
		Name:        schemas.AccountingStream,
		Description: "accounting records: one per attempt of a message at its outcome (docs/ACCOUNTING.md)",
		Subjects:    []string{schemas.AccountingSubjects},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      schemas.AccountingMaxAge,
		Duplicates:  schemas.AccountingDuplicates,
	})
}

// The accounting stream's group-commit journal.
const (
	acctJournal        = "UIMS_ACCOUNTING_JOURNAL"
	acctJournalSubject = "uims.journal.accounting"
)

// startAccountingCommit starts the group-commit writer of the accounting
// stream when it is in asynchronous persist mode (an existing stream keeps
// the mode it was made with), after writing back what the stream lost.
// Records are read at-least-once (docs/ACCOUNTING.md), so recovery writes
// every journaled record of its window again and the stream's
// de-duplication keeps one.
func (b *Broker) startAccountingCommit(ctx context.Context) error {
	if b.acctW != nil {
		return nil
	}
	st, err := b.js.Stream(ctx, schemas.AccountingStream)
	if err != nil {
		return err
	}
	if st.CachedInfo().Config.PersistMode != jetstream.AsyncPersistMode {
		return nil
	}
	w, err := groupcommit.New(ctx, b.nc, b.js, groupcommit.Config{Journal: acctJournal, Subject: acctJournalSubject,
		Streams: []string{schemas.AccountingStream}, Prefixes: []string{"uims.accounting."}, Log: b.log})
	if err != nil {
		return err
	}
	b.acctW = w
	return nil
}

// account hands the outcome marks a script returned (one a line) to the
// accountant. A full queue drops them here: they stay in the outbox, and
// the sweeper publishes them.
func (b *Broker) account(marks string) {
	for _, m := range strings.Split(marks, "\n") {
		if m == "" {
			continue
		}
		select {
		case b.acct <- m:
		default:
		}
	}
}

// runAccounting publishes the marks handed to account until the queue is
// closed, with acctWorkers accountants.
func (b *Broker) runAccounting(done chan<- struct{}) {
	defer close(done)
	var wg sync.WaitGroup
	for range acctWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.accountant()
		}()
	}
	wg.Wait()
}

// accountant publishes marks in batches: a batch waits up to acctLinger
// for more marks (records are not on any message's path; a batch costs the
// broker and the store one round trip each way, whatever its size).
func (b *Broker) accountant() {
	batch := make([]string, 0, acctBatch)
	linger := time.NewTimer(acctLinger)
	linger.Stop()
	for m := range b.acct {
		batch = append(batch[:0], m)
		linger.Reset(acctLinger)
	fill:
		for len(batch) < acctBatch {
			select {
			case m, ok := <-b.acct:
				if !ok {
					break fill
				}
				batch = append(batch, m)
			case <-linger.C:
				break fill
			}
		}
		linger.Stop()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		b.publishMarks(ctx, batch)
		cancel()
	}
}

// sweepAccounting publishes the marks older than acctRetry (the sweeper,
// notify.go): those of a broker that stopped before it published them, or
// whose publication failed.
func (b *Broker) sweepAccounting(ctx context.Context, now int64) {
	total, skip := 0, 0 // skip: the marks still there after a round (not stored)
	for round := 0; round < acctSweepRounds; round++ {
		marks, err := b.rdb.ZRangeByScore(ctx, keyAcct, &redis.ZRangeBy{Min: "-inf",
			Max: strconv.FormatInt(now-acctRetry.Milliseconds(), 10), Offset: int64(skip), Count: acctBatch}).Result()
		if err != nil {
			if ctx.Err() == nil {
				b.log.Warn().Err(err).Msg("sweep: cannot read the accounting outbox")
			}
			break
		}
		if len(marks) > 0 {
			n := b.publishMarks(ctx, marks)
			total += n
			skip += len(marks) - n
		}
		if len(marks) < acctBatch {
			break
		}
	}
	if total > 0 {
		b.log.Info().Int("records", total).Msg("accounting: published the records left in the outbox")
	}
}

// acctDoneScript takes a published mark out of the outbox (KEYS[1]) and,
// the first time for its record (the field ARGV[3] of the transaction
// KEYS[2]: a mark may come back, from a broker that stopped between the
// publication and here), counts the usage the record makes: ARGV[2] the
// TTL in seconds, then triples of key, field, increment.
var acctDoneScript = redis.NewScript(`
redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('EXISTS', KEYS[2]) == 0 or redis.call('HSETNX', KEYS[2], ARGV[3], '1') == 0 then return 0 end
local last = ''
for i = 4, #ARGV, 3 do
  redis.call('HINCRBY', ARGV[i], ARGV[i + 1], ARGV[i + 2])
  if ARGV[i] ~= last then
    redis.call('EXPIRE', ARGV[i], ARGV[2])
    last = ARGV[i]
  end
end
return 1
`)

// pendingRecord is a record on its way into the stream.
type pendingRecord struct {
	mark acctMark
	rec  *schemas.AccountingRecord
	fut  jetstream.PubAckFuture
	done chan error // with group commit: the write's outcome
	err  error
}

// publishMarks builds the records of marks from their transactions,
// publishes them and, for those JetStream stored, ends the marks and
// counts their usage. It returns how many marks left the outbox.
func (b *Broker) publishMarks(ctx context.Context, raw []string) int {
	gone := 0
	recs := make([]*pendingRecord, 0, len(raw))
	pipe := b.rdb.Pipeline()
	var loads []*redis.SliceCmd
	for _, s := range raw {
		m, ok := parseMark(s)
		if !ok {
			b.log.Warn().Str("mark", s).Msg("accounting: unreadable outcome mark dropped")
			b.rdb.ZRem(ctx, keyAcct, s)
			gone++
			continue
		}
		recs = append(recs, &pendingRecord{mark: m})
		loads = append(loads, pipe.HMGet(ctx, keyTx+m.msgID, fRouted, fAttempt, "r:"+strconv.Itoa(m.attempt)))
	}
	if len(recs) == 0 {
		return gone
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		b.log.Warn().Err(err).Msg("accounting: cannot read the transactions; the sweeper tries again")
		return gone
	}
	for i, p := range recs {
		routed, err := attemptRoute(loads[i], p.mark.attempt)
		if err != nil {
			// the transaction is gone (past its retention): nothing to
			// account any more
			b.log.Error().Err(err).Str("msg_id", p.mark.msgID).Int("attempt", p.mark.attempt).Msg("accounting: record lost")
			b.metrics.acctErrors.WithLabelValues("lost").Inc()
			b.rdb.ZRem(ctx, keyAcct, p.mark.raw)
			gone++
			p.err = err
			continue
		}
		p.rec = b.accountingRecord(p.mark, routed)
		data, _ := json.Marshal(p.rec)
		subject := schemas.AccountingSubject(p.rec.Origin.Medium, p.rec.Dest.Medium)
		if b.acctW != nil {
			// side by side, so that the batch shares journal records
			p.done = make(chan error, 1)
			go func() {
				_, err := b.acctW.Publish(ctx, subject, data, p.rec.ID)
				p.done <- err
			}()
			continue
		}
		msg := nats.NewMsg(subject)
		msg.Data = data
		p.fut, p.err = b.js.PublishMsgAsync(msg, jetstream.WithMsgID(p.rec.ID))
	}
	done := b.rdb.Pipeline()
	var ends []*redis.Cmd
	var ended []*pendingRecord
	for _, p := range recs {
		if p.done != nil {
			p.err = <-p.done
		} else if p.err == nil {
			select {
			case <-p.fut.Ok():
			case p.err = <-p.fut.Err():
			case <-ctx.Done():
				p.err = ctx.Err()
			}
		}
		if p.err != nil {
			if p.rec != nil {
				b.metrics.acctErrors.WithLabelValues("publish").Inc()
				b.log.Warn().Err(p.err).Str("record", p.rec.ID).Msg("accounting: record not stored; the sweeper tries again")
			}
			continue
		}
		ends = append(ends, acctDoneScript.EvalSha(ctx, done, []string{keyAcct, keyTx + p.mark.msgID}, usageArgs(p.mark.raw, p.rec)...))
		ended = append(ended, p)
	}
	if len(ends) == 0 {
		return gone
	}
	done.Exec(ctx)
	for i, p := range ended {
		n, err := ends[i].Int()
		if isNoScript(err) {
			n, err = acctDoneScript.Run(ctx, b.rdb, []string{keyAcct, keyTx + p.mark.msgID}, usageArgs(p.mark.raw, p.rec)...).Int()
		}
		if err != nil {
			// stored, but the mark stays: the sweeper publishes it again,
			// the stream drops the duplicate, and the usage is counted then
			b.log.Warn().Err(err).Str("record", p.rec.ID).Msg("accounting: outbox not updated")
			continue
		}
		gone++
		if n == 1 {
			b.metrics.accounted(p.rec)
		}
	}
	return gone
}

// attemptRoute decodes the routed IMI of an attempt from the transaction
// fields routed, att and r:<attempt>: an earlier attempt's is kept under
// r:<attempt> (rerouteScript), the current one's is routed.
func attemptRoute(cmd *redis.SliceCmd, attempt int) (*schemas.RoutedIMI, error) {
	v, err := cmd.Result()
	if err != nil {
		return nil, fmt.Errorf("broker: accounting: load tx: %w", err)
	}
	str := func(i int) string {
		s, _ := v[i].(string)
		return s
	}
	raw := str(2)
	if raw == "" {
		cur := 1
		if n, err := strconv.Atoi(str(1)); err == nil {
			cur = n
		}
		if cur != attempt {
			return nil, fmt.Errorf("broker: accounting: attempt %d of a transaction at attempt %d without its route", attempt, cur)
		}
		raw = str(0)
	}
	if raw == "" {
		return nil, errors.New("broker: accounting: no such transaction")
	}
	var r schemas.RoutedIMI
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		return nil, fmt.Errorf("broker: accounting: routed imi: %w", err)
	}
	return &r, nil
}

// accountingRecord is the accounting record of an outcome mark and the attempt's
// routed IMI.
func (b *Broker) accountingRecord(m acctMark, r *schemas.RoutedIMI) *schemas.AccountingRecord {
	imi := &r.IMI
	rec := &schemas.AccountingRecord{V: schemas.Version, ID: schemas.AccountingID(r.Tx, m.attempt, m.outcome),
		MsgID: imi.MsgID, Tx: r.Tx, Attempt: m.attempt, Group: imi.Meta[schemas.MetaGroup],
		Sender: r.Sender, Recipient: r.Recipient,
		Origin:  schemas.Hop{Gateway: imi.Gateway, Medium: imi.From.Medium, Address: imi.From.Address},
		Dest:    r.Dest,
		Content: schemas.AccountedContent{Type: imi.Content.Type, Length: imi.Content.PlainLength(), Attachments: len(imi.Content.Attachments)},
		Outcome: m.outcome, Code: m.code, Rerouted: m.rerouted, Final: m.final, Late: m.late,
		Accepted: imi.Created, Routed: r.Routed, At: m.at, Broker: b.cfg.Instance}
	if rec.Tx == "" {
		rec.Tx = imi.MsgID
		rec.ID = schemas.AccountingID(rec.Tx, m.attempt, m.outcome)
	}
	for _, s := range r.Conversions {
		rec.Conversions = append(rec.Conversions, s.Conversion)
	}
	if rec.Delivered() {
		rec.Code = ""
	}
	return rec
}

// usageArgs are acctDoneScript's ARGV for a record: the usage it makes
// (docs/ACCOUNTING.md, "Usage"), on the UTC day of its outcome. The sender
// counts a message once, at its final record, on the medium it sent from;
// the recipient counts each delivery on the medium it came in.
func usageArgs(mark string, r *schemas.AccountingRecord) []any {
	args := []any{mark, int64(usageTTL.Seconds()), fAccounted + strconv.Itoa(r.Attempt) + ":" + r.Outcome}
	d := day(time.UnixMilli(r.At))
	if r.Final && r.Sender != "" {
		k, m := usageKey(r.Sender, d), r.Origin.Medium
		args = append(args, k, m+".sent", 1, k, m+".sent_bytes", r.Content.Length)
		if !r.Delivered() {
			args = append(args, k, m+".failed", 1)
		}
	}
	if r.Delivered() && r.Recipient != "" {
		k, m := usageKey(r.Recipient, d), r.Dest.Medium
		args = append(args, k, m+".received", 1, k, m+".received_bytes", r.Content.Length)
	}
	return args
}

// fAccounted + "<attempt>:<outcome>" is the transaction field that says
// the usage of that record was counted.
const fAccounted = "u:"

func usageKey(client, day string) string { return keyUsageDay + client + ":" + day }
