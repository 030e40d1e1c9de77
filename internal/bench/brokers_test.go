package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/uims/uims/internal/redistest"
)

// childEnv makes the test binary a broker process (uims bench child), so
// that a test can run the broker side in processes of its own.
const childEnv = "UIMS_BENCH_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		if err := RunChild(context.Background(), os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// The brokers flow with two broker processes in the queue group, for a
// fraction of a second: messages complete without errors, both processes
// served some (their micro service stats and their CPU time say so), and
// the row names the process count. Where taskset is, the broker processes
// run pinned to the last CPU, as --pin does.
func TestBrokersFlowTwoProcesses(t *testing.T) {
	redistest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(childEnv, "1") // for the broker processes this test starts
	out := t.TempDir()
	cfg := Config{DataDir: t.TempDir(), Flows: []string{FlowBrokers}, Brokers: []int{2}, Senders: []int{16},
		Duration: 400 * time.Millisecond, Warmup: 100 * time.Millisecond, MinMsgs: 50, MaxDuration: 5 * time.Second,
		BrokerArgv: []string{exe}, OutDir: out, Progress: testWriter{t}}
	_, err = exec.LookPath("taskset")
	if pinned := err == nil && runtime.NumCPU() > 1; pinned {
		cfg.Pin = strconv.Itoa(runtime.NumCPU() - 1)
	}
	cpus := allowedCPUs(t)
	rep, err := Run(ctx, cfg, []string{"test"})
	if err != nil {
		t.Fatal(err)
	}
	if now := allowedCPUs(t); now != cpus {
		t.Errorf("this process runs on CPUs %s after the run, %s before", now, cpus)
	}
	if len(rep.Results) != 1 {
		t.Fatalf("%d results, want 1", len(rep.Results))
	}
	r := rep.Results[0]
	if r.Flow != FlowBrokers || r.Brokers != 2 || r.Msgs < 50 || errCount(r) > 0 || len(r.WarmupErrors) > 0 {
		t.Fatalf("result %s: %d messages, errors %v, warm-up errors %v", r.Key(), r.Msgs, r.Errors, r.WarmupErrors)
	}
	if len(r.BrokerProcs) != 2 || r.BrokerProcs[0].Instance == r.BrokerProcs[1].Instance {
		t.Fatalf("broker processes %+v", r.BrokerProcs)
	}
	var served int64
	for _, p := range r.BrokerProcs {
		if p.Cores <= 0 || p.Requests <= 0 || p.CPU <= 0 {
			t.Errorf("broker process %s served nothing: %+v", p.Instance, p)
		}
		served += p.Requests
	}
	// Two requests a message. The stats are read just outside the
	// measured span: messages in flight at its start were partly served
	// before it, and senders go on while the stats are read at its end.
	if lo, hi := 2*(r.Msgs-r.Senders), 2*r.Msgs*6/5+4*r.Senders; served < int64(lo) || served > int64(hi) {
		t.Errorf("the brokers served %d requests for %d messages", served, r.Msgs)
	}
	if len(r.CPUBusy) != runtime.NumCPU() {
		t.Errorf("busy per CPU %v", r.CPUBusy)
	}
	if cfg.Pin != "" && !strings.Contains(rep.Config.Pin, "broker processes on CPU "+cfg.Pin) {
		t.Errorf("placement %q", rep.Config.Pin)
	}
	if a := rep.Accounting; a == nil || !a.Equal {
		t.Errorf("accounting %+v", a)
	}
	md, err := os.ReadFile(filepath.Join(out, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(md), "### The broker tier alone") || !strings.Contains(string(md), "| 2 | 16 |") {
		t.Errorf("results.md:\n%s", md)
	}
}

func TestCPUList(t *testing.T) {
	for in, want := range map[string]string{"1": "1", "0-1": "0,1", "3,0-1": "0,1,3", " 2 ": "2"} {
		got, err := parseCPUList(in, 4)
		if err != nil || formatCPUList(got) != want {
			t.Errorf("parseCPUList(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"", "4", "1-0", "a", "-1"} {
		if _, err := parseCPUList(in, 4); err == nil {
			t.Errorf("parseCPUList(%q): no error", in)
		}
	}
	if got := formatCPUList(complement([]int{1}, 2)); got != "0" {
		t.Errorf("complement = %s", got)
	}
}

// allowedCPUs is this process's CPU list (/proc/self/status).
func allowedCPUs(t *testing.T) string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Cpus_allowed_list:"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatal("no Cpus_allowed_list in /proc/self/status")
	return ""
}

// testWriter sends a run's progress lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
