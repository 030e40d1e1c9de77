package bench

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
)

// SizeName prints a content size as 100B, 10KB, 100KB, 1MB.
func SizeName(n int) string {
	switch {
	case n == 0:
		return "-"
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.Itoa(n>>20) + "MB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.Itoa(n>>10) + "KB"
	}
	return strconv.Itoa(n) + "B"
}

// ParseSize reads 100, 100b, 10k, 10kb, 1m, 1mb.
func ParseSize(s string) (int, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	s = strings.TrimSuffix(s, "b")
	mul := 1
	switch {
	case strings.HasSuffix(s, "k"):
		mul, s = 1<<10, strings.TrimSuffix(s, "k")
	case strings.HasSuffix(s, "m"):
		mul, s = 1<<20, strings.TrimSuffix(s, "m")
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bench: size %q", s)
	}
	return n * mul, nil
}

func flowName(r *Result) string {
	if r.Flow == FlowBrokers {
		return fmt.Sprintf("brokers×%d", r.Brokers)
	}
	if r.Mode != "" {
		return r.Flow + "-" + r.Mode
	}
	return r.Flow
}

func headerLine() string {
	return fmt.Sprintf("%-11s %6s %4s %9s %8s %8s %8s %8s %6s | %8s %7s %7s %7s | %8s %7s | %7s | %5s %5s",
		"flow", "size", "snd", "msg/s", "p50ms", "p90ms", "p99ms", "maxms", "errs",
		"brkCPUµs", "brkInB", "brkOutB", "brkAllc", "genCPUµs", "genAllc", "rdsCPUµs", "own", "other")
}

func num(v float64, prec int) string {
	if v < 0 {
		return "-"
	}
	return strconv.FormatFloat(v, 'f', prec, 64)
}

func errCount(r *Result) int {
	n := 0
	for _, v := range r.Errors {
		n += v
	}
	return n
}

// Line is the result as one table line.
func (r *Result) Line() string {
	in, out := num(r.BrokerIn, 0), num(r.BrokerOut, 0)
	if r.Flow == FlowRedis || r.Flow == FlowJS {
		in, out = "-", "-"
	}
	name := flowName(r)
	if r.Paced > 0 {
		name += "@"
	}
	errs := strconv.Itoa(errCount(r))
	if w := errCount(&Result{Errors: r.WarmupErrors}); w > 0 || r.Reconnects > 0 {
		errs += fmt.Sprintf("+%dw", w)
		if r.Reconnects > 0 {
			errs += fmt.Sprintf("r%d", r.Reconnects)
		}
	}
	return fmt.Sprintf("%-11s %6s %4d %9.0f %8.2f %8.2f %8.2f %8.1f %6s | %8s %7s %7s %7s | %8s %7s | %7s | %5.2f %5s",
		name, SizeName(r.Size), r.Senders, r.Rate, r.P50, r.P90, r.P99, r.Max, errs,
		num(r.BrokerCPU, 1), in, out, num(r.BrokerAllocs, 0), num(r.GenCPU, 1), num(r.GenAllocs, 0), num(r.RedisCPU, 1),
		r.Load, num(r.OtherLoad, 2))
}

// TotalCPU is the CPU time per message of all the run's processes
// (broker side, load generator with NATS, Redis); -1 when a part is unknown.
func (r *Result) TotalCPU() float64 {
	if r.GenCPU < 0 || r.RedisCPU < 0 {
		return -1
	}
	t := r.GenCPU + r.RedisCPU
	if r.BrokerCPU >= 0 {
		t += r.BrokerCPU
	} else if r.Flow == FlowKit || r.Flow == FlowBare || r.Flow == FlowSF {
		return -1
	}
	return t
}

// brokerCPU is the net broker CPU when known, else the raw one.
func (r *Result) brokerCPU() float64 {
	if r.BrokerCPUNet >= 0 {
		return r.BrokerCPUNet
	}
	return r.BrokerCPU
}

// find returns the result of a cell, or nil.
func find(rs []*Result, flow, mode string, size, senders int) *Result {
	return findPaced(rs, flow, mode, size, senders, 0)
}

func findPaced(rs []*Result, flow, mode string, size, senders int, paced float64) *Result {
	for _, r := range rs {
		if r.Flow == flow && r.Mode == mode && r.Size == size && r.Senders == senders && r.Paced == paced {
			return r
		}
	}
	return nil
}

