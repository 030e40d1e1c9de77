package broker

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // profiles name IANA zones; a host without zoneinfo still reads them

	json "github.com/goccy/go-json"
	"github.com/nats-io/nats.go/micro"
	"github.com/redis/go-redis/v9"

	"github.com/uims/uims/audit"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
	"github.com/uims/uims/schemas/quiet"
)

// Holds (PROTOCOL.md §6.16, docs/ROUTING.md "Holds"): a message for a
// medium in the recipient's quiet hours, or one its sender scheduled
// (IMI send_at), is accepted and held by the brokers until then. The route
// reply carries no ticket; the originator keeps the content, as it does
// for a reroute (§6.15). When the hold ends, a broker routes the message
// afresh — the recipient's gateways and quiet hours as they are then — and
// sends the route to the originator in a released notification, which the
// originator serves as it serves a rerouted one. Holds are kept in
// keyHolds by the Unix ms they end, apart from the deadlines: the
// fabric's clock (clockScript) moves deadlines on after an outage, but a
// hold ends at a time of day.

// holdSlack is how far in the future send_at must be for a hold: a time
// closer than that is now.
const holdSlack = time.Second

// hold is why and until when a routed message waits.
type hold struct {
	until time.Time
	why   string
}

// decide routes a message (route) and decides whether it waits: until its
// send_at, or until the quiet hours of the chosen medium end. A recipient
// whose profile says quiet: next gets its first medium that is not quiet
// instead, if it has one with a live gateway; sender is the sender's
// client id, for urgent_from.
func (b *Broker) decide(ctx context.Context, imi *schemas.IMI, sender string, skip map[string]bool, now time.Time) (*decision, *hold, error) {
	dec, err := b.route(ctx, imi, skip)
	if err != nil {
		return nil, nil, err
	}
	if imi.SendAt > now.Add(holdSlack).UnixMilli() {
		at := time.UnixMilli(imi.SendAt).UTC()
		return dec, &hold{until: at, why: "scheduled for " + at.Format(time.RFC3339)}, nil
	}
	p := dec.recipient
	if p == nil || len(p.QuietHours) == 0 {
		return dec, nil, nil
	}
	until, quiet := b.quiet.until(p, dec.dest.Medium, now)
	if !quiet {
		return dec, nil, nil
	}
	if imi.Urgent && sender != "" && contains(p.UrgentFrom, sender) {
		return dec, nil, nil
	}
	h := &hold{until: until, why: quietReason(p, dec.dest.Medium, until)}
	if imi.Urgent {
		h.why += "; urgent is not allowed from " + orOutside(sender)
	}
	if p.Quiet != schemas.QuietNext {
		return dec, h, nil
	}
	// quiet: next — the first medium of the order that is not quiet now.
	tried := map[string]bool{dec.dest.Medium: true}
	for m := range skip {
		tried[m] = true
	}
	for range len(p.Addresses) {
		next, err := b.route(ctx, imi, tried)
		if err != nil || next.recipient == nil || next.recipient.ID != p.ID {
			break // nothing else now: wait for the first choice
		}
		if _, q := b.quiet.until(p, next.dest.Medium, now); !q {
			return next, nil, nil
		}
		tried[next.dest.Medium] = true
	}
	return dec, h, nil
}

// quietCache keeps parsed quiet-hour schedules and loaded zones: a
// profile's strings are checked when it is stored, and parsing them and
// loading the zone for every message cost 30 µs a message
// (BenchmarkQuietUntil). Bounded: emptied when it holds maxQuietCache
// entries.
type quietCache struct {
	mu     sync.Mutex
	scheds map[string]quiet.Schedule
	zones  map[string]*time.Location
	max    int // default maxQuietCache
}

const maxQuietCache = 4096

