package broker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	json "github.com/goccy/go-json"
	"github.com/redis/go-redis/v9"

	"github.com/uims/uims/schemas"
)

// Transaction keys (PROTOCOL.md §6.3). A transaction is keyed by message id:
// a retry of the same message finds the same transaction.
const (
	keyTx        = keyPrefix + "tx:"  // + msgid → hash
	keyTxHistory = keyPrefix + "txh:" // + msgid → list of HistoryEntry JSON
	keyDeadlines = keyPrefix + "deadlines"
	keyHolds     = keyPrefix + "holds"  // held messages (hold.go) by the Unix ms their hold ends
	keyQuota     = keyPrefix + "quota:" // + client:yyyymmdd → count
	// Accounting (accounting.go, docs/ACCOUNTING.md).
	keyAcct      = keyPrefix + "acct"       // outbox: outcome marks (acctMark) not yet published, by Unix ms
	keyUsageDay  = keyPrefix + "usaged:"    // + client:yyyymmdd → hash "<medium>.<sent|sent_bytes|failed|received|received_bytes>"
	keyQuotaWarn = keyPrefix + "quotawarn:" // + client:yyyymmdd: the quota warning went out (system.go)
	keyAlive     = keyPrefix + "alive"      // Unix ms: the last time a broker could apply acknowledgements
)

// Transaction fields.
const (
	fFingerprint = "fp"     // og|sha256|length: a retry must match it
	fRouted      = "routed" // the routed IMI bytes
	fID          = "id"     // inner digest ID, base64url
	fIDHash      = "idh"    // SHA-256 of the ID, hex (ackScript compares it)
	fKid2        = "kid2"   // K2 key id of the ID
	fSession     = "sess"   // C_ack, base64url
	fOG          = "og"
	fDG          = "dg" // the party the ticket names now (processor or destination)
	fDest        = "dest"
	fState       = "state"
	fSender      = "sender"
	fRecipient   = "recipient"
	fMedium      = "medium"
	fDeadline    = "deadline"
	fNote        = "note" // StatusEvent template for notifications
	fCreated     = "created"
	// Fallback across media (docs/ROUTING.md; fallback.go).
	fLimit    = "limit" // Unix ms: the attempt's time on its medium ends (Fallback.After); 0: none
	fAttempt  = "att"   // the current attempt; absent: 1
	fAttempts = "atts"  // JSON []schemas.Attempt: the attempts that ended before the current one
	fAfter    = "fb"    // "after email failed: …": what the outcome of a later attempt says of the earlier ones
	fDlv      = "dlv"   // Unix ms: the delivery deadline of a transferred attempt whose limit came first
	fWinner   = "win"   // the ID hash of an earlier attempt whose late success ended the transaction
	fByNote   = "note2" // "1": the current attempt's route went to the originator by a released notification (hold.go)
	// fPrevious + an earlier attempt's ID hash → "<attempt>|<gateway>|<medium>|<address>"
	fPrevious = "p:"
)

