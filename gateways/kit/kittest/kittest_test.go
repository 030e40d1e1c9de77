package kittest_test

import (
	"testing"

	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/gateways/kit/kittest"
	"github.com/uims/uims/internal/fabrictest"
)

type inboxProbe struct{ in *fabrictest.Inbox }

// Received: the in-memory medium keeps one delivery per message id, which
// is what its recipient sees.
func (p inboxProbe) Received(t testing.TB, id string) (int, string) {
	if d := p.in.Get(id); d != nil {
		return 1, string(d.Content)
	}
	return 0, ""
}

// The in-memory medium of the fabric tests passes the suite, so the suite
// itself is checked against the simplest adapter.
func TestInboxConformance(t *testing.T) {
	kittest.Run(t, kittest.Adapter{Gateway: "peer", Medium: "web", Address: "rcpt", Features: kittest.Features{Immediate: true},
		Start: func(t *testing.T, f *fabrictest.Fabric) kittest.Probe {
			in := fabrictest.NewInbox()
			f.StartKit(in, kit.Config{Gateway: "peer", Medium: "web"})
			return inboxProbe{in}
		}})
}
