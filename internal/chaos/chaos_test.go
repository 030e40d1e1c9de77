package chaos

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/uims/uims/internal/peertest"
)

func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return d
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return n
}

// TestChaos runs every scenario (CHAOS_DURATION, default 3s; CHAOS_MESSAGES,
// default 200 per scenario; CHAOS_RUN, a substring of the scenarios to run)
// and fails on any lost, duplicated, conflicting or unsettled message.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos suite: a topology of processes (make chaos for the full version)")
	}
	peertest.Require(t, "redis-server", "apt-get install redis-server")
	d := envDuration(t, "CHAOS_DURATION", 3*time.Second)
	cfg := Config{Fault: d, Messages: envInt(t, "CHAOS_MESSAGES", 200), Concurrency: envInt(t, "CHAOS_CONCURRENCY", 8),
		Lead: 2 * time.Second, Settle: envDuration(t, "CHAOS_SETTLE", 90*time.Second)}
	only := os.Getenv("CHAOS_RUN")
	ctx := context.Background()
	base := t.TempDir()
	if dir := os.Getenv("CHAOS_DIR"); dir != "" { // keep the logs
		base = dir
	}
	started := time.Now()
	bin, err := Build(base)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built %s in %v", bin, time.Since(started).Round(time.Second))
	var figures []*Figures
	defer func() {
		if len(figures) > 0 {
			table := Table(figures)
			t.Logf("chaos suite, fault D=%v, %d messages per scenario, %v in all:\n%s", d, cfg.Messages, time.Since(started).Round(time.Second), table)
			fmt.Printf("\nCHAOS TABLE (D=%v, %d messages per scenario)\n%s\n", d, cfg.Messages, table)
		}
	}()
	for _, sentinel := range []bool{false, true} {
		var run []Scenario
		for _, sc := range Scenarios {
			if sc.Sentinel == sentinel && (only == "" || strings.Contains(sc.Name, only)) {
				run = append(run, sc)
			}
		}
		if len(run) == 0 {
			continue
		}
		dir := base + "/plain"
		if sentinel {
			dir = base + "/sentinel"
		}
		os.RemoveAll(dir) // a CHAOS_DIR of an earlier run
		os.MkdirAll(dir, 0o700)
		topo, err := Start(ctx, Options{Bin: bin, Dir: dir, Sentinel: sentinel, Logf: t.Logf})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("topology up (sentinel %v) after %v", sentinel, time.Since(started).Round(time.Second))
		for i, sc := range run {
			ok := t.Run(sc.Name, func(t *testing.T) {
				c := cfg
				c.Prefix = fmt.Sprintf("chaos-%d-%v-%d", started.UnixNano(), sentinel, i)
				f, err := Run(ctx, topo, sc, c)
				if f != nil {
					figures = append(figures, f)
					t.Logf("%s", Table([]*Figures{f}))
					for _, p := range f.Problems {
						t.Log(p)
					}
				}
				if err != nil {
					for _, n := range topo.Names() {
						t.Logf("%s log:\n%s", n, topo.LogTail(n, 5))
					}
					t.Fatal(err)
				}
				if f.Bad() {
					t.Errorf("%s: %d lost, %d duplicated, %d conflicting, %d open (of %d accepted)", sc.Name, f.Lost, f.Duplicated, f.Conflicting, f.Open, f.Accepted)
				}
			})
			if !ok && topo.Healthy(ctx, 5*time.Second) != nil {
				t.Logf("the topology is not healthy after %s: the rest of its scenarios are skipped", sc.Name)
				break
			}
		}
		topo.Close()
	}
}
