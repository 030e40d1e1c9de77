package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/miap/natsauth"
)

// The broker side of a run: the real broker and the brokers of the
// reference flows, each on its own NATS connection so that its bytes can be
// counted. It runs in a child process (uims bench child), so that its CPU
// time is the child's, or in the load generator's process.
const (
	RoleBroker = "broker" // the real broker (package broker)
	RoleBare   = "bare"   // the bare NATS flow's responders (no work)
	RoleSF     = "sf"     // the store-and-forward broker (content passes through it)
)

// SideConfig configures the broker side.
type SideConfig struct {
	NATSURL string
	// CredsDir holds the parties' NATS credentials (<party>.creds) when the
	// server requires authentication: the real broker connects as the
	// broker, the reference flows' responders as the administrator.
	CredsDir string
	RedisURL string
	Keys     *miap.KeyFile
	NoTrace  bool
	// NoAudit turns off the brokers' audit trail (PROTOCOL.md §15).
	NoAudit bool
	Bare    BareSizes
	// BrokerOnly runs the real broker alone, without the reference flows'
	// responders: a further broker process of the queue group (brokers.go).
	BrokerOnly bool
	Log        zerolog.Logger
}

// Side is a running broker side.
type Side struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	conns  map[string]*nats.Conn
	rdbs   []redis.UniversalClient
	subs   []*nats.Subscription
	// instance is the real broker's instance name.
	instance string
}

// ConnStats are the counters of one NATS connection (message bytes with
// headers, without protocol framing).
type ConnStats struct {
	InMsgs, OutMsgs   uint64
	InBytes, OutBytes uint64
	Reconnects        uint64
}

// SideStats is a snapshot of the broker side.
type SideStats struct {
	// CPU is the process's user+system time; negative when the side shares
	// the load generator's process (then it cannot be told apart).
	CPU        time.Duration
	Mallocs    uint64
	AllocBytes uint64
	NumGC      uint32
	Conns      map[string]ConnStats
	// Instance is the real broker's instance name (the "instance" of its
	// micro service metadata).
	Instance string `json:",omitempty"`
	// Procs are the stats of each broker process when the side is a
	// group of them (brokerProcs); the fields above are their sums.
	Procs []SideStats `json:",omitempty"`
}

// StartSide starts the real broker, the bare responders and the
// store-and-forward broker.
func StartSide(ctx context.Context, cfg SideConfig) (*Side, error) {
	ctx, cancel := context.WithCancel(ctx)
	s := &Side{cancel: cancel, conns: map[string]*nats.Conn{}}
	fail := func(err error) (*Side, error) {
		s.Close()
		return nil, err
	}
	all, err := cfg.Keys.Keyring()
	if err != nil {
		return fail(err)
	}
	connect := func(role string) (*nats.Conn, error) {
		party := "admin" // the reference flows' subjects are no party's
		if role == RoleBroker {
			party = miap.BrokerParty
		}
		nc, err := nats.Connect(cfg.NATSURL, append([]nats.Option{nats.Name("bench-" + role), nats.MaxReconnects(-1)},
			credsOpts(cfg.CredsDir, party)...)...)
		if err != nil {
			return nil, fmt.Errorf("bench: connect %s: %w", role, err)
		}
		s.conns[role] = nc
		return nc, nil
	}
	openRedis := func() (redis.UniversalClient, error) {
		rdb, err := broker.OpenRedis(cfg.RedisURL)
		if err != nil {
			return nil, err
		}
		s.rdbs = append(s.rdbs, rdb)
		return rdb, rdb.Ping(ctx).Err()
	}

	// The real broker, as `uims broker` assembles it.
	eng, err := miap.New(miap.Config{Keys: all})
	if err != nil {
		return fail(err)
	}
	rdb, err := openRedis()
	if err != nil {
		return fail(err)
	}
	nc, err := connect(RoleBroker)
	if err != nil {
		return fail(err)
	}
	b, err := broker.New(broker.Config{NoTrace: cfg.NoTrace, NoAudit: cfg.NoAudit}, nc, rdb, eng, cfg.Log)
	if err != nil {
		return fail(err)
	}
	s.instance = b.Instance()
	bdone, bready := make(chan error, 1), make(chan struct{})
	s.wg.Add(1)
	go func() { defer s.wg.Done(); bdone <- b.Run(ctx, func() { close(bready) }) }()
	select {
	case <-bready:
	case err := <-bdone:
		return fail(fmt.Errorf("bench: broker stopped: %v", err))
	case <-time.After(20 * time.Second):
		return fail(errors.New("bench: broker not ready"))
	}
	if cfg.BrokerOnly {
		nc.Flush()
		return s, nil
	}
	if err := s.startReferences(ctx, cfg, all, connect, openRedis); err != nil {
		return fail(err)
	}
	for _, nc := range s.conns {
		nc.Flush()
	}
	return s, nil
}