// Target is one of issue 7's targets, evaluated on a run.
type Target struct {
	Name     string `json:"name"`
	Want     string `json:"want"`
	Measured string `json:"measured"`
	Met      *bool  `json:"met"` // nil: not measured in this run
}

func tgt(name, want string) Target { return Target{Name: name, Want: want, Measured: "not measured"} }

func (t *Target) set(met bool, format string, a ...any) {
	t.Met = &met
	t.Measured = fmt.Sprintf(format, a...)
}

// Targets evaluates issue 7 §3 on the fast mode (the default MIAP mode).
func Targets(rs []*Result) []Target {
	const small, sf = 100, 100 << 10
	var out []Target
	kit64 := find(rs, FlowKit, "fast", small, 64)
	bare64 := find(rs, FlowBare, "", small, 64)

	t := tgt("throughput", "64 senders, 100 B, web to web, MIAP fast, real Redis: ≥ 8,000 msg/s")
	if kit64 != nil {
		t.set(kit64.Rate >= 8000, "%.0f msg/s (%.2f × target)", kit64.Rate, kit64.Rate/8000)
	}
	out = append(out, t)

	t = tgt("vs ceiling", "same cell ≥ 0.6 × the bare NATS flow beside it")
	if kit64 != nil && bare64 != nil && bare64.Rate > 0 {
		x := kit64.Rate / bare64.Rate
		t.set(x >= 0.6, "%.2f × (%.0f / %.0f msg/s)", x, kit64.Rate, bare64.Rate)
	}
	out = append(out, t)

	t = tgt("lone message", "1 sender, 100 B: p50 ≤ 1 ms")
	if r := find(rs, FlowKit, "fast", small, 1); r != nil {
		t.set(r.P50 <= 1, "p50 %.2f ms", r.P50)
	}
	out = append(out, t)

	t = tgt("tail latency", "64 senders, 100 B: p99 ≤ 15 ms")
	if kit64 != nil {
		t.set(kit64.P99 <= 15, "p99 %.2f ms", kit64.P99)
	}
	out = append(out, t)

	// Flatness at 64 senders (or the largest count measured at both sizes).
	lo, hi := flatPair(rs)
	t = tgt("broker bytes flat", "broker bytes/msg at 1 MB within ±10 % of 100 B")
	if lo != nil && hi != nil {
		a, b := lo.BrokerIn+lo.BrokerOut, hi.BrokerIn+hi.BrokerOut
		x := b / a
		t.set(x >= 0.9 && x <= 1.1, "%.0f B → %.0f B (× %.3f) %s", a, b, x, pairName(lo))
	}
	out = append(out, t)

	t = tgt("broker CPU flat", "broker CPU/msg (net of its idle background) at 1 MB within ±25 % of 100 B")
	if lo != nil && hi != nil && lo.brokerCPU() > 0 && hi.brokerCPU() > 0 {
		x := hi.brokerCPU() / lo.brokerCPU()
		t.set(x >= 0.75 && x <= 1.25, "%.1f µs → %.1f µs (× %.2f) %s; raw %.1f → %.1f µs", lo.brokerCPU(), hi.brokerCPU(), x, pairName(lo),
			lo.BrokerCPU, hi.BrokerCPU)
	}
	out = append(out, t)

	t = tgt("vs store-and-forward", "64 senders, 100 KB: ≥ 2 × the store-and-forward variant")
	if k, s := find(rs, FlowKit, "fast", sf, 64), find(rs, FlowSF, "", sf, 64); k != nil && s != nil && s.Rate > 0 {
		x := k.Rate / s.Rate
		t.set(x >= 2, "%.2f × (%.0f / %.0f msg/s)", x, k.Rate, s.Rate)
	}
	out = append(out, t)
	return out
}

