package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/gateways/web"
	"github.com/uims/uims/internal/groupcommit"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/miap/miapnats"
	"github.com/uims/uims/schemas"
)

// The store-and-forward variant (benchmark code only, not a product mode):
// what a user would pick instead of the patent's split. The originating
// gateway sends the IMI and the content in one request to the broker; the
// broker does the broker's work on it (MIAP verify of the IMI frame, the
// content's SHA-256 against the IMI, one Redis round trip for the nonce and
// the transaction), forwards the content with a signed ticket to the
// destination gateway, which checks ticket and digest and stores the
// message in a JetStream inbox like the web gateway does; then the broker
// records the outcome (a second Redis round trip) and answers the
// originator with a signed receipt.
//
//	OG → broker (IMI + content) → DG (routed IMI + content) → broker → OG
//
// Per message: 2 NATS request-replies (the split needs 3), 2 Redis round
// trips, 1 JetStream write; the content crosses the broker twice.
const (
	sfSubject      = "uims.bench.sf.msg"
	sfDGSubject    = "uims.bench.sf.dg"
	sfInboxStream  = "BENCH_SF_INBOX"
	sfInboxSubject = "uims.bench.sfinbox."
	sfWorkers      = 256
	hdrSFStatus    = "Bench-Status"
)

var sfCreate = redis.NewScript(`
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
redis.call('ZADD', KEYS[2], tonumber(ARGV[1]), KEYS[1])
return 1
`)

var sfTransition = redis.NewScript(`
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'unknown' end
redis.call('HSET', KEYS[1], 'state', ARGV[1])
redis.call('ZREM', KEYS[2], KEYS[1])
redis.call('HINCRBY', KEYS[3], ARGV[2] .. '.sent', 1)
redis.call('HINCRBY', KEYS[4], ARGV[2] .. '.received', 1)
return 'applied'
`)

const (
	sfKeyTx        = "bench:sf:tx:"
	sfKeyDeadlines = "bench:sf:deadlines"
	sfKeyUsage     = "bench:sf:usage:"
	sfKeyNonce     = "bench:sf:nonce:"
)

func serveSFBroker(ctx context.Context, nc *nats.Conn, eng *miap.Engine, rdb redis.UniversalClient) (*nats.Subscription, error) {
	for _, s := range []*redis.Script{sfCreate, sfTransition} {
		if err := s.Load(ctx, rdb).Err(); err != nil {
			return nil, fmt.Errorf("bench: load script: %w", err)
		}
	}
	return serve(nc, sfSubject, sfWorkers, func(m *nats.Msg) {
		code, err := sfBroker(ctx, nc, eng, rdb, m)
		if err != nil {
			miapnats.RespondError(m, code)
		}
	})
}

