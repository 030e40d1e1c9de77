// Package bot is the UIMS bot SDK: a gateway for a medium of its own in a
// few calls, with MIAP, subjects and streams out of sight (docs/GATEWAYS.md).
//
// A bot joins with the party bundle `uims party add NAME --role gateway
// --medium M` wrote, receives the messages the brokers route to its medium
// (conversions already applied), answers them, sends new messages to any
// client, acknowledges delivered, read or failed, and learns what became of
// what it sent:
//
//	b, err := bot.Dial("mybot-bundle", bot.Config{}, log)
//	b.Handle(func(ctx context.Context, m *bot.Message) error {
//		_, err := b.Reply(ctx, m, "you said: "+m.Text())
//		return err
//	})
//	err = b.Run(ctx, nil)
//
// Underneath it is a gateway like the built-in ones (package kit): every
// step signed, a message delivered at most once per message id, late
// acknowledgements kept in the durable outbox until a broker takes them,
// and a nats micro service uims-gw-NAME for discovery and rates.
package bot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/miap/bundle"
	"github.com/uims/uims/miap/natsauth"
	"github.com/uims/uims/schemas"
)

// Config configures a bot. Dial fills Party and Medium from the bundle.
type Config struct {
	// Party is the bot's party id; Medium the medium it serves (default
	// the bundle's first medium, else Party).
	Party  string
	Medium string
	// Address is the bot's own address on its medium, the sender of Send
	// when Outgoing.From is empty; default Party.
	Address string
	// Instance names this process; default a random id.
	Instance string
	// Version is what the bot's micro service reports; default 0.1.0.
	Version string
	// Strict selects the strict MIAP mode (a login round trip before each
	// step); it must match the brokers'.
	Strict bool
	// Accepts lists the content types the bot takes as they are; others
	// are converted on the way when a processor can. Default text/plain.
	Accepts []string
	// Reach lists outside addresses the bot can deliver to ("*", "@domain",
	// "+prefix"); empty: only clients whose profile names the medium.
	Reach []string
	// HandlerTimeout bounds one call of the message handler; a handler that
	// does not return in time fails the message with REJECTED, and the
	// sender gets a non-delivery report. Default 10 s, at most 14 s (the
	// originator waits 15 s for the transfer).
	HandlerTimeout time.Duration
	// NATSURL overrides the bundle's NATS URL (Dial); TLSCA is a PEM CA
	// file to verify the NATS server with.
	NATSURL string
	TLSCA   string
}

// Handler handles one message for the bot. It returns nil when the bot has
// the message (delivered), ErrLater when the bot took it and reports the
// outcome later with Delivered or Failed, an error made with Reject for a
// message the bot refuses (the sender gets a non-delivery report with the
// reason), Busy for one to try again later, and any other error for a
// failure (a non-delivery report with the error's text).
type Handler func(ctx context.Context, m *Message) error

// StatusHandler is told what became of a message the bot sent. A returned
// error has the status told again a second later.
type StatusHandler func(ctx context.Context, s *Status) error

// ErrLater is what a Handler returns for a message it took but has not
// handed on yet: the bot calls Delivered or Failed with Message.Ref later.
var ErrLater = errors.New("bot: outcome reported later")

// Reject returns a handler error that refuses a message for good; reason
// reaches the sender in the non-delivery report.
func Reject(reason string) error { return schemas.Errorf(schemas.CodeRejected, nil, reason) }

// Busy returns a handler error for a message the bot cannot take now: the
// originating gateway tells its client to try again.
func Busy(reason string) error { return schemas.Errorf(schemas.CodeBusy, nil, reason) }

// Code returns the UIMS error code of an error from this package ("BUSY",
// "UNKNOWN_RECIPIENT", ... PROTOCOL.md §9), or "" for nil.
func Code(err error) string {
	if err == nil {
		return ""
	}
	return miap.CodeOf(err).String()
}

// Temporary reports whether trying the same message again later may
// succeed.
func Temporary(err error) bool { return err != nil && miap.CodeOf(err).Retryable() }

// Bot is one running instance of a bot.
type Bot struct {
	cfg  Config
	kit  *kit.Kit
	nc   *nats.Conn
	own  bool // the bot made nc (Dial) and closes it
	log  zerolog.Logger
	send sender

	mu       sync.RWMutex
	handler  Handler
	onStatus StatusHandler

	seen seen
}

