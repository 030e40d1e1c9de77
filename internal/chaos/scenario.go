package chaos

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Scenario is one fault, named after the reliability brief's R-list.
type Scenario struct {
	Name string
	What string // one line: what the fault does
	// Sentinel: the scenario needs the topology with Redis Sentinel.
	Sentinel bool
	// Fault injects the fault, keeps it for d, and repairs it (restart,
	// resume); nil for the baseline. It returns how long the fault lasted.
	Fault func(ctx context.Context, t *Topology, d time.Duration) (time.Duration, error)
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// kill kills the components together and restarts them after d.
func kill(names ...string) func(context.Context, *Topology, time.Duration) (time.Duration, error) {
	return func(ctx context.Context, t *Topology, d time.Duration) (time.Duration, error) {
		for _, n := range names {
			if err := t.Kill(n); err != nil {
				return 0, err
			}
		}
		if err := sleep(ctx, d); err != nil {
			return d, err
		}
		for _, n := range names {
			if err := t.Restart(ctx, n); err != nil {
				return d, err
			}
		}
		return d, nil
	}
}

// pause stops the components with SIGSTOP and continues them after d.
func pause(names ...string) func(context.Context, *Topology, time.Duration) (time.Duration, error) {
	return func(ctx context.Context, t *Topology, d time.Duration) (time.Duration, error) {
		for _, n := range names {
			if err := t.Pause(n); err != nil {
				return 0, err
			}
		}
		err := sleep(ctx, d)
		for _, n := range names {
			err = errors.Join(err, t.Resume(n))
		}
		return d, err
	}
}

// Scenarios are the suite's scenarios, in the order they run; those with
// Sentinel run on a second topology.
var Scenarios = []Scenario{
	{Name: "R1 baseline", What: "no fault"},
	{Name: "R2 broker kill -9", What: "SIGKILL broker1, restart it after D", Fault: kill("broker1")},
	{Name: "R2 broker SIGSTOP", What: "SIGSTOP broker1 for D, then SIGCONT", Fault: pause("broker1")},
	{Name: "R4 NATS member kill -9", What: "SIGKILL nats1 (the member that provisioned the fabric), restart it after D", Fault: kill("nats1")},
	{Name: "R4 NATS member SIGSTOP", What: "SIGSTOP nats2 for D", Fault: pause("nats2")},
	{Name: "R2+R4 NATS member + broker kill -9", What: "SIGKILL nats3 and broker2 together, restart both after D", Fault: kill("nats3", "broker2")},
	{Name: "R8 Redis SIGSTOP", What: "SIGSTOP redis-server for D", Fault: pause("redis")},
	{Name: "R8 Redis kill -9 (AOF)", What: "SIGKILL redis-server (appendfsync always), restart it after D", Fault: kill("redis")},
	{Name: "R15 web gateway kill -9", What: "SIGKILL the web gateway (originator and destination), restart it after D", Fault: kill("web")},
	{Name: "R15 web gateway SIGSTOP", What: "SIGSTOP the web gateway for D", Fault: pause("web")},
	{Name: "R8 Sentinel failover", What: "SENTINEL FAILOVER mymaster: the replica becomes the master", Sentinel: true, Fault: sentinelFailover},
	{Name: "R8 Sentinel master kill -9", What: "SIGKILL the Redis master; the sentinels promote the replica (down after 2 s); the old master restarts after D as a replica",
		Sentinel: true, Fault: sentinelKill},
}

// master asks sentinel1 for the current master's address.
func (t *Topology) master(ctx context.Context) (string, error) {
	s := redis.NewSentinelClient(&redis.Options{Addr: t.Redis["sentinel1"]})
	defer s.Close()
	a, err := s.GetMasterAddrByName(ctx, "mymaster").Result()
	if err != nil {
		return "", err
	}
	return a[0] + ":" + a[1], nil
}

// masterName is the component that is the master now.
func (t *Topology) masterName(ctx context.Context) (string, string, error) {
	addr, err := t.master(ctx)
	if err != nil {
		return "", "", err
	}
	for _, n := range []string{"redis", "redis2"} {
		if t.Redis[n] == addr {
			return n, addr, nil
		}
	}
	return "", addr, fmt.Errorf("chaos: sentinel names an unknown master %s", addr)
}

// waitMaster waits until the sentinels name a master other than old.
func (t *Topology) waitMaster(ctx context.Context, old string) (string, error) {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if addr, err := t.master(ctx); err == nil && addr != old {
			return addr, nil
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return "", err
		}
	}
	return "", fmt.Errorf("chaos: no failover from %s after 60s", old)
}