func sfBroker(ctx context.Context, nc *nats.Conn, eng *miap.Engine, rdb redis.UniversalClient, m *nats.Msg) (schemas.Code, error) {
	n, err := strconv.Atoi(m.Header.Get(miap.HdrIMILen))
	if err != nil || n < 0 || n > len(m.Data) {
		return schemas.CodeMalformed, errors.New("imi length")
	}
	f, err := miap.ParseHeader(m.Header, m.Data[:n:n])
	if err == nil {
		err = eng.Verify(f, miap.PurposeIMI)
	}
	if err != nil {
		return miap.CodeOf(err), err
	}
	var imi schemas.IMI
	if err := json.Unmarshal(f.Body, &imi); err != nil {
		return schemas.CodeMalformed, err
	}
	if err := imi.Validate(); err != nil {
		return schemas.CodeMalformed, err
	}
	content := m.Data[n:]
	sum := sha256.Sum256(content)
	if int64(len(content)) != imi.Content.Length || hex.EncodeToString(sum[:]) != imi.Content.SHA256 {
		return schemas.CodeDigestMismatch, errors.New("content digest")
	}
	now := time.Now()
	routed := schemas.RoutedIMI{V: schemas.Version, IMI: imi, Tx: imi.MsgID, Sender: imi.From.Client, Recipient: imi.To,
		Dest:   schemas.Hop{Gateway: "web", Medium: schemas.MediumWeb, Address: imi.To},
		Routed: now.UnixMilli(), Deadline: now.Add(30 * time.Second).UnixMilli(), Attempt: 1,
		Receipts: []string{"delivery", "read", "failure"}}
	routedBytes, err := json.Marshal(&routed)
	if err != nil {
		return schemas.CodeInternal, err
	}
	cack, err := eng.NewSessionKey()
	if err != nil {
		return schemas.CodeInternal, err
	}
	id, kid2, err := eng.MintID(routedBytes, cack)
	if err != nil {
		return schemas.CodeInternal, err
	}
	// Redis round trip 1: the nonce and the transaction.
	tx := sfKeyTx + imi.MsgID
	pipe := rdb.Pipeline()
	claim := pipe.SetNX(ctx, sfKeyNonce+f.Party+":"+miap.EncodeB64(f.Nonce[:]), 1, eng.NonceTTL())
	pipe.EvalSha(ctx, sfCreate.Hash(), []string{tx, sfKeyDeadlines}, routed.Deadline, 7*24*3600,
		"routed", routedBytes, "id", miap.EncodeB64(id), "kid2", kid2, "sess", miap.EncodeB64(cack), "og", imi.Gateway,
		"dest", "web", "state", "routed", "sender", routed.Sender, "recipient", routed.Recipient, "created", now.UnixMilli())
	if _, err := pipe.Exec(ctx); err != nil {
		return schemas.CodeStoreUnavailable, err
	}
	if !claim.Val() {
		return schemas.CodeReplay, miap.ErrReplay
	}
	// Forward the content to the destination.
	t := &miap.Frame{Purpose: miap.PurposeTicket, Party: "web", ID: id, Peer: imi.Gateway, CType: imi.Content.Type,
		CLen: imi.Content.Length, CSHA: sum[:], Expiry: routed.Deadline, Body: routedBytes}
	if err := eng.Sign(t); err != nil {
		return schemas.CodeInternal, err
	}
	fm := nats.NewMsg(sfDGSubject)
	t.PutHeader(fm.Header)
	fm.Header.Set(miap.HdrIMILen, strconv.Itoa(len(routedBytes)))
	fm.Data = append(append(make([]byte, 0, len(routedBytes)+len(content)), routedBytes...), content...)
	fctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	r, err := nc.RequestMsgWithContext(fctx, fm)
	cancel()
	if err != nil {
		return schemas.CodeBusy, err
	}
	if e := schemas.ErrorFromHeader(r.Header); e != nil {
		return e.Code, e
	}
	status := r.Header.Get(hdrSFStatus)
	// Redis round trip 2: the outcome and the accounting.
	if err := sfTransition.EvalSha(ctx, rdb, []string{tx, sfKeyDeadlines, sfKeyUsage + routed.Sender, sfKeyUsage + routed.Recipient},
		status, schemas.MediumWeb).Err(); err != nil {
		return schemas.CodeStoreUnavailable, err
	}
	ev, _ := json.Marshal(schemas.StatusEvent{V: schemas.Version, Tx: routed.Tx, MsgID: imi.MsgID, Sender: routed.Sender,
		From: imi.From, To: imi.To, Dest: routed.Dest, Status: status, At: time.Now().UnixMilli()})
	return schemas.CodeInternal, miapnats.Respond(m, eng, &miap.Frame{Purpose: miap.PurposeRoute, Party: imi.Gateway, Nonce: f.Nonce, ID: id, Body: ev}, nil)
}

// sfStored is the inbox entry the store-and-forward destination writes,
// shaped like the web gateway's.
type sfStored struct {
	ID      string           `json:"id"`
	From    schemas.Endpoint `json:"from"`
	To      string           `json:"to"`
	Subject string           `json:"subject,omitempty"`
	Medium  string           `json:"medium"`
	Type    string           `json:"type"`
	Text    string           `json:"text"`
	At      int64            `json:"at"`
	Ref     kit.AckRef       `json:"ref"`
}

// The store-and-forward inbox's group-commit journal.
const (
	sfJournalStream  = "BENCH_SF_JOURNAL"
	sfJournalSubject = "uims.bench.sfjournal"
)

// ensureSFInbox creates the store-and-forward inbox, sharded by message id
// like the web gateway's, and written as the web gateway writes its own:
// with group commit unless eachWrite (then w is nil).
func ensureSFInbox(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, eachWrite bool) (*groupcommit.Writer, error) {
	persist := jetstream.AsyncPersistMode
	if eachWrite {
		persist = jetstream.DefaultPersistMode
	}
	if err := ensureShards(ctx, js, sfInboxStream, sfInboxSubject, persist); err != nil {
		return nil, err
	}
	if eachWrite {
		return nil, nil
	}
	var names []string
	for i := range web.DefaultInboxShards {
		names = append(names, shardName(sfInboxStream, i))
	}
	return groupcommit.New(ctx, nc, js, groupcommit.Config{Journal: sfJournalStream, Subject: sfJournalSubject, Streams: names,
		Prefixes: []string{sfInboxSubject},
		StreamOf: func(subject string) string {
			k, _, _ := strings.Cut(strings.TrimPrefix(subject, sfInboxSubject), ".")
			return sfInboxStream + "_" + k
		}})
}