// until reports whether medium m is quiet for p at t (its quiet_hours
// for m, else for "*", in its time zone, default UTC) and until when. A
// schedule or zone that does not parse (profiles are checked when stored)
// is not quiet.
func (c *quietCache) until(p *schemas.Profile, m string, t time.Time) (time.Time, bool) {
	s, ok := p.QuietHours[m]
	if !ok {
		if s, ok = p.QuietHours["*"]; !ok {
			return time.Time{}, false
		}
	}
	c.mu.Lock()
	if c.max == 0 {
		c.max = maxQuietCache
	}
	if c.scheds == nil || len(c.scheds)+len(c.zones) >= c.max {
		c.scheds, c.zones = map[string]quiet.Schedule{}, map[string]*time.Location{}
	}
	sched, ok := c.scheds[s]
	if !ok {
		sched, _ = quiet.Parse(s)
		c.scheds[s] = sched
	}
	loc, ok := c.zones[p.TimeZone]
	if !ok {
		if loc, _ = time.LoadLocation(p.TimeZone); loc == nil {
			loc = time.UTC
		}
		c.zones[p.TimeZone] = loc
	}
	c.mu.Unlock()
	if sched == nil {
		return time.Time{}, false
	}
	return sched.Until(t, loc)
}

func quietReason(p *schemas.Profile, medium string, until time.Time) string {
	zone := p.TimeZone
	if zone == "" {
		zone = "UTC"
	}
	loc, err := time.LoadLocation(zone)
	if err != nil {
		loc = time.UTC
	}
	return "quiet hours on " + medium + " until " + until.In(loc).Format(time.RFC3339) + " (" + zone + ")"
}

func orOutside(sender string) string {
	if sender == "" {
		return "an outside sender"
	}
	return sender
}

// heldEntry is the history entry of a hold.
func heldEntry(routed *schemas.RoutedIMI, party string, now time.Time) string {
	b, _ := json.Marshal(schemas.HistoryEntry{Status: schemas.StatusHeld, At: now.UnixMilli(), Reason: truncate(routed.Held, 1024),
		Party: party, Until: routed.HeldUntil, Medium: routed.Dest.Medium})
	return string(b)
}

// applyHold marks a routed IMI held: no ticket goes with it (replyIMI),
// and its deadline is the end of the hold plus the brokers' deadline, so
// that a retry of the message while it is held gets the held route again.
func (b *Broker) applyHold(routed *schemas.RoutedIMI, h *hold) {
	if e := routed.IMI.Expires; e > 0 && h.until.UnixMilli() >= e {
		// it expires first: the hold ends then, and the message fails
		h.until, h.why = time.UnixMilli(e), h.why+"; it expires before then"
	}
	routed.HeldUntil = h.until.UnixMilli()
	routed.Held = truncate(h.why, 256)
	routed.Deadline = h.until.Add(b.cfg.Deadline).UnixMilli()
}

// releaseScript ends a hold (PROTOCOL.md §6.16): only if the message is
// still held with the same ID (not cancelled, not released by another
// broker) and its hold is due; ZREM on the holds decides which broker
// acts. The new route takes the place of the held one, as a reroute's
// does (rerouteScript), with its deadline on the deadline set.
var releaseScript = redis.NewScript(auditLua + `
local tx = KEYS[1]
local v = redis.call('HMGET', tx, 'state', 'idh', 'og')
if v[1] ~= 'held' or v[2] ~= ARGV[1] then return {'stale', v[1] or ''} end
local s = redis.call('ZSCORE', KEYS[3], ARGV[3])
if not s or tonumber(s) > tonumber(ARGV[2]) then return {'stale', v[1]} end
redis.call('ZREM', KEYS[3], ARGV[3])
redis.call('HSET', tx, 'state', 'routed', 'routed', ARGV[4], 'id', ARGV[5], 'idh', ARGV[6], 'kid2', ARGV[7],
  'sess', ARGV[8], 'dg', ARGV[9], 'dest', ARGV[10], 'medium', ARGV[11], 'note', ARGV[12], 'deadline', ARGV[13],
  'limit', ARGV[14], 'note2', '1')
redis.call('RPUSH', KEYS[2], ARGV[15])
redis.call('ZADD', KEYS[4], tonumber(ARGV[16]), ARGV[3])
local an, ap = audit(tx, ARGV[17], ARGV[18])
return {'released', v[3] or '', an, ap}
`)

