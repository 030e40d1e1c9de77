package bench

import (
	"errors"
	"fmt"
	"sync"
)

// brokerProcs is the broker side as child processes (uims bench child):
// the first runs the whole side (the real broker and the reference flows'
// responders), each further one a real broker alone in the same queue
// group, so that the broker tier's capacity can be measured with 1, 2, 4...
// broker processes (the brokers flow, brokers.go). Each process reports its
// own CPU time; Stats sums them and lists them in SideStats.Procs.
type brokerProcs struct {
	argv     []string // the command of a child, e.g. [taskset -c 1 uims bench child]
	cfg      SideConfig
	keysPath string
	logLevel string
	procs    []*childSide
}

func startBrokerProcs(argv []string, cfg SideConfig, keysPath, logLevel string) (*brokerProcs, error) {
	g := &brokerProcs{argv: argv, cfg: cfg, keysPath: keysPath, logLevel: logLevel}
	if err := g.Scale(1); err != nil {
		return nil, err
	}
	return g, nil
}

// Scale starts or stops broker-only processes until n processes run; the
// first process (with the reference flows) always runs.
func (g *brokerProcs) Scale(n int) error {
	if n < 1 {
		return fmt.Errorf("bench: %d broker processes", n)
	}
	for len(g.procs) > n {
		last := g.procs[len(g.procs)-1]
		g.procs = g.procs[:len(g.procs)-1]
		last.Close()
	}
	for len(g.procs) < n {
		cfg := g.cfg
		cfg.BrokerOnly = len(g.procs) > 0
		c, err := startChildSide(g.argv, cfg, g.keysPath, g.logLevel)
		if err != nil {
			return fmt.Errorf("bench: broker process %d: %w", len(g.procs)+1, err)
		}
		g.procs = append(g.procs, c)
	}
	return nil
}

func (g *brokerProcs) Count() int     { return len(g.procs) }
func (g *brokerProcs) Separate() bool { return true }

// Stats asks every process at once (so that the snapshots are taken at
// nearly the same moment) and sums them.
func (g *brokerProcs) Stats() (SideStats, error) {
	all := make([]SideStats, len(g.procs))
	errs := make([]error, len(g.procs))
	var wg sync.WaitGroup
	for i, c := range g.procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			all[i], errs[i] = c.Stats()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return SideStats{}, err
	}
	return sumStats(all), nil
}

// sumStats adds up the processes' stats, connection by role, and keeps
// each process's in Procs.
func sumStats(all []SideStats) SideStats {
	sum := SideStats{Conns: map[string]ConnStats{}, Procs: all}
	for _, st := range all {
		sum.CPU += st.CPU
		sum.Mallocs += st.Mallocs
		sum.AllocBytes += st.AllocBytes
		sum.NumGC += st.NumGC
		for role, c := range st.Conns {
			t := sum.Conns[role]
			t.InMsgs += c.InMsgs
			t.OutMsgs += c.OutMsgs
			t.InBytes += c.InBytes
			t.OutBytes += c.OutBytes
			t.Reconnects += c.Reconnects
			sum.Conns[role] = t
		}
	}
	if len(all) > 0 {
		sum.Instance = all[0].Instance
	}
	return sum
}

// The profile and the goroutine dump are the first process's.
func (g *brokerProcs) StartProfile(path string) error { return g.procs[0].StartProfile(path) }
func (g *brokerProcs) StopProfile() error             { return g.procs[0].StopProfile() }
func (g *brokerProcs) Goroutines(path string) error   { return g.procs[0].Goroutines(path) }

// Close stops the processes, all at once.
func (g *brokerProcs) Close() {
	var wg sync.WaitGroup
	for _, c := range g.procs {
		wg.Add(1)
		go func() { defer wg.Done(); c.Close() }()
	}
	wg.Wait()
	g.procs = nil
}
