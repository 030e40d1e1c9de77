package bot_test

import (
	"context"
	"testing"
	"time"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/bot"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// BenchmarkBot measures what the SDK costs over a bare kit destination:
// "deliver" is one message to a bot whose handler returns at once, "kit"
// the same message to a kit destination (gateways/kit BenchmarkSend's
// flow), "answer" a message the bot answers with Reply before it returns
// (two messages end to end per operation). Same fabric, same run: quote
// the ratios (docs/BENCHMARKS.md, "Bots").
func BenchmarkBot(b *testing.B) {
	f := fabrictest.New(b)
	f.AddParty("echobot", miap.Grant{Role: miap.RoleGateway, Media: []string{schemas.MediumBot}})
	f.StartBroker(broker.Config{NoTrace: true})
	f.PutProfiles(
		&schemas.Profile{ID: "alice", Addresses: map[string]string{"test": "alice"}, Prefer: []string{"test"}},
		&schemas.Profile{ID: "echo", Addresses: map[string]string{schemas.MediumBot: "echo"}, Prefer: []string{schemas.MediumBot}},
		&schemas.Profile{ID: "bob", Addresses: map[string]string{"web": "bob"}, Prefer: []string{"web"}},
	)
	alice, _ := f.StartKit(fabrictest.NewInbox(), kit.Config{Gateway: "test", Medium: "test", NoTrace: true})
	f.StartKit(fabrictest.NewInbox(), kit.Config{Gateway: "peer", Medium: "web", NoTrace: true})
	bt, err := bot.New(f.Conn("echobot"), f.Keyring("echobot"), bot.Config{Party: "echobot", Medium: schemas.MediumBot, Address: "echo"}, f.Log)
	if err != nil {
		b.Fatal(err)
	}
	bt.Handle(func(ctx context.Context, m *bot.Message) error {
		if m.Text() == "answer" {
			_, err := bt.Reply(ctx, m, "ok")
			return err
		}
		return nil
	})
	fabrictest.Start(b, "bot", bt.Run)
	send := func(to, text string) error {
		_, err := alice.Send(context.Background(), &kit.Submission{From: schemas.Endpoint{Medium: "test", Address: "alice", Client: "alice"}, To: to, Content: []byte(text)})
		return err
	}
	for _, to := range []string{"echo", "bob"} {
		fabrictest.Eventually(b, 10*time.Second, "a route to "+to, func() bool { return send(to, "warm-up") == nil })
	}
	for _, c := range []struct{ name, to, text string }{
		{"kit", "bob", "x"},
		{"deliver", "echo", "x"},
		{"answer", "echo", "answer"},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetParallelism(16)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := send(c.to, c.text); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
