package chaos

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// Load is a load run: N messages from the client of Token to To over the
// web gateway's HTTP API, Concurrency at a time, started at Rate per
// second at most; each message is retried with the same Idempotency-Key
// on 503, 429 and connection errors (backoff 200 ms … 2 s) until the
// gateway answers 202/200 or a permanent error, or until Bound has passed
// since the run started.
type Load struct {
	BaseURL     string
	Token       string // bearer token of the sender
	Sender      string // the sender's client id (the message id derives from it and the key)
	To          string
	Prefix      string // of the Idempotency-Keys: unique per run
	N           int
	Concurrency int
	Rate        float64
	Bound       time.Duration
	// Every ScheduleEvery-th message (0: none) is sent with send_at Delay
	// ahead: the brokers hold it across the fault and release it after
	// (docs/ROUTING.md, "Holds").
	ScheduleEvery int
	Delay         time.Duration
}

// Outcome is what the client saw of one message.
type Outcome struct {
	Key      string
	ID       string // the message id (the gateway's answer, or derived from the key)
	Accepted bool   // 202/200
	Status   string // the status of the accepting answer
	Code     int    // HTTP status of the last answer; 0: connection error or timeout
	ErrCode  string // the error's wire code
	Tries    int
	// Unknown: the client gave up at Bound without an answer for good (the
	// message may still be delivered, or fail).
	Unknown bool
}

// MsgID is the message id the web gateway derives from a client's
// Idempotency-Key (gateways/web: SHA-256 of client id, NUL, key; 16 bytes).
func MsgID(client, key string) string {
	sum := sha256.Sum256([]byte(client + "\x00" + key))
	return hex.EncodeToString(sum[:16])
}

var httpClient = &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// Run sends the messages and returns one outcome per message.
func (l *Load) Run(ctx context.Context) []Outcome {
	out := make([]Outcome, l.N)
	start := time.Now()
	end := start.Add(l.Bound)
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range max(l.Concurrency, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				var at time.Time
				if l.ScheduleEvery > 0 && i%l.ScheduleEvery == l.ScheduleEvery-1 {
					at = time.Now().Add(l.Delay)
				}
				out[i] = l.send(ctx, fmt.Sprintf("%s-%05d", l.Prefix, i), at, end)
			}
		}()
	}
	for i := range l.N {
		if l.Rate > 0 {
			if wait := time.Until(start.Add(time.Duration(float64(i) / l.Rate * float64(time.Second)))); wait > 0 {
				time.Sleep(wait)
			}
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return out
}

func (l *Load) send(ctx context.Context, key string, at, end time.Time) Outcome {
	o := Outcome{Key: key, ID: MsgID(l.Sender, key)}
	msg := map[string]string{"to": l.To, "subject": "chaos", "text": "chaos message " + key}
	if !at.IsZero() {
		msg["send_at"] = at.UTC().Format(time.RFC3339)
	}
	body, _ := json.Marshal(msg)
	backoff := 200 * time.Millisecond
	for {
		o.Tries++
		code, ans := post(ctx, l.BaseURL+"/api/v1/messages", l.Token, key, body)
		o.Code, o.ErrCode = code, ans.Code
		switch {
		case code == http.StatusAccepted || code == http.StatusOK:
			o.Accepted, o.Status = true, ans.Status
			if ans.ID != "" {
				o.ID = ans.ID
			}
			return o
		case code == 0 || code == http.StatusServiceUnavailable || code == http.StatusTooManyRequests:
			// temporary: the same key again
		default:
			return o // refused for good
		}
		if time.Now().Add(backoff).After(end) || ctx.Err() != nil {
			o.Unknown = true
			return o
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, 2*time.Second)
	}
}

type answer struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Code   string `json:"code"`
	Error  string `json:"error"`
}

func post(ctx context.Context, url, token, key string, body []byte) (int, answer) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, answer{}
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, answer{Code: "connection: " + err.Error()}
	}
	defer resp.Body.Close()
	var a answer
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	json.Unmarshal(b, &a)
	return resp.StatusCode, a
}

// Healthy waits until a probe message alice → bob is accepted.
func (t *Topology) Healthy(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	body := []byte(`{"to":"bob","subject":"probe","text":"probe"}`)
	var code int
	var a answer
	for time.Now().Before(deadline) {
		code, a = post(ctx, t.HTTP+"/api/v1/messages", "alice-token", "", body)
		if code == http.StatusAccepted || code == http.StatusOK {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return fmt.Errorf("chaos: the fabric does not accept a probe message after %v: %d %s %s", timeout, code, a.Code, a.Error)
}
