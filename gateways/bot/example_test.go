package bot_test

import (
	"context"
	"os"
	"os/signal"
	"strings"

	"github.com/rs/zerolog"

	"github.com/uims/uims/gateways/bot"
)

// A bot in a few lines (docs/GATEWAYS.md, "Write your own with the SDK"):
// it answers text, refuses anything else, and marks what it answered read.
// The bundle is the folder `uims party add helper --role gateway --medium
// bot` wrote. Compiled, not run: it needs a fabric.
func Example() {
	log := zerolog.New(os.Stderr)
	b, err := bot.Dial("helper-bundle", bot.Config{Address: "helper"}, log)
	if err != nil {
		log.Fatal().Err(err).Msg("cannot join")
	}
	b.Handle(func(ctx context.Context, m *bot.Message) error {
		if strings.TrimSpace(m.Text()) == "" {
			return bot.Reject("I only read text") // a non-delivery report with this reason
		}
		if _, err := b.Reply(ctx, m, "you said: "+m.Text()); err != nil {
			return bot.Busy("try again") // the sender's gateway retries
		}
		return b.Read(ctx, m.Ref) // delivered, then read
	})
	b.OnStatus(func(ctx context.Context, s *bot.Status) error {
		log.Info().Str("msg_id", s.ID).Str("status", s.Status).Str("code", s.Code).Msg("what became of my message")
		return nil
	})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := b.Run(ctx, nil); err != nil {
		log.Fatal().Err(err).Msg("stopped")
	}
}
