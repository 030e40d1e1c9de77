package kit_test

import (
	"context"
	"testing"
	"time"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/schemas"
)

// BenchmarkSend measures one message end to end through the fabric (MIAP
// fast mode, real redis-server, embedded NATS): IMI, route, transfer,
// delivery, acknowledgement, receipt. -cpu and SetParallelism set the senders.
func BenchmarkSend(b *testing.B) {
	f := fabrictest.New(b)
	f.StartBroker(broker.Config{NoTrace: true})
	f.PutProfiles(&schemas.Profile{ID: "alice", Addresses: map[string]string{"test": "alice"}},
		&schemas.Profile{ID: "bob", Addresses: map[string]string{"web": "bob"}})
	og, dg := fabrictest.NewInbox(), fabrictest.NewInbox()
	ogKit, _ := f.StartKit(og, kit.Config{Gateway: "test", Medium: "test", NoTrace: true})
	f.StartKit(dg, kit.Config{Gateway: "peer", Medium: "web", NoTrace: true})
	sub := func() *kit.Submission {
		return &kit.Submission{From: schemas.Endpoint{Medium: "test", Address: "alice", Client: "alice"}, To: "bob", Content: make([]byte, 100)}
	}
	fabrictest.Eventually(b, 10*time.Second, "a route", func() bool { _, err := ogKit.Send(context.Background(), sub()); return err == nil })
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := ogKit.Send(context.Background(), sub()); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkSendFallback is BenchmarkSend for a recipient with a second
// medium (PROTOCOL.md §6.15): delivered on the first at once, but the
// originator keeps the content until the receipt (an object put and a
// delete in its bucket uims_og_test) — what fallback costs when it is not
// needed.
func BenchmarkSendFallback(b *testing.B) {
	f := fabrictest.New(b)
	f.StartBroker(broker.Config{NoTrace: true})
	f.PutProfiles(&schemas.Profile{ID: "alice", Addresses: map[string]string{"test": "alice"}},
		&schemas.Profile{ID: "bob", Addresses: map[string]string{"web": "bob", "sms": "+15550100"}, Prefer: []string{"web", "sms"}})
	og, dg := fabrictest.NewInbox(), fabrictest.NewInbox()
	ogKit, _ := f.StartKit(og, kit.Config{Gateway: "test", Medium: "test", NoTrace: true})
	f.StartKit(dg, kit.Config{Gateway: "peer", Medium: "web", NoTrace: true})
	sub := func() *kit.Submission {
		return &kit.Submission{From: schemas.Endpoint{Medium: "test", Address: "alice", Client: "alice"}, To: "bob", Content: make([]byte, 100)}
	}
	fabrictest.Eventually(b, 10*time.Second, "a route", func() bool { _, err := ogKit.Send(context.Background(), sub()); return err == nil })
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := ogKit.Send(context.Background(), sub()); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
