package kit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	json "github.com/goccy/go-json"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/uims/uims/miap"
	"github.com/uims/uims/miap/miapnats"
	"github.com/uims/uims/schemas"
)

// The originator's side of a reroute (PROTOCOL.md §6.15, patent claim 1:
// the content stays at the first gateway): a message routed with fallback
// is kept in the gateway's own object store until its outcome, and a
// rerouted notification sends it to the next destination from there.

// Where the content of a message routed with fallback is kept: in the
// gateway's own key-value bucket uims_og_<gateway>, key <msg_id>, when it
// fits one NATS message (one write to keep it, one to delete it: what a
// message delivered at once pays for its fallback); else in the object
// store of the same name, object <msg_id>, with an empty value under the
// key. The key <msg_id>.attempt holds "<attempt> <stream sequence>
// <routed>": the highest attempt this gateway began to transfer for a
// reroute or a release, the sequence of the notification that brought it
// and its IMI′'s routed time, so that the same notification redelivered is
// handled again but another copy of it (a replay), or one of an earlier
// attempt, is not — while a route the brokers issued again for the same
// attempt (later routed time, PROTOCOL.md §6.16) is.
type keptStore struct {
	mu sync.Mutex
	kv jetstream.KeyValue
	os jetstream.ObjectStore
}

const keptAttemptKey = ".attempt"

// keptKV returns the gateway's bucket of kept content, creating it if need be.
func (k *Kit) keptKV(ctx context.Context) (jetstream.KeyValue, error) {
	k.keep.mu.Lock()
	defer k.keep.mu.Unlock()
	if k.keep.kv != nil {
		return k.keep.kv, nil
	}
	cfg := jetstream.KeyValueConfig{Bucket: schemas.KeptContentBucket(k.cfg.Gateway),
		Description: "content of messages the brokers may route again or hold, until their outcome (PROTOCOL.md §6.15, §6.16)",
		TTL:         k.cfg.KeepContent, Storage: jetstream.FileStorage}
	kv, err := miapnats.KeyValue(ctx, k.js, cfg)
	if err != nil {
		return nil, fmt.Errorf("kit: kept content bucket: %w", err)
	}
	if st, err := kv.Status(ctx); err == nil && st.TTL() < cfg.TTL {
		// a bucket made before holds (24 h): a held message needs its
		// content for as long as it may be held
		cfg.Replicas = miapnats.Replicas(k.js)
		if kv, err = k.js.UpdateKeyValue(ctx, cfg); err != nil {
			return nil, fmt.Errorf("kit: kept content bucket: longer TTL: %w", err)
		}
		k.log.Info().Dur("ttl", cfg.TTL).Msg("kept content bucket: TTL raised for held messages")
	}
	k.keep.kv = kv
	return kv, nil
}

// keptObjects returns the object store of kept content too large for the
// bucket, creating it if need be.
func (k *Kit) keptObjects(ctx context.Context) (jetstream.ObjectStore, error) {
	k.keep.mu.Lock()
	defer k.keep.mu.Unlock()
	if k.keep.os != nil {
		return k.keep.os, nil
	}
	bucket := schemas.KeptContentBucket(k.cfg.Gateway)
	os, err := k.js.ObjectStore(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		os, err = k.js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: bucket,
			Description: "large content of messages the brokers may route again, until their outcome (PROTOCOL.md §6.15)",
			TTL:         k.cfg.KeepContent, Storage: jetstream.FileStorage, Replicas: miapnats.Replicas(k.js)})
		if errors.Is(err, jetstream.ErrBucketExists) {
			os, err = k.js.ObjectStore(ctx, bucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("kit: kept content objects: %w", err)
	}
	k.keep.os = os
	return os, nil
}

// inline reports whether content of n bytes is kept in the bucket itself.
func (k *Kit) inline(n int) bool { return int64(n)+4096 <= k.nc.MaxPayload() }

