// Package bench is the UIMS load generator (`uims bench`, issue 7): it runs
// the fabric (embedded NATS with JetStream, a real redis-server, the
// broker, the web gateway with MIAP on), drives it with N concurrent
// senders through the gateway kit, and measures beside it, in the same run,
// the references: the bare NATS flow with the same hops (the ceiling),
// Redis round trips, and a store-and-forward variant where the content
// passes through the broker (the baseline the patent claims to beat).
//
// It reports messages per second, latency percentiles, and per message
// the broker's CPU time, bytes and allocations, the load generator
// process's CPU time and allocations, and Redis's CPU time; see
// docs/BENCHMARKS.md.
package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// Flows.
const (
	FlowKit   = "kit"   // the real flow: web gateway kit → broker → web gateway kit
	FlowBare  = "bare"  // the bare NATS flow (ceiling)
	FlowSF    = "sf"    // store-and-forward through the broker (baseline)
	FlowRedis = "redis" // Redis round trips (reference line)
	FlowJS    = "js"    // JetStream inbox writes (reference line)
)

// Config configures a run.
type Config struct {
	// NATSURL and RedisURL name servers to use; empty: an embedded NATS
	// server as `uims run` starts it and a redis-server started here.
	NATSURL, RedisURL string
	// DataDir holds the JetStream store, the keys and Redis's folder;
	// empty: a temporary folder, removed at the end.
	DataDir string
	// NoAuth starts the embedded NATS server without authentication
	// (`uims run` requires it: every part connects as its party).
	NoAuth bool
	// Sync is the embedded JetStream's sync policy: "always" (as `uims run`)
	// or "default" (the nats-server default interval).
	Sync string
	// BrokerArgv, if set, runs the broker side as this command (the uims
	// binary with "bench child"), so that its CPU time is its own.
	BrokerArgv []string
	// Brokers are the numbers of broker processes the brokers flow is
	// measured with (brokers.go); default 1, 2 and 4. More than one needs
	// BrokerArgv.
	Brokers []int
	// Pin, if set, is the CPU list (taskset -c) of the broker processes;
	// the load generator's process (NATS server, gateways, senders) then
	// runs on PinRest (default: the other CPUs) and redis-server on
	// PinRedis (default: PinRest). See pin.go.
	Pin, PinRest, PinRedis string
	// NoTrace turns off the protocol-step trace events (on in `uims run`).
	NoTrace bool
	// NoAudit turns off the brokers' audit trail (on in `uims run`).
	NoAudit bool
	// ContentRef is the kit's threshold of content by reference (0: the
	// kit's default, as uims run's UIMS_CONTENT_REF).
	ContentRef int
	// Seal is the web gateway's seal mode in the kit flow (PROTOCOL.md
	// §14): auto (default, sealed: the gateway has an encryption key) or
	// off.
	Seal miap.SealMode
	// InboxShards is the web inbox's stream count; 0: the web default.
	InboxShards int
	// InboxEachWrite fsyncs each inbox write (web gateway and the
	// store-and-forward destination alike) instead of group commit.
	InboxEachWrite bool
	// Bare are the bare flow's control message sizes.
	Bare BareSizes

	Sizes   []int
	Senders []int
	Modes   []string // fast, strict
	Flows   []string // kit, bare, sf, js, redis, brokers
	// Warmup runs before each measurement; Duration is measured.
	Warmup, Duration time.Duration
	// Profile names the cells profiled with pprof, comma-separated
	// "flow/mode/size/senders" (e.g. "kit/fast/100B/64"); empty: none.
	Profile string
	// MinMsgs extends a cell's measurement beyond Duration, up to
	// MaxDuration, until that many messages completed (slow cells, such as
	// 1 MB with 256 senders, need longer than fast ones); the warm-up too
	// lasts until every sender completed a message, up to MaxDuration.
	MinMsgs     int
	MaxDuration time.Duration
	// PacedRate, if positive, adds rate-matched cells after the matrix:
	// the real flow (fast) and the store-and-forward and bare flows at every
	// size with PacedSenders senders offered PacedRate messages/s in total,
	// so that per-message costs compare at the same rate (a broker's cost
	// per message falls as its rate rises: more work per wake-up and per
	// system call).
	PacedRate    float64
	PacedSenders int
	// OutDir receives results.json, results.csv, results.md, the plots and
	// the profiles.
	OutDir   string
	LogLevel string
	// WaitIdle, if positive, is how long to wait before each cell for the
	// machine to be idle (other processes below IdleBelow cores).
	WaitIdle  time.Duration
	IdleBelow float64
	// Progress receives one line per cell; nil: none.
	Progress io.Writer
}