// createSrc creates a transaction (PROTOCOL.md §6.3): the hash, its
// history and its deadline, counted against the sender's daily quota; a
// transaction that exists already is returned instead. Its arguments are a
// createArgs, with KEYS from keys() and ARGV from argv().
const createSrc = `
local tx = KEYS[1]
if redis.call('EXISTS', tx) == 1 then
  local v = redis.call('HMGET', tx, 'fp', 'routed', 'id', 'sess', 'state', 'kid2')
  return {'exists', v[1] or '', v[2] or '', v[3] or '', v[4] or '', v[5] or '', v[6] or ''}
end
local limit = tonumber(ARGV[4])
local n = 0
if limit > 0 then
  n = redis.call('INCR', KEYS[4])
  if n == 1 then redis.call('EXPIRE', KEYS[4], 172800) end
  if n > limit then
    redis.call('DECR', KEYS[4])
    return {'quota'}
  end
end
-- Field names are written here, not passed: every argument costs Lua a
-- string copy, and the call was 55 µs with 40 arguments (issue 7). The
-- names are the f* constants of tx.go. Numbers go on to redis.call as the
-- strings they came in as: a Lua number is formatted again with %.17g
-- (number formatting was 4 % of Redis's CPU, docs/BENCHMARKS.md).
redis.call('HSET', tx, 'fp', ARGV[1], 'routed', ARGV[8], 'id', ARGV[9], 'idh', ARGV[10], 'kid2', ARGV[11],
  'sess', ARGV[12], 'og', ARGV[13], 'dg', ARGV[14], 'dest', ARGV[15], 'state', ARGV[16], 'sender', ARGV[17],
  'recipient', ARGV[18], 'medium', ARGV[19], 'note', ARGV[20], 'deadline', ARGV[21], 'created', ARGV[22],
  'limit', ARGV[23], 'an', ARGV[24], 'ah', ARGV[25])
redis.call('EXPIRE', tx, ARGV[5])
redis.call('RPUSH', KEYS[2], ARGV[6], ARGV[7])
redis.call('EXPIRE', KEYS[2], ARGV[5])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
-- The audit chain starts here (auditLua's audit on a new transaction, in
-- the HSET above: its records are 1..an, the last hashing to ah).
local an = ''
if (tonumber(ARGV[24]) or 0) > 0 then an = '1' end
return {'created', tostring(n), an, ''}
`

var createScript = redis.NewScript(createSrc)

// createArgs are createScript's arguments. The fields are in ARGV order;
// argv() gives them by position and keys() gives KEYS. A tag says where the
// script uses the value: the hash field it is stored in (hset, one of the f*
// constants) or a word of every line that reads it (lua). TestCreateArgs
// holds the tags to the script's source and the values to what Redis stores.
type createArgs struct {
	Fingerprint string `argv:"1" hset:"fp"`
	MsgID       string `argv:"2" lua:"ZADD"`   // also names KEYS[1] and KEYS[2]
	Expiry      int64  `argv:"3" lua:"ZADD"`   // Unix ms when the sweeper fails it: the deadline plus grace
	Quota       int64  `argv:"4" lua:"limit"`  // the sender's messages a day; 0: no quota
	Retention   int64  `argv:"5" lua:"EXPIRE"` // seconds the transaction is kept
	Accepted    string `argv:"6" lua:"RPUSH"`  // history entries, JSON
	RoutedEntry string `argv:"7" lua:"RPUSH"`
	Routed      []byte `argv:"8" hset:"routed"`
	ID          string `argv:"9" hset:"id"`
	IDHash      string `argv:"10" hset:"idh"`
	Kid2        string `argv:"11" hset:"kid2"`
	Session     string `argv:"12" hset:"sess"`
	OG          string `argv:"13" hset:"og"`
	DG          string `argv:"14" hset:"dg"`
	Dest        string `argv:"15" hset:"dest"`
	// State is schemas.StatusRouted, or schemas.StatusHeld for a message
	// the brokers hold (hold.go): then Set is keyHolds and Expiry the end
	// of the hold.
	State     string `argv:"16" hset:"state"`
	Sender    string `argv:"17" hset:"sender"`
	Recipient string `argv:"18" hset:"recipient"`
	Medium    string `argv:"19" hset:"medium"`
	Note      []byte `argv:"20" hset:"note"`
	Deadline  int64  `argv:"21" hset:"deadline"`
	Created   int64  `argv:"22" hset:"created"`
	Limit     int64  `argv:"23" hset:"limit"` // Unix ms the attempt's medium may take (Fallback.After); 0: none
	// AuditCount and AuditHead append the route's record (auditlog.go).
	AuditCount int64  `argv:"24" hset:"an"`
	AuditHead  string `argv:"25" hset:"ah"`

	QuotaKey string // KEYS[4]: keyQuota + client:yyyymmdd, or any key when Quota is 0
	Set      string // KEYS[3]: keyDeadlines, or keyHolds for a held message; default keyDeadlines
}

// keys returns createScript's KEYS.
func (a *createArgs) keys() []string {
	set := a.Set
	if set == "" {
		set = keyDeadlines
	}
	return []string{keyTx + a.MsgID, keyTxHistory + a.MsgID, set, a.QuotaKey}
}

