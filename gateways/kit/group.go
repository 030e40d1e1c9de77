package kit

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	json "github.com/goccy/go-json"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// Group messages (PROTOCOL.md §6.3, "Group messages"; docs/ROUTING.md,
// "Groups"): the originating gateway splits a message for several
// recipients into one ordinary transaction per recipient, each with its
// own route, status, receipts and fallback; the brokers see nothing new.
// Each transaction's message id derives from the group's
// (schemas.GroupMemberID), so a client's retry of the group reuses them
// and every hop de-duplicates as for any retry, and carries the group id
// in IMI meta schemas.MetaGroup, which status events echo.
//
// The group's record — its id, sender and recipients with their message
// ids — is kept in the gateway's own bucket uims_og_<gateway>, key
// "<group id>.group", written before any recipient is sent: a crash
// halfway leaves a record that the client's retry completes. It expires
// with the bucket's TTL (Config.KeepContent).

// GroupConcurrency is how many recipients of a group message are sent at
// once.
const GroupConcurrency = 8

// groupKeySuffix names a group's record in the kept-content bucket.
const groupKeySuffix = ".group"

// Statuses of one recipient of a group message besides the statuses of a
// transaction.
const (
	// RecipientRetry: the recipient was not accepted, for now (a
	// temporary failure when it was sent, or no transaction at the brokers
	// for it): the client sends the group message again with the same id.
	RecipientRetry = "retry"
)

