package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
)

// The bare NATS flow (the ceiling; research/performance-anchors.md,
// simflow "none"): the same three request-replies as a fast-mode message,
// with the same sizes of meta information, and no work in the responders.
//
//	OG → broker  request, IMIRequest bytes; reply IMIReply bytes
//	OG → DG      request with the content; inside the DG's handler:
//	DG → broker  request, AckRequest bytes; reply AckReply bytes
//	DG → OG      reply "DELIVERED"
const (
	bareIMISubject = "uims.bench.bare.imi"
	bareAckSubject = "uims.bench.bare.ack"
	bareDGSubject  = "uims.bench.bare.dg"
	bareWorkers    = 128
)

// BareSizes are the body sizes of the bare flow's control messages.
type BareSizes struct {
	IMIRequest, IMIReply, AckRequest, AckReply int
}

// DefaultBareSizes are close to what the real fast-mode flow carries per
// message through the broker (MIAP headers included): measured, see
// docs/BENCHMARKS.md.
var DefaultBareSizes = BareSizes{IMIRequest: 650, IMIReply: 1800, AckRequest: 400, AckReply: 1600}

// serve subscribes subject with a channel drained by n goroutines, as
// simflow does (nats calls a subscription's handler one message at a time).
func serve(nc *nats.Conn, subject string, n int, h func(*nats.Msg)) (*nats.Subscription, error) {
	ch := make(chan *nats.Msg, 65536)
	sub, err := nc.ChanSubscribe(subject, ch)
	if err != nil {
		return nil, err
	}
	sub.SetPendingLimits(-1, -1)
	for range n {
		go func() {
			for m := range ch {
				h(m)
			}
		}()
	}
	return sub, nil
}

func filler(n int) []byte { return bytes.Repeat([]byte("m"), n) }

func serveBareBroker(nc *nats.Conn, sz BareSizes) ([]*nats.Subscription, error) {
	imiReply, ackReply := filler(sz.IMIReply), filler(sz.AckReply)
	a, err := serve(nc, bareIMISubject, bareWorkers, func(m *nats.Msg) { m.Respond(imiReply) })
	if err != nil {
		return nil, err
	}
	b, err := serve(nc, bareAckSubject, bareWorkers, func(m *nats.Msg) { m.Respond(ackReply) })
	if err != nil {
		a.Unsubscribe()
		return nil, err
	}
	return []*nats.Subscription{a, b}, nil
}

var delivered = []byte("DELIVERED")

// serveBareDG is the bare flow's destination gateway.
func serveBareDG(nc *nats.Conn, sz BareSizes) (*nats.Subscription, error) {
	ackReq := filler(sz.AckRequest)
	return serve(nc, bareDGSubject, bareWorkers, func(m *nats.Msg) {
		if _, err := nc.Request(bareAckSubject, ackReq, 15*time.Second); err != nil {
			m.Respond([]byte("ERR"))
			return
		}
		m.Respond(delivered)
	})
}

// bareFlow is the originating side of the bare flow.
type bareFlow struct {
	nc  *nats.Conn
	imi []byte
}

func newBareFlow(nc *nats.Conn, sz BareSizes) *bareFlow {
	return &bareFlow{nc: nc, imi: filler(sz.IMIRequest)}
}

func (f *bareFlow) send(ctx context.Context, content []byte) error {
	imi := make([]byte, len(f.imi)) // a fresh nonce per message, as a real IMI has
	copy(imi, f.imi)
	var n [8]byte
	rand.Read(n[:])
	hex.Encode(imi[:min(16, len(imi))], n[:min(8, len(imi)/2)])
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if _, err := f.nc.RequestWithContext(ctx, bareIMISubject, imi); err != nil {
		return err
	}
	r, err := f.nc.RequestWithContext(ctx, bareDGSubject, content)
	if err != nil {
		return err
	}
	if !bytes.Equal(r.Data, delivered) {
		return errors.New("not delivered")
	}
	return nil
}