// argv returns createScript's ARGV.
func (a *createArgs) argv() []any {
	return []any{a.Fingerprint, a.MsgID, a.Expiry, a.Quota, a.Retention, a.Accepted, a.RoutedEntry,
		a.Routed, a.ID, a.IDHash, a.Kid2, a.Session, a.OG, a.DG, a.Dest,
		a.State, a.Sender, a.Recipient, a.Medium, a.Note, a.Deadline, a.Created, a.Limit, a.AuditCount, a.AuditHead}
}

// ackScript checks and applies an acknowledged status in one round trip
// (PROTOCOL.md §6.8). It compares the SHA-256 of the returned ID with the
// stored one (comparing digests leaks nothing about the ID itself, so the
// comparison need not be constant time), checks that the acknowledging
// party is the transaction's current hop, then applies the transition:
// routed → transferred | delivered | read | failed; transferred → delivered
// | read | failed; delivered → read. The same status again is a duplicate
// (no effect); any other change is refused, so a message never has two
// terminal outcomes. It returns the result, the state before, the
// originator, the notification template, the acknowledged attempt
// ("n|gateway|medium|address", empty for a message routed once) and what
// its outcome says of the earlier attempts (fAfter), and, last, the
// outcome marks it put into the accounting outbox (accounting.go), one a
// line: an attempt that ends (delivered, read without delivered first,
// failed), or, for a late success, that attempt's and the open attempt's
// it cancels.
//
// A message routed again (PROTOCOL.md §6.15) also takes acknowledgements
// of its earlier attempts, each with that attempt's ID and from that
// attempt's destination (docs/ROUTING.md, "Late acknowledgements"): a
// delivered or read one ends a transaction still open ("late", the
// attempt wins), any other is only recorded ("recorded", with no history
// entry: the caller writes it), as is every acknowledgement of an attempt
// that another one's late success superseded. A transferred attempt whose
// limit (fLimit) comes before its delivery deadline waits for the limit.
var ackScript = redis.NewScript(`
local tx = KEYS[1]
local function mark(n, outcome, code, flags)
  local m = ARGV[6] .. '|' .. n .. '|' .. outcome .. '|' .. code .. '|' .. ARGV[4] .. '|' .. flags
  redis.call('ZADD', ARGV[9], ARGV[4], m)
  return m
end
local v = redis.call('HMGET', tx, 'state', 'dg', 'idh', 'og', 'note', 'medium', 'win', 'att', 'limit', 'fb', 'an', 'ah')
local state = v[1]
if not state then return {'unknown', ''} end
-- chain appends m records whose last body hashes to head to the audit
-- chain read above (auditLua's audit, without its round of commands): the
-- fields for the step's own HSET, the number of the first record and the
-- hash of the one before it.
local function chain(m, head)
  local k = tonumber(m) or 0
  if k <= 0 then return {}, '', '' end
  local n = tonumber(v[11] or '0') + k
  return {'an', n, 'ah', head}, tostring(n - k + 1), v[12] or ''
end
local og, note = v[4] or '', v[5] or ''
local medium = v[6] or ''
local att = ''
if v[3] ~= ARGV[2] or v[2] ~= ARGV[1] then
  local p = false
  if v[3] ~= ARGV[2] and v[8] then p = redis.call('HGET', tx, 'p:' .. ARGV[2]) end
  if not p then
    if v[2] ~= ARGV[1] then return {'party', v[2]} end
    local af, an, ap = chain(ARGV[12], ARGV[13])
    if #af > 0 then redis.call('HSET', tx, unpack(af)) end
    return {'id', '', an, ap}
  end
  local n, gw, m = string.match(p, '^(%d+)|([^|]*)|([^|]*)|')
  if gw ~= ARGV[1] then return {'party', gw} end
  att, medium = p, m
elseif v[8] then
  att = v[8] .. '|' .. v[2] .. '|' .. medium .. '|'
end
local new = ARGV[3]
local entry = ARGV[5]
if att ~= '' then
  local n = string.match(att, '^(%d+)|')
  entry = '{"attempt":' .. n .. ',"medium":' .. cjson.encode(medium) .. ',' .. string.sub(entry, 2)
end
local fb = v[10] or ''
local live = (v[3] == ARGV[2] and not v[7]) or v[7] == ARGV[2]
local terminal = (state == 'delivered' or state == 'read' or state == 'failed')
if not live then
  if (new == 'delivered' or new == 'read') and not terminal then
    local af, an, ap = chain(ARGV[10], ARGV[11])
    redis.call('HSET', tx, 'state', new, 'win', ARGV[2], unpack(af))
    redis.call('RPUSH', KEYS[2], entry)
    redis.call('ZREM', KEYS[3], ARGV[6])
    local m = mark(string.match(att, '^(%d+)|'), new, ARGV[8], 'lf') .. '\n' .. mark(v[8] or '1', 'cancelled', 'SETTLED', '')
    return {'late', state, og, note, att, fb, v[8] or '', m, an, ap}
  end
  return {'recorded', state, og, note, att, fb, v[8] or ''}
end
if new == state then return {'duplicate', state, og, note, att, fb, v[8] or ''} end
-- "transferred" is a progress report: arriving after the outcome it changes nothing.
if new == 'transferred' and state ~= 'routed' then return {'duplicate', state, og, note, att, fb, v[8] or ''} end
local ok = false
if state == 'routed' then ok = (new == 'transferred' or new == 'delivered' or new == 'read' or new == 'failed')
elseif state == 'transferred' then ok = (new == 'delivered' or new == 'read' or new == 'failed')
elseif state == 'delivered' then ok = (new == 'read') end
if not ok then return {'refused', state, og, note, att, fb, v[8] or ''} end
local af, an, ap = chain(ARGV[10], ARGV[11])
redis.call('HSET', tx, 'state', new, unpack(af))
redis.call('RPUSH', KEYS[2], entry)
if new == 'transferred' then
  local dd, lim = tonumber(ARGV[7]), tonumber(v[9] or '0')
  if lim > 0 and lim < dd then
    redis.call('ZADD', KEYS[3], v[9], ARGV[6])
    redis.call('HSET', tx, 'dlv', ARGV[7])
  else
    redis.call('ZADD', KEYS[3], ARGV[7], ARGV[6])
  end
else
  redis.call('ZREM', KEYS[3], ARGV[6])
end
local m = ''
if new == 'failed' or new == 'delivered' or (new == 'read' and state ~= 'delivered') then
  m = mark(v[8] or '1', new, ARGV[8], 'f')
end
return {'applied', state, og, note, att, fb, v[8] or '', m, an, ap}
`)

