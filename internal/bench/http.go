package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	json "github.com/goccy/go-json"
)

// Targets of `uims bench http`.
const (
	TargetUIMS    = "uims"    // the web gateway of a running `uims run`
	TargetTrivial = "trivial" // an HTTP server of the same API shape that does nothing (trivial.go)
)

// HTTPConfig configures `uims bench http` (issue 19 item 4;
// docs/BENCHMARKS.md, "From outside (HTTP)"): clients post messages to
// the web API of a running `uims run` as its users do, and then every
// accepted message is checked to have been delivered. The same clients
// drive, before it, a trivial server of the same API shape in this
// process, so that the HTTP layer's own cost is visible beside it.
type HTTPConfig struct {
	// URL is the web gateway's base URL (http://127.0.0.1:8080).
	URL string
	// Senders are the clients' tokens and recipients: client i sends as
	// Senders[i % len(Senders)].
	Senders []HTTPSender
	// Clients is the number of concurrent clients, each with its own
	// keep-alive connection.
	Clients int
	// Size is the text's length in bytes.
	Size int
	// Warmup runs before each row's measurement; Duration is measured.
	// Messages accepted during the warm-up are checked too.
	Warmup, Duration time.Duration
	// CheckTimeout bounds the delivery check; CheckParallel status
	// requests are in flight at a time; a message not yet delivered is
	// asked again after PollEvery.
	CheckTimeout  time.Duration
	CheckParallel int
	PollEvery     time.Duration
	// ServerPID, if positive, is the `uims run` process: its CPU time per
	// message is reported.
	ServerPID int
	// OutDir receives results.json and results.md; empty: no files.
	OutDir string
	// Progress receives the table as the rows finish; nil: none.
	Progress io.Writer
}

// HTTPSender is one client's bearer token and the recipient it sends to.
type HTTPSender struct {
	Token string `json:"-"`
	To    string `json:"to"`
}

// ParseHTTPSenders reads "token:to[,token:to...]".
func ParseHTTPSenders(s string) ([]HTTPSender, error) {
	var out []HTTPSender
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		tok, to, ok := strings.Cut(p, ":")
		if !ok || tok == "" || to == "" {
			return nil, fmt.Errorf("bench: sender %q: want token:recipient (alice-token:bob)", p)
		}
		out = append(out, HTTPSender{Token: tok, To: to})
	}
	if len(out) == 0 {
		return nil, errors.New("bench: no sender (token:recipient)")
	}
	return out, nil
}