// startReferences starts the reference flows' brokers: the bare
// responders and the store-and-forward broker.
func (s *Side) startReferences(ctx context.Context, cfg SideConfig, all *miap.Keyring,
	connect func(string) (*nats.Conn, error), openRedis func() (redis.UniversalClient, error)) error {
	// The bare flow's broker: answers at once.
	nc, err := connect(RoleBare)
	if err != nil {
		return err
	}
	subs, err := serveBareBroker(nc, cfg.Bare)
	if err != nil {
		return err
	}
	s.subs = append(s.subs, subs...)

	// The store-and-forward broker.
	sfEng, err := miap.New(miap.Config{Keys: all})
	if err != nil {
		return err
	}
	sfRDB, err := openRedis()
	if err != nil {
		return err
	}
	if nc, err = connect(RoleSF); err != nil {
		return err
	}
	sub, err := serveSFBroker(ctx, nc, sfEng, sfRDB)
	if err != nil {
		return err
	}
	s.subs = append(s.subs, sub)
	return nil
}

// Stats returns the side's counters; CPU and allocations are the whole
// process's.
func (s *Side) Stats() SideStats {
	st := SideStats{CPU: selfCPU(), Conns: map[string]ConnStats{}, Instance: s.instance}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	st.Mallocs, st.AllocBytes, st.NumGC = ms.Mallocs, ms.TotalAlloc, ms.NumGC
	for role, nc := range s.conns {
		st.Conns[role] = connStats(nc)
	}
	return st
}

func connStats(nc *nats.Conn) ConnStats {
	x := nc.Stats()
	return ConnStats{InMsgs: x.InMsgs, OutMsgs: x.OutMsgs, InBytes: x.InBytes, OutBytes: x.OutBytes, Reconnects: x.Reconnects}
}

// Close stops everything.
func (s *Side) Close() {
	for _, sub := range s.subs {
		sub.Unsubscribe()
	}
	s.cancel()
	s.wg.Wait()
	for _, nc := range s.conns {
		nc.Close()
	}
	for _, rdb := range s.rdbs {
		rdb.Close()
	}
}

// selfCPU returns this process's user+system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// sideHandle is the load generator's view of the broker side.
type sideHandle interface {
	Stats() (SideStats, error)
	StartProfile(path string) error
	StopProfile() error
	// Goroutines writes a goroutine profile (debug=1) to path.
	Goroutines(path string) error
	Close()
	// Separate reports whether the side has a process of its own (then CPU
	// and allocations are the side's alone).
	Separate() bool
	// Scale runs n real brokers in the queue group (brokers.go); Count
	// says how many run.
	Scale(n int) error
	Count() int
}

// localSide runs the side in the load generator's process.
type localSide struct{ s *Side }

func (l localSide) Stats() (SideStats, error) {
	st := l.s.Stats()
	st.CPU, st.Mallocs, st.AllocBytes = -1, 0, 0
	return st, nil
}
func (localSide) StartProfile(string) error { return nil }
func (localSide) StopProfile() error        { return nil }
func (localSide) Goroutines(string) error   { return nil }
func (l localSide) Close()                  { l.s.Close() }
func (localSide) Separate() bool            { return false }
func (localSide) Count() int                { return 1 }