// rerouteScript routes a transaction to its next medium (PROTOCOL.md
// §6.15) in place of failing it, atomically: only if the attempt that
// failed is still the current one (its ID hash and number; for an
// acknowledgement, from its destination; for the sweeper, with its
// deadline due) and the transaction is still open. The attempt's ID hash
// stays known (fPrevious) so that its late acknowledgement is recognised.
// The failed attempt's routed IMI stays too ("r:<attempt>"), for its
// accounting record, whose outcome mark the script puts into the outbox
// and returns. Its arguments are a rerouteArgs.
const rerouteSrc = `
local tx = KEYS[1]
local v = redis.call('HMGET', tx, 'state', 'dg', 'idh', 'att', 'og', 'routed')
local state = v[1]
if not state then return {'gone'} end
if v[3] ~= ARGV[3] or (v[4] or '1') ~= ARGV[4] then return {'stale', state} end
if ARGV[1] == 'ack' then
  if v[2] ~= ARGV[2] then return {'stale', state} end
else
  local s = redis.call('ZSCORE', KEYS[3], ARGV[6])
  if not s or tonumber(s) > tonumber(ARGV[5]) then return {'stale', state} end
end
if state ~= 'routed' and state ~= 'transferred' then return {'terminal', state} end
redis.call('HSET', tx, 'state', 'routed', 'routed', ARGV[7], 'id', ARGV[8], 'idh', ARGV[9], 'kid2', ARGV[10],
  'sess', ARGV[11], 'dg', ARGV[12], 'dest', ARGV[13], 'medium', ARGV[14], 'note', ARGV[15], 'deadline', ARGV[16],
  'limit', ARGV[17], 'att', ARGV[18], 'atts', ARGV[19], 'fb', ARGV[20], 'p:' .. ARGV[3], ARGV[21], 'r:' .. ARGV[4], v[6] or '')
redis.call('HDEL', tx, 'dlv')
redis.call('RPUSH', KEYS[2], ARGV[22], ARGV[23])
if ARGV[25] == 'held' then
  redis.call('HSET', tx, 'state', 'held')
  redis.call('ZREM', KEYS[3], ARGV[6])
  redis.call('ZADD', KEYS[4], tonumber(ARGV[24]), ARGV[6])
else
  redis.call('ZADD', KEYS[3], tonumber(ARGV[24]), ARGV[6])
end
local m = ARGV[6] .. '|' .. ARGV[4] .. '|' .. ARGV[27] .. '|' .. ARGV[26] .. '|' .. ARGV[5] .. '|r'
redis.call('ZADD', ARGV[28], tonumber(ARGV[5]), m)
local an, ap = audit(tx, ARGV[29], ARGV[30])
return {'rerouted', state, v[5] or '', m, an, ap}
`

