package bot_test

import (
	"context"
	"sync"
	"testing"

	"github.com/uims/uims/gateways/bot"
	"github.com/uims/uims/gateways/kit/kittest"
	"github.com/uims/uims/internal/fabrictest"
)

// botProbe is a bot's handler as the recipient: it counts what it
// accepted per message id and refuses on request.
type botProbe struct {
	mu      sync.Mutex
	got     map[string]int
	text    map[string]string
	refuse  func(string) error
	refused int
}

func (p *botProbe) handle(ctx context.Context, m *bot.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.refuse != nil {
		p.refused++
		return p.refuse("the suite's bot refuses")
	}
	p.got[m.ID]++
	p.text[m.ID] = m.Text()
	return nil
}

func (p *botProbe) Received(t testing.TB, id string) (int, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.got[id], p.text[id]
}

func (p *botProbe) Refuse(t testing.TB, temporary bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuse = bot.Reject
	if temporary {
		p.refuse = bot.Busy
	}
}

func (p *botProbe) Accept(t testing.TB) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuse = nil
}

func (p *botProbe) Refused(t testing.TB) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refused
}

// A bot on the SDK passes the kit's conformance suite, every feature on:
// its handler sees each message once, whole (large content through the
// object store too), and its refusals reach the sender.
func TestBotConformance(t *testing.T) {
	kittest.Run(t, kittest.Adapter{Gateway: "peer", Medium: "web", Address: "suite-rcpt",
		Features: kittest.Features{Immediate: true, Refusal: true, Retry: true, LargeContent: true},
		Start: func(t *testing.T, f *fabrictest.Fabric) kittest.Probe {
			p := &botProbe{got: map[string]int{}, text: map[string]string{}}
			b, err := bot.New(f.Conn("peer"), f.Keyring("peer"), bot.Config{Party: "peer", Medium: "web"}, f.Log)
			if err != nil {
				t.Fatal(err)
			}
			b.Handle(p.handle)
			fabrictest.Start(t, "bot", b.Run)
			return p
		}})
}