// Targets19 evaluates issue 19's targets (performance: beat
// store-and-forward at every size, then close in on the bare flow) on the
// fast mode.
func Targets19(rs []*Result) []Target {
	const small = 100
	var out []Target
	kit64, sf64 := find(rs, FlowKit, "fast", small, 64), find(rs, FlowSF, "", small, 64)

	t := tgt("throughput", "64 senders, 100 B: ≥ 6,000 msg/s")
	if kit64 != nil {
		t.set(kit64.Rate >= 6000, "%.0f msg/s (%.2f × target)", kit64.Rate, kit64.Rate/6000)
	}
	out = append(out, t)

	t = tgt("vs store-and-forward, 100 B", "64 senders: ≥ 1.3 × store-and-forward")
	if kit64 != nil && sf64 != nil && sf64.Rate > 0 {
		x := kit64.Rate / sf64.Rate
		t.set(x >= 1.3, "%.2f × (%.0f / %.0f msg/s)", x, kit64.Rate, sf64.Rate)
	}
	out = append(out, t)

	for _, size := range []int{100 << 10, 1 << 20} {
		t = tgt("vs store-and-forward, "+SizeName(size), "64 senders: ≥ 2 × store-and-forward")
		if k, s := find(rs, FlowKit, "fast", size, 64), find(rs, FlowSF, "", size, 64); k != nil && s != nil && s.Rate > 0 {
			x := k.Rate / s.Rate
			t.set(x >= 2, "%.2f × (%.0f / %.0f msg/s)", x, k.Rate, s.Rate)
		}
		out = append(out, t)
	}

	t = tgt("broker CPU", "64 senders, 100 B: ≤ 40 µs per message (net of its idle background)")
	if kit64 != nil {
		t.set(kit64.brokerCPU() <= 40, "%.0f µs (bare responders beside it: %s)", kit64.brokerCPU(), bareBroker(rs))
	}
	out = append(out, t)

	t = tgt("lone message", "1 sender, 100 B: p50 ≤ 1.0 ms")
	if r := find(rs, FlowKit, "fast", small, 1); r != nil {
		t.set(r.P50 <= 1, "p50 %.2f ms", r.P50)
	}
	out = append(out, t)

	t = tgt("tail", "64 senders, 100 B: p99 ≤ 4 × p50")
	if kit64 != nil && kit64.P50 > 0 {
		x := kit64.P99 / kit64.P50
		t.set(x <= 4, "%.1f × (p50 %.2f ms, p99 %.2f ms)", x, kit64.P50, kit64.P99)
	}
	out = append(out, t)

	t = tgt("strict mode", "64 senders, 100 B: ≥ 0.6 × fast mode")
	if s := find(rs, FlowKit, "strict", small, 64); s != nil && kit64 != nil && kit64.Rate > 0 {
		x := s.Rate / kit64.Rate
		t.set(x >= 0.6, "%.2f × (%.0f / %.0f msg/s)", x, s.Rate, kit64.Rate)
	}
	out = append(out, t)

	t = tgt("allocations", "reported per message per process, 64 senders, 100 B")
	if kit64 != nil {
		t.Measured = fmt.Sprintf("broker %.0f (%.1f KB); load generator with NATS server and web gateway %.0f (%.1f KB)",
			kit64.BrokerAllocs, kit64.BrokerAllocBytes/1024, kit64.GenAllocs, kit64.GenAllocBytes/1024)
	}
	out = append(out, t)
	return out
}

// bareBroker is the bare flow's broker-side CPU per message at 64 senders.
func bareBroker(rs []*Result) string {
	if r := find(rs, FlowBare, "", 100, 64); r != nil {
		return fmt.Sprintf("%.0f µs", r.brokerCPU())
	}
	return "not measured"
}

// flatPair returns the real flow's cells at 100 B and 1 MB to compare:
// the rate-matched ones when the run has them, else the same senders.
func flatPair(rs []*Result) (*Result, *Result) {
	for _, r := range rs {
		if r.Paced > 0 && r.Flow == FlowKit && r.Size == 100 {
			if hi := findPaced(rs, FlowKit, r.Mode, 1<<20, r.Senders, r.Paced); hi != nil {
				return r, hi
			}
		}
	}
	for _, n := range []int{64, 16, 256, 1} {
		lo, hi := find(rs, FlowKit, "fast", 100, n), find(rs, FlowKit, "fast", 1<<20, n)
		if lo != nil && hi != nil {
			return lo, hi
		}
	}
	return nil, nil
}

// ReadReport reads a results.json written by WriteFiles.
func ReadReport(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, fmt.Errorf("bench: %s: %w", path, err)
	}
	rep.Targets, rep.Targets19 = Targets(rep.Results), Targets19(rep.Results)
	// Summaries of the profiles again, when the files are at hand.
	for i, p := range rep.Profiles {
		for _, f := range []string{p.File, filepath.Join(filepath.Dir(path), filepath.Base(p.File))} {
			if top, err := TopOfProfile(f, p.Label, len(p.Top)); err == nil {
				top.File = p.File
				rep.Profiles[i] = *top
				break
			}
		}
	}
	return &rep, nil
}

