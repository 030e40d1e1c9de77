package kit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
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

// Metadata of a kept message: the highest attempt this gateway began to
// transfer, and the status stream sequence of the notification that
// brought it (none for the first attempt, which Send transfers), so that
// the same notification redelivered is handled again but another copy of
// it (a replay), or one of an earlier attempt, is not.
const (
	keptAttempt = "attempt"
	keptSeq     = "seq"
)

// keptStore holds the object store of kept content, created on first use.
type keptStore struct {
	mu sync.Mutex
	os jetstream.ObjectStore
}

// kept returns the gateway's bucket of kept content, creating it if need be.
func (k *Kit) kept(ctx context.Context) (jetstream.ObjectStore, error) {
	k.keep.mu.Lock()
	defer k.keep.mu.Unlock()
	if k.keep.os != nil {
		return k.keep.os, nil
	}
	bucket := schemas.KeptContentBucket(k.cfg.Gateway)
	os, err := k.js.ObjectStore(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		os, err = k.js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: bucket,
			Description: "content of messages the brokers may route again, until their outcome (PROTOCOL.md §6.15)",
			TTL:         k.cfg.KeepContent, Storage: jetstream.FileStorage, Replicas: miapnats.Replicas(k.js)})
		if errors.Is(err, jetstream.ErrBucketExists) {
			os, err = k.js.ObjectStore(ctx, bucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("kit: kept content bucket: %w", err)
	}
	k.keep.os = os
	return os, nil
}

// keepContent stores the content of a message routed with fallback
// before it is transferred (docs/RELIABILITY.md, Ownership): a reroute
// must find it even after this process restarted. A store that fails is
// STORE_UNAVAILABLE: the client retries.
func (k *Kit) keepContent(ctx context.Context, routed *schemas.RoutedIMI, content []byte) error {
	os, err := k.kept(ctx)
	if err == nil {
		_, err = os.Put(ctx, jetstream.ObjectMeta{Name: routed.IMI.MsgID,
			Metadata: map[string]string{keptAttempt: strconv.Itoa(routed.Attempt)}}, bytes.NewReader(content))
	}
	if err != nil {
		return schemas.Errorf(schemas.CodeStoreUnavailable, err, "keep content for a reroute")
	}
	return nil
}

// forget drops the kept content of a message that has its outcome.
func (k *Kit) forget(ctx context.Context, msgID string) {
	os, err := k.kept(ctx)
	if err == nil {
		err = os.Delete(ctx, msgID)
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
	if err == nil && (routed.IMI.MsgID != ev.MsgID || routed.IMI.Gateway != k.cfg.Gateway || routed.Attempt < 2 ||
		routed.Dest != ev.Dest || len(f.ID) != miap.MACSize) {
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
	os, err := k.kept(ctx)
	if err != nil {
		log.Warn().Err(err).Msg("reroute: kept content not readable; retry")
		return streamNak
	}
	info, err := os.GetInfo(ctx, ev.MsgID)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		log.Warn().Msg("reroute refused: the content is not kept (its outcome came, or it was never routed with fallback here)")
		return streamTerm
	}
	if err != nil {
		log.Warn().Err(err).Msg("reroute: kept content not readable; retry")
		return streamNak
	}
	n, _ := strconv.Atoi(info.Metadata[keptAttempt])
	this := strconv.FormatUint(seq, 10)
	if n > routed.Attempt || (n == routed.Attempt && info.Metadata[keptSeq] != this) {
		log.Warn().Bool("security", true).Int("handled", n).Msg("reroute refused: this attempt was handled already (a replay)")
		return streamTerm
	}
	if n < routed.Attempt {
		// Begun: a redelivery of this notification (a transfer to retry)
		// goes on, another copy of it does not.
		meta := jetstream.ObjectMeta{Name: ev.MsgID, Metadata: map[string]string{keptAttempt: strconv.Itoa(routed.Attempt), keptSeq: this}}
		if err := os.UpdateMeta(ctx, ev.MsgID, meta); err != nil {
			log.Warn().Err(err).Msg("reroute: kept content not writable; retry")
			return streamNak
		}
	}
	content, err := os.GetBytes(ctx, ev.MsgID)
	if err != nil {
		log.Warn().Err(err).Msg("reroute: kept content not readable; retry")
		return streamNak
	}
	sum := sha256.Sum256(content)
	if int64(len(content)) != routed.IMI.Content.Length || hex.EncodeToString(sum[:]) != routed.IMI.Content.SHA256 {
		log.Warn().Bool("security", true).Msg("reroute refused: the kept content is not the message's")
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
	ticket, err := miapnats.TicketFrom(h, f.ID, k.cfg.Gateway, routed.IMI.Content.Type, routed.IMI.Content.Length, sum[:], routed.Deadline, raw)
	if err != nil {
		log.Warn().Err(err).Bool("security", true).Msg("reroute refused: no ticket")
		return streamTerm
	}
	k.trace("reroute", ev.MsgID, routed.Tx, "verified", schemas.TraceEvent{Dest: routed.Dest.Gateway})
	res, terr := k.transfer(ctx, &routed, ticket, content)
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
		k.forget(ctx, ev.MsgID)
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
)
