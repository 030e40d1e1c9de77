package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/uims/uims/examples/autoreply"
	"github.com/uims/uims/gateways/bot"
	"github.com/uims/uims/schemas"
)

// cmdBot runs a bot with the SDK (package gateways/bot, docs/GATEWAYS.md):
// `uims bot example --bundle DIR` runs the example auto-reply and reminder
// bot; `uims bot send --bundle DIR --to X TEXT` sends one message as the
// bot and prints what became of it.
func cmdBot(ctx context.Context, args []string) error {
	o := newOpts("bot")
	dir := o.fs.String("bundle", env("UIMS_BUNDLE", ""), "the party bundle `uims party add NAME --role gateway --medium M` wrote (UIMS_BUNDLE)")
	natsURL := o.fs.String("nats", env("UIMS_NATS_URL", ""), "NATS URL; default the bundle's (UIMS_NATS_URL)")
	tlsCA := o.fs.String("tls-ca", env("UIMS_TLS_CA", ""), "PEM CA bundle to verify the NATS server with (UIMS_TLS_CA)")
	strict := o.fs.Bool("strict", env("UIMS_MIAP_MODE", "fast") == "strict", "strict MIAP mode (UIMS_MIAP_MODE=strict)")
	address := o.fs.String("address", "", "the bot's own address on its medium (default the party id)")
	to := o.fs.String("to", "", "send: the recipient, a client id or an address (medium:address for any medium)")
	subject := o.fs.String("subject", "", "send: the subject")
	timeout := o.fs.Duration("timeout", 30*time.Second, "send: how long to retry a temporary failure and wait for the outcome")
	pos := o.parse(args)
	if len(pos) == 0 || *dir == "" {
		return fmt.Errorf("usage: uims bot example --bundle DIR | uims bot send --bundle DIR --to X TEXT")
	}
	log := o.logger()
	b, err := bot.Dial(*dir, bot.Config{NATSURL: *natsURL, TLSCA: *tlsCA, Strict: *strict, Address: *address, Version: version}, log)
	if err != nil {
		return err
	}
	switch pos[0] {
	case "example":
		autoreply.Attach(b)
		return b.Run(ctx, func() { log.Info().Str("party", b.Party()).Str("medium", b.Medium()).Msg("example bot serving") })
	case "send":
		if *to == "" || len(pos) < 2 {
			return fmt.Errorf("usage: uims bot send --bundle DIR --to X TEXT")
		}
		return botSend(ctx, b, bot.Outgoing{To: *to, Subject: *subject, Text: strings.Join(pos[1:], " ")}, *timeout)
	}
	return fmt.Errorf("unknown bot command %q: example or send", pos[0])
}

// botSend sends one message as the bot and polls its status until it is
// delivered, read or failed (or timeout passes). It does not serve: an
// instance running elsewhere keeps the bot's messages and notifications.
func botSend(ctx context.Context, b *bot.Bot, o bot.Outgoing, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	sent, err := b.Send(ctx, o)
	if err != nil {
		return fmt.Errorf("%s: %w", bot.Code(err), err)
	}
	fmt.Fprintf(stdout, "%s %s to %s (%s %s)\n", sent.ID, sent.Status, o.To, sent.Dest.Medium, sent.Dest.Address)
	for sent.Status != schemas.StatusDelivered {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s still %s after %v", sent.ID, sent.Status, timeout)
		case <-time.After(500 * time.Millisecond):
		}
		st, err := b.Query(ctx, sent.ID)
		if err != nil {
			continue
		}
		switch st.State {
		case schemas.StatusDelivered, schemas.StatusRead:
			fmt.Fprintf(stdout, "%s %s\n", sent.ID, st.State)
			return nil
		case schemas.StatusFailed:
			var last schemas.HistoryEntry
			if n := len(st.History); n > 0 {
				last = st.History[n-1]
			}
			return fmt.Errorf("%s failed: %s: %s", sent.ID, last.Code, last.Reason)
		}
	}
	return nil
}
