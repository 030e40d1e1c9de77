package kittest_test

import (
	"context"
	"sync"
	"testing"

	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/gateways/kit/kittest"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/schemas"
)

// refusingInbox is the in-memory medium with a recipient that can refuse:
// Deliver fails with an unknown recipient (for good) or busy (for now).
type refusingInbox struct {
	*fabrictest.Inbox
	mu      sync.Mutex
	refuse  error
	refused int
}

func (m *refusingInbox) Deliver(ctx context.Context, d *kit.Delivery) (string, error) {
	m.mu.Lock()
	if err := m.refuse; err != nil {
		m.refused++
		m.mu.Unlock()
		return "", err
	}
	m.mu.Unlock()
	return m.Inbox.Deliver(ctx, d)
}

type inboxProbe struct{ in *refusingInbox }

// Received: the in-memory medium keeps one delivery per message id, which
// is what its recipient sees.
func (p inboxProbe) Received(t testing.TB, id string) (int, string) {
	if d := p.in.Get(id); d != nil {
		return 1, string(d.Content)
	}
	return 0, ""
}

// Refuse, Accept and Refused implement kittest.Refuser.
func (p inboxProbe) Refuse(t testing.TB, temporary bool) {
	code := schemas.CodeUnknownRecipient
	if temporary {
		code = schemas.CodeBusy
	}
	p.in.mu.Lock()
	defer p.in.mu.Unlock()
	p.in.refuse = schemas.Errorf(code, nil, "the suite's recipient refuses")
}

func (p inboxProbe) Accept(t testing.TB) {
	p.in.mu.Lock()
	defer p.in.mu.Unlock()
	p.in.refuse = nil
}

func (p inboxProbe) Refused(t testing.TB) int {
	p.in.mu.Lock()
	defer p.in.mu.Unlock()
	return p.in.refused
}

// The in-memory medium of the fabric tests passes the suite, so the suite
// itself is checked against the simplest adapter.
func TestInboxConformance(t *testing.T) {
	kittest.Run(t, kittest.Adapter{Gateway: "peer", Medium: "web", Address: "rcpt",
		// Refusal: a permanent error of Deliver fails the send at once;
		// Retry: a retryable one (BUSY) tells the sender to try again.
		Features: kittest.Features{Immediate: true, Refusal: true, Retry: true, LargeContent: true},
		Start: func(t *testing.T, f *fabrictest.Fabric) kittest.Probe {
			in := &refusingInbox{Inbox: fabrictest.NewInbox()}
			f.StartKit(in, kit.Config{Gateway: "peer", Medium: "web"})
			return inboxProbe{in}
		}})
}