// serveSFDG is the store-and-forward destination gateway.
func serveSFDG(nc *nats.Conn, js jetstream.JetStream, w *groupcommit.Writer, eng *miap.Engine) (*nats.Subscription, error) {
	return serve(nc, sfDGSubject, bareWorkers, func(m *nats.Msg) {
		if err := sfDeliver(nc, js, w, eng, m); err != nil {
			miapnats.RespondError(m, miap.CodeOf(err))
		}
	})
}

func sfDeliver(nc *nats.Conn, js jetstream.JetStream, w *groupcommit.Writer, eng *miap.Engine, m *nats.Msg) error {
	n, err := strconv.Atoi(m.Header.Get(miap.HdrIMILen))
	if err != nil || n < 0 || n > len(m.Data) {
		return miap.ErrMalformed
	}
	t, err := miap.ParseHeader(m.Header, m.Data[:n:n])
	if err != nil {
		return err
	}
	if t.Party != "web" {
		return miap.ErrBadTicket
	}
	if err := eng.Verify(t, miap.PurposeTicket); err != nil {
		return err
	}
	content := m.Data[n:]
	sum := sha256.Sum256(content)
	if int64(len(content)) != t.CLen || !bytes.Equal(sum[:], t.CSHA) {
		return miap.ErrDigest
	}
	var routed schemas.RoutedIMI
	if err := json.Unmarshal(t.Body, &routed); err != nil {
		return miap.ErrMalformed
	}
	imi := &routed.IMI
	s := sfStored{ID: imi.MsgID, From: imi.From, To: imi.To, Subject: imi.Subject, Medium: imi.From.Medium,
		Type: imi.Content.Type, Text: string(content), At: time.Now().UnixMilli(),
		Ref: kit.AckRef{MsgID: imi.MsgID, Tx: routed.Tx, ID: miap.EncodeB64(t.ID)}}
	data, err := json.Marshal(&s)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	subject := shardSubject(sfInboxSubject, imi.MsgID) + routed.Recipient + "." + imi.MsgID
	if w != nil {
		_, err = w.Publish(ctx, subject, data, imi.MsgID)
	} else {
		_, err = js.Publish(ctx, subject, data, jetstream.WithMsgID(imi.MsgID))
	}
	if err != nil {
		return &schemas.Error{Code: schemas.CodeBusy, Err: err}
	}
	nc.Publish("uims.bench.sfevents."+routed.Recipient, data) // the live event, as the web gateway sends
	r := nats.NewMsg(m.Reply)
	r.Header.Set(hdrSFStatus, schemas.StatusDelivered)
	return m.RespondMsg(r)
}

// sfFlow is the originating side of the store-and-forward variant.
type sfFlow struct {
	nc       *nats.Conn
	eng      *miap.Engine
	instance string
}

func (f *sfFlow) send(ctx context.Context, content []byte) error {
	sum := sha256.Sum256(content)
	imi := schemas.IMI{V: schemas.Version, MsgID: kit.NewMsgID(), Gateway: "web", Instance: f.instance,
		From: schemas.Endpoint{Medium: schemas.MediumWeb, Address: "alice", Client: "alice"}, To: "bob",
		Content: schemas.Content{Type: contentType, Length: int64(len(content)), SHA256: hex.EncodeToString(sum[:])},
		Created: time.Now().UnixMilli()}
	body, err := json.Marshal(&imi)
	if err != nil {
		return err
	}
	fr := &miap.Frame{Purpose: miap.PurposeIMI, Party: "web", Body: body}
	if err := f.eng.Sign(fr); err != nil {
		return err
	}
	m := nats.NewMsg(sfSubject)
	fr.PutHeader(m.Header)
	m.Header.Set(miap.HdrIMILen, strconv.Itoa(len(body)))
	m.Data = append(append(make([]byte, 0, len(body)+len(content)), body...), content...)
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	reply, err := f.nc.RequestMsgWithContext(ctx, m)
	if err != nil {
		return miapnats.NATSError(err, "broker")
	}
	if e := schemas.ErrorFromHeader(reply.Header); e != nil {
		return e
	}
	rf, err := miap.ParseHeader(reply.Header, reply.Data)
	if err == nil {
		err = f.eng.Verify(rf, miap.PurposeRoute)
	}
	if err == nil && rf.Nonce != fr.Nonce {
		err = miap.ErrBadMAC
	}
	if err != nil {
		return &schemas.Error{Code: miap.CodeOf(err), Err: err}
	}
	var ev schemas.StatusEvent
	if err := json.Unmarshal(rf.Body, &ev); err != nil || ev.Status != schemas.StatusDelivered {
		return fmt.Errorf("status %q", ev.Status)
	}
	return nil
}