// reholdScript moves a hold on: the quiet hours still hold at its end
// (the new routed IMI and a history entry), or no gateway is live yet
// (ARGV[5] empty: the time of the first such try is kept in 'rt' and
// returned, so that the brokers give up a deadline after it).
var reholdScript = redis.NewScript(`
local v = redis.call('HMGET', KEYS[1], 'state', 'idh')
if v[1] ~= 'held' or v[2] ~= ARGV[1] then return {'stale'} end
if not redis.call('ZSCORE', KEYS[3], ARGV[3]) then return {'stale'} end
redis.call('ZADD', KEYS[3], tonumber(ARGV[2]), ARGV[3])
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[1], 'routed', ARGV[4])
  redis.call('HDEL', KEYS[1], 'rt')
  redis.call('RPUSH', KEYS[2], ARGV[5])
  return {'held', ''}
end
if ARGV[6] == '' then return {'held', ''} end
redis.call('HSETNX', KEYS[1], 'rt', ARGV[6])
return {'held', redis.call('HGET', KEYS[1], 'rt')}
`)

// endHoldScript fails a held message (cancelled by its originator,
// expired, or no longer routable): only if it is still held, and, for a
// cancel (ARGV[1] = the party), by its originator. The outcome (ARGV[4], code
// ARGV[5]) goes into the accounting outbox (ARGV[6], at ARGV[7]).
var endHoldScript = redis.NewScript(auditLua + `
local v = redis.call('HMGET', KEYS[1], 'state', 'og', 'note', 'att')
if not v[1] then return {'gone'} end
if ARGV[1] ~= '' and v[2] ~= ARGV[1] then return {'party'} end
if v[1] ~= 'held' then return {'state', v[1]} end
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('HSET', KEYS[1], 'state', 'failed')
redis.call('RPUSH', KEYS[2], ARGV[3])
local m = ARGV[2] .. '|' .. (v[4] or '1') .. '|' .. ARGV[4] .. '|' .. ARGV[5] .. '|' .. ARGV[7] .. '|f'
redis.call('ZADD', ARGV[6], tonumber(ARGV[7]), m)
local an, ap = audit(KEYS[1], ARGV[8], ARGV[9])
return {'failed', v[2] or '', v[3] or '', m, an, ap}
`)

// releaseHolds ends the holds due at now (the sweeper, notify.go).
func (b *Broker) releaseHolds(ctx context.Context, now time.Time) {
	ids, err := b.rdb.ZRangeByScore(ctx, keyHolds, &redis.ZRangeBy{Min: "-inf", Max: strconv.FormatInt(now.UnixMilli(), 10), Count: 500}).Result()
	if err != nil {
		if ctx.Err() == nil {
			b.log.Warn().Err(err).Msg("sweep: cannot read holds")
		}
		return
	}
	for _, id := range ids {
		b.release(ctx, id, now)
	}
}