// GroupRecipient is one recipient in a group's record.
type GroupRecipient struct {
	// To is the recipient as written, normalised.
	To string `json:"to"`
	// MsgID is its transaction's message id, schemas.GroupMemberID.
	MsgID string `json:"msg_id"`
	// Code and Reason are set when the fabric refused the recipient for
	// good as it was sent (it has no transaction to ask about).
	Code   string `json:"code,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// GroupRecord is what the originating gateway keeps of a group message.
type GroupRecord struct {
	V  int    `json:"v"`
	ID string `json:"id"`
	// Created is when the group was first accepted, Unix ms.
	Created int64 `json:"created"`
	// Sender is the sender's client id (its address when it has none):
	// only the sender may read the group's status.
	Sender     string           `json:"sender"`
	Recipients []GroupRecipient `json:"recipients"`
}

// RecipientResult is what became of one recipient of a group message.
type RecipientResult struct {
	To string `json:"to"`
	// ID is the recipient's message id.
	ID string `json:"id"`
	// Status is the transaction's status (transferred, delivered, read,
	// failed, routed, rerouted), or RecipientRetry.
	Status string `json:"status"`
	// Code and Reason explain a failure (or a RecipientRetry).
	Code   string       `json:"code,omitempty"`
	Reason string       `json:"reason,omitempty"`
	Dest   *schemas.Hop `json:"dest,omitempty"`
	// History is the transaction's history (GroupStatus only).
	History []schemas.HistoryEntry `json:"history,omitempty"`
	// Err is the error of a recipient that was not accepted (SendGroup).
	Err error `json:"-"`
}

// GroupResult is a group message's recipients and its aggregate status.
type GroupResult struct {
	ID string `json:"id"`
	// Status is the aggregate (schemas.GroupAggregate): delivered,
	// failed, partial or pending.
	Status string `json:"status"`
	// Sender and Created come from the group's record.
	Sender  string `json:"sender,omitempty"`
	Created int64  `json:"created,omitempty"`
	// Counts counts the recipients per status.
	Counts     map[string]int    `json:"counts"`
	Recipients []RecipientResult `json:"recipients"`
}

// Accepted counts the recipients the fabric accepted.
func (g *GroupResult) Accepted() int {
	n := 0
	for _, r := range g.Recipients {
		if r.Err == nil {
			n++
		}
	}
	return n
}

func (g *GroupResult) aggregate() {
	g.Counts = map[string]int{}
	states := make([]string, len(g.Recipients))
	for i, r := range g.Recipients {
		states[i] = r.Status
		g.Counts[r.Status]++
	}
	g.Status = schemas.GroupAggregate(states)
}

// ExpandRecipients returns the recipients a sender wrote with its named
// groups ("group:<name>", from the sender's own ClientInfo.Groups)
// replaced by their members. A group the sender does not have is
// UNKNOWN_RECIPIENT naming it; a member that is a group again (groups do
// not nest) is MALFORMED.
func ExpandRecipients(ci *schemas.ClientInfo, written []string) ([]string, error) {
	out := make([]string, 0, len(written))
	for _, w := range written {
		w = strings.TrimSpace(w)
		name, ok := strings.CutPrefix(w, schemas.GroupPrefix)
		if !ok {
			out = append(out, w)
			continue
		}
		var members []string
		ok = false
		if ci != nil {
			members, ok = ci.Groups[name]
		}
		if !ok {
			return nil, schemas.Errorf(schemas.CodeUnknownRecipient, nil, fmt.Sprintf("no group %q in your profile", w))
		}
		for _, m := range members {
			if strings.HasPrefix(m, schemas.GroupPrefix) {
				return nil, schemas.Errorf(schemas.CodeMalformed, nil, fmt.Sprintf("%s in %s: groups do not nest", m, w))
			}
		}
		out = append(out, members...)
	}
	return out, nil
}

// NormaliseRecipients trims each recipient and drops repeats, keeping the
// first; it checks that there are 1 to schemas.MaxGroupRecipients and
// that each is a recipient (schemas.ValidRecipient). Errors are MALFORMED
// and name the recipient.
func NormaliseRecipients(to []string) ([]string, error) {
	out := make([]string, 0, len(to))
	seen := make(map[string]bool, len(to))
	for _, t := range to {
		t = strings.TrimSpace(t)
		if !schemas.ValidRecipient(t) {
			return nil, schemas.Errorf(schemas.CodeMalformed, nil, fmt.Sprintf("recipient %q: 1 to 320 bytes of one line", t))
		}
		if strings.HasPrefix(t, schemas.GroupPrefix) {
			return nil, schemas.Errorf(schemas.CodeMalformed, nil, fmt.Sprintf("recipient %q: a group not expanded", t))
		}
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	switch {
	case len(out) == 0:
		return nil, schemas.Errorf(schemas.CodeMalformed, nil, "no recipient")
	case len(out) > schemas.MaxGroupRecipients:
		return nil, schemas.Errorf(schemas.CodeMalformed, nil, fmt.Sprintf("%d recipients, at most %d", len(out), schemas.MaxGroupRecipients))
	}
	return out, nil
}

// SendGroup originates a group message: s for each of recipients (as
// NormaliseRecipients leaves them; expand named groups first with
// ExpandRecipients). The group's id is s.MsgID, or a new one. It keeps
// the group's record, then sends each recipient as Send would, at most
// GroupConcurrency at once, with its own message id
// (schemas.GroupMemberID) and the group id in meta schemas.MetaGroup. A
// recipient refused for now is tried again twice within ctx.
//
// The error is for the group as a whole (a bad recipient list, a group id
// used for another group message, a store that fails), before any
// recipient was sent; each recipient's outcome is in the result, with Err
// set for one that was not accepted.
func (k *Kit) SendGroup(ctx context.Context, s *Submission, recipients []string) (*GroupResult, error) {
	to, err := NormaliseRecipients(recipients)
	if err != nil {
		return nil, err
	}
	if s.MsgID == "" {
		s.MsgID = NewMsgID()
	}
	if !schemas.ValidMsgID(s.MsgID) {
		return nil, schemas.Errorf(schemas.CodeMalformed, nil, "msg_id must be 32 lowercase hex digits")
	}
	if len(s.Meta) >= schemas.MaxMeta {
		return nil, schemas.Errorf(schemas.CodeMalformed, nil, "too many meta entries for a group message")
	}
	sender := s.From.Client
	if sender == "" {
		sender = s.From.Address
	}
	rec := &GroupRecord{V: schemas.Version, ID: s.MsgID, Created: k.now().UnixMilli(), Sender: sender}
	for _, t := range to {
		rec.Recipients = append(rec.Recipients, GroupRecipient{To: t, MsgID: schemas.GroupMemberID(s.MsgID, t)})
	}
	kv, rev, err := k.createGroup(ctx, rec)
	if err != nil {
		return nil, err
	}

	res := &GroupResult{ID: rec.ID, Sender: rec.Sender, Created: rec.Created, Recipients: make([]RecipientResult, len(rec.Recipients))}
	sem := make(chan struct{}, GroupConcurrency)
	var wg sync.WaitGroup
	for i, r := range rec.Recipients {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			m := *s
			m.MsgID, m.To = r.MsgID, r.To
			m.Meta = maps.Clone(s.Meta)
			if m.Meta == nil {
				m.Meta = map[string]string{}
			}
			m.Meta[schemas.MetaGroup] = rec.ID
			res.Recipients[i] = k.sendMember(ctx, &m)
		}()
	}
	wg.Wait()
	res.aggregate()

	// The record learns which recipients were refused for good: they have
	// no transaction for GroupStatus to ask about.
	changed := false
	for i, r := range res.Recipients {
		code, reason := "", ""
		if r.Err != nil && r.Status == schemas.StatusFailed {
			code, reason = r.Code, r.Reason
		}
		if rec.Recipients[i].Code != code || rec.Recipients[i].Reason != reason {
			rec.Recipients[i].Code, rec.Recipients[i].Reason = code, reason
			changed = true
		}
	}
	if changed {
		body, _ := json.Marshal(rec)
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), k.cfg.RequestTimeout)
		_, err := kv.Update(uctx, rec.ID+groupKeySuffix, body, rev)
		cancel()
		if err != nil {
			k.log.Warn().Err(err).Str("group", rec.ID).Msg("group record not updated with its refused recipients: its status shows them as to retry")
		}
	}
	k.log.Info().Str("group", rec.ID).Int("recipients", len(rec.Recipients)).Int("accepted", res.Accepted()).Str("status", res.Status).Msg("group message sent")
	return res, nil
}

// sendMember sends one recipient of a group message.
func (k *Kit) sendMember(ctx context.Context, m *Submission) RecipientResult {
	var res *Result
	var err error
	for try := 0; ; try++ {
		sub := *m // Send may fill in fields
		res, err = k.Send(ctx, &sub)
		if err == nil || try == 2 || !miap.CodeOf(err).Retryable() || ctx.Err() != nil {
			break
		}
		t := time.NewTimer(250 * time.Millisecond << try)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
	if err == nil {
		dest := res.Dest
		return RecipientResult{To: m.To, ID: m.MsgID, Status: res.Status, Dest: &dest}
	}
	r := RecipientResult{To: m.To, ID: m.MsgID, Status: schemas.StatusFailed, Err: err}
	code := miap.CodeOf(err)
	var se *schemas.Error
	if errors.As(err, &se) {
		r.Reason = se.Detail
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		code = schemas.CodeBusy
	}
	r.Code = code.String()
	if code.Retryable() {
		r.Status = RecipientRetry
	}
	return r
}

// createGroup writes a group's record unless it exists; a record that
// exists must be the same group message (a retry), whose record it
// returns in rec with the revision to update.
func (k *Kit) createGroup(ctx context.Context, rec *GroupRecord) (jetstream.KeyValue, uint64, error) {
	kv, err := k.keptKV(ctx)
	if err != nil {
		return nil, 0, schemas.Errorf(schemas.CodeStoreUnavailable, err, "group record")
	}
	key := rec.ID + groupKeySuffix
	body, _ := json.Marshal(rec)
	rev, err := kv.Create(ctx, key, body)
	if err == nil {
		return kv, rev, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return nil, 0, schemas.Errorf(schemas.CodeStoreUnavailable, err, "group record")
	}
	old, orev, err := k.groupRecord(ctx, rec.ID)
	if err != nil {
		return nil, 0, err
	}
	same := old.Sender == rec.Sender && slices.EqualFunc(old.Recipients, rec.Recipients, func(a, b GroupRecipient) bool { return a.To == b.To && a.MsgID == b.MsgID })
	if !same {
		return nil, 0, schemas.Errorf(schemas.CodeDuplicate, nil, "the group id was used for another group message")
	}
	*rec = *old
	return kv, orev, nil
}

// groupRecord reads a group's record: UNKNOWN_TX when there is none.
func (k *Kit) groupRecord(ctx context.Context, groupID string) (*GroupRecord, uint64, error) {
	if !schemas.ValidMsgID(groupID) {
		return nil, 0, schemas.Errorf(schemas.CodeUnknownTx, nil, "no such group")
	}
	kv, err := k.keptKV(ctx)
	if err != nil {
		return nil, 0, schemas.Errorf(schemas.CodeStoreUnavailable, err, "group record")
	}
	e, err := kv.Get(ctx, groupID+groupKeySuffix)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, schemas.Errorf(schemas.CodeUnknownTx, nil, "no such group")
	}
	if err != nil {
		return nil, 0, schemas.Errorf(schemas.CodeStoreUnavailable, err, "group record")
	}
	var rec GroupRecord
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return nil, 0, schemas.Errorf(schemas.CodeInternal, err, "group record")
	}
	return &rec, e.Revision(), nil
}

// GroupStatus returns the status of a group message this gateway sent:
// each recipient's status, from the brokers (the status query, §6.10)
// unless it was refused for good as it was sent, and the aggregate. A
// group this gateway has no record of (never sent here, or its record
// expired) is UNKNOWN_TX. The caller checks that whoever asks is the
// group's Sender.
func (k *Kit) GroupStatus(ctx context.Context, groupID string) (*GroupResult, error) {
	rec, _, err := k.groupRecord(ctx, groupID)
	if err != nil {
		return nil, err
	}
	res := &GroupResult{ID: rec.ID, Sender: rec.Sender, Created: rec.Created, Recipients: make([]RecipientResult, len(rec.Recipients))}
	errs := make([]error, len(rec.Recipients))
	sem := make(chan struct{}, GroupConcurrency)
	var wg sync.WaitGroup
	for i, r := range rec.Recipients {
		out := &res.Recipients[i]
		*out = RecipientResult{To: r.To, ID: r.MsgID}
		if r.Code != "" {
			out.Status, out.Code, out.Reason = schemas.StatusFailed, r.Code, r.Reason
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			st, err := k.Query(ctx, r.MsgID)
			switch {
			case IsCode(err, schemas.CodeUnknownTx):
				out.Status, out.Code = RecipientRetry, schemas.CodeUnknownTx.String()
			case err != nil:
				errs[i] = err
			default:
				dest := st.Dest
				out.Status, out.Dest, out.History = st.State, &dest, st.History
				if st.State == schemas.StatusFailed {
					for j := len(st.History) - 1; j >= 0; j-- {
						if h := st.History[j]; h.Status == schemas.StatusFailed {
							out.Code, out.Reason = h.Code, h.Reason
							break
						}
					}
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("kit: group %s: %w", groupID, err)
	}
	res.aggregate()
	return res, nil
}
