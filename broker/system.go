package broker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	json "github.com/goccy/go-json"

	"github.com/uims/uims/miap"
	"github.com/uims/uims/miap/miapnats"
	"github.com/uims/uims/schemas"
)

// The brokers' own messages to clients (PROTOCOL.md §6.17, docs/ACCOUNTING.md
// "Quota warning"): a message from the sender system, routed to the client
// as any message and transferred by the broker itself, as an originator
// does, so that the client finds it where it finds its messages (a web
// user in the inbox, an SMS user as an SMS). The originator is the party
// schemas.SystemParty, which has no key: the brokers sign the ticket, send
// no receipt and publish no notification for it.

// systemAddress is the sender address of the brokers' own messages.
const systemAddress = "uims"

// errQuiet: the client's medium is in quiet hours now; a system message
// does not wait for them, it goes with a later occasion.
var errQuiet = errors.New("broker: the recipient's medium is in quiet hours")

// quotaWarned remembers, per UTC day, the clients warned today, so that
// only the first message past the threshold asks the store.
type quotaWarned struct {
	mu   sync.Mutex
	day  string
	seen map[string]bool
}

func (w *quotaWarned) has(day, client string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.day != day {
		w.day, w.seen = day, map[string]bool{}
	}
	return w.seen[client]
}

func (w *quotaWarned) set(day, client string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.day == day {
		w.seen[client] = true
	}
}

// quotaThreshold is the count of messages a day from which a client with
// quota gets its warning: schemas.QuotaWarnPercent of it, rounded up.
func quotaThreshold(quota int64) int64 {
	return (quota*schemas.QuotaWarnPercent + 99) / 100
}

// checkQuota sends sender its quota warning when n, its messages accepted
// today, passed the threshold, once a UTC day: the marker keyQuotaWarn
// decides between the brokers, and the warning goes out in the
// background, off the message's path.
func (b *Broker) checkQuota(sender *schemas.Profile, n int64, now time.Time) {
	if sender == nil || sender.Quota <= 0 || n < quotaThreshold(sender.Quota) {
		return
	}
	d := day(now)
	if b.warned.has(d, sender.ID) {
		return
	}
	p := *sender
	b.bg.Add(1)
	go func() {
		defer b.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		b.warnQuota(ctx, &p, now)
	}()
}

// warnQuota sends the quota warning of client p for the day of now unless
// another broker, or an earlier message, did.
func (b *Broker) warnQuota(ctx context.Context, p *schemas.Profile, now time.Time) {
	d := day(now)
	key := keyQuotaWarn + p.ID + ":" + d
	first, err := b.rdb.SetNX(ctx, key, strconv.FormatInt(now.UnixMilli(), 10), 48*time.Hour).Result()
	if err != nil {
		b.log.Warn().Err(err).Str("client", p.ID).Msg("quota warning: store unavailable; a later message tries again")
		return
	}
	if !first {
		b.warned.set(d, p.ID)
		return
	}
	limit := quotaThreshold(p.Quota)
	text := fmt.Sprintf("You have sent %d of the %d messages you may send today (UTC). "+
		"When all %d are sent, more are refused until the count starts again at 00:00 UTC.", limit, p.Quota, p.Quota)
	// one message id per client and day: a second try is the same message
	sum := sha256.Sum256([]byte("uims-quota-warning\x00" + p.ID + "\x00" + d))
	msgID := hex.EncodeToString(sum[:16])
	err = b.sendSystem(ctx, p.ID, msgID, "Your daily quota: "+strconv.Itoa(schemas.QuotaWarnPercent)+" % used", text)
	if err != nil && !errors.Is(err, errSettled) {
		// let a later message try again
		b.rdb.Del(context.WithoutCancel(ctx), key)
		b.log.Warn().Err(err).Str("client", p.ID).Msg("quota warning not sent; a later message tries again")
		return
	}
	b.warned.set(d, p.ID)
	b.log.Info().Str("client", p.ID).Int64("quota", p.Quota).Str("msg_id", msgID).Msg("quota warning sent")
}

// errSettled: the system message has its outcome already.
var errSettled = errors.New("broker: the system message has its outcome")