// release ends the hold of one message: routes it afresh and tells its
// originator (a released notification with the route and the ticket), or
// holds it on (still quiet; no live gateway yet), or fails it (expired,
// or a recipient no longer routable).
func (b *Broker) release(ctx context.Context, msgID string, now time.Time) {
	log := b.log.With().Str("msg_id", msgID).Logger()
	pipe := b.rdb.Pipeline()
	load := queueLoad(ctx, pipe, msgID)
	pipe.Exec(ctx)
	t, err := load()
	if err != nil {
		log.Warn().Err(err).Msg("release: cannot read the transaction; next sweep")
		return
	}
	if t == nil || t.State != schemas.StatusHeld {
		b.rdb.ZRem(ctx, keyHolds, msgID) // ended otherwise (expired with its retention, cancelled)
		return
	}
	var cur schemas.RoutedIMI
	if err := json.Unmarshal(t.Routed, &cur); err != nil {
		b.endHold(ctx, "", msgID, schemas.CodeInternal, "stored route unreadable", now)
		return
	}
	if cur.IMI.Expires > 0 && now.UnixMilli() >= cur.IMI.Expires {
		b.endHold(ctx, "", msgID, schemas.CodeExpired, "not sent before it expired (validity period)", now)
		return
	}
	if b.ogAway(t.OG, now) {
		// The route would wait in the originator's stream and its
		// ticket expire there: wait for the originator instead, up to
		// the longest hold.
		if now.UnixMilli() > cur.IMI.Created+(schemas.MaxHold+b.cfg.Deadline).Milliseconds() {
			b.endHold(ctx, "", msgID, schemas.CodeExpired, "the originating gateway "+t.OG+" was not back in time", now)
			return
		}
		b.rehold(ctx, t, &cur, now.Add(b.cfg.Grace), "", time.Time{})
		return
	}
	// a reroute held in quiet hours (fallback.go) skips the media its
	// earlier attempts tried
	skip := map[string]bool{}
	for _, a := range t.Attempts {
		skip[a.Medium] = true
	}
	dec, h, passed, err := b.decideSealable(ctx, &cur.IMI, cur.Sender, skip, now)
	if len(passed) > 0 {
		log.Info().Strs("media", passed).Msg("release: sealed content, passed over media whose hops announce no encryption key")
	}
	if err != nil {
		code := miap.CodeOf(err)
		if code.Retryable() {
			// no live gateway for now (or a broker that has just started
			// and not heard the heartbeats yet): look again after the
			// grace period, for as long as a routed message would wait
			first := b.rehold(ctx, t, &cur, now.Add(b.cfg.Grace), "", now)
			if first == 0 || now.UnixMilli()-first < b.cfg.Deadline.Milliseconds() {
				return
			}
		}
		reason := "not routable when its hold ended: " + reasonOf(err)
		if len(passed) > 0 {
			reason += " (passed over, no encryption keys for sealed content: " + strings.Join(passed, ", ") + ")"
		}
		b.endHold(ctx, "", msgID, code, reason, now)
		return
	}
	if h != nil {
		next := cur
		next.Dest, next.Conversions = dec.dest, dec.steps
		b.applyHold(&next, h)
		b.rehold(ctx, t, &next, h.until, heldEntry(&next, b.cfg.Instance, now), now)
		return
	}
	routed := cur
	routed.Dest, routed.Conversions = dec.dest, dec.steps
	routed.HeldUntil, routed.Held = 0, ""
	routed.Routed, routed.Deadline = now.UnixMilli(), now.Add(b.cfg.Deadline).UnixMilli()
	var limit int64
	if dec.recipient != nil {
		routed.RecipientName, routed.Options = dec.recipient.Name, deliveryOptions(dec.recipient, dec.dest.Medium)
		limit = fallbackRoute(dec.recipient, &routed, nil, now)
	}
	if missing := b.sealKeys(&routed, now.UnixMilli()); len(missing) > 0 {
		log.Warn().Strs("hops", missing).Msg("release: sealed content, and hops of the route announce no encryption key")
	}
	bytes, err := json.Marshal(&routed)
	if err != nil || len(bytes) > miap.MaxRouted {
		b.endHold(ctx, "", msgID, schemas.CodeTooLarge, "routed imi", now)
		return
	}
	cack, err := b.guard.NewSessionKey()
	if err != nil {
		log.Error().Err(err).Msg("release: session key")
		return
	}
	id, kid2, err := b.guard.MintID(bytes, cack)
	if err != nil {
		log.Error().Err(err).Msg("release: mint ID")
		return
	}
	imi := &routed.IMI
	ev := schemas.StatusEvent{V: schemas.Version, Tx: routed.Tx, MsgID: imi.MsgID, Sender: routed.Sender,
		From: imi.From, To: imi.To, Dest: routed.Dest, Subject: imi.Subject, Meta: imi.Meta}
	if routed.Attempt > 1 {
		ev.Attempt, ev.Earlier = routed.Attempt, t.Attempts
	}
	note, _ := json.Marshal(ev)
	entry := schemas.HistoryEntry{Status: schemas.StatusReleased, At: now.UnixMilli(),
		Reason: "to " + dec.dest.Gateway + ":" + dec.dest.Address, Party: b.cfg.Instance, Medium: dec.dest.Medium}
	if routed.Attempt > 1 {
		entry.Attempt = routed.Attempt // a reroute held in its medium's quiet hours (fallback.go)
	}
	hop := firstHop(&routed)
	recs := b.auditBodies(now.UnixMilli(), &audit.Body{Tx: msgID, Kind: audit.KindRelease, Attempt: routed.Attempt, Gateway: dec.dest.Gateway,
		Medium: dec.dest.Medium, Chain: routeChain(routed.Conversions), IDHash: idHash(id), Due: b.score(routed.Deadline, limit)},
		&audit.Body{Tx: msgID, Kind: audit.KindNotify, Attempt: routed.Attempt, Status: schemas.StatusReleased})
	an, ah := recs.args()
	res, err := releaseScript.Run(ctx, b.rdb, []string{keyTx + msgID, keyTxHistory + msgID, keyHolds, keyDeadlines},
		t.IDHash, now.UnixMilli(), msgID, bytes, miap.EncodeB64(id), idHash(id), kid2, miap.EncodeB64(cack), hop,
		dec.dest.Gateway, dec.dest.Medium, note, routed.Deadline, limit, historyBytes(entry), b.score(routed.Deadline, limit), an, ah).Result()
	out, rerr := scriptReply(res)
	if err != nil || rerr != nil {
		log.Warn().Err(errors.Join(err, rerr)).Msg("release: store; next sweep")
		return
	}
	if out[0] != "released" {
		return // another broker, or a cancel, came first
	}
	if len(out) >= 4 {
		b.auditAppend(recs, out[2], out[3])
	}
	b.notifyRoute(t.OG, schemas.StatusReleased, "", "released: "+cur.Held, &routed, bytes, id, hop, ev.Earlier,
		imi.MsgID+":"+schemas.StatusReleased+":"+miap.EncodeB64(id)[:8]) // a route issued again is another notification
	b.trace("release", imi.MsgID, routed.Tx, t.OG, schemas.StatusReleased, schemas.TraceEvent{Dest: routed.Dest.Gateway,
		ID: miap.EncodeB64(id)[:8], Recipient: routed.Recipient})
	log.Info().Str("dest", routed.Dest.Gateway).Str("medium", routed.Dest.Medium).Msg("hold ended: released")
}