func (c *Config) setDefaults() {
	if len(c.Sizes) == 0 {
		c.Sizes = []int{100, 10 << 10, 100 << 10, 1 << 20}
	}
	if len(c.Senders) == 0 {
		c.Senders = []int{1, 16, 64, 256}
	}
	if len(c.Modes) == 0 {
		c.Modes = []string{"fast", "strict"}
	}
	if len(c.Flows) == 0 {
		c.Flows = []string{FlowKit, FlowBare, FlowSF, FlowJS, FlowRedis}
	}
	if c.Duration == 0 {
		c.Duration = 5 * time.Second
	}
	if c.Warmup == 0 {
		c.Warmup = time.Second
	}
	if len(c.Brokers) == 0 {
		c.Brokers = []int{1, 2, 4}
	}
	if c.Bare == (BareSizes{}) {
		c.Bare = DefaultBareSizes
	}
	if c.LogLevel == "" {
		c.LogLevel = "warn"
	}
	if c.PacedSenders == 0 {
		c.PacedSenders = 16
	}
	if c.MinMsgs == 0 {
		c.MinMsgs = 200
	}
	if c.MaxDuration == 0 {
		c.MaxDuration = 30 * time.Second
	}
	if c.IdleBelow == 0 {
		c.IdleBelow = 0.3
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
}

// check refuses what a run could only find out late: more than one broker
// process without broker processes.
func (c *Config) check() error {
	if !c.has(FlowBrokers) || len(c.BrokerArgv) > 0 {
		return nil
	}
	for _, n := range c.Brokers {
		if n != 1 {
			return fmt.Errorf("bench: %d brokers need broker processes (--broker proc)", n)
		}
	}
	return nil
}

func (c *Config) has(flow string) bool {
	for _, f := range c.Flows {
		if f == flow {
			return true
		}
	}
	return false
}

// Result is one measured cell.
type Result struct {
	Flow    string         `json:"flow"`
	Mode    string         `json:"mode,omitempty"`
	Size    int            `json:"size"`
	Senders int            `json:"senders"`
	Seconds float64        `json:"seconds"`
	Msgs    int            `json:"msgs"`
	Errors  map[string]int `json:"errors,omitempty"`
	// WarmupErrors are the errors of the warm-up (not measured but telling:
	// e.g. a connection dropped as a slow consumer).
	WarmupErrors map[string]int `json:"warmup_errors,omitempty"`
	Rate         float64        `json:"msgs_per_s"`
	P50          float64        `json:"p50_ms"`
	P90          float64        `json:"p90_ms"`
	P99          float64        `json:"p99_ms"`
	Max          float64        `json:"max_ms"`
	// Per message. Broker: the broker side's process (CPU, allocations;
	// -1 when it shares the load generator's process) and its NATS
	// connection (bytes in and out, headers included).
	BrokerCPU float64 `json:"broker_cpu_us"`
	// BrokerCPUNet is BrokerCPU less the broker's idle background CPU over
	// the cell (it weighs on slow cells, e.g. 1 MB); -1 unknown.
	BrokerCPUNet     float64 `json:"broker_cpu_net_us"`
	BrokerIn         float64 `json:"broker_in_bytes"`
	BrokerOut        float64 `json:"broker_out_bytes"`
	BrokerInMsgs     float64 `json:"broker_in_msgs"`
	BrokerOutMsgs    float64 `json:"broker_out_msgs"`
	BrokerAllocs     float64 `json:"broker_allocs"`
	BrokerAllocBytes float64 `json:"broker_alloc_bytes"`
	// Load generator process: senders, web gateway (kit, inbox), reference
	// flows' gateways and the embedded NATS server.
	GenCPU        float64 `json:"gen_cpu_us"`
	GenAllocs     float64 `json:"gen_allocs"`
	GenAllocBytes float64 `json:"gen_alloc_bytes"`
	// GenDisk is what the load generator process wrote to storage (the
	// embedded NATS server's JetStream files), bytes per message; -1 unknown.
	GenDisk float64 `json:"gen_disk_write_bytes"`
	// RedisCPU is redis-server's CPU time (-1: not ours to read).
	RedisCPU float64 `json:"redis_cpu_us"`
	// Paced is the total rate offered in a rate-matched cell (messages per
	// second); 0 for the senders-as-fast-as-they-can cells.
	Paced float64 `json:"paced_rate,omitempty"`
	// OtherLoad is the CPU other processes of the machine used during the
	// cell, in cores (the machine is shared); -1 when unknown.
	OtherLoad float64 `json:"other_load_cores"`
	// Load is the CPU the run's own processes used, in cores.
	Load float64 `json:"own_load_cores"`
	// Reconnects counts NATS reconnections of the run's connections during
	// the cell, warm-up included (a slow consumer is disconnected by the
	// server).
	Reconnects uint64 `json:"reconnects,omitempty"`
	// Brokers is the number of broker processes (or in-process brokers)
	// in the queue group during the cell.
	Brokers int `json:"brokers,omitempty"`
	// BrokerProcs are each broker process's figures, when they run as
	// processes.
	BrokerProcs []BrokerProc `json:"broker_procs,omitempty"`
	// BrokerCores, GenCores and RedisCores are the CPU the broker
	// processes, the load generator's process (NATS server, gateways,
	// senders) and redis-server used during the cell, in cores; -1 unknown.
	BrokerCores float64 `json:"broker_cores"`
	GenCores    float64 `json:"gen_cores"`
	RedisCores  float64 `json:"redis_cores"`
	// CPUBusy is how busy each CPU of the machine was during the cell,
	// every process counted (0 to 1): with --pin, which tier's CPUs were
	// full.
	CPUBusy []float64 `json:"cpu_busy,omitempty"`
}

// BrokerProc is one broker process's part of a cell.
type BrokerProc struct {
	Instance string `json:"instance"`
	// Cores is the CPU it used during the cell, in cores.
	Cores float64 `json:"cores"`
	// Requests are the IMI and acknowledgement requests it served during
	// the cell (its micro service stats); -1 unknown.
	Requests int64 `json:"requests"`
	// CPU is its CPU time per message it served (two requests a message),
	// µs; -1 unknown.
	CPU float64 `json:"cpu_us"`
}

// Key names the cell as Config.Profile does.
func (r *Result) Key() string {
	k := fmt.Sprintf("%s/%s/%s/%d", r.Flow, r.Mode, SizeName(r.Size), r.Senders)
	if r.Flow == FlowBrokers {
		k += fmt.Sprintf("x%d", r.Brokers)
	}
	if r.Paced > 0 {
		k += fmt.Sprintf("@%g", r.Paced)
	}
	return k
}

// matches reports whether spec ("flow/mode/size/senders", size as 100,
// 100B, 1MB...) names the cell.
func (r *Result) matches(spec string) bool {
	p := strings.Split(strings.TrimSpace(spec), "/")
	if len(p) != 4 || p[0] != r.Flow || p[1] != r.Mode || r.Paced > 0 {
		return false
	}
	size, err := ParseSize(p[2])
	return err == nil && size == r.Size && p[3] == fmt.Sprint(r.Senders)
}

// Report is the outcome of a run.
type Report struct {
	Machine Machine    `json:"machine"`
	Config  ReportConf `json:"config"`
	Started time.Time  `json:"started"`
	Results []*Result  `json:"results"`
	Targets []Target   `json:"targets"`
	// Targets19 are issue 19's targets.
	Targets19 []Target     `json:"targets_19,omitempty"`
	Profiles  []ProfileTop `json:"profiles,omitempty"`
	// BrokerIdle is the broker side's background cost with no traffic
	// (sweeper, heartbeats, keep-alives), measured before the cells.
	BrokerIdle *Idle `json:"broker_idle,omitempty"`
	// Accounting compares the real flow's delivered messages with the
	// accounting records the brokers published for them (accounting.go).
	Accounting *Accounting `json:"accounting,omitempty"`
}

// Idle is a background cost per second.
type Idle struct {
	Seconds     float64 `json:"seconds"`
	CPUmsPerSec float64 `json:"cpu_ms_per_s"`
	InBPerSec   float64 `json:"in_bytes_per_s"`
	OutBPerSec  float64 `json:"out_bytes_per_s"`
}

// ReportConf is the part of the configuration a reader needs.
type ReportConf struct {
	Args []string `json:"args"`
	// Seal and Audit: the kit flow's sealing (PROTOCOL.md §14) and the
	// brokers' audit trail (§15); empty in runs before them.
	Seal      string    `json:"seal,omitempty"`
	Audit     string    `json:"audit,omitempty"`
	NATS      string    `json:"nats"`
	Redis     string    `json:"redis"`
	Sync      string    `json:"jetstream_sync"`
	Broker    string    `json:"broker"`
	Trace     bool      `json:"trace"`
	Warmup    string    `json:"warmup"`
	Duration  string    `json:"duration"`
	Bare      BareSizes `json:"bare_sizes"`
	DataDir   string    `json:"data_dir"`
	GoMaxProc int       `json:"gomaxprocs"`
	// GCPercent is the garbage collector's target of the tool's processes
	// (GOGC; uims sets 400 unless GOGC is given).
	GCPercent int `json:"gc_percent"`
	// Build is the VCS revision the binary was built from ("+dirty" when
	// the working tree had changes).
	Build string `json:"build"`
	// Pin is where the processes ran (--pin); empty: anywhere.
	Pin string `json:"pin,omitempty"`
}

// Machine describes where the run happened.
type Machine struct {
	CPUs   int    `json:"cpus"`
	Model  string `json:"cpu_model"`
	Go     string `json:"go"`
	OS     string `json:"os"`
	Kernel string `json:"kernel"`
	Redis  string `json:"redis,omitempty"`
	Host   string `json:"host"`
}

// Run runs the matrix and writes the report files into cfg.OutDir.
func Run(ctx context.Context, cfg Config, args []string) (*Report, error) {
	cfg.setDefaults()
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if cfg.OutDir != "" {
		if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
			return nil, err
		}
	}
	f, err := startFabric(ctx, &cfg)
	if err != nil {
		return nil, err
	}
	defer f.close()
	natsConf := "embedded, JetStream sync " + orDefault(cfg.Sync, "always")
	if cfg.InboxEachWrite {
		natsConf += ", inboxes fsync each write"
	} else {
		natsConf += ", inboxes with group commit (internal/groupcommit)"
	}
	if f.credsDir != "" {
		natsConf += ", authentication on (every part connects as its party)"
	} else if cfg.NATSURL == "" {
		natsConf += ", no authentication"
	}
	rep := &Report{Machine: machine(), Started: time.Now().UTC(),
		Config: ReportConf{Args: args, NATS: natsConf, Redis: "redis-server started by the tool",
			Sync: orDefault(cfg.Sync, "always"), Broker: "in the load generator's process", Trace: !cfg.NoTrace,
			Warmup: cfg.Warmup.String(), Duration: cfg.Duration.String(), Bare: cfg.Bare, DataDir: f.dir, GoMaxProc: runtime.GOMAXPROCS(0), GCPercent: gcPercent()}}
	rep.Config.Build = buildRevision()
	rep.Config.Seal, rep.Config.Audit = string(orSeal(cfg.Seal)), map[bool]string{false: "on", true: "off"}[cfg.NoAudit]
	if cfg.NATSURL != "" {
		rep.Config.NATS = cfg.NATSURL
	}
	if cfg.RedisURL != "" {
		rep.Config.Redis = cfg.RedisURL
	}
	if f.side.Separate() {
		rep.Config.Broker = "separate process (uims bench child)"
	}
	rep.Config.Pin = f.pins.describe()
	if v, err := f.rdb.Info(ctx, "server").Result(); err == nil {
		for _, l := range strings.Split(v, "\n") {
			if strings.HasPrefix(l, "redis_version:") {
				rep.Machine.Redis = strings.TrimSpace(strings.TrimPrefix(l, "redis_version:"))
			}
		}
	}
	r := &runner{f: f, cfg: &cfg, rep: rep}
	acctBase, err := f.accounted(ctx)
	if err != nil {
		return rep, err
	}
	r.acctBase = acctBase
	if f.side.Separate() {
		r.idle(ctx, 3*time.Second)
	}
	fmt.Fprintf(cfg.Progress, "%s\n", headerLine())
	if cfg.has(FlowRedis) {
		for _, n := range cfg.Senders {
			if err := r.cell(ctx, FlowRedis, "", 0, n, &redisFlow{rdb: f.rdb}); err != nil {
				return rep, err
			}
		}
	}
	for _, size := range cfg.Sizes {
		content := Content(size)
		for i, mode := range cfg.Modes {
			if cfg.has(FlowKit) {
				if err := f.useWeb(ctx, mode == "strict"); err != nil {
					return rep, err
				}
			}
			for _, n := range cfg.Senders {
				if i == 0 && cfg.has(FlowBare) {
					if err := r.cell(ctx, FlowBare, "", size, n, newBareFlow(f.gw, cfg.Bare), content); err != nil {
						return rep, err
					}
				}
				if cfg.has(FlowKit) {
					if err := r.cell(ctx, FlowKit, mode, size, n, &kitFlow{k: f.web.Kit(), sent: &f.kitSent}, content); err != nil {
						return rep, err
					}
				}
				if i == 0 && cfg.has(FlowSF) {
					sf := &sfFlow{nc: f.gw, eng: mustEngine(f), instance: "web-bench-sf"}
					if err := r.cell(ctx, FlowSF, "", size, n, sf, content); err != nil {
						return rep, err
					}
				}
				if i == 0 && cfg.has(FlowJS) {
					if err := r.cell(ctx, FlowJS, "", size, n, &jsFlow{js: f.js}, content); err != nil {
						return rep, err
					}
				}
			}
		}
	}
	if cfg.PacedRate > 0 {
		r.paced = cfg.PacedRate
		fmt.Fprintf(cfg.Progress, "# rate-matched cells: %g msg/s offered by %d senders\n", cfg.PacedRate, cfg.PacedSenders)
		if cfg.has(FlowKit) {
			if err := f.useWeb(ctx, false); err != nil {
				return rep, err
			}
		}
		for _, size := range cfg.Sizes {
			content := Content(size)
			n := cfg.PacedSenders
			if cfg.has(FlowBare) {
				if err := r.cell(ctx, FlowBare, "", size, n, newBareFlow(f.gw, cfg.Bare), content); err != nil {
					return rep, err
				}
			}
			if cfg.has(FlowKit) {
				if err := r.cell(ctx, FlowKit, "fast", size, n, &kitFlow{k: f.web.Kit(), sent: &f.kitSent}, content); err != nil {
					return rep, err
				}
			}
			if cfg.has(FlowSF) {
				sf := &sfFlow{nc: f.gw, eng: mustEngine(f), instance: "web-bench-sf"}
				if err := r.cell(ctx, FlowSF, "", size, n, sf, content); err != nil {
					return rep, err
				}
			}
		}
		r.paced = 0
	}
	if cfg.has(FlowBrokers) {
		fmt.Fprintf(cfg.Progress, "# the broker tier alone (IMI + acknowledgement), %v broker processes\n", cfg.Brokers)
		if err := r.runBrokers(ctx); err != nil {
			return rep, err
		}
	}
	if cfg.has(FlowKit) || cfg.has(FlowBrokers) {
		if rep.Accounting, err = f.checkAccounting(ctx, acctBase, f.kitSent.Load(), 30*time.Second); err != nil {
			return rep, err
		}
		a := rep.Accounting
		fmt.Fprintf(cfg.Progress, "# accounting: %d messages delivered, %d records in %s (equal: %v, %.1f s after the last cell)\n",
			a.Sent, a.Records, schemas.AccountingStream, a.Equal, a.Waited)
	}
	rep.Targets, rep.Targets19 = Targets(rep.Results), Targets19(rep.Results)
	for _, p := range r.profiles {
		if top, err := TopOfProfile(p.path, p.label, 25); err == nil {
			rep.Profiles = append(rep.Profiles, *top)
		} else {
			fmt.Fprintf(cfg.Progress, "profile %s: %v\n", p.path, err)
		}
	}
	if cfg.OutDir != "" {
		if err := rep.WriteFiles(cfg.OutDir); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// buildRevision is the VCS revision the binary was built from ("+dirty"
// when the working tree had changes), else what git says of the working
// folder, else "".
func buildRevision() string {
	var rev, dirty string
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, st := range bi.Settings {
			switch st.Key {
			case "vcs.revision":
				rev = st.Value
			case "vcs.modified":
				if st.Value == "true" {
					dirty = "+dirty"
				}
			}
		}
	}
	if rev != "" {
		return rev + dirty
	}
	// Not stamped by the build (go run, go test): ask git in the working folder.
	out, err := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return ""
	}
	build := strings.TrimSpace(string(out))
	if exec.Command("git", "diff", "--quiet", "HEAD", "--", ".").Run() != nil {
		build += " (working tree with uncommitted changes)"
	}
	return build
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func mustEngine(f *fabric) *miap.Engine {
	kr, err := f.keys.For("web").Keyring()
	if err != nil {
		panic(err)
	}
	e, err := miap.New(miap.Config{Keys: kr})
	if err != nil {
		panic(err)
	}
	return e
}

// Content returns size bytes of printable ASCII text (the web gateway
// stores text/plain as a JSON string).
func Content(size int) []byte {
	const line = "The quick brown fox jumps over the lazy dog. 0123456789\n"
	b := make([]byte, size)
	for i := range b {
		b[i] = line[i%len(line)]
	}
	return b
}

type runner struct {
	f        *fabric
	cfg      *Config
	rep      *Report
	profiles []profileFile
	paced    float64 // offered rate of the cells being run; 0: as fast as they go
	// acctBase is the number of accounting records before the cells
	// (accounting.go).
	acctBase uint64
}

type profileFile struct{ path, label string }

// idle measures the broker side's background cost while nothing is sent.
func (r *runner) idle(ctx context.Context, d time.Duration) {
	r.waitIdle(ctx)
	b, err := r.f.side.Stats()
	t0 := time.Now()
	sleep(ctx, d)
	a, err2 := r.f.side.Stats()
	if err != nil || err2 != nil || b.CPU < 0 {
		return
	}
	sec := time.Since(t0).Seconds()
	var in, out uint64
	for role, c := range a.Conns {
		in += c.InBytes - b.Conns[role].InBytes
		out += c.OutBytes - b.Conns[role].OutBytes
	}
	r.rep.BrokerIdle = &Idle{Seconds: sec, CPUmsPerSec: float64(a.CPU-b.CPU) / 1e6 / sec,
		InBPerSec: float64(in) / sec, OutBPerSec: float64(out) / sec}
	fmt.Fprintf(r.cfg.Progress, "# broker side idle: %.2f ms CPU/s, %.0f B/s in, %.0f B/s out (subtracted in 'net' figures)\n",
		r.rep.BrokerIdle.CPUmsPerSec, r.rep.BrokerIdle.InBPerSec, r.rep.BrokerIdle.OutBPerSec)
}

type snapshot struct {
	side       SideStats
	sideErr    error
	cpu        time.Duration
	mallocs    uint64
	alloc      uint64
	redisCPU   time.Duration
	machine    time.Duration
	disk       int64
	at         time.Time
	reconnects uint64
	cpus       []time.Duration // per CPU of the machine (pin.go)
	// requests are the IMI and ack requests each broker instance served
	// (brokers.go); nil: not asked.
	requests map[string]int64
}

func (r *runner) snap() snapshot {
	var s snapshot
	s.side, s.sideErr = r.f.side.Stats()
	s.cpu = selfCPU()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s.mallocs, s.alloc = ms.Mallocs, ms.TotalAlloc
	s.machine, s.disk, s.at, s.cpus = machineBusy(), diskWrites(), time.Now(), cpuBusy()
	for _, c := range s.side.Conns {
		s.reconnects += c.Reconnects
	}
	s.reconnects += r.f.gw.Stats().Reconnects
	if r.f.webNC != nil {
		s.reconnects += r.f.webNC.Stats().Reconnects
	}
	if r.f.brokersNC != nil {
		s.reconnects += r.f.brokersNC.Stats().Reconnects
	}
	s.redisCPU = -1
	if r.f.redis != nil {
		s.redisCPU = procCPU(r.f.redis.PID())
	}
	return s
}

func (r *runner) cell(ctx context.Context, flowName, mode string, size, senders int, fl flow, content ...[]byte) error {
	var body []byte
	if len(content) > 0 {
		body = content[0]
	}
	res := &Result{Flow: flowName, Mode: mode, Size: size, Senders: senders, Errors: map[string]int{}, Paced: r.paced}
	runtime.GC()
	r.waitIdle(ctx)
	var stop, measuring atomic.Bool
	// Paced cells offer a fixed total rate: a sender takes a token before
	// each message.
	var tokens chan struct{}
	if r.paced > 0 {
		tokens = make(chan struct{}, senders)
		tick := time.NewTicker(time.Duration(float64(time.Second) / r.paced))
		defer tick.Stop()
		go func() {
			for !stop.Load() && ctx.Err() == nil {
				<-tick.C
				select {
				case tokens <- struct{}{}:
				default: // every sender is busy: the offered rate is not reached
				}
			}
		}()
	}
	var done, measured atomic.Int64
	lats := make([][]time.Duration, senders)
	errs := make([]map[string]int, senders)
	werrs := make([]map[string]int, senders)
	start := r.snap()
	var wg sync.WaitGroup
	for i := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 4096)
			e, we := map[string]int{}, map[string]int{}
			for !stop.Load() && ctx.Err() == nil {
				if tokens != nil {
					select {
					case <-tokens:
					case <-time.After(100 * time.Millisecond):
						continue
					}
				}
				t := time.Now()
				err := fl.send(ctx, body)
				d := time.Since(t)
				if err == nil {
					done.Add(1)
				}
				if measuring.Load() {
					if err == nil {
						local = append(local, d)
						measured.Add(1)
					} else {
						e[errName(err)]++
					}
				} else if err != nil && !stop.Load() {
					we[errName(err)]++
				}
				if err != nil {
					time.Sleep(10 * time.Millisecond) // a client backs off before it retries
				}
			}
			lats[i], errs[i], werrs[i] = local, e, we
		}()
	}
	sleep(ctx, r.cfg.Warmup)
	for w0 := time.Now(); done.Load() < int64(senders) && time.Since(w0) < r.cfg.MaxDuration && ctx.Err() == nil; {
		sleep(ctx, 20*time.Millisecond)
	}
	profiling := false
	for _, spec := range strings.Split(r.cfg.Profile, ",") {
		profiling = profiling || (res.matches(spec) && r.cfg.OutDir != "")
	}
	var prof *os.File
	if profiling {
		base := strings.ReplaceAll(res.Key(), "/", "-")
		genPath := filepath.Join(r.cfg.OutDir, "cpu-gen-"+base+".pprof")
		if pf, err := os.Create(genPath); err == nil {
			if err := pprof.StartCPUProfile(pf); err == nil {
				prof = pf
				r.profiles = append(r.profiles, profileFile{genPath, "load generator process (web gateway, NATS server, senders)"})
			} else {
				pf.Close()
			}
		}
		if r.f.side.Separate() {
			brkPath, _ := filepath.Abs(filepath.Join(r.cfg.OutDir, "cpu-broker-"+base+".pprof"))
			if err := r.f.side.StartProfile(brkPath); err == nil {
				defer func() {
					r.profiles = append(r.profiles, profileFile{brkPath, "broker process"})
				}()
			}
		}
	}
	before := r.snap()
	before.requests = r.requests(flowName)
	measuring.Store(true)
	t0 := time.Now()
	if profiling {
		// Where the goroutines wait, half way through.
		sleep(ctx, r.cfg.Duration/2)
		base := strings.ReplaceAll(res.Key(), "/", "-")
		if gf, err := os.Create(filepath.Join(r.cfg.OutDir, "goroutines-gen-"+base+".txt")); err == nil {
			pprof.Lookup("goroutine").WriteTo(gf, 1)
			gf.Close()
		}
		if r.f.side.Separate() {
			p, _ := filepath.Abs(filepath.Join(r.cfg.OutDir, "goroutines-broker-"+base+".txt"))
			r.f.side.Goroutines(p)
		}
		sleep(ctx, r.cfg.Duration-time.Since(t0))
	} else {
		sleep(ctx, r.cfg.Duration)
	}
	for measured.Load() < int64(r.cfg.MinMsgs) && time.Since(t0) < r.cfg.MaxDuration && ctx.Err() == nil {
		sleep(ctx, 20*time.Millisecond)
	}
	measuring.Store(false)
	el := time.Since(t0)
	after := r.snap()
	after.requests = r.requests(flowName)
	if profiling {
		if prof != nil {
			pprof.StopCPUProfile()
			prof.Close()
		}
		if r.f.side.Separate() {
			r.f.side.StopProfile()
		}
	}
	stop.Store(true)
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}

	var all []time.Duration
	for i := range lats {
		all = append(all, lats[i]...)
		for k, v := range errs[i] {
			res.Errors[k] += v
		}
		for k, v := range werrs[i] {
			if res.WarmupErrors == nil {
				res.WarmupErrors = map[string]int{}
			}
			res.WarmupErrors[k] += v
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	res.Seconds, res.Msgs = el.Seconds(), len(all)
	res.Rate = float64(len(all)) / el.Seconds()
	pct := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		return float64(all[int(p*float64(len(all)-1))]) / 1e6
	}
	res.P50, res.P90, res.P99, res.Max = pct(0.50), pct(0.90), pct(0.99), pct(1)
	n := float64(max(len(all), 1))
	res.BrokerCPU, res.BrokerAllocs, res.BrokerAllocBytes, res.RedisCPU, res.BrokerCPUNet = -1, -1, -1, -1, -1
	res.BrokerIn, res.BrokerOut = -1, -1
	role := map[string]string{FlowKit: RoleBroker, FlowBare: RoleBare, FlowSF: RoleSF, FlowBrokers: RoleBroker}[flowName]
	if before.sideErr == nil && after.sideErr == nil && role != "" {
		b, a := before.side.Conns[role], after.side.Conns[role]
		res.BrokerIn = float64(a.InBytes-b.InBytes) / n
		res.BrokerOut = float64(a.OutBytes-b.OutBytes) / n
		res.BrokerInMsgs = float64(a.InMsgs-b.InMsgs) / n
		res.BrokerOutMsgs = float64(a.OutMsgs-b.OutMsgs) / n
		res.BrokerCPUNet = -1
		if r.f.side.Separate() {
			res.BrokerCPU = float64(after.side.CPU-before.side.CPU) / 1e3 / n
			if idle := r.rep.BrokerIdle; idle != nil {
				wall := after.at.Sub(before.at).Seconds()
				procs := float64(r.f.side.Count()) // the idle background is per process
				res.BrokerCPUNet = max(0, (float64(after.side.CPU-before.side.CPU)/1e3-procs*idle.CPUmsPerSec*1e3*wall)/n)
			}
			res.BrokerAllocs = float64(after.side.Mallocs-before.side.Mallocs) / n
			res.BrokerAllocBytes = float64(after.side.AllocBytes-before.side.AllocBytes) / n
		}
	}
	res.GenCPU = float64(after.cpu-before.cpu) / 1e3 / n
	res.GenAllocs = float64(after.mallocs-before.mallocs) / n
	res.GenAllocBytes = float64(after.alloc-before.alloc) / n
	res.GenDisk = -1
	if before.disk >= 0 && after.disk >= 0 {
		res.GenDisk = float64(after.disk-before.disk) / n
	}
	if before.redisCPU >= 0 && after.redisCPU >= 0 {
		res.RedisCPU = float64(after.redisCPU-before.redisCPU) / 1e3 / n
	}
	own := float64(after.cpu - before.cpu)
	if before.side.CPU >= 0 && after.side.CPU >= 0 && r.f.side.Separate() {
		own += float64(after.side.CPU - before.side.CPU)
	}
	if before.redisCPU >= 0 && after.redisCPU >= 0 {
		own += float64(after.redisCPU - before.redisCPU)
	}
	res.Reconnects = after.reconnects - start.reconnects
	wall := float64(after.at.Sub(before.at))
	res.Load, res.OtherLoad = own/wall, -1
	if before.machine >= 0 && after.machine >= 0 {
		res.OtherLoad = max(0, (float64(after.machine-before.machine)-own)/wall)
	}
	r.tiers(res, &before, &after)
	if len(res.Errors) == 0 {
		res.Errors = nil
	}
	r.rep.Results = append(r.rep.Results, res)
	fmt.Fprintln(r.cfg.Progress, res.Line())

	if flowName == FlowKit {
		r.f.settle(ctx)
	}
	if flowName == FlowKit || flowName == FlowSF || flowName == FlowJS {
		r.f.purge(ctx)
	}
	sleep(ctx, 100*time.Millisecond)
	return nil
}