func pairName(r *Result) string {
	if r.Paced > 0 {
		return fmt.Sprintf("at %g msg/s offered, %d senders", r.Paced, r.Senders)
	}
	return fmt.Sprintf("at %d senders", r.Senders)
}

// WriteFiles writes results.json, results.csv, results.md and the plots.
func (rep *Report) WriteFiles(dir string) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.csv"), rep.CSV(), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(rep.Markdown()), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "plot.svg"), rep.SVG(), 0o644)
}

// CSV is one line per cell.
func (rep *Report) CSV() []byte {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	w.Write([]string{"flow", "mode", "size", "senders", "paced_rate", "seconds", "msgs", "errors", "msgs_per_s", "p50_ms", "p90_ms", "p99_ms", "max_ms",
		"broker_cpu_us", "broker_cpu_net_us", "broker_in_bytes", "broker_out_bytes", "broker_allocs", "broker_alloc_bytes",
		"gen_cpu_us", "gen_allocs", "gen_alloc_bytes", "gen_disk_write_bytes", "redis_cpu_us", "total_cpu_us", "own_load_cores", "other_load_cores", "x_bare", "x_sf",
		"brokers", "broker_cores", "gen_cores", "redis_cores", "cpu_busy", "broker_procs"})
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) }
	for _, r := range rep.Results {
		var errs []string
		for k, v := range r.Errors {
			errs = append(errs, k+"="+strconv.Itoa(v))
		}
		sort.Strings(errs)
		xb, xs := ratios(rep.Results, r)
		w.Write([]string{r.Flow, r.Mode, strconv.Itoa(r.Size), strconv.Itoa(r.Senders), f(r.Paced), f(r.Seconds), strconv.Itoa(r.Msgs),
			strings.Join(errs, ";"), f(r.Rate), f(r.P50), f(r.P90), f(r.P99), f(r.Max),
			f(r.BrokerCPU), f(r.BrokerCPUNet), f(r.BrokerIn), f(r.BrokerOut), f(r.BrokerAllocs), f(r.BrokerAllocBytes),
			f(r.GenCPU), f(r.GenAllocs), f(r.GenAllocBytes), f(r.GenDisk), f(r.RedisCPU), f(r.TotalCPU()), f(r.Load), f(r.OtherLoad), f(xb), f(xs),
			strconv.Itoa(r.Brokers), f(r.BrokerCores), f(r.GenCores), f(r.RedisCores), joinF(r.CPUBusy, 3), procsCSV(r.BrokerProcs)})
	}
	w.Flush()
	return buf.Bytes()
}

func joinF(v []float64, prec int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.FormatFloat(x, 'f', prec, 64)
	}
	return strings.Join(s, ";")
}

// procsCSV lists the broker processes as instance:cores:requests:cpu_us.
func procsCSV(ps []BrokerProc) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = fmt.Sprintf("%s:%.3f:%d:%.1f", p.Instance, p.Cores, p.Requests, p.CPU)
	}
	return strings.Join(s, ";")
}

// errText is the cell's errors for a table: a count, or each kind with
// the warm-up's and the reconnections.
func errText(r *Result) string {
	if len(r.Errors) == 0 && r.Reconnects == 0 && len(r.WarmupErrors) == 0 {
		return "0"
	}
	var parts []string
	for k, v := range r.Errors {
		parts = append(parts, fmt.Sprintf("%s %d", k, v))
	}
	for k, v := range r.WarmupErrors {
		parts = append(parts, fmt.Sprintf("%s %d in warm-up", k, v))
	}
	sort.Strings(parts)
	if r.Reconnects > 0 {
		parts = append(parts, fmt.Sprintf("NATS reconnects %d", r.Reconnects))
	}
	return strings.Join(parts, ", ")
}

// ratios returns the cell's throughput over the bare flow's and over the
// store-and-forward variant's at the same size and senders (0: none).
func ratios(rs []*Result, r *Result) (xBare, xSF float64) {
	if r.Flow == FlowRedis {
		return 0, 0
	}
	if b := findPaced(rs, FlowBare, "", r.Size, r.Senders, r.Paced); b != nil && b.Rate > 0 {
		xBare = r.Rate / b.Rate
	}
	if s := findPaced(rs, FlowSF, "", r.Size, r.Senders, r.Paced); s != nil && s.Rate > 0 {
		xSF = r.Rate / s.Rate
	}
	return
}

