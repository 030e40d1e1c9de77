// Package autoreply is the example bot of docs/GATEWAYS.md: it answers
// every message, marks it read, and sends reminders on request ("remind
// 10s stand-up"). Run it with `uims bot example --bundle DIR` or
// `go run ./examples/autoreply/cmd/autoreply DIR`.
package autoreply

import (
	"context"
	"strings"
	"time"

	"github.com/uims/uims/gateways/bot"
)

// Attach gives b the example's behaviour. Reminders live in memory: a
// restart forgets the pending ones.
func Attach(b *bot.Bot) {
	b.Handle(func(ctx context.Context, m *bot.Message) error {
		answer := "auto-reply: got your message " + quote(m.Text()) + ". Write \"remind 10s <text>\" for a reminder."
		if f := strings.Fields(m.Text()); len(f) >= 3 && f[0] == "remind" {
			if d, err := time.ParseDuration(f[1]); err == nil && d > 0 && d <= 24*time.Hour {
				to, text := m.From.Client, strings.Join(f[2:], " ")
				if to == "" {
					to = m.From.Medium + ":" + m.From.Address
				}
				time.AfterFunc(d, func() {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					b.Send(ctx, bot.Outgoing{From: m.To, To: to, Subject: "reminder", Text: "reminder: " + text})
				})
				answer = "ok, I will remind you in " + d.String() + "."
			}
		}
		if _, err := b.Reply(ctx, m, answer); err != nil {
			return bot.Busy("cannot answer now: " + err.Error()) // the sender's gateway retries
		}
		return b.Read(ctx, m.Ref)
	})
}

func quote(s string) string {
	if len(s) > 60 {
		s = s[:60] + "…"
	}
	return `"` + s + `"`
}
