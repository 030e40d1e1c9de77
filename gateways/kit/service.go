package kit

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/uims/uims/schemas"
)

// The kit serves its gateway's subjects as a nats micro service, so that a
// gateway of any medium (a bot too) shows in `nats micro ls` and in the
// operator view with its medium, its instances and its rates:
// schemas.GatewayService(gateway), endpoints im, login and held in queue
// group schemas.GatewayQueue(gateway).

// counters are one kit's outcomes since it started, reported in the im
// endpoint's STATS data (micro counts requests; errors answered after the
// handler returned, as transfers are, it cannot see).
type counters struct {
	delivered, transferred, failed, refused atomic.Int64
	sent, sendFailed, acks, notified        atomic.Int64

	mu    sync.Mutex
	codes map[string]int64 // refusals and failures by MIAP code
}

func (c *counters) code(code string) {
	c.mu.Lock()
	if c.codes == nil {
		c.codes = map[string]int64{}
	}
	c.codes[code]++
	c.mu.Unlock()
}

// GatewayStats is the data of the im endpoint in $SRV.STATS.
type GatewayStats struct {
	Medium      string           `json:"medium"`
	Delivered   int64            `json:"delivered"`
	Transferred int64            `json:"transferred"`
	Failed      int64            `json:"failed"`
	Refused     int64            `json:"refused"`
	Sent        int64            `json:"sent"`
	SendFailed  int64            `json:"send_failed"`
	Acks        int64            `json:"acks"`
	Notified    int64            `json:"notified"`
	Codes       map[string]int64 `json:"codes,omitempty"`
}

func (k *Kit) stats(e *micro.Endpoint) any {
	if e.Name != "im" {
		return nil
	}
	c := &k.count
	s := GatewayStats{Medium: k.cfg.Medium, Delivered: c.delivered.Load(), Transferred: c.transferred.Load(),
		Failed: c.failed.Load(), Refused: c.refused.Load(), Sent: c.sent.Load(), SendFailed: c.sendFailed.Load(),
		Acks: c.acks.Load(), Notified: c.notified.Load()}
	c.mu.Lock()
	if len(c.codes) > 0 {
		s.Codes = make(map[string]int64, len(c.codes))
		for code, n := range c.codes {
			s.Codes[code] = n
		}
	}
	c.mu.Unlock()
	return s
}

// serve registers the micro service and its endpoints.
func (k *Kit) serve(onIM, onLogin, onHeld micro.HandlerFunc) (micro.Service, error) {
	svc, err := micro.AddService(k.nc, micro.Config{
		Name:        schemas.GatewayService(k.cfg.Gateway),
		Version:     k.cfg.Version,
		Description: fmt.Sprintf("UIMS gateway %s (medium %s)", k.cfg.Gateway, k.cfg.Medium),
		QueueGroup:  schemas.GatewayQueue(k.cfg.Gateway),
		Metadata: map[string]string{"party": k.cfg.Gateway, "medium": k.cfg.Medium, "instance": k.cfg.Instance,
			"miap_mode": modeName(k.cfg.Strict), "kind": "gateway"},
		StatsHandler: k.stats,
	})
	if err != nil {
		return nil, fmt.Errorf("kit: micro service: %w", err)
	}
	for _, ep := range []struct {
		name, subject string
		h             micro.HandlerFunc
	}{
		{"im", schemas.GatewayIM(k.cfg.Gateway), onIM},
		{"login", schemas.GatewayLogin(k.cfg.Gateway), onLogin},
		{"held", schemas.GatewayHeld(k.cfg.Gateway), onHeld},
	} {
		if err := svc.AddEndpoint(ep.name, ep.h, micro.WithEndpointSubject(ep.subject)); err != nil {
			svc.Stop()
			return nil, fmt.Errorf("kit: endpoint %s: %w", ep.name, err)
		}
	}
	return svc, nil
}

// respondError answers a request with a MIAP error code (PROTOCOL.md §9)
// and, if given, the reason, with micro's error headers. Not through
// Request.Error: that records the error in a field micro's handler reads
// once Handle returns, and the kit answers from its workers after that (a
// data race the race detector found, as the brokers' replyError says).
// Errors are counted by code in the gateway's stats.
func respondError(req micro.Request, code schemas.Code, reason string) {
	if req.Reply() == "" {
		return
	}
	h := micro.Headers{}
	for key, v := range schemas.ErrorHeader(code) {
		h[key] = v
	}
	if reason != "" {
		h[schemas.HdrReason] = []string{truncate(reason, 256)}
	} else {
		reason = code.String()
	}
	h[micro.ErrorHeader] = []string{reason}
	h[micro.ErrorCodeHeader] = []string{code.String()}
	req.Respond(nil, micro.WithHeaders(h))
}

// respond answers a request with the headers and body of r.
func respond(req micro.Request, r *nats.Msg) {
	if req.Reply() == "" {
		return
	}
	req.Respond(r.Data, micro.WithHeaders(micro.Headers(r.Header)))
}

// header is a request's headers as nats.Header.
func header(req micro.Request) nats.Header { return nats.Header(req.Headers()) }
