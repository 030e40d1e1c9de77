// Command autoreply runs the example bot on its own: autoreply BUNDLE_DIR.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/uims/uims/examples/autoreply"
	"github.com/uims/uims/gateways/bot"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: autoreply BUNDLE_DIR   (the folder `uims party add NAME --role gateway --medium bot` wrote)")
		os.Exit(2)
	}
	log := zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr}).With().Timestamp().Logger()
	b, err := bot.Dial(os.Args[1], bot.Config{NATSURL: os.Getenv("NATS_URL")}, log)
	if err != nil {
		log.Fatal().Err(err).Msg("cannot join the fabric")
	}
	autoreply.Attach(b)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := b.Run(ctx, func() { log.Info().Str("party", b.Party()).Msg("bot serving; Ctrl-C stops it") }); err != nil {
		log.Fatal().Err(err).Msg("bot stopped")
	}
}