// Markdown renders the report as tables for docs/BENCHMARKS.md.
func (rep *Report) Markdown() string {
	var b strings.Builder
	m := rep.Machine
	fmt.Fprintf(&b, "Run of %s on %d × %s, %s, %s, Redis %s, build %s. Command: `%s`. Broker: %s. NATS: %s. Trace events: %v. GOGC: %d. Each cell: %s warm-up, %s measured (longer until 200 messages, at most 30 s).\n\n",
		rep.Started.Format("2006-01-02 15:04 UTC"), m.CPUs, m.Model, m.Go, m.Kernel, m.Redis, rep.Config.Build, strings.Join(rep.Config.Args, " "),
		rep.Config.Broker, rep.Config.NATS, rep.Config.Trace, rep.Config.GCPercent, rep.Config.Warmup, rep.Config.Duration)
	if rep.Config.Seal != "" {
		fmt.Fprintf(&b, "Kit flow: content sealing %s (PROTOCOL.md §14); brokers' audit trail %s (§15); store-and-forward and bare flows: neither.\n\n", rep.Config.Seal, rep.Config.Audit)
	}
	if rep.Config.Pin != "" {
		fmt.Fprintf(&b, "Pinned: %s.\n\n", rep.Config.Pin)
	}
	if i := rep.BrokerIdle; i != nil {
		fmt.Fprintf(&b, "Broker side idle (measured %.0f s before the cells, no traffic): %.2f ms CPU per second, %.0f B/s in, %.0f B/s out; the net broker CPU subtracts it.\n\n",
			i.Seconds, i.CPUmsPerSec, i.InBPerSec, i.OutBPerSec)
	}
	if a := rep.Accounting; a != nil {
		fmt.Fprintf(&b, "Accounting (docs/ACCOUNTING.md): the %d messages the real flow and the brokers flow saw delivered, %d records in UIMS_ACCOUNTING (%s).\n\n",
			a.Sent, a.Records, map[bool]string{true: "equal", false: "**not equal**"}[a.Equal])
	}
	for _, set := range []struct {
		title string
		ts    []Target
	}{{"Targets (issue 19, fast MIAP mode)", rep.Targets19}, {"Targets (issue 7 §3, fast MIAP mode)", rep.Targets}} {
		fmt.Fprintf(&b, "### %s\n\n| target | wanted | measured | met |\n|---|---|---|---|\n", set.title)
		for _, t := range set.ts {
			met := "—"
			if t.Met != nil {
				met = map[bool]string{true: "**yes**", false: "**no**"}[*t.Met]
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", t.Name, t.Want, t.Measured, met)
		}
		b.WriteString("\n")
	}
	sizes := map[int]bool{}
	var order []int
	for _, r := range rep.Results {
		if r.Paced > 0 || r.Flow == FlowBrokers {
			continue
		}
		if !sizes[r.Size] {
			sizes[r.Size] = true
			order = append(order, r.Size)
		}
	}
	for _, size := range order {
		if size == 0 {
			b.WriteString("\n### Redis reference line (one round trip: SET NX + a Lua call, pipelined)\n\n")
			b.WriteString("| senders | ops/s | p50 ms | p90 ms | p99 ms | max ms | errors | Redis CPU µs/op | client CPU µs/op | cores: own / others |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
			for _, r := range rep.Results {
				if r.Flow == FlowRedis {
					fmt.Fprintf(&b, "| %d | %.0f | %.2f | %.2f | %.2f | %.1f | %d | %s | %s | %.2f / %s |\n", r.Senders, r.Rate, r.P50, r.P90, r.P99, r.Max, errCount(r),
						num(r.RedisCPU, 1), num(r.GenCPU, 1), r.Load, num(r.OtherLoad, 2))
				}
			}
			continue
		}
		fmt.Fprintf(&b, "\n### Content %s\n\n", SizeName(size))
		b.WriteString("| flow | senders | msg/s | × bare | × s&f | p50 ms | p90 ms | p99 ms | max ms | errors | all processes CPU µs/msg | broker CPU µs/msg (net) | broker B in / out per msg | broker allocs (KB) /msg | generator CPU µs/msg | generator allocs (KB) /msg | disk KB/msg | Redis CPU µs/msg | cores: own / others |\n")
		b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, r := range rep.Results {
			if r.Size != size || r.Paced > 0 || r.Flow == FlowBrokers {
				continue
			}
			xb, xs := ratios(rep.Results, r)
			x := func(v float64) string {
				if v == 0 {
					return ""
				}
				return fmt.Sprintf("%.2f", v)
			}
			errs := errText(r)
			allocs := func(n, b float64) string {
				if n < 0 {
					return "-"
				}
				return fmt.Sprintf("%.0f (%.1f)", n, b/1024)
			}
			disk := "-"
			if r.GenDisk >= 0 {
				disk = fmt.Sprintf("%.1f", r.GenDisk/1024)
			}
			bcpu := num(r.BrokerCPU, 0)
			if r.BrokerCPUNet >= 0 {
				bcpu += " (" + num(r.BrokerCPUNet, 0) + ")"
			}
			fmt.Fprintf(&b, "| %s | %d | %.0f | %s | %s | %.2f | %.2f | %.2f | %.1f | %s | %s | %s | %s / %s | %s | %s | %s | %s | %s | %.2f / %s |\n",
				flowName(r), r.Senders, r.Rate, x(xb), x(xs), r.P50, r.P90, r.P99, r.Max, errs,
				num(r.TotalCPU(), 0), bcpu, num(r.BrokerIn, 0), num(r.BrokerOut, 0), allocs(r.BrokerAllocs, r.BrokerAllocBytes),
				num(r.GenCPU, 1), allocs(r.GenAllocs, r.GenAllocBytes), disk, num(r.RedisCPU, 1), r.Load, num(r.OtherLoad, 2))
		}
	}
	var paced []*Result
	for _, r := range rep.Results {
		if r.Paced > 0 {
			paced = append(paced, r)
		}
	}
	if len(paced) > 0 {
		fmt.Fprintf(&b, "\n### Rate-matched: %g msg/s offered by %d senders, every size\n\n", paced[0].Paced, paced[0].Senders)
		b.WriteString("Per-message costs compared at the same message rate (a process's cost per message falls as its rate rises).\n\n")
		b.WriteString("| flow | size | msg/s | p50 ms | p99 ms | errors | all processes CPU µs/msg | broker CPU µs/msg (net) | broker B in / out per msg | broker allocs (KB) /msg | generator CPU µs/msg | disk KB/msg |\n")
		b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, r := range paced {
			bcpu := num(r.BrokerCPU, 0)
			if r.BrokerCPUNet >= 0 {
				bcpu += " (" + num(r.BrokerCPUNet, 0) + ")"
			}
			allocs := "-"
			if r.BrokerAllocs >= 0 {
				allocs = fmt.Sprintf("%.0f (%.1f)", r.BrokerAllocs, r.BrokerAllocBytes/1024)
			}
			disk := "-"
			if r.GenDisk >= 0 {
				disk = fmt.Sprintf("%.1f", r.GenDisk/1024)
			}
			fmt.Fprintf(&b, "| %s | %s | %.0f | %.2f | %.2f | %d | %s | %s | %s / %s | %s | %s | %s |\n", flowName(r), SizeName(r.Size), r.Rate, r.P50, r.P99,
				errCount(r), num(r.TotalCPU(), 0), bcpu, num(r.BrokerIn, 0), num(r.BrokerOut, 0), allocs, num(r.GenCPU, 0), disk)
		}
	}
	rep.brokersMarkdown(&b)
	rep.tiersMarkdown(&b)
	for _, p := range rep.Profiles {
		fmt.Fprintf(&b, "\n### CPU profile: %s (`%s`, %.1f s of samples)\n\n", p.Label, filepath.Base(p.File), p.TotalSeconds)
		b.WriteString("By component (the first frame from the leaf that belongs to a known component):\n\n| component | share |\n|---|---:|\n")
		for _, c := range p.Components {
			fmt.Fprintf(&b, "| %s | %.1f %% |\n", c.Name, c.Share*100)
		}
		b.WriteString("\nBy activity (the first rule that matches the stack):\n\n| activity | share |\n|---|---:|\n")
		for _, c := range p.Activities {
			fmt.Fprintf(&b, "| %s | %.1f %% |\n", c.Name, c.Share*100)
		}
		b.WriteString("\nTop functions (flat):\n\n| function | flat | cum |\n|---|---:|---:|\n")
		for _, fn := range p.Top {
			fmt.Fprintf(&b, "| `%s` | %.1f %% | %.1f %% |\n", fn.Name, fn.Flat*100, fn.Cum*100)
		}
	}
	return b.String()
}

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				if i := strings.IndexByte(l, ':'); i >= 0 {
					m.Model = strings.TrimSpace(l[i+1:])
				}
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = "Linux " + strings.TrimSpace(string(b))
	}
	m.Host, _ = os.Hostname()
	return m
}