// ogAway reports whether og, an originator the brokers have heard from
// (a gateway that announces itself), has no live instance now: a route
// sent to it by notification would wait unserved until its ticket
// expired. An originator that never announces (the command-line sender)
// or one not heard since this broker started is not away.
func (b *Broker) ogAway(og string, now time.Time) bool {
	if !b.reg.settled() || b.reg.count(og, now.UnixMilli()) > 0 {
		return false
	}
	return len(b.reg.known(func(a *schemas.Announce) bool { return a.Gateway == og })) > 0
}

// reissueScript puts back on hold an attempt whose route went to its
// originator by notification and was never used (state routed, the same
// ID, its deadline due and claimed here): the originator was down. The
// release routes it again when the originator is back.
var reissueScript = redis.NewScript(`
local v = redis.call('HMGET', KEYS[1], 'state', 'idh')
if v[1] ~= 'routed' or v[2] ~= ARGV[1] then return {'stale'} end
if redis.call('ZREM', KEYS[3], ARGV[2]) == 0 then return {'stale'} end
redis.call('HSET', KEYS[1], 'state', 'held', 'routed', ARGV[3])
redis.call('RPUSH', KEYS[2], ARGV[4])
redis.call('ZADD', KEYS[4], tonumber(ARGV[5]), ARGV[2])
return {'held'}
`)