// keepContent stores the content of a message routed with fallback
// before its client hears that it was accepted (docs/RELIABILITY.md,
// Ownership): a reroute must find it even after this process restarted.
// A store that fails is STORE_UNAVAILABLE: the client retries.
func (k *Kit) keepContent(ctx context.Context, routed *schemas.RoutedIMI, content []byte) error {
	kv, err := k.keptKV(ctx)
	if err == nil && k.inline(len(content)) {
		_, err = kv.Put(ctx, routed.IMI.MsgID, content)
	} else if err == nil {
		var os jetstream.ObjectStore
		if os, err = k.keptObjects(ctx); err == nil {
			if _, err = os.PutBytes(ctx, routed.IMI.MsgID, content); err == nil {
				_, err = kv.Put(ctx, routed.IMI.MsgID, nil)
			}
		}
	}
	if err != nil {
		return schemas.Errorf(schemas.CodeStoreUnavailable, err, "keep content for a reroute")
	}
	return nil
}

// keptContent returns the kept content of a message;
// jetstream.ErrKeyNotFound when none is kept.
func (k *Kit) keptContent(ctx context.Context, msgID string) ([]byte, error) {
	kv, err := k.keptKV(ctx)
	if err != nil {
		return nil, err
	}
	e, err := kv.Get(ctx, msgID)
	if err != nil {
		return nil, err
	}
	if len(e.Value()) > 0 {
		return e.Value(), nil
	}
	os, err := k.keptObjects(ctx)
	if err != nil {
		return nil, err
	}
	b, err := os.GetBytes(ctx, msgID)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, jetstream.ErrKeyNotFound
	}
	return b, err
}

// forget drops the kept content of a message that has its outcome; n is
// its length when known, else -1.
func (k *Kit) forget(ctx context.Context, msgID string, n int) {
	kv, err := k.keptKV(ctx)
	large := n >= 0 && !k.inline(n)
	if err == nil && n < 0 {
		// Unknown: look (most messages were never kept).
		var e jetstream.KeyValueEntry
		e, err = kv.Get(ctx, msgID)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return
		}
		large = err == nil && len(e.Value()) == 0
	}
	if err == nil {
		err = kv.Delete(ctx, msgID)
	}
	if err == nil && large {
		var os jetstream.ObjectStore
		if os, err = k.keptObjects(ctx); err == nil {
			err = os.Delete(ctx, msgID)
		}
	}
	if err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		k.log.Debug().Err(err).Str("msg_id", msgID).Msg("kept content not deleted; it expires with the bucket's TTL")
	}
}

// movedOn answers Send when the destination of a message routed with
// fallback refused it for good: the brokers route it to the next medium
// (at once if the destination acknowledged the failure, else at the
// deadline) and the outcome comes as a notification, so the message is
// accepted unless its status says it failed already.
func (k *Kit) movedOn(ctx context.Context, routed *schemas.RoutedIMI, cause error) (*Result, error) {
	st, err := k.Query(ctx, routed.IMI.MsgID)
	if err != nil {
		return nil, cause
	}
	res := &Result{MsgID: routed.IMI.MsgID, Tx: routed.Tx, Dest: st.Dest, Status: st.State}
	switch st.State {
	case schemas.StatusFailed:
		return k.settled(ctx, routed.IMI.MsgID)
	case schemas.StatusRouted, schemas.StatusTransferred:
		if st.Attempt > routed.Attempt {
			res.Status = schemas.StatusRerouted
		} else {
			res.Status = schemas.StatusRouted
		}
	}
	k.log.Info().Err(cause).Str("msg_id", res.MsgID).Str("status", res.Status).Str("dest", res.Dest.Gateway).
		Msg("the destination refused a message routed with fallback: it moves on")
	return res, nil
}