func (c *HTTPConfig) setDefaults() {
	c.URL = strings.TrimRight(c.URL, "/")
	if c.URL == "" {
		c.URL = "http://127.0.0.1:8080"
	}
	if len(c.Senders) == 0 {
		c.Senders = []HTTPSender{{Token: "alice-token", To: "bob"}}
	}
	if c.Clients <= 0 {
		c.Clients = 64
	}
	if c.Size <= 0 {
		c.Size = 100
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.Warmup < 0 {
		c.Warmup = 0
	}
	if c.CheckTimeout <= 0 {
		c.CheckTimeout = time.Minute
	}
	if c.CheckParallel <= 0 {
		c.CheckParallel = 16
	}
	if c.PollEvery <= 0 {
		c.PollEvery = 200 * time.Millisecond
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
}

// HTTPResult is one row: the clients against one server.
type HTTPResult struct {
	Target  string  `json:"target"`
	URL     string  `json:"url"`
	Clients int     `json:"clients"`
	Size    int     `json:"size"`
	Seconds float64 `json:"seconds"`
	// Accepted counts the 202 answers of the measurement; Rate is
	// Accepted per second; the latencies are those of the accepted POSTs.
	Accepted int     `json:"accepted"`
	Rate     float64 `json:"msgs_per_s"`
	P50      float64 `json:"p50_ms"`
	P90      float64 `json:"p90_ms"`
	P99      float64 `json:"p99_ms"`
	Max      float64 `json:"max_ms"`
	// Errors counts the other answers of the measurement by HTTP status
	// and code ("503 BUSY"), or the transport error.
	Errors map[string]int `json:"errors,omitempty"`
	// Unmeasured counts the messages accepted during the warm-up or
	// after the measurement (checked, not measured); WarmupErrors are the
	// warm-up's failures.
	Unmeasured   int            `json:"unmeasured_accepted"`
	WarmupErrors map[string]int `json:"warmup_errors,omitempty"`
	// Conns is the TCP connections the clients opened (one each with
	// keep-alive).
	Conns int64 `json:"connections"`
	// GenCPU is this process's CPU time per accepted message, in µs (for
	// the trivial row it includes the server); ServerCPU the `uims run`
	// process's (-1: not measured).
	GenCPU    float64 `json:"gen_cpu_us"`
	ServerCPU float64 `json:"server_cpu_us"`
	// MachineLoad is the CPU the whole machine used during the
	// measurement, in cores; OtherLoad the part of it neither this
	// process nor the server used (the machine is shared); -1: unknown.
	MachineLoad float64 `json:"machine_load_cores"`
	OtherLoad   float64 `json:"other_load_cores"`
	// Check is the delivery check of every accepted message (TargetUIMS).
	Check *HTTPCheck `json:"check,omitempty"`

	sent []sentMsg // every accepted message, warm-up included
}

// sentMsg is a message the server accepted.
type sentMsg struct {
	id, token string
}

// HTTPReport is the outcome of `uims bench http`.
type HTTPReport struct {
	Machine Machine       `json:"machine"`
	Build   string        `json:"build"`
	Args    []string      `json:"args"`
	Started time.Time     `json:"started"`
	Config  HTTPRunConf   `json:"config"`
	Rows    []*HTTPResult `json:"rows"`
	// Ratio is the uims row's rate over the trivial row's.
	Ratio float64 `json:"ratio"`
	// Warnings say what could spoil the run (a daily quota on a token).
	Warnings []string `json:"warnings,omitempty"`
}

// HTTPRunConf is the part of HTTPConfig a reader needs.
type HTTPRunConf struct {
	URL           string       `json:"url"`
	Senders       []HTTPSender `json:"senders"`
	Warmup        string       `json:"warmup"`
	Duration      string       `json:"duration"`
	CheckTimeout  string       `json:"check_timeout"`
	CheckParallel int          `json:"check_parallel"`
	GoMaxProc     int          `json:"gomaxprocs"`
	GCPercent     int          `json:"gc_percent"`
}

// RunHTTP runs the trivial row, then the uims row and its delivery check,
// and writes the report files into cfg.OutDir. An error means the run
// could not be made; messages not delivered are in the report, not an
// error.
func RunHTTP(ctx context.Context, cfg HTTPConfig, args []string) (*HTTPReport, error) {
	cfg.setDefaults()
	if cfg.OutDir != "" {
		if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
	}
	rep := &HTTPReport{Machine: machine(), Build: buildRevision(), Args: args, Started: time.Now().UTC(),
		Config: HTTPRunConf{URL: cfg.URL, Senders: cfg.Senders, Warmup: cfg.Warmup.String(), Duration: cfg.Duration.String(),
			CheckTimeout: cfg.CheckTimeout.String(), CheckParallel: cfg.CheckParallel, GoMaxProc: runtime.GOMAXPROCS(0), GCPercent: gcPercent()}}
	if err := healthy(ctx, cfg.URL); err != nil {
		return nil, err
	}
	rep.Warnings = quotaWarnings(ctx, &cfg)
	for _, w := range rep.Warnings {
		fmt.Fprintf(cfg.Progress, "# warning: %s\n", w)
	}
	fmt.Fprintln(cfg.Progress, httpHeaderLine())
	if err := rep.runTrivial(ctx, &cfg); err != nil {
		return rep, err
	}
	res, err := runHTTPRow(ctx, &cfg, TargetUIMS, cfg.URL, cfg.ServerPID)
	if err != nil {
		return rep, err
	}
	rep.Rows = append(rep.Rows, res)
	fmt.Fprintln(cfg.Progress, res.Line())
	res.Check = checkDelivered(ctx, &cfg, res.sent)
	fmt.Fprintln(cfg.Progress, res.Check.Line())
	if t := rep.row(TargetTrivial); t != nil && t.Rate > 0 {
		rep.Ratio = res.Rate / t.Rate
		fmt.Fprintf(cfg.Progress, "# uims / trivial: %.2f × (%.0f / %.0f msg/s)\n", rep.Ratio, res.Rate, t.Rate)
	}
	if ctx.Err() != nil {
		return rep, ctx.Err()
	}
	if cfg.OutDir != "" {
		if err := rep.WriteFiles(cfg.OutDir); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// runTrivial measures the trivial server's row.
func (rep *HTTPReport) runTrivial(ctx context.Context, cfg *HTTPConfig) error {
	url, stop, err := startTrivial()
	if err != nil {
		return err
	}
	defer stop()
	res, err := runHTTPRow(ctx, cfg, TargetTrivial, url, 0)
	if err != nil {
		return err
	}
	res.sent = nil // it keeps nothing to check
	rep.Rows = append(rep.Rows, res)
	fmt.Fprintln(cfg.Progress, res.Line())
	return nil
}

// row returns the row of target, or nil.
func (rep *HTTPReport) row(target string) *HTTPResult {
	for _, r := range rep.Rows {
		if r.Target == target {
			return r
		}
	}
	return nil
}

// healthy checks that a web gateway answers at base.
func healthy(ctx context.Context, base string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/healthz", nil)
	if err != nil {
		return fmt.Errorf("bench: url %q: %w", base, err)
	}
	hc := &http.Client{Transport: newTransport(nil), Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("bench: no web gateway at %s (is uims run running?): %w", base, err)
	}
	drain(resp)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("bench: %s/healthz answered %s", base, resp.Status)
	}
	return nil
}

// quotaWarnings asks GET /api/v1/usage of each token and says which have
// a daily quota: past it every POST is 429 QUOTA_EXCEEDED.
func quotaWarnings(ctx context.Context, cfg *HTTPConfig) []string {
	var out []string
	seen := map[string]bool{}
	hc := &http.Client{Transport: newTransport(nil), Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	for i, s := range cfg.Senders {
		if seen[s.Token] {
			continue
		}
		seen[s.Token] = true
		var u struct {
			Client string `json:"client"`
			Quota  struct {
				Limit int64 `json:"limit"`
				Left  int64 `json:"left"`
			} `json:"quota"`
		}
		failure, err := getJSON(ctx, hc, cfg.URL+"/api/v1/usage?days=1", s.Token, &u)
		switch {
		case err != nil:
			out = append(out, fmt.Sprintf("sender %d: usage not known: %v", i+1, err))
		case failure != "":
			out = append(out, fmt.Sprintf("sender %d: GET /api/v1/usage answered %s: is its token right?", i+1, failure))
		case u.Quota.Limit > 0:
			out = append(out, fmt.Sprintf("client %s has a daily quota of %d messages, %d left today: past it every POST is 429 QUOTA_EXCEEDED",
				u.Client, u.Quota.Limit, u.Quota.Left))
		}
	}
	return out
}

// countingDialer counts the connections a transport opens.
type countingDialer struct {
	d net.Dialer
	n *atomic.Int64
}

func (c *countingDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := c.d.DialContext(ctx, network, addr)
	if err == nil && c.n != nil {
		c.n.Add(1)
	}
	return conn, err
}

// newTransport is one client's: keep-alive, no proxy from the
// environment, no compression; conns, if set, counts its connections.
func newTransport(conns *atomic.Int64) *http.Transport {
	d := &countingDialer{d: net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}, n: conns}
	return &http.Transport{DialContext: d.DialContext, MaxIdleConns: 4, MaxIdleConnsPerHost: 4,
		IdleConnTimeout: 90 * time.Second, DisableCompression: true}
}

// drain reads and closes a response body, so that its connection is reused.
func drain(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
}

// getJSON GETs url with token and decodes a 200 answer into v. Any other
// answer is returned as its failure, "<status> <code>" (apiFailure).
func getJSON(ctx context.Context, hc *http.Client, url, token string, v any) (failure string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusOK {
		return apiFailure(resp), nil
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return "", fmt.Errorf("bench: %s: %w", url, err)
	}
	return "", nil
}

// apiFailure names an error answer by its status and its body's code
// (docs/WEB.md, "Errors"): "503 BUSY".
func apiFailure(resp *http.Response) string {
	var e struct {
		Code string `json:"code"`
	}
	json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&e)
	return strings.TrimSpace(strconv.Itoa(resp.StatusCode) + " " + e.Code)
}

// httpClient is one of the row's clients: its own connection, token,
// recipient and body.
type httpClient struct {
	hc    *http.Client
	url   string
	token string
	body  []byte
	key   string // Idempotency-Key prefix, unique to the run and client
	seq   int
}

// post sends one message. It returns the accepted message's id, or the
// name of the failure: "<status> <code>" or "transport: <error>".
func (c *httpClient) post(ctx context.Context) (id, failure string) {
	c.seq++
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(c.body))
	if err != nil {
		return "", "request: " + err.Error()
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", c.key+strconv.Itoa(c.seq))
	resp, err := c.hc.Do(req)
	if err != nil {
		return "", "transport: " + shortErr(err)
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusAccepted {
		return "", apiFailure(resp)
	}
	var out struct {
		ID string `json:"id"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil || out.ID == "" {
		return "", "202 without an id"
	}
	return out.ID, ""
}

// shortErr is the innermost text of a transport error, at most 40 bytes.
func shortErr(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		err = op.Err
	}
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s[:min(len(s), 40)]
}

// newHTTPClients makes the row's clients; conns counts their connections.
func newHTTPClients(cfg *HTTPConfig, base string, conns *atomic.Int64) ([]*httpClient, error) {
	var run [6]byte
	if _, err := rand.Read(run[:]); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	text := string(Content(cfg.Size))
	out := make([]*httpClient, cfg.Clients)
	for i := range out {
		s := cfg.Senders[i%len(cfg.Senders)]
		body, err := json.Marshal(map[string]string{"to": s.To, "text": text})
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		out[i] = &httpClient{hc: &http.Client{Transport: newTransport(conns), Timeout: 30 * time.Second},
			url: base + "/api/v1/messages", token: s.Token, body: body,
			key: fmt.Sprintf("bench-%s-%d-", hex.EncodeToString(run[:]), i)}
	}
	return out, nil
}

// clientTally is what one client saw.
type clientTally struct {
	lats           []time.Duration
	sent           []sentMsg
	errs, warmErrs map[string]int
}

// loop posts until stop; the latencies and errors of the messages that
// end while measuring count as measured. A client backs off 10 ms after
// a failure, as the bench's NATS senders do.
func (c *httpClient) loop(ctx context.Context, stop, measuring *atomic.Bool) *clientTally {
	t := &clientTally{lats: make([]time.Duration, 0, 4096), errs: map[string]int{}, warmErrs: map[string]int{}}
	for !stop.Load() && ctx.Err() == nil {
		t0 := time.Now()
		id, failure := c.post(ctx)
		d := time.Since(t0)
		m := measuring.Load()
		switch {
		case failure == "":
			t.sent = append(t.sent, sentMsg{id: id, token: c.token})
			if m {
				t.lats = append(t.lats, d)
			}
		case m:
			t.errs[failure]++
		case ctx.Err() == nil:
			t.warmErrs[failure]++
		}
		if failure != "" {
			sleep(ctx, 10*time.Millisecond)
		}
	}
	return t
}

// runHTTPRow drives base with cfg.Clients clients for the warm-up and the
// measurement; serverPID, if positive, is the server's process.
func runHTTPRow(ctx context.Context, cfg *HTTPConfig, target, base string, serverPID int) (*HTTPResult, error) {
	var conns atomic.Int64
	clients, err := newHTTPClients(cfg, base, &conns)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, c := range clients {
			c.hc.CloseIdleConnections()
		}
	}()
	runtime.GC()
	var stop, measuring atomic.Bool
	tallies := make([]*clientTally, len(clients))
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tallies[i] = c.loop(ctx, &stop, &measuring)
		}()
	}
	sleep(ctx, cfg.Warmup)
	before := takeHTTPSnap(serverPID)
	measuring.Store(true)
	sleep(ctx, cfg.Duration)
	measuring.Store(false)
	after := takeHTTPSnap(serverPID)
	stop.Store(true)
	wg.Wait()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	res := &HTTPResult{Target: target, URL: base, Clients: cfg.Clients, Size: cfg.Size, Conns: conns.Load()}
	res.tally(tallies, after.at.Sub(before.at))
	res.costs(before, after, target == TargetTrivial || serverPID > 0)
	return res, nil
}

// httpSnap is the counters around a measurement.
type httpSnap struct {
	at          time.Time
	cpu, server time.Duration // this process's, the server's (-1 unknown)
	machine     time.Duration
}

func takeHTTPSnap(serverPID int) httpSnap {
	s := httpSnap{at: time.Now(), cpu: selfCPU(), server: -1, machine: machineBusy()}
	if serverPID > 0 {
		s.server = procCPU(serverPID)
	}
	return s
}

// tally sums the clients' counts over a measurement of length el.
func (r *HTTPResult) tally(ts []*clientTally, el time.Duration) {
	var all []time.Duration
	r.Errors, r.WarmupErrors = map[string]int{}, map[string]int{}
	for _, t := range ts {
		all = append(all, t.lats...)
		r.sent = append(r.sent, t.sent...)
		for k, v := range t.errs {
			r.Errors[k] += v
		}
		for k, v := range t.warmErrs {
			r.WarmupErrors[k] += v
		}
	}
	r.Unmeasured = len(r.sent) - len(all)
	if len(r.Errors) == 0 {
		r.Errors = nil
	}
	if len(r.WarmupErrors) == 0 {
		r.WarmupErrors = nil
	}
	r.Seconds, r.Accepted = el.Seconds(), len(all)
	r.Rate = float64(len(all)) / el.Seconds()
	r.P50, r.P90, r.P99, r.Max = percentiles(all)
}

// costs sets the CPU figures per accepted message and the loads;
// serverKnown: the server's CPU is this process's or measured.
func (r *HTTPResult) costs(before, after httpSnap, serverKnown bool) {
	n := float64(max(r.Accepted, 1))
	wall := float64(after.at.Sub(before.at))
	r.GenCPU, r.ServerCPU, r.MachineLoad, r.OtherLoad = -1, -1, -1, -1
	if before.cpu < 0 || after.cpu < 0 {
		return
	}
	own := float64(after.cpu - before.cpu)
	r.GenCPU = own / 1e3 / n
	if before.server >= 0 && after.server >= 0 {
		r.ServerCPU = float64(after.server-before.server) / 1e3 / n
		own += float64(after.server - before.server)
	}
	if before.machine >= 0 && after.machine >= 0 {
		busy := float64(after.machine - before.machine)
		r.MachineLoad = busy / wall
		if serverKnown {
			r.OtherLoad = max(0, (busy-own)/wall)
		}
	}
}

// percentiles sorts ds and returns its p50, p90, p99 and max in ms.
func percentiles(ds []time.Duration) (p50, p90, p99, mx float64) {
	if len(ds) == 0 {
		return 0, 0, 0, 0
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	pct := func(p float64) float64 { return float64(ds[int(p*float64(len(ds)-1))]) / 1e6 }
	return pct(0.50), pct(0.90), pct(0.99), pct(1)
}