// Dial reads the party bundle in dir, connects to NATS with its
// credentials and returns the bot; Run closes the connection when it ends.
func Dial(dir string, cfg Config, log zerolog.Logger) (*Bot, error) {
	bd, err := bundle.Read(dir)
	if err != nil {
		return nil, err
	}
	if cfg.Party == "" {
		cfg.Party = bd.Party
	}
	if cfg.Party != bd.Party {
		return nil, fmt.Errorf("bot: config names party %q, the bundle %q", cfg.Party, bd.Party)
	}
	if cfg.Medium == "" && len(bd.Media) > 0 {
		cfg.Medium = bd.Media[0]
	}
	url := cfg.NATSURL
	if url == "" {
		url = bd.NATSURL
	}
	keys, err := bd.Keyring()
	if err != nil {
		return nil, fmt.Errorf("bot: %w", err)
	}
	opts := append(natsauth.Options(bd.Party, bd.CredsFile), nats.Name("uims-bot-"+bd.Party),
		nats.MaxReconnects(-1), nats.ReconnectWait(500*time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn().Err(err).Msg("NATS disconnected; reconnecting")
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info().Str("url", nc.ConnectedUrlRedacted()).Msg("NATS reconnected") }))
	if cfg.TLSCA != "" {
		if _, err := os.Stat(cfg.TLSCA); err != nil {
			return nil, fmt.Errorf("bot: TLS CA: %w", err)
		}
		opts = append(opts, nats.RootCAs(cfg.TLSCA))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("bot: connect to %s: %w", url, err)
	}
	b, err := New(nc, keys, cfg, log)
	if err != nil {
		nc.Close()
		return nil, err
	}
	b.own = true
	return b, nil
}

// New returns a bot on an existing connection; keys must hold the party's
// own key. The connection must carry the party's NATS identity.
func New(nc *nats.Conn, keys *miap.Keyring, cfg Config, log zerolog.Logger) (*Bot, error) {
	if cfg.Medium == "" {
		cfg.Medium = cfg.Party
	}
	if cfg.Address == "" {
		cfg.Address = cfg.Party
	}
	if len(cfg.Accepts) == 0 {
		cfg.Accepts = []string{"text/plain"}
	}
	switch {
	case cfg.HandlerTimeout == 0:
		cfg.HandlerTimeout = 10 * time.Second
	case cfg.HandlerTimeout > 14*time.Second:
		return nil, fmt.Errorf("bot: handler timeout %v: at most 14s, the originator waits 15s", cfg.HandlerTimeout)
	}
	b := &Bot{cfg: cfg, nc: nc, log: log.With().Str("bot", cfg.Party).Logger()}
	k, err := kit.New(nc, keys, b, kit.Config{Gateway: cfg.Party, Medium: cfg.Medium, Instance: cfg.Instance,
		Version: cfg.Version, Strict: cfg.Strict, Accepts: cfg.Accepts, Reach: cfg.Reach}, log)
	if err != nil {
		return nil, fmt.Errorf("bot: %w", err)
	}
	b.kit = k
	b.send = sender{kit: k, medium: cfg.Medium}
	return b, nil
}

// Party returns the bot's party id; Medium its medium.
func (b *Bot) Party() string  { return b.cfg.Party }
func (b *Bot) Medium() string { return b.cfg.Medium }

// Handle sets the message handler. Without one, every message is
// delivered and only logged.
func (b *Bot) Handle(h Handler) {
	b.mu.Lock()
	b.handler = h
	b.mu.Unlock()
}

// OnStatus sets the handler of status notifications for the messages the
// bot sent (transferred, delivered, read, failed).
func (b *Bot) OnStatus(h StatusHandler) {
	b.mu.Lock()
	b.onStatus = h
	b.mu.Unlock()
}

// Run serves until ctx is done, then stops taking messages, finishes the
// ones in hand and their acknowledgements, and returns. ready, if not
// nil, is called once the bot takes messages.
func (b *Bot) Run(ctx context.Context, ready func()) error {
	if b.own {
		defer b.nc.Close()
	}
	err := b.kit.Run(ctx, ready)
	if b.own {
		b.nc.Flush()
	}
	return err
}

// Delivered, Read and Failed report the outcome of a message the handler
// took with ErrLater (Delivered, Failed) or delivered (Read). If no broker
// can take the report now, it waits in the durable outbox.
func (b *Bot) Delivered(ctx context.Context, ref Ref) error {
	return b.ack(ctx, ref, schemas.StatusDelivered, "", "")
}

// Read reports that the recipient read the message (a read receipt).
// Called from the handler of that message, it is sent right after the
// delivery (a read before delivered would be refused).
func (b *Bot) Read(ctx context.Context, ref Ref) error {
	if b.seen.readInHandler(ref.MsgID) {
		return nil
	}
	return b.ack(ctx, ref, schemas.StatusRead, "", "")
}

// Failed reports that the message could not be handed on; reason reaches
// the sender in the non-delivery report.
func (b *Bot) Failed(ctx context.Context, ref Ref, reason string) error {
	return b.ack(ctx, ref, schemas.StatusFailed, schemas.CodeRejected.String(), reason)
}

func (b *Bot) ack(ctx context.Context, ref Ref, status, code, reason string) error {
	if err := b.kit.Ack(ctx, kit.AckRef(ref), status, code, reason); err != nil {
		return fmt.Errorf("bot: %s %s: %w", status, ref.MsgID, err)
	}
	b.seen.settle(ref.MsgID, status)
	return nil
}

// Query returns the status and history of a message the bot sent or
// received.
func (b *Bot) Query(ctx context.Context, msgID string) (*schemas.TxStatus, error) {
	return b.kit.Query(ctx, msgID)
}