// reissue handles the deadline of an attempt whose route went to its
// originator by notification (released, rerouted) while the originator
// was down: it is held until the originator is back, then routed again
// (release), instead of failing or moving on for a fault of the
// originator's (docs/ROUTING.md, "Holds").
func (b *Broker) reissue(ctx context.Context, msgID string, now time.Time) bool {
	pipe := b.rdb.Pipeline()
	load := queueLoad(ctx, pipe, msgID)
	pipe.Exec(ctx)
	t, err := load()
	if err != nil || t == nil || t.State != schemas.StatusRouted || !(t.ByNote || t.Attempt > 1) || !b.ogAway(t.OG, now) {
		return false
	}
	var cur schemas.RoutedIMI
	if json.Unmarshal(t.Routed, &cur) != nil {
		return false
	}
	b.applyHold(&cur, &hold{until: now.Add(b.cfg.Grace), why: "waiting for the originating gateway " + t.OG + ", which is not live"})
	entry := schemas.HistoryEntry{Status: schemas.StatusHeld, At: now.UnixMilli(), Reason: cur.Held, Party: b.cfg.Instance,
		Medium: cur.Dest.Medium, Until: cur.HeldUntil}
	if cur.Attempt > 1 {
		entry.Attempt = cur.Attempt
	}
	bytes, _ := json.Marshal(&cur)
	res, err := reissueScript.Run(ctx, b.rdb, []string{keyTx + msgID, keyTxHistory + msgID, keyDeadlines, keyHolds},
		t.IDHash, msgID, bytes, historyBytes(entry), cur.HeldUntil).Result()
	out, rerr := scriptReply(res)
	if err != nil || rerr != nil || out[0] != "held" {
		return err != nil // a store that failed: the next sweep looks again
	}
	b.log.Warn().Str("msg_id", msgID).Str("og", t.OG).Int("attempt", cur.Attempt).
		Msg("the originator did not use its route and is not live: held until it is back")
	b.trace("hold", msgID, cur.Tx, t.OG, schemas.StatusHeld, schemas.TraceEvent{Dest: cur.Dest.Gateway})
	return true
}

// rehold moves a hold's end to until, with a new route and its history
// entry, or for a retry (entry empty); it returns, for a retry, when the
// first retry was (Unix ms; 0 when it cannot tell).
func (b *Broker) rehold(ctx context.Context, t *txRecord, routed *schemas.RoutedIMI, until time.Time, entry string, now time.Time) int64 {
	bytes, _ := json.Marshal(routed)
	rt := ""
	if !now.IsZero() {
		rt = strconv.FormatInt(now.UnixMilli(), 10)
	}
	res, err := reholdScript.Run(ctx, b.rdb, []string{keyTx + routed.IMI.MsgID, keyTxHistory + routed.IMI.MsgID, keyHolds},
		t.IDHash, until.UnixMilli(), routed.IMI.MsgID, bytes, entry, rt).Result()
	out, rerr := scriptReply(res)
	if err != nil || rerr != nil {
		b.log.Warn().Err(errors.Join(err, rerr)).Str("msg_id", routed.IMI.MsgID).Msg("release: hold on")
		return 0
	}
	if entry != "" && out[0] == "held" {
		b.trace("hold", routed.IMI.MsgID, routed.Tx, t.OG, schemas.StatusHeld, schemas.TraceEvent{Dest: routed.Dest.Gateway})
	}
	if len(out) < 2 {
		return 0
	}
	first, _ := strconv.ParseInt(out[1], 10, 64)
	return first
}

