package broker

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	json "github.com/goccy/go-json"
	"github.com/nats-io/nats.go/micro"
	"github.com/redis/go-redis/v9"

	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// handleUsage answers a client's usage and quota (PROTOCOL.md §6.17), as
// handleClient answers a client query: the client authenticated by the
// hash of its credential, so that a gateway learns the usage of the
// clients that authenticated with it and of no other; or by id, for the
// operator's command-line party (grant role client) alone.
func (b *Broker) handleUsage(ctx context.Context, req micro.Request) error {
	f, err := b.frame(ctx, req, miap.PurposeQuery, true)
	if err != nil {
		return err
	}
	var q schemas.UsageQuery
	if err := decodeJSON(f.Body, &q); err != nil {
		return err
	}
	if err := q.Validate(); err != nil {
		return err
	}
	if q.Kind == schemas.ClientByID {
		if g, ok := b.guard.Keys().Grant(f.Party); !ok || g.Role != miap.RoleClient {
			return schemas.Errorf(schemas.CodeNotAllowed, nil, f.Party+" asked the usage of a client by id")
		}
	}
	p, err := b.lookupClient(ctx, q.Kind, "", q.User, q.Hash)
	if err != nil {
		return err
	}
	u, err := b.Usage(ctx, p, q.Days)
	if err != nil {
		return err
	}
	body, _ := json.Marshal(u)
	b.trace("usage", "", "", f.Party, "ok", schemas.TraceEvent{})
	return b.reply(req, &miap.Frame{Purpose: miap.PurposeQueryReply, Party: f.Party, Nonce: f.Nonce, Body: body}, nil)
}

// Usage returns the usage of client p on the last days UTC days, today
// first (0: schemas.UsageDays), with its quota: the daily counts the
// accounting records made (accounting.go) and the messages accepted today
// against the quota (createScript).
func (b *Broker) Usage(ctx context.Context, p *schemas.Profile, days int) (*schemas.UsageReply, error) {
	if days <= 0 {
		days = schemas.UsageDays
	}
	days = min(days, schemas.MaxUsageDays)
	now := b.cfg.Now().UTC()
	today := now.Truncate(24 * time.Hour)
	pipe := b.rdb.Pipeline()
	counts := make([]*redis.MapStringStringCmd, days)
	for i := range days {
		counts[i] = pipe.HGetAll(ctx, usageKey(p.ID, day(today.AddDate(0, 0, -i))))
	}
	used := pipe.Get(ctx, keyQuota+p.ID+":"+day(now))
	warned := pipe.Exists(ctx, keyQuotaWarn+p.ID+":"+day(now))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, schemas.Errorf(schemas.CodeStoreUnavailable, err, "usage")
	}
	u := &schemas.UsageReply{V: schemas.Version, Client: p.ID, Days: make([]schemas.UsageDay, days),
		Quota: schemas.Quota{Limit: p.Quota, Resets: today.AddDate(0, 0, 1).UnixMilli()}}
	for i, c := range counts {
		u.Days[i] = schemas.UsageDay{Day: today.AddDate(0, 0, -i).Format(time.DateOnly), Media: mediaUsage(c.Val())}
	}
	if p.Quota > 0 {
		n, _ := used.Int64()
		u.Quota.Used = min(n, p.Quota) // a refused message is taken back at once
		u.Quota.Left = p.Quota - u.Quota.Used
		u.Quota.Warned = warned.Val() == 1
	}
	return u, nil
}

// mediaUsage reads a usage hash: "<medium>.<field>" → count.
func mediaUsage(h map[string]string) map[string]schemas.MediumUsage {
	if len(h) == 0 {
		return nil
	}
	out := map[string]schemas.MediumUsage{}
	for k, v := range h {
		i := strings.LastIndexByte(k, '.')
		n, err := strconv.ParseInt(v, 10, 64)
		if i <= 0 || err != nil {
			continue
		}
		m := out[k[:i]]
		switch k[i+1:] {
		case "sent":
			m.Sent = n
		case "sent_bytes":
			m.SentBytes = n
		case "failed":
			m.Failed = n
		case "received":
			m.Received = n
		case "received_bytes":
			m.ReceivedBytes = n
		default:
			continue
		}
		out[k[:i]] = m
	}
	return out
}