var rerouteScript = redis.NewScript(auditLua + rerouteSrc)

// rerouteArgs are rerouteScript's arguments, in ARGV order.
type rerouteArgs struct {
	Mode     string // "ack" or "sweep"
	Party    string // ack: the acknowledging destination
	IDHash   string // the failed attempt's ID hash: still the current one
	Attempt  int    // the failed attempt's number: still the current one
	Now      int64
	MsgID    string
	Routed   []byte // the new attempt
	ID       string
	NewHash  string
	Kid2     string
	Session  string
	DG       string
	Dest     string
	Medium   string
	Note     []byte
	Deadline int64
	Limit    int64
	Next     int // the new attempt's number
	Attempts []byte
	After    string
	Previous string // fPrevious value of the failed attempt
	Failed   string // history entries: the failed attempt, the new route
	Rerouted string
	Score    int64  // the new attempt's place on the deadline set, or, held, the end of its hold
	State    string // routed, or held: the next medium is quiet now (hold.go), and Score is on the holds
	Code     string // the failed attempt's code and accounting outcome (failed, expired)
	Outcome  string
	// AuditCount and AuditHead append the reroute's records (auditlog.go).
	AuditCount int
	AuditHead  string
}

func (a *rerouteArgs) keys() []string {
	return []string{keyTx + a.MsgID, keyTxHistory + a.MsgID, keyDeadlines, keyHolds}
}

func (a *rerouteArgs) argv() []any {
	return []any{a.Mode, a.Party, a.IDHash, strconv.Itoa(a.Attempt), a.Now, a.MsgID, a.Routed, a.ID, a.NewHash, a.Kid2,
		a.Session, a.DG, a.Dest, a.Medium, a.Note, a.Deadline, a.Limit, a.Next, a.Attempts, a.After,
		a.Previous, a.Failed, a.Rerouted, a.Score, a.State, a.Code, a.Outcome, keyAcct, a.AuditCount, a.AuditHead}
}

// clockScript keeps the fabric's clock for deadlines (docs/RELIABILITY.md,
// "Deadlines"): every sweep of a broker that is connected to NATS records
// the time in KEYS[1]. A gap longer than ARGV[2] ms since the last record
// means no broker could hear an acknowledgement for that long (brokers,
// store or NATS down): every deadline still open then is moved on by the
// gap plus ARGV[3] ms, the time queued acknowledgements need to come in,
// so that an outage is never taken for a silent destination. The first
// broker back does it, once.
var clockScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local prev = tonumber(redis.call('GET', KEYS[1]) or '0')
if prev >= now then return {'ok', '0', '0'} end
redis.call('SET', KEYS[1], now)
if prev == 0 or now - prev <= tonumber(ARGV[2]) then return {'ok', '0', '0'} end
local shift = now - prev + tonumber(ARGV[3])
local open = redis.call('ZRANGEBYSCORE', KEYS[2], prev - tonumber(ARGV[2]), '+inf', 'WITHSCORES')
for i = 1, #open, 2 do
  redis.call('ZADD', KEYS[2], tonumber(open[i + 1]) + shift, open[i])