// waitReplicated waits until the master the sentinels name has its replica
// online and holding every write made so far (WAIT 1: the brokers write all
// the time, so the offsets are never equal at one instant), so that a
// scenario starts from a replicated store and not from the previous one's
// resync.
func (t *Topology) waitReplicated(ctx context.Context) error {
	deadline := time.Now().Add(60 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		if addr, err := t.master(ctx); err == nil {
			c := redis.NewClient(&redis.Options{Addr: addr})
			info, err := c.Info(ctx, "replication").Result()
			var acked int64
			if err == nil && strings.Contains(info, "state=online") {
				acked, err = c.Do(ctx, "WAIT", 1, 1000).Int64()
			}
			c.Close()
			if err == nil {
				last = info
				if acked >= 1 {
					return nil
				}
			}
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("chaos: the Redis replica is not in sync after 60s: %s", last)
}

func sentinelFailover(ctx context.Context, t *Topology, d time.Duration) (time.Duration, error) {
	if err := t.waitReplicated(ctx); err != nil {
		return 0, err
	}
	_, old, err := t.masterName(ctx)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	s := redis.NewSentinelClient(&redis.Options{Addr: t.Redis["sentinel1"]})
	defer s.Close()
	if err := s.Failover(ctx, "mymaster").Err(); err != nil {
		return 0, fmt.Errorf("chaos: SENTINEL FAILOVER: %w", err)
	}
	addr, err := t.waitMaster(ctx, old)
	lasted := time.Since(start)
	t.Logf("chaos: master %s → %s", old, addr)
	if err != nil {
		return lasted, err
	}
	return lasted, t.waitReplicated(ctx)
}

func sentinelKill(ctx context.Context, t *Topology, d time.Duration) (time.Duration, error) {
	if err := t.waitReplicated(ctx); err != nil {
		return 0, err
	}
	name, old, err := t.masterName(ctx)
	if err != nil {
		return 0, err
	}
	if err := t.Kill(name); err != nil {
		return 0, err
	}
	addr, err := t.waitMaster(ctx, old)
	if err != nil {
		return 0, err
	}
	t.Logf("chaos: master %s (killed) → %s", old, addr)
	if err := sleep(ctx, d); err != nil {
		return d, err
	}
	// The old master comes back with its old arguments; the sentinels
	// reconfigure it as a replica of the new one.
	if err := t.Restart(ctx, name); err != nil {
		return d, err
	}
	return d, t.waitReplicated(ctx)
}

// Config is one scenario run's load and check settings.
type Config struct {
	Fault       time.Duration // D
	Messages    int
	Concurrency int
	Lead        time.Duration // load before the fault
	Settle      time.Duration // the checker's wait for terminal statuses
	Prefix      string        // unique per test run
}

// Run runs the scenario on the topology: the load starts, the fault comes
// after Lead, and the figures are checked once the load ended and every
// accepted message settled (or Settle passed). It returns with the
// topology healthy again, or an error.
func Run(ctx context.Context, t *Topology, sc Scenario, cfg Config) (*Figures, error) {
	start := time.Now()
	d := cfg.Fault
	if sc.Fault == nil {
		d = 0
	}
	// The load spans the fault: its messages start over Lead + D + Lead.
	span := 2*cfg.Lead + d
	l := &Load{BaseURL: t.HTTP, Token: "alice-token", Sender: "alice", To: "bob", Prefix: cfg.Prefix,
		N: cfg.Messages, Concurrency: cfg.Concurrency, Rate: float64(cfg.Messages) / span.Seconds(),
		Bound: span + d + 90*time.Second, ScheduleEvery: 10, Delay: cfg.Lead + d}
	done := make(chan []Outcome, 1)
	go func() { done <- l.Run(ctx) }()
	var faultErr error
	var lasted time.Duration
	if sc.Fault != nil {
		if err := sleep(ctx, cfg.Lead); err != nil {
			return nil, err
		}
		lasted, faultErr = sc.Fault(ctx, t, d)
	}
	out := <-done
	t.Logf("chaos: %s: load ended after %v", sc.Name, time.Since(start).Round(time.Millisecond))
	if faultErr != nil {
		return nil, fmt.Errorf("chaos: %s: fault: %w", sc.Name, faultErr)
	}
	c := &Checker{Topology: t, Token: "alice-token", To: "bob", Settle: cfg.Settle}
	f, err := c.Check(ctx, sc.Name, lasted, out)
	if err != nil {
		return nil, err
	}
	f.Took = time.Since(start)
	t.Logf("chaos: %s: checked after %v", sc.Name, f.Took.Round(time.Millisecond))
	if err := t.Healthy(ctx, 120*time.Second); err != nil {
		return f, fmt.Errorf("chaos: after %s: %w", sc.Name, err)
	}
	return f, nil
}