func (localSide) Scale(n int) error {
	if n != 1 {
		return fmt.Errorf("bench: %d brokers need broker processes (--broker proc)", n)
	}
	return nil
}

// ctlRequest is a command to a child side.
type ctlRequest struct {
	Op   string `json:"op"` // stats, profile-start, profile-stop
	Path string `json:"path,omitempty"`
}

type ctlReply struct {
	Stats *SideStats `json:"stats,omitempty"`
	Error string     `json:"error,omitempty"`
}

// childSide runs the side in a child process: argv[0] argv[1:]... plus
// the child flags.
type childSide struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	nc    *nats.Conn
	ctl   string
}

func startChildSide(argv []string, cfg SideConfig, keysPath, logLevel string) (*childSide, error) {
	ctl := "uims.bench.ctl." + miapNonceHex()
	args := append(append([]string{}, argv[1:]...),
		"--nats", cfg.NATSURL, "--creds-dir", cfg.CredsDir, "--redis", cfg.RedisURL, "--keys", keysPath, "--ctl", ctl, "--log-level", logLevel,
		fmt.Sprintf("--no-trace=%v", cfg.NoTrace), fmt.Sprintf("--no-audit=%v", cfg.NoAudit), fmt.Sprintf("--broker-only=%v", cfg.BrokerOnly),
		fmt.Sprintf("--bare-imi-req=%d", cfg.Bare.IMIRequest), fmt.Sprintf("--bare-imi-reply=%d", cfg.Bare.IMIReply),
		fmt.Sprintf("--bare-ack-req=%d", cfg.Bare.AckRequest), fmt.Sprintf("--bare-ack-reply=%d", cfg.Bare.AckReply))
	cmd := exec.Command(argv[0], args...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start broker process: %w", err)
	}
	c := &childSide{cmd: cmd, stdin: stdin, ctl: ctl}
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "READY" {
				ready <- nil
				break
			}
		}
		io.Copy(io.Discard, out)
		ready <- errors.New("bench: broker process exited before it was ready")
	}()
	select {
	case err = <-ready:
	case <-time.After(60 * time.Second):
		err = errors.New("bench: broker process not ready after 60s")
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	if c.nc, err = nats.Connect(cfg.NATSURL, append([]nats.Option{nats.Name("bench-ctl-client")}, credsOpts(cfg.CredsDir, "admin")...)...); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *childSide) call(r ctlRequest) (*ctlReply, error) {
	b, _ := json.Marshal(r)
	m, err := c.nc.Request(c.ctl, b, 30*time.Second)
	if err != nil {
		return nil, fmt.Errorf("bench: broker process %s: %w", r.Op, err)
	}
	var rep ctlReply
	if err := json.Unmarshal(m.Data, &rep); err != nil {
		return nil, err
	}
	if rep.Error != "" {
		return nil, fmt.Errorf("bench: broker process %s: %s", r.Op, rep.Error)
	}
	return &rep, nil
}

func (c *childSide) Stats() (SideStats, error) {
	rep, err := c.call(ctlRequest{Op: "stats"})
	if err != nil || rep.Stats == nil {
		return SideStats{}, err
	}
	return *rep.Stats, nil
}

func (c *childSide) StartProfile(path string) error {
	_, err := c.call(ctlRequest{Op: "profile-start", Path: path})
	return err
}

func (c *childSide) StopProfile() error {
	_, err := c.call(ctlRequest{Op: "profile-stop"})
	return err
}

func (c *childSide) Goroutines(path string) error {
	_, err := c.call(ctlRequest{Op: "goroutines", Path: path})
	return err
}

// Close asks the child to stop (closing its stdin) and waits for it; it
// is killed (by its pid) if it does not stop in time.
func (c *childSide) Close() {
	if c.nc != nil {
		c.nc.Close()
	}
	c.stdin.Close()
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
}