// endHold fails a held message with code and reason and notifies its
// originator; party, if not empty, must be the originator (a cancel). It
// returns the script's answer: "failed", "gone", "party" or "state" with
// the state the message is in.
func (b *Broker) endHold(ctx context.Context, party, msgID string, code schemas.Code, reason string, now time.Time) ([]string, error) {
	who := b.cfg.Instance
	if party != "" {
		who = party
	}
	entry := historyJSON(schemas.StatusFailed, now.UnixMilli(), code.String(), reason, who)
	outcome := schemas.OutcomeFailed
	switch code {
	case schemas.CodeCancelled:
		outcome = schemas.OutcomeCancelled
	case schemas.CodeExpired:
		outcome = schemas.OutcomeExpired
	}
	kind := audit.KindExpire
	if code == schemas.CodeCancelled {
		kind = audit.KindCancel
	}
	recs := b.auditBodies(now.UnixMilli(), &audit.Body{Tx: msgID, Kind: kind, Gateway: party, Code: code.String()},
		&audit.Body{Tx: msgID, Kind: audit.KindNotify, Status: schemas.StatusFailed, Code: code.String()})
	an, ah := recs.args()
	res, err := endHoldScript.Run(ctx, b.rdb, []string{keyTx + msgID, keyTxHistory + msgID, keyHolds},
		party, msgID, entry, outcome, code.String(), keyAcct, now.UnixMilli(), an, ah).Result()
	if err != nil {
		return nil, schemas.Errorf(schemas.CodeStoreUnavailable, err, "end hold")
	}
	out, err := scriptReply(res)
	if err != nil {
		return nil, schemas.Errorf(schemas.CodeInternal, err, "end hold")
	}
	if out[0] == "failed" && len(out) >= 3 {
		if len(out) >= 4 {
			b.account(out[3])
		}
		if len(out) >= 6 {
			b.auditAppend(recs, out[4], out[5])
		}
		body := eventJSON(out[2], schemas.StatusFailed, code.String(), reason, now.UnixMilli())
		b.notify(out[1], msgID, msgID, schemas.StatusFailed, body, nil)
		step := "release"
		if code == schemas.CodeCancelled {
			step = "cancel"
		}
		b.trace(step, msgID, msgID, out[1], schemas.StatusFailed, schemas.TraceEvent{Code: code.String()})
		b.log.Info().Str("msg_id", msgID).Str("code", code.String()).Str("reason", reason).Msg("held message failed")
	}
	return out, nil
}

// handleCancel cancels a held message for its originator (PROTOCOL.md
// §6.16): the message fails with CANCELLED and the originator is notified
// as of any outcome. A message already released is not cancelled
// (NOT_ALLOWED: it is on its way); one that ended is SETTLED.
func (b *Broker) handleCancel(ctx context.Context, req micro.Request) error {
	f, err := b.frame(ctx, req, miap.PurposeCancel, true)
	if err != nil {
		return err
	}
	var q schemas.CancelRequest
	if err := decodeJSON(f.Body, &q); err != nil {
		return err
	}
	if q.V != schemas.Version {
		return schemas.Errorf(schemas.CodeBadVersion, nil, "cancel version")
	}
	if !schemas.ValidMsgID(q.MsgID) {
		return schemas.Errorf(schemas.CodeMalformed, nil, "msg_id must be 32 lowercase hex digits")
	}
	out, err := b.endHold(ctx, f.Party, q.MsgID, schemas.CodeCancelled, "cancelled by the sender", b.cfg.Now())
	if err != nil {
		return err
	}
	switch out[0] {
	case "gone", "party":
		return schemas.Errorf(schemas.CodeUnknownTx, nil, q.MsgID)
	case "state":
		if schemas.Terminal(out[1]) {
			return schemas.Errorf(schemas.CodeSettled, nil, "msg_id "+q.MsgID+" is "+out[1])
		}
		return schemas.Errorf(schemas.CodeNotAllowed, nil, "msg_id "+q.MsgID+" is "+out[1]+": it is on its way and can no longer be cancelled")
	}
	_, st, err := b.txStatus(ctx, q.MsgID)
	if err != nil {
		return err
	}
	body, _ := json.Marshal(st)
	return b.reply(req, &miap.Frame{Purpose: miap.PurposeQueryReply, Party: f.Party, Nonce: f.Nonce, Body: body}, nil)
}

func historyBytes(e schemas.HistoryEntry) []byte {
	b, _ := json.Marshal(e)
	return b
}

// reasonOf is an error's detail for a history entry.
func reasonOf(err error) string {
	var e *schemas.Error
	if errors.As(err, &e) && e.Detail != "" {
		return e.Code.String() + " " + e.Detail
	}
	return err.Error()
}