// handleReroute takes a rerouted notification (§6.15) whose frame
// verified: it checks the new routed IMI as a route reply (§6.3), takes
// the kept content, rebuilds the ticket from the notification's headers
// and transfers the content to the new first hop (§6.6). It returns what
// to do with the stream message.
func (k *Kit) handleReroute(ctx context.Context, h map[string][]string, seq uint64, f *miap.Frame, ev *schemas.StatusEvent) streamAction {
	raw, err := miap.DecodeB64(ev.Routed)
	var routed schemas.RoutedIMI
	if err == nil {
		err = json.Unmarshal(raw, &routed)
	}
	// a reroute is attempt 2 or later; a release (§6.16) any attempt, and
	// no longer held
	first := 2
	if ev.Status == schemas.StatusReleased {
		first = 1
	}
	if err == nil && (routed.IMI.MsgID != ev.MsgID || routed.IMI.Gateway != k.cfg.Gateway || routed.Attempt < first ||
		routed.HeldUntil != 0 || routed.Dest != ev.Dest || len(f.ID) != miap.MACSize) {
		err = fmt.Errorf("%w: the rerouted IMI is not for our message", miap.ErrBadMAC)
	}
	if err != nil {
		k.log.Warn().Err(err).Bool("security", true).Str("msg_id", ev.MsgID).Msg("reroute refused")
		return streamTerm
	}
	log := k.log.With().Str("msg_id", ev.MsgID).Int("attempt", routed.Attempt).Str("dest", routed.Dest.Gateway).Logger()
	if !k.now().Before(time.UnixMilli(routed.Deadline)) {
		// Its ticket expired: an old notification, a replay, or one that
		// waited while this gateway was down; the brokers' deadline has
		// moved the message on or failed it.
		log.Warn().Bool("security", true).Msg("reroute refused: its deadline passed")
		return streamTerm
	}
	kv, err := k.keptKV(ctx)
	if err != nil {
		log.Warn().Err(err).Msg("reroute: kept content not readable; retry")
		return streamNak
	}
	var n int
	var handledSeq string
	var handledRouted int64
	if e, err := kv.Get(ctx, ev.MsgID+keptAttemptKey); err == nil {
		f := strings.Fields(string(e.Value()))
		if len(f) > 0 {
			n, _ = strconv.Atoi(f[0])
		}
		if len(f) > 1 {
			handledSeq = f[1]
		}
		if len(f) > 2 {
			handledRouted, _ = strconv.ParseInt(f[2], 10, 64)
		}
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		log.Warn().Err(err).Msg("reroute: kept content not readable; retry")
		return streamNak
	}
	this := strconv.FormatUint(seq, 10)
	// The same attempt again is a replay — unless the brokers issued its
	// route again (a released route that waited for this gateway, PROTOCOL.md
	// §6.16): a later route of the same attempt, signed anew.
	again := n == routed.Attempt && handledSeq != this && routed.Routed > handledRouted
	if n > routed.Attempt || (n == routed.Attempt && handledSeq != this && !again) {
		log.Warn().Bool("security", true).Int("handled", n).Msg("reroute refused: this attempt was handled already (a replay)")
		return streamTerm
	}
	content, err := k.keptContent(ctx, ev.MsgID)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		// Send keeps the content once its transfer ended (originate.go):
		// a destination that failed at once may make the brokers reroute
		// before that. Until the deadline, look again shortly.
		log.Debug().Msg("reroute: the content is not kept (yet); look again")
		return streamSoon
	}
	if err != nil {
		log.Warn().Err(err).Msg("reroute: kept content not readable; retry")
		return streamNak
	}
	if n < routed.Attempt || again {
		// Begun: a redelivery of this notification (a transfer to retry)
		// goes on, another copy of it does not.
		rec := strconv.Itoa(routed.Attempt) + " " + this + " " + strconv.FormatInt(routed.Routed, 10)
		if _, err := kv.Put(ctx, ev.MsgID+keptAttemptKey, []byte(rec)); err != nil {
			log.Warn().Err(err).Msg("reroute: kept content not writable; retry")
			return streamNak
		}
	}
	var sealed *miap.Sealed
	if routed.IMI.Content.Sealed != "" {
		// kept in clear, sealed again to the bytes the IMI names, with the
		// key that sealed them first (PROTOCOL.md §14.3)
		want, _ := hex.DecodeString(routed.IMI.Content.SHA256)
		if sealed, err = k.eng.Reseal(k.cfg.Gateway, ev.MsgID, content, want); err != nil {
			log.Warn().Err(err).Msg("reroute refused: the kept content does not seal to the message's digest")
			return streamTerm
		}
		content = sealed.Content
	}
	sum := sha256.Sum256(content)
	if int64(len(content)) != routed.IMI.Content.Length || hex.EncodeToString(sum[:]) != routed.IMI.Content.SHA256 {
		log.Warn().Bool("security", true).Msg("reroute refused: the kept content is not the message's")
		return streamTerm
	}
	ticket, err := miapnats.TicketFrom(h, f.ID, k.cfg.Gateway, routed.IMI.Content.Type, routed.IMI.Content.Length, sum[:], routed.Deadline, raw)
	if err != nil {
		log.Warn().Err(err).Bool("security", true).Msg("reroute refused: no ticket")
		return streamTerm
	}
	// The medium hears of it first, as information: the outcome, which
	// the transfer may bring at once, comes after it.
	info2 := *ev
	info2.Routed = ""
	if err := k.medium.Notify(ctx, &info2); err != nil {
		log.Debug().Err(err).Msg("rerouted: the medium did not take the information")
	}
	if k.cfg.Strict { // the originator acknowledges the new route too (§6.4)
		body, _ := json.Marshal(schemas.RouteAck{V: schemas.Version, Tx: routed.Tx})
		if _, _, err := k.request(ctx, schemas.SubjectBrokerRouteAck, &miap.Frame{Purpose: miap.PurposeRouteAck, Party: k.cfg.Gateway, ID: f.ID, Body: body}, miap.PurposeQueryReply, nil); err != nil {
			log.Warn().Err(err).Msg("reroute: route acknowledgement")
			if miap.CodeOf(err).Retryable() {
				return streamNak
			}
			return streamTerm
		}
	}
	k.trace("reroute", ev.MsgID, routed.Tx, "verified", schemas.TraceEvent{Dest: routed.Dest.Gateway})
	res, terr := k.transfer(ctx, &routed, ticket, content, sealed)
	if terr != nil && miap.CodeOf(terr).Retryable() {
		log.Info().Err(terr).Msg("reroute: transfer failed for now; retry")
		k.trace("transfer", ev.MsgID, routed.Tx, errCode(terr), schemas.TraceEvent{})
		return streamNak
	}
	// Taken, or refused for good (the destination acknowledges its failure
	// and the brokers move on or fail the message): this attempt is done.
	if terr != nil {
		log.Info().Err(terr).Msg("reroute: the new destination refused the message")
		k.trace("transfer", ev.MsgID, routed.Tx, errCode(terr), schemas.TraceEvent{})
		return streamAck
	}
	log.Info().Str("status", res.Status).Msg("rerouted message transferred")
	k.trace("transfer", ev.MsgID, routed.Tx, res.Status, schemas.TraceEvent{})
	if res.Receipt != nil && schemas.Terminal(res.Status) {
		k.forget(ctx, ev.MsgID, len(content))
	}
	return streamAck
}

// FollowStatus handles this originator's notifications, reroutes
// included, until ctx is done: for an originator that does not Run, such
// as the command-line sender while it waits for the outcome (§6.9, §6.15).
func (k *Kit) FollowStatus(ctx context.Context) error { return k.consumeStatus(ctx) }

// streamAction is what becomes of a status stream message.
type streamAction int

const (
	streamAck  streamAction = iota // handled: the originator's final acknowledgement (§6.9)
	streamNak                      // again in a second
	streamTerm                     // refused, never again
	streamSoon                     // again in a moment
)
