package bench

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/uims/uims/schemas"
)

// HTTPCheck is the delivery check of `uims bench http`: every message the
// web gateway accepted (202) is asked about with GET /api/v1/messages/{id}
// until it is delivered (or read), failed, or the check's time is up.
type HTTPCheck struct {
	Accepted  int     `json:"accepted"`
	Delivered int     `json:"delivered"`
	Seconds   float64 `json:"seconds"`
	// Requests counts the status requests made.
	Requests int `json:"requests"`
	// TimedOut: messages were still on their way when the time was up.
	TimedOut bool `json:"timed_out,omitempty"`
	// Undelivered are the messages not delivered, with their last state
	// ("failed", "routed"...) or the last answer ("404 UNKNOWN_TX").
	Undelivered []Undelivered `json:"undelivered,omitempty"`
}

// Undelivered is a message that did not end delivered.
type Undelivered struct {
	ID    string `json:"id"`
	State string `json:"state"`
}

// Line is the check as one line of the table's output.
func (c *HTTPCheck) Line() string {
	s := fmt.Sprintf("# delivery check: %d of %d accepted messages delivered (%d status requests, %.1f s)",
		c.Delivered, c.Accepted, c.Requests, c.Seconds)
	if c.TimedOut {
		s += ", time up"
	}
	for i, u := range c.Undelivered {
		if i == 20 {
			s += fmt.Sprintf("\n#   ... and %d more (results.json)", len(c.Undelivered)-i)
			break
		}
		s += fmt.Sprintf("\n#   not delivered: %s %s", u.ID, u.State)
	}
	return s
}

// checkDelivered asks about every message in rounds: each round asks
// about the messages not settled yet, cfg.CheckParallel at a time, and
// the next starts cfg.PollEvery later, until none is left or
// cfg.CheckTimeout is over.
func checkDelivered(ctx context.Context, cfg *HTTPConfig, msgs []sentMsg) *HTTPCheck {
	c := &HTTPCheck{Accepted: len(msgs)}
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(ctx, cfg.CheckTimeout)
	defer cancel()
	hc := &http.Client{Transport: newTransport(nil), Timeout: 30 * time.Second}
	defer hc.CloseIdleConnections()
	pending := msgs
	last := map[string]string{} // id → last state or answer
	for len(pending) > 0 {
		var failed []Undelivered
		var answers map[string]string
		pending, failed, answers = checkRound(ctx, hc, cfg, pending)
		c.Requests += len(answers)
		for id, a := range answers {
			last[id] = a
		}
		c.Undelivered = append(c.Undelivered, failed...)
		if len(pending) == 0 || ctx.Err() != nil {
			break
		}
		sleep(ctx, cfg.PollEvery)
	}
	for _, m := range pending {
		c.TimedOut = true
		c.Undelivered = append(c.Undelivered, Undelivered{ID: m.id, State: orDefault(last[m.id], "not asked")})
	}
	c.Delivered = c.Accepted - len(c.Undelivered)
	c.Seconds = time.Since(t0).Seconds()
	return c
}

// checkRound asks about each message once. It returns the messages still
// on their way, those that failed, and every answer by id.
func checkRound(ctx context.Context, hc *http.Client, cfg *HTTPConfig, msgs []sentMsg) (pending []sentMsg, failed []Undelivered, answers map[string]string) {
	states := make([]string, len(msgs))
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(cfg.CheckParallel, len(msgs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				states[i] = askState(ctx, hc, cfg.URL, msgs[i])
			}
		}()
	}
	for i := range msgs {
		if ctx.Err() != nil {
			break
		}
		work <- i
	}
	close(work)
	wg.Wait()
	answers = map[string]string{}
	for i, m := range msgs {
		switch st := states[i]; st {
		case schemas.StatusDelivered, schemas.StatusRead:
		case schemas.StatusFailed:
			failed = append(failed, Undelivered{ID: m.id, State: st})
		default:
			pending = append(pending, m)
		}
		if states[i] != "" {
			answers[m.id] = states[i]
		}
	}
	return pending, failed, answers
}

// askState is the message's state, or the answer when it is not 200:
// "<status> <code>", "transport: <error>".
func askState(ctx context.Context, hc *http.Client, base string, m sentMsg) string {
	var st struct {
		State string `json:"state"`
	}
	failure, err := getJSON(ctx, hc, base+"/api/v1/messages/"+url.PathEscape(m.id), m.token, &st)
	switch {
	case err != nil && ctx.Err() != nil:
		return ""
	case err != nil:
		return "transport: " + shortErr(err)
	case failure != "":
		return failure
	}
	return st.State
}
