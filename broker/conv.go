package broker

import (
	"context"
	"encoding/hex"
	"fmt"
	"strconv"

	json "github.com/goccy/go-json"
	"github.com/nats-io/nats.go/micro"
	"github.com/redis/go-redis/v9"

	"github.com/uims/uims/audit"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// fStep is the transaction field that says which conversion step the
// content is at: "<attempt>:<step>", the route's attempt (IMI′'s attempt)
// and the index of the step whose report is due next. Absent, or of
// another attempt (a route made again names its own steps), it is step 0.
const fStep = "step"

// convSrc moves a transaction to its next hop after a processor's report
// (PROTOCOL.md §6.7), in one round trip: the reporting party must still be
// the current hop, the report's step the current step and the transaction
// routed, so that two reports of one step, or a report of a step not
// reached yet, cannot both move it. KEYS: the transaction, its history.
// ARGV: the party, the step reported, the next hop's party, the next step,
// the history entry, the route's attempt.
var convScript = redis.NewScript(auditLua + `
local v = redis.call('HMGET', KEYS[1], 'state', 'dg', 'step')
if not v[1] then return {'unknown', ''} end
if v[2] ~= ARGV[1] then return {'party', v[2] or ''} end
local attempt, step = string.match(v[3] or '', '^(%d+):(%d+)$')
if attempt ~= ARGV[6] then step = '0' end
if step ~= ARGV[2] then return {'step', step} end
if v[1] ~= 'routed' then return {'state', v[1]} end
redis.call('HSET', KEYS[1], 'dg', ARGV[3], 'step', ARGV[6] .. ':' .. ARGV[4])
redis.call('RPUSH', KEYS[2], ARGV[5])
local an, ap = audit(KEYS[1], ARGV[7], ARGV[8])
return {'ok', '', an, ap}
`)

// handleConv takes a processor's report of converted content and signs the
// ticket for the next hop (PROTOCOL.md §6.7): the next step's processor,
// or the destination after the last step. The broker still sees only meta
// information: the new type, length and digest.
func (b *Broker) handleConv(ctx context.Context, req micro.Request) error {
	f, err := b.frame(ctx, req, miap.PurposeConv, false)
	if err != nil {
		return err
	}
	var rep schemas.ConvReport
	if err := decodeJSON(f.Body, &rep); err != nil {
		return err
	}
	if err := rep.Validate(); err != nil {
		return err
	}
	pipe := b.rdb.Pipeline()
	claim := b.store.QueueClaim(ctx, pipe, f.Party, f.Nonce, b.guard.NonceTTL())
	load := queueLoad(ctx, pipe, rep.MsgID)
	pipe.Exec(ctx)
	if err := b.guard.StoreResult(ctx, claim()); err != nil {
		return err
	}
	tx, err := load()
	if err != nil {
		return schemas.Errorf(schemas.CodeStoreUnavailable, err, "load tx")
	}
	if err := b.checkParty(tx, f, func(t *txRecord) string { return t.DG }); err != nil {
		return err
	}
	var routed schemas.RoutedIMI
	if err := json.Unmarshal(tx.Routed, &routed); err != nil {
		return schemas.Errorf(schemas.CodeInternal, err, "stored routed imi")
	}
	if rep.Step < 0 || rep.Step >= len(routed.Conversions) || routed.Conversions[rep.Step].Processor != f.Party ||
		routed.Conversions[rep.Step].Conversion != rep.Conversion {
		return schemas.Errorf(schemas.CodeNotAllowed, nil, fmt.Sprintf("step %d %q is not on the route", rep.Step, rep.Conversion))
	}
	if rep.Content.Type != f.CType || rep.Content.Length != f.CLen || rep.Content.SHA256 != hex.EncodeToString(f.CSHA) {
		return schemas.Errorf(schemas.CodeMalformed, nil, "report and frame disagree on the content")
	}
	n, ok := schemas.NextStep(routed.Conversions, rep.Step, rep.Content.Type)
	if !ok {
		return schemas.Errorf(schemas.CodeNotAllowed, nil, fmt.Sprintf("step %d produced %q, which no step from it on produces", rep.Step, rep.Content.Type))
	}
	next := routed.Dest.Gateway
	if n < len(routed.Conversions) {
		next = routed.Conversions[n].Processor
	}
	entry := historyJSON("converted", b.cfg.Now().UnixMilli(), "", rep.Conversion+" → "+rep.Content.Type, f.Party)
	nowMS := b.cfg.Now().UnixMilli()
	recs := b.auditBodies(nowMS, &audit.Body{Tx: rep.MsgID, Kind: audit.KindConversion, Attempt: routed.Attempt, Gateway: f.Party,
		Step: rep.Step, Next: next, CType: rep.Content.Type, Chain: []string{f.Party + ":" + rep.Conversion}, IDHash: idHash(f.ID),
		Due: routed.Deadline + b.cfg.Grace.Milliseconds()})
	an, ah := recs.args()
	res, err := convScript.Run(ctx, b.rdb, []string{keyTx + rep.MsgID, keyTxHistory + rep.MsgID},
		f.Party, rep.Step, next, n, entry, routed.Attempt, an, ah).Result()
	if err != nil {
		return schemas.Errorf(schemas.CodeStoreUnavailable, err, "next hop")
	}
	out, err := scriptReply(res)
	if err != nil || len(out) < 2 {
		return schemas.Errorf(schemas.CodeInternal, err, "next hop reply")
	}
	switch out[0] {
	case "ok":
		if len(out) >= 4 {
			b.auditAppend(recs, out[2], out[3])
		}
	case "unknown":
		return schemas.Errorf(schemas.CodeUnknownTx, nil, "")
	case "party":
		return schemas.Errorf(schemas.CodeNotAllowed, nil, fmt.Sprintf("report from %q for a transaction at %q", f.Party, out[1]))
	case "step":
		return schemas.Errorf(schemas.CodeNotAllowed, nil, "step "+strconv.Itoa(rep.Step)+" reported, the content is at step "+out[1])
	case "state":
		if out[1] == schemas.StatusFailed {
			return schemas.Errorf(schemas.CodeExpired, nil, "transaction already failed")
		}
		return schemas.Errorf(schemas.CodeNotAllowed, nil, "conversion report for a transaction "+out[1])
	default:
		return schemas.Errorf(schemas.CodeInternal, nil, "next hop reply "+out[0])
	}
	ticket, err := b.ticket(next, f.Party, f.ID, rep.Content, routed.Deadline, tx.Routed)
	if err != nil {
		return schemas.Errorf(schemas.CodeInternal, err, "ticket")
	}
	b.log.Info().Str("msg_id", rep.MsgID).Str("tx", routed.Tx).Str("processor", f.Party).Int("step", rep.Step).
		Str("conversion", rep.Conversion).Str("type", rep.Content.Type).Str("next", next).Msg("converted")
	b.trace("conv", rep.MsgID, routed.Tx, f.Party, "ok", schemas.TraceEvent{Conversion: rep.Conversion, Next: next})
	return b.reply(req, &miap.Frame{Purpose: miap.PurposeConvReply, Party: f.Party, Nonce: f.Nonce, ID: f.ID, Body: tx.Routed}, ticket)
}
