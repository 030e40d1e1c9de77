package broker

import (
	"context"
	"crypto/ed25519"
	"strconv"
	"time"

	json "github.com/goccy/go-json"

	"github.com/uims/uims/audit"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// The audit trail (PROTOCOL.md §15; package audit). Every decision on a
// transaction is a record, numbered and chained per transaction in the
// same atomic store step that applies the decision, without a round trip
// of its own: the broker hashes the records' bodies before the step, the
// step (auditLua, in each script) counts them into the transaction's "an",
// returns the number of the first and the hash of the record before it,
// and stores the hash of the last as the chain's head "ah". The records
// then go to the publisher (package audit), which signs and publishes
// them in batches off the request's path.

// Transaction fields of the chain (auditLua).
const (
	fAuditN    = "an" // records so far
	fAuditHead = "ah" // hex SHA-256 of the last record's body
)

// auditLua is prefixed to every script that takes a decision. audit(tx, m,
// head) appends m records (m 0 or empty: audit off, nothing) whose last
// body hashes to head, and returns the number of the first and the hash of
// the record before it ("" for the first record).
const auditLua = `
local function audit(tx, m, head)
  local k = tonumber(m) or 0
  if k <= 0 then return '', '' end
  local n = redis.call('HINCRBY', tx, 'an', k)
  local prev = redis.call('HGET', tx, 'ah') or ''
  redis.call('HSET', tx, 'ah', head)
  return tostring(n - k + 1), prev
end
`

// auditRecs are the bodies of one decision's records, ready for the store
// step.
type auditRecs struct {
	bodies [][]byte
}

// auditBodies encodes the bodies of one decision's records; nil when the
// audit trail is off.
func (b *Broker) auditBodies(now int64, bodies ...*audit.Body) *auditRecs {
	if b.audit == nil {
		return nil
	}
	r := &auditRecs{bodies: make([][]byte, len(bodies))}
	for i, x := range bodies {
		x.V, x.Broker = 1, b.cfg.Instance
		if x.At == 0 {
			x.At = now
		}
		r.bodies[i], _ = json.Marshal(x)
	}
	return r
}

// args are the two ARGV of auditLua: the count and the head.
func (r *auditRecs) args() (int, string) {
	if r == nil {
		return 0, ""
	}
	return audit.Head(r.bodies)
}

// auditAppend hands the records of an applied decision to the publisher,
// numbered from first (the script's reply) after the record hashed prev.
func (b *Broker) auditAppend(r *auditRecs, first, prev string) {
	if r == nil || b.audit == nil {
		return
	}
	n, err := strconv.Atoi(first)
	if err != nil || n < 1 {
		return
	}
	b.audit.Add(audit.Link(r.bodies, n, prev)...)
}

// startAudit starts the publisher of the audit trail, unless it is off;
// the publisher anchors each batch stored in the store (auditanchor.go).
func (b *Broker) startAudit() {
	if b.cfg.NoAudit {
		return
	}
	b.audit = audit.NewPublisher(b.js, func() (string, ed25519.PrivateKey, bool) {
		return b.guard.Keys().AuditSigner(b.cfg.Now())
	}, audit.PublisherConfig{Broker: b.cfg.Instance, Now: b.cfg.Now, Log: b.log, OnStored: b.anchorer()})
}

// stopAudit publishes the records still queued.
func (b *Broker) stopAudit() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.audit.Close(ctx); err != nil {
		b.log.Warn().Err(err).Msg("audit records not all published")
	}
}

// routeChain is a route's conversion steps as the record names them.
func routeChain(steps []schemas.Step) []string {
	if len(steps) == 0 {
		return nil
	}
	out := make([]string, len(steps))
	for i, s := range steps {
		out[i] = s.Processor + ":" + s.Conversion
	}
	return out
}

// ackAudit are the records of an acknowledgement (PROTOCOL.md §6.8): when
// its ID matches and it is applied, the ack and, unless the destination
// relays the receipt, the notification; when its ID matches none, the
// refused ack alone.
func (b *Broker) ackAudit(f *miap.Frame, ack *schemas.Ack, now int64) (ok, bad *auditRecs) {
	if b.audit == nil {
		return nil, nil
	}
	idh := idHash(f.ID)
	var due int64
	if ack.Status == schemas.StatusTransferred {
		due = now + b.cfg.DeliveryDeadline.Milliseconds() + b.cfg.Grace.Milliseconds()
	}
	applied := []*audit.Body{{Tx: ack.MsgID, Kind: audit.KindAck, Gateway: f.Party, Status: ack.Status, Code: ack.Code,
		IDHash: idh, IDMatch: audit.IDMatch, Relayed: ack.Relayed, Due: due}}
	if !ack.Relayed {
		applied = append(applied, &audit.Body{Tx: ack.MsgID, Kind: audit.KindNotify, Status: ack.Status, Code: ack.Code})
	}
	return b.auditBodies(now, applied...), b.auditBodies(now, &audit.Body{Tx: ack.MsgID, Kind: audit.KindAck, Gateway: f.Party,
		Status: ack.Status, Code: ack.Code, IDHash: idh, IDMatch: audit.IDMismatch})
}