// sendSystem sends a text message from the brokers to client `to`: routed
// (no hold: a medium in quiet hours answers errQuiet), stored as any
// transaction, and transferred to its first hop with a ticket whose peer
// is schemas.SystemParty. The destination acknowledges it as any message;
// its outcome is accounted. A message id sent before whose transaction is
// still open is transferred again on the same route.
func (b *Broker) sendSystem(ctx context.Context, to, msgID, subject, text string) error {
	now := b.cfg.Now()
	content := []byte(text)
	sum := sha256.Sum256(content)
	in := &imiRequest{imi: schemas.IMI{V: schemas.Version, MsgID: msgID, Gateway: schemas.SystemParty, Instance: b.cfg.Instance,
		From: schemas.Endpoint{Medium: schemas.MediumSystem, Address: systemAddress, Name: "UIMS"}, To: to, Subject: subject,
		Content: schemas.Content{Type: "text/plain; charset=utf-8", Length: int64(len(content)), SHA256: hex.EncodeToString(sum[:])},
		Created: now.UnixMilli()}}
	if err := in.imi.Validate(); err != nil {
		return err
	}
	dec, h, err := b.decide(ctx, &in.imi, "", nil, now)
	if err != nil {
		return err
	}
	if h != nil {
		return errQuiet
	}
	r := &imiRoute{now: now, routed: schemas.RoutedIMI{V: schemas.Version, IMI: in.imi, Tx: msgID, Dest: dec.dest, Conversions: dec.steps,
		Routed: now.UnixMilli(), Deadline: now.Add(b.cfg.Deadline).UnixMilli(), Attempt: 1}}
	if dec.recipient != nil {
		r.routed.Recipient, r.routed.RecipientName = dec.recipient.ID, dec.recipient.Name
		r.routed.Options = deliveryOptions(dec.recipient, dec.dest.Medium)
	}
	if r.bytes, err = json.Marshal(&r.routed); err != nil {
		return fmt.Errorf("broker: system message: %w", err)
	}
	if r.cack, err = b.guard.NewSessionKey(); err != nil {
		return fmt.Errorf("broker: system message: %w", err)
	}
	if r.id, r.kid2, err = b.guard.MintID(r.bytes, r.cack); err != nil {
		return fmt.Errorf("broker: system message: %w", err)
	}
	r.firstHop = firstHop(&r.routed)
	a := b.createArgs(in, r)
	res, err := createScript.Run(ctx, b.rdb, a.keys(), a.argv()...).Result()
	if err != nil {
		return fmt.Errorf("broker: system message: store: %w", err)
	}
	out, err := scriptReply(res)
	if err != nil {
		return fmt.Errorf("broker: system message: store: %w", err)
	}
	if out[0] == "exists" {
		if err := b.storedRoute(in, r, a.Fingerprint, out); err != nil {
			switch miap.CodeOf(err) {
			case schemas.CodeSettled, schemas.CodeDuplicate:
				// it has its outcome, or today's warning was another
				// text (the quota changed since): it went once
				return errSettled
			}
			return err
		}
		if r.held {
			return errQuiet
		}
	}
	return b.transferSystem(ctx, r, content)
}

// transferSystem hands a system message to its first hop (PROTOCOL.md
// §6.6), logging in first when the brokers are strict or the hop asks for
// it (BAD_SESSION).
func (b *Broker) transferSystem(ctx context.Context, r *imiRoute, content []byte) error {
	t, err := b.ticketFrame(r.firstHop, schemas.SystemParty, r.id, r.routed.IMI.Content, r.routed.Deadline, r.bytes)
	if err != nil {
		return fmt.Errorf("broker: system message: ticket: %w", err)
	}
	subject, login := schemas.GatewayIM(r.routed.Dest.Gateway), schemas.GatewayLogin(r.routed.Dest.Gateway)
	if len(r.routed.Conversions) > 0 {
		c := r.routed.Conversions[0].Conversion
		subject, login = schemas.ProcessorIM(c), schemas.ProcessorLogin(c)
	}
	c := &miapnats.Client{NC: b.nc, Party: schemas.SystemParty, Timeout: 10 * time.Second}
	reply, err := c.Transfer(ctx, subject, login, b.cfg.Strict, t, content)
	if !b.cfg.Strict && miap.CodeOf(err) == schemas.CodeBadSession {
		reply, err = c.Transfer(ctx, subject, login, true, t, content)
	}
	if err != nil {
		return fmt.Errorf("broker: system message to %s: %w", subject, err)
	}
	b.log.Info().Str("msg_id", r.routed.IMI.MsgID).Str("to", r.routed.IMI.To).Str("dest", r.routed.Dest.Gateway).
		Str("status", reply.Header.Get(schemas.HdrStatus)).Msg("system message transferred")
	b.trace("system", r.routed.IMI.MsgID, r.routed.Tx, schemas.SystemParty, "transferred", schemas.TraceEvent{Dest: r.routed.Dest.Gateway,
		Recipient: r.routed.Recipient, To: r.routed.IMI.To})
	return nil
}