// RunChild is `uims bench child`: the broker side in a process of its own,
// controlled by the load generator over NATS; it stops when its standard
// input closes.
func RunChild(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("uims bench child", flag.ContinueOnError)
	var cfg SideConfig
	var keysPath, ctl, level string
	fs.StringVar(&cfg.NATSURL, "nats", "", "NATS URL")
	fs.StringVar(&cfg.CredsDir, "creds-dir", "", "folder of the parties' NATS credentials (empty: none)")
	fs.StringVar(&cfg.RedisURL, "redis", "", "Redis URL")
	fs.StringVar(&keysPath, "keys", "", "MIAP key file")
	fs.StringVar(&ctl, "ctl", "", "control subject")
	fs.StringVar(&level, "log-level", "warn", "log level")
	fs.BoolVar(&cfg.NoTrace, "no-trace", false, "no trace events")
	fs.BoolVar(&cfg.NoAudit, "no-audit", false, "no audit trail")
	fs.BoolVar(&cfg.BrokerOnly, "broker-only", false, "the real broker alone, without the reference flows' responders")
	fs.IntVar(&cfg.Bare.IMIRequest, "bare-imi-req", 0, "")
	fs.IntVar(&cfg.Bare.IMIReply, "bare-imi-reply", 0, "")
	fs.IntVar(&cfg.Bare.AckRequest, "bare-ack-req", 0, "")
	fs.IntVar(&cfg.Bare.AckReply, "bare-ack-reply", 0, "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	kf, err := miap.ReadKeyFile(keysPath)
	if err != nil {
		return err
	}
	cfg.Keys = kf
	cfg.Log = newLogger(level).With().Str("process", "bench-broker").Logger()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { io.Copy(io.Discard, os.Stdin); cancel() }() // parent gone or done
	s, err := StartSide(ctx, cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	nc, err := nats.Connect(cfg.NATSURL, append([]nats.Option{nats.Name("bench-ctl")}, credsOpts(cfg.CredsDir, "admin")...)...)
	if err != nil {
		return err
	}
	defer nc.Close()
	var mu sync.Mutex
	var prof *os.File
	sub, err := nc.Subscribe(ctl, func(m *nats.Msg) {
		mu.Lock()
		defer mu.Unlock()
		var r ctlRequest
		var rep ctlReply
		if err := json.Unmarshal(m.Data, &r); err != nil {
			rep.Error = err.Error()
		}
		switch r.Op {
		case "stats":
			st := s.Stats()
			rep.Stats = &st
		case "profile-start":
			f, err := os.Create(r.Path)
			if err == nil {
				if err = pprof.StartCPUProfile(f); err != nil {
					f.Close()
				} else {
					prof = f
				}
			}
			if err != nil {
				rep.Error = err.Error()
			}
		case "goroutines":
			f, err := os.Create(r.Path)
			if err == nil {
				err = pprof.Lookup("goroutine").WriteTo(f, 1)
				f.Close()
			}
			if err != nil {
				rep.Error = err.Error()
			}
		case "profile-stop":
			if prof != nil {
				pprof.StopCPUProfile()
				prof.Close()
				prof = nil
			}
		default:
			if rep.Error == "" {
				rep.Error = "unknown op " + r.Op
			}
		}
		b, _ := json.Marshal(rep)
		m.Respond(b)
	})
	if err != nil {
		return err
	}
	defer sub.Unsubscribe()
	nc.Flush()
	fmt.Println("READY")
	<-ctx.Done()
	return nil
}

// credsOpts are the options of a connection as party, with its
// credentials in credsDir and its inbox prefix (as `uims run` connects);
// none when credsDir is empty.
func credsOpts(credsDir, party string) []nats.Option {
	if credsDir == "" {
		return nil
	}
	opts := []nats.Option{nats.UserCredentials(filepath.Join(credsDir, party+".creds"))}
	if party != "admin" && party != "ops" {
		opts = append(opts, nats.CustomInboxPrefix(natsauth.InboxPrefix(party)))
	}
	return opts
}

func newLogger(level string) zerolog.Logger {
	lvl, err := zerolog.ParseLevel(strings.ToLower(level))
	if err != nil || level == "" {
		lvl = zerolog.WarnLevel
	}
	return zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: "15:04:05.000"}).Level(lvl).With().Timestamp().Logger()
}