// requests returns the IMI and acknowledgement requests each broker
// instance served so far, for the flows through the real broker; nil for
// the others or when the brokers do not answer.
func (r *runner) requests(flowName string) map[string]int64 {
	if flowName != FlowKit && flowName != FlowBrokers {
		return nil
	}
	m, err := brokerRequests(r.f.gw, r.f.side.Count())
	if err != nil {
		fmt.Fprintf(r.cfg.Progress, "# %v\n", err)
		return nil
	}
	return m
}

// tiers fills in where the CPU went during the measurement: the broker
// processes (each, and all), the load generator's process, redis-server,
// and each CPU of the machine.
func (r *runner) tiers(res *Result, before, after *snapshot) {
	wall := float64(after.at.Sub(before.at))
	res.Brokers = r.f.side.Count()
	res.GenCores, res.BrokerCores, res.RedisCores = float64(after.cpu-before.cpu)/wall, -1, -1
	if before.redisCPU >= 0 && after.redisCPU >= 0 {
		res.RedisCores = float64(after.redisCPU-before.redisCPU) / wall
	}
	if len(before.cpus) == len(after.cpus) {
		for i := range after.cpus {
			res.CPUBusy = append(res.CPUBusy, float64(after.cpus[i]-before.cpus[i])/wall)
		}
	}
	if !r.f.side.Separate() || before.sideErr != nil || after.sideErr != nil {
		return
	}
	res.BrokerCores = float64(after.side.CPU-before.side.CPU) / wall
	if len(before.side.Procs) != len(after.side.Procs) {
		return
	}
	for i, a := range after.side.Procs {
		b := before.side.Procs[i]
		p := BrokerProc{Instance: a.Instance, Cores: float64(a.CPU-b.CPU) / wall, Requests: -1, CPU: -1}
		if rb, ok := before.requests[a.Instance]; ok {
			if ra, ok := after.requests[a.Instance]; ok {
				p.Requests = ra - rb
				if p.Requests > 0 {
					p.CPU = float64(a.CPU-b.CPU) / 1e3 / (float64(p.Requests) / 2)
				}
			}
		}
		res.BrokerProcs = append(res.BrokerProcs, p)
	}
}