end
return {'shifted', tostring(#open / 2), tostring(shift)}
`)

// sweepScript takes one expired transaction: ZREM decides which broker
// replica acts (exactly one gets 1), then the transaction fails unless it
// already ended, with its outcome mark in the accounting outbox (ARGV[3],
// at ARGV[4]).
var sweepScript = redis.NewScript(auditLua + `
if redis.call('ZREM', KEYS[3], ARGV[1]) == 0 then return {'gone'} end
local v = redis.call('HMGET', KEYS[1], 'state', 'note', 'og', 'dg', 'att')
local state = v[1]
if not state then return {'gone'} end
if state == 'delivered' or state == 'read' or state == 'failed' then return {'terminal'} end
redis.call('HSET', KEYS[1], 'state', 'failed')
redis.call('RPUSH', KEYS[2], ARGV[2])
local m = ARGV[1] .. '|' .. (v[5] or '1') .. '|expired|EXPIRED|' .. ARGV[4] .. '|f'
redis.call('ZADD', ARGV[3], tonumber(ARGV[4]), m)
local an, ap = audit(KEYS[1], ARGV[5], ARGV[6])
return {'failed', state, v[2] or '', v[3] or '', v[4] or '', m, an, ap}
`)

func historyJSON(status string, at int64, code, reason, party string) string {
	b, _ := json.Marshal(schemas.HistoryEntry{Status: status, At: at, Code: code, Reason: reason, Party: party})
	return string(b)
}

// txRecord is a stored transaction as the handlers need it.
type txRecord struct {
	Routed    []byte
	ID        string
	Kid2      string
	Session   string
	OG        string
	DG        string
	State     string
	Sender    string
	Recipient string
	Medium    string
	Note      string
	Deadline  int64
	Dest      string
	Limit     int64
	Attempt   int // 1 for a message routed once
	Attempts  []schemas.Attempt
	Dlv       int64
	IDHash    string
	ByNote    bool // the route went to the originator by notification: released (hold.go) or rerouted (Attempt > 1)
}

var txFields = []string{fRouted, fID, fKid2, fSession, fOG, fDG, fState, fSender, fRecipient, fMedium, fNote, fDeadline, fDest,
	fLimit, fAttempt, fAttempts, fDlv, fIDHash, fByNote}

// queueLoad queues the read of a transaction on a pipeline.
func queueLoad(ctx context.Context, pipe redis.Pipeliner, msgID string) func() (*txRecord, error) {
	cmd := pipe.HMGet(ctx, keyTx+msgID, txFields...)
	return func() (*txRecord, error) {
		v, err := cmd.Result()
		if err != nil {
			return nil, fmt.Errorf("broker: load tx: %w", err)
		}
		str := func(i int) string {
			s, _ := v[i].(string)
			return s
		}
		if str(6) == "" {
			return nil, nil
		}
		dl, _ := strconv.ParseInt(str(11), 10, 64)
		t := &txRecord{Routed: []byte(str(0)), ID: str(1), Kid2: str(2), Session: str(3), OG: str(4), DG: str(5),
			State: str(6), Sender: str(7), Recipient: str(8), Medium: str(9), Note: str(10), Deadline: dl, Dest: str(12), IDHash: str(17),
			ByNote: str(18) == "1"}
		t.Limit, _ = strconv.ParseInt(str(13), 10, 64)
		t.Dlv, _ = strconv.ParseInt(str(16), 10, 64)
		t.Attempt = 1
		if n, err := strconv.Atoi(str(14)); err == nil && n > 1 {
			t.Attempt = n
		}
		if a := str(15); a != "" {
			json.Unmarshal([]byte(a), &t.Attempts)
		}
		return t, nil
	}
}

func day(t time.Time) string { return t.UTC().Format("20060102") }

var errScript = errors.New("broker: unexpected script reply")

func scriptReply(v any) ([]string, error) {
	arr, ok := v.([]any)
	if !ok || len(arr) == 0 {
		return nil, errScript
	}
	out := make([]string, len(arr))
	for i, x := range arr {
		s, _ := x.(string)
		out[i] = s
	}
	return out, nil
}
