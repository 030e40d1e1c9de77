package bench

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Pinning (--pin): the broker processes run on some CPUs, the load
// generator's process (the embedded NATS server, the gateways, the senders)
// and Redis on the others, placed with taskset(1) from util-linux. Each
// tier then has CPUs of its own, and a cell's per-CPU busy figures
// (Result.CPUBusy) show which tier limits: the one whose CPUs are full.

// pinPlan is where the processes of a run go; the zero value: anywhere.
type pinPlan struct {
	taskset string // path of taskset
	brokers string // CPU list of the broker processes
	rest    string // CPU list of the load generator's process
	redis   string // CPU list of redis-server
}

func (p *pinPlan) on() bool { return p != nil && p.brokers != "" }

// describe is the placement as the report prints it.
func (p *pinPlan) describe() string {
	if !p.on() {
		return ""
	}
	return fmt.Sprintf("broker processes on CPU %s; load generator (NATS server, gateways, senders) on CPU %s; redis-server on CPU %s (taskset)",
		p.brokers, p.rest, p.redis)
}

// planPins checks the configuration's CPU lists and finds taskset. The
// load generator's CPUs default to those the brokers do not have, Redis's
// to the load generator's.
func planPins(cfg *Config) (*pinPlan, error) {
	if cfg.Pin == "" {
		if cfg.PinRest != "" || cfg.PinRedis != "" {
			return nil, fmt.Errorf("bench: --pin-rest and --pin-redis need --pin")
		}
		return &pinPlan{}, nil
	}
	if len(cfg.BrokerArgv) == 0 {
		return nil, fmt.Errorf("bench: --pin needs the broker side in processes of its own (--broker proc)")
	}
	ts, err := exec.LookPath("taskset")
	if err != nil {
		return nil, fmt.Errorf("bench: --pin needs taskset (util-linux): %w", err)
	}
	n := runtime.NumCPU()
	brokers, err := parseCPUList(cfg.Pin, n)
	if err != nil {
		return nil, err
	}
	rest := complement(brokers, n)
	if cfg.PinRest != "" {
		if rest, err = parseCPUList(cfg.PinRest, n); err != nil {
			return nil, err
		}
	}
	if len(rest) == 0 {
		return nil, fmt.Errorf("bench: --pin %s leaves no CPU for the load generator (of %d); give --pin-rest", cfg.Pin, n)
	}
	p := &pinPlan{taskset: ts, brokers: formatCPUList(brokers), rest: formatCPUList(rest)}
	p.redis = p.rest
	if cfg.PinRedis != "" {
		r, err := parseCPUList(cfg.PinRedis, n)
		if err != nil {
			return nil, err
		}
		p.redis = formatCPUList(r)
	}
	return p, nil
}

// brokerArgv is the command of a broker process: under taskset when pinned.
func (p *pinPlan) brokerArgv(argv []string) []string {
	if !p.on() || len(argv) == 0 {
		return argv
	}
	return append([]string{p.taskset, "-c", p.brokers}, argv...)
}

// pinSelf moves every thread of this process to the load generator's CPUs
// (threads started later inherit it, and so do child processes such as
// redis-server) and returns what puts the former placement back.
func (p *pinPlan) pinSelf() (restore func(), err error) {
	if !p.on() {
		return func() {}, nil
	}
	pid := os.Getpid()
	out, err := exec.Command(p.taskset, "-c", "-p", strconv.Itoa(pid)).Output()
	if err != nil {
		return nil, fmt.Errorf("bench: taskset -p %d: %w", pid, err)
	}
	// "pid 123's current affinity list: 0,1"
	_, saved, ok := strings.Cut(strings.TrimSpace(string(out)), ": ")
	if !ok {
		return nil, fmt.Errorf("bench: taskset -p %d: unexpected output %q", pid, out)
	}
	if err := p.pin(pid, p.rest); err != nil {
		return nil, err
	}
	return func() { p.pin(pid, saved) }, nil
}

// pin sets the CPUs of every thread of process pid.
func (p *pinPlan) pin(pid int, cpus string) error {
	if out, err := exec.Command(p.taskset, "-a", "-c", "-p", cpus, strconv.Itoa(pid)).CombinedOutput(); err != nil {
		return fmt.Errorf("bench: taskset -a -c -p %s %d: %w: %s", cpus, pid, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// parseCPUList reads a CPU list as taskset -c takes it ("1", "0-1",
// "0,2-3") for a machine of n CPUs.
func parseCPUList(s string, n int) ([]int, error) {
	set := map[int]bool{}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		b := a
		if err == nil && isRange {
			b, err = strconv.Atoi(hi)
		}
		if err != nil || a < 0 || b < a || b >= n {
			return nil, fmt.Errorf("bench: CPU list %q (CPUs 0 to %d)", s, n-1)
		}
		for c := a; c <= b; c++ {
			set[c] = true
		}
	}
	var out []int
	for c := range set {
		out = append(out, c)
	}
	sort.Ints(out)
	return out, nil
}

func formatCPUList(cpus []int) string {
	s := make([]string, len(cpus))
	for i, c := range cpus {
		s[i] = strconv.Itoa(c)
	}
	return strings.Join(s, ",")
}

// complement returns the CPUs of 0..n-1 not in cpus.
func complement(cpus []int, n int) []int {
	in := map[int]bool{}
	for _, c := range cpus {
		in[c] = true
	}
	var out []int
	for c := range n {
		if !in[c] {
			out = append(out, c)
		}
	}
	return out
}

// cpuBusy returns the time each CPU of the machine was busy (user, nice,
// system, irq, softirq, steal) from the cpuN lines of /proc/stat, or nil.
func cpuBusy() []time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return nil
	}
	var out []time.Duration
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 9 || !strings.HasPrefix(f[0], "cpu") || f[0] == "cpu" {
			continue
		}
		i, err := strconv.Atoi(f[0][3:])
		if err != nil || i != len(out) {
			return nil
		}
		var busy int64
		for _, k := range []int{1, 2, 3, 6, 7, 8} {
			v, err := strconv.ParseInt(f[k], 10, 64)
			if err != nil {
				return nil
			}
			busy += v
		}
		const clkTck = 100
		out = append(out, time.Duration(busy)*time.Second/clkTck)
	}
	return out
}