// waitIdle waits, up to Config.WaitIdle, until the other processes of the
// machine use less than Config.IdleBelow cores (the fabric is idle between
// cells, so what remains is theirs).
func (r *runner) waitIdle(ctx context.Context) {
	if r.cfg.WaitIdle <= 0 {
		return
	}
	deadline := time.Now().Add(r.cfg.WaitIdle)
	for {
		b0, t0 := machineBusy(), time.Now()
		sleep(ctx, 300*time.Millisecond)
		b1 := machineBusy()
		if b0 < 0 || b1 < 0 || ctx.Err() != nil {
			return
		}
		load := float64(b1-b0) / float64(time.Since(t0))
		if load < r.cfg.IdleBelow {
			return
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(r.cfg.Progress, "# machine still busy (%.2f cores used by others) after waiting %v; measuring anyway\n", load, r.cfg.WaitIdle)
			return
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// errName is the error's MIAP code, or a short description.
func errName(err error) string {
	if c := miap.CodeOf(err); c != schemas.CodeInternal {
		return c.String()
	}
	s := err.Error()
	if len(s) > 40 {
		s = s[:40]
	}
	return s
}

// gcPercent returns the current GOGC setting.
func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

// orSeal is the seal mode a kit takes for m ("" is auto).
func orSeal(m miap.SealMode) miap.SealMode {
	if m == "" {
		return miap.SealAuto
	}
	return m
}
