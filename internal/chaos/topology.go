package chaos

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// Build compiles the uims command of the module that holds this package
// into dir and returns the binary's path.
func Build(dir string) (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("chaos: go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	bin := filepath.Join(dir, "uims")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("chaos: go build: %w\n%s", err, b)
	}
	return bin, nil
}

// Options shape a topology.
type Options struct {
	Bin string // the uims binary (Build)
	Dir string // data folder: the fabric's trust material, JetStream, Redis, logs
	// Sentinel: Redis is a master, a replica and three sentinels (started
	// as redis-server --sentinel), and the brokers reach it through
	// redis-sentinel://…/mymaster.
	Sentinel bool
	Logf     func(format string, args ...any)
}

// Topology is scripts/topology.sh's topology as child processes: nats1,
// nats2, nats3, redis (and with Sentinel redis2, sentinel1…3), broker1,
// broker2, processor, web. Every component is a process group of its own;
// Close kills them all.
type Topology struct {
	Options
	NATSURLs []string // the client URLs of the cluster's members
	RedisURL string   // as the brokers get it
	HTTP     string   // the web gateway's base URL
	Redis    map[string]string

	mu    sync.Mutex
	procs map[string]*Proc
	order []string
}

// Proc is one component: how it is started and its current process.
type Proc struct {
	Name  string
	Args  []string
	Env   []string
	Ready string // the log line that says it serves ("" : none)
	Log   string

	cmd  *exec.Cmd
	done chan struct{}
	from int64 // log size when the current process started
}

// Running reports whether the current process has not exited.
func (p *Proc) Running() bool {
	if p.done == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func freePorts(n int) ([]int, error) {
	// All listeners open at once, so the ports differ.
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Start starts the topology in the order of scripts/topology.sh and returns
// once a probe message alice → bob was accepted.
func Start(ctx context.Context, o Options) (*Topology, error) {
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	t := &Topology{Options: o, procs: map[string]*Proc{}, Redis: map[string]string{}}
	if err := t.start(ctx); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

func (t *Topology) start(ctx context.Context) error {
	ports, err := freePorts(12)
	if err != nil {
		return err
	}
	natsPort := func(i int) int { return ports[i-1] }
	routePort := func(i int) int { return ports[2+i] }
	redisPort, webPort := ports[6], ports[7]
	for i := 1; i <= 3; i++ {
		t.NATSURLs = append(t.NATSURLs, fmt.Sprintf("nats://127.0.0.1:%d", natsPort(i)))
	}
	t.Redis["redis"] = fmt.Sprintf("127.0.0.1:%d", redisPort)
	t.RedisURL = "redis://" + t.Redis["redis"] + "/0"
	if t.Sentinel {
		t.Redis["redis2"] = fmt.Sprintf("127.0.0.1:%d", ports[8])
		var s []string
		for i := 1; i <= 3; i++ {
			addr := fmt.Sprintf("127.0.0.1:%d", ports[8+i])
			t.Redis["sentinel"+strconv.Itoa(i)] = addr
			s = append(s, addr)
		}
		t.RedisURL = "redis-sentinel://" + strings.Join(s, ",") + "/mymaster"
	}
	t.HTTP = fmt.Sprintf("http://127.0.0.1:%d", webPort)

	env := []string{"UIMS_DATA_DIR=" + t.Dir, "UIMS_NATS_URL=" + strings.Join(t.NATSURLs, ","), "UIMS_REDIS_URL=" + t.RedisURL,
		"UIMS_LOG_FORMAT=json"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "UIMS_") {
			env = append(env, kv)
		}
	}
	nats := func(i int) *Proc {
		var routes []string
		for j := 1; j <= 3; j++ {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", routePort(j)))
			}
		}
		name := "nats" + strconv.Itoa(i)
		return &Proc{Name: name, Env: env, Ready: "embedded NATS with JetStream started",
			Args: []string{t.Bin, "nats", "--addr", fmt.Sprintf("127.0.0.1:%d", natsPort(i)),
				"--cluster", fmt.Sprintf("127.0.0.1:%d", routePort(i)), "--routes", strings.Join(routes, ","),
				"--name", name, "--fabric", t.Dir, "--data", filepath.Join(t.Dir, name)}}
	}
	// nats1 alone first: it writes the trust folder.
	if err := t.add(ctx, nats(1)); err != nil {
		return err
	}
	if err := t.waitLog(ctx, "nats1", "anonymous connections are refused", 0, 60*time.Second); err != nil {
		return err
	}
	for i := 2; i <= 3; i++ {
		if err := t.add(ctx, nats(i)); err != nil {
			return err
		}
	}
	redisArgs := func(port string, extra ...string) []string {
		name := "redis-" + port
		return append([]string{"redis-server", "--port", port, "--bind", "127.0.0.1", "--dir", t.Dir,
			"--appendonly", "yes", "--appendfsync", "always", "--appendfilename", name + ".aof", "--appenddirname", name + "-aof",
			"--dbfilename", name + ".rdb", "--maxmemory-policy", "noeviction"}, extra...)
	}
	_, p1, _ := net.SplitHostPort(t.Redis["redis"])
	if err := t.add(ctx, &Proc{Name: "redis", Env: env, Args: redisArgs(p1)}); err != nil {
		return err
	}
	if err := t.waitRedis(ctx, t.Redis["redis"]); err != nil {
		return err
	}
	if t.Sentinel {
		_, p2, _ := net.SplitHostPort(t.Redis["redis2"])
		if err := t.add(ctx, &Proc{Name: "redis2", Env: env, Args: redisArgs(p2, "--replicaof", "127.0.0.1", p1)}); err != nil {
			return err
		}
		if err := t.waitRedis(ctx, t.Redis["redis2"]); err != nil {
			return err
		}
		for i := 1; i <= 3; i++ {
			name := "sentinel" + strconv.Itoa(i)
			_, sp, _ := net.SplitHostPort(t.Redis[name])
			conf := filepath.Join(t.Dir, name+".conf")
			text := fmt.Sprintf("port %s\nbind 127.0.0.1\ndir %s\nsentinel monitor mymaster 127.0.0.1 %s 2\n"+
				"sentinel down-after-milliseconds mymaster 2000\nsentinel failover-timeout mymaster 10000\n", sp, t.Dir, p1)
			if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
				return err
			}
			if err := t.add(ctx, &Proc{Name: name, Env: env, Args: []string{"redis-server", conf, "--sentinel"}}); err != nil {
				return err
			}
			if err := t.waitRedis(ctx, t.Redis[name]); err != nil {
				return err
			}
		}
	}
	profiles := filepath.Join(t.Dir, "profiles.yaml")
	if err := os.WriteFile(profiles, []byte(Profiles), 0o600); err != nil {
		return err
	}
	// Straight into the store, before the brokers (the master: a sentinel
	// URL would do as well).
	put := exec.CommandContext(ctx, t.Bin, "profile", "put", profiles, "--redis", "redis://"+t.Redis["redis"]+"/0")
	put.Env = env
	if b, err := put.CombinedOutput(); err != nil {
		return fmt.Errorf("chaos: uims profile put: %w: %s", err, b)
	}
	// The brokers need JetStream: a meta leader and the key registry.
	if err := t.waitAnyLog(ctx, []string{"nats1", "nats2", "nats3"}, "key registry published", 90*time.Second); err != nil {
		return err
	}
	for _, p := range []*Proc{
		{Name: "broker1", Env: env, Ready: "broker serving", Args: []string{t.Bin, "broker", "--instance", "broker1"}},
		{Name: "broker2", Env: env, Ready: "broker serving", Args: []string{t.Bin, "broker", "--instance", "broker2"}},
		{Name: "processor", Env: env, Ready: "processor serving", Args: []string{t.Bin, "processor"}},
		{Name: "web", Env: env, Ready: "gateway serving", Args: []string{t.Bin, "gateway", "web", "--http", fmt.Sprintf("127.0.0.1:%d", webPort)}},
	} {
		if err := t.up(ctx, p); err != nil {
			return err
		}
	}
	return t.Healthy(ctx, 90*time.Second)
}

// Profiles are the clients of the suite (scripts/profiles.yaml's alice and
// bob, without a quota).
const Profiles = `clients:
  - id: alice
    name: Alice Example
    token: alice-token
    addresses: {web: alice, email: alice@example.test, sms: "+15550100"}
    prefer: [web]
  - id: bob
    name: Bob Example
    token: bob-token
    addresses: {web: bob, email: bob@example.test, sms: "+15550101"}
    prefer: [web]
`

// add registers p and starts it.
func (t *Topology) add(ctx context.Context, p *Proc) error {
	p.Log = filepath.Join(t.Dir, p.Name+".log")
	t.mu.Lock()
	t.procs[p.Name] = p
	t.order = append(t.order, p.Name)
	t.mu.Unlock()
	return t.spawn(p)
}

// up starts p and waits for its ready line; one that exits first (a fresh
// cluster may still be electing its leaders) is started again, three times
// at most, as scripts/topology.sh's up does.
func (t *Topology) up(ctx context.Context, p *Proc) error {
	var err error
	for try := range 3 {
		if try == 0 {
			err = t.add(ctx, p)
		} else {
			err = t.spawn(p)
		}
		if err != nil {
			return err
		}
		if err = t.waitLog(ctx, p.Name, p.Ready, p.from, 60*time.Second); err == nil {
			return nil
		}
		t.Logf("chaos: %s did not start (try %d): %v", p.Name, try+1, err)
		t.signal(p, syscall.SIGKILL)
		<-p.done
	}
	return err
}

func (t *Topology) spawn(p *Proc) error {
	f, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	fi, _ := f.Stat()
	p.from = fi.Size()
	cmd := exec.Command(p.Args[0], p.Args[1:]...)
	cmd.Env = p.Env
	cmd.Stdout, cmd.Stderr = f, f
	// A process group of its own (Close kills it whole), and killed with
	// the test process should that die first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("chaos: start %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		f.Close()
		close(done)
	}()
	t.mu.Lock()
	p.cmd, p.done = cmd, done
	t.mu.Unlock()
	t.Logf("chaos: started %s (pid %d)", p.Name, cmd.Process.Pid)
	return nil
}

func (t *Topology) proc(name string) (*Proc, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.procs[name]
	if p == nil {
		return nil, fmt.Errorf("chaos: no component %q", name)
	}
	return p, nil
}

func (t *Topology) signal(p *Proc, sig syscall.Signal) error {
	if p.cmd == nil || p.cmd.Process == nil {
		return nil
	}
	return syscall.Kill(-p.cmd.Process.Pid, sig) // the process group
}

// Kill kills the component with SIGKILL and waits until it is gone.
func (t *Topology) Kill(name string) error {
	p, err := t.proc(name)
	if err != nil {
		return err
	}
	if !p.Running() {
		return nil
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGCONT) // a paused one too
	if err := t.signal(p, syscall.SIGKILL); err != nil {
		return err
	}
	<-p.done
	t.Logf("chaos: killed %s", name)
	return nil
}

// Pause stops the component with SIGSTOP.
func (t *Topology) Pause(name string) error {
	p, err := t.proc(name)
	if err != nil {
		return err
	}
	t.Logf("chaos: paused %s", name)
	return t.signal(p, syscall.SIGSTOP)
}

// Resume continues a paused component (SIGCONT).
func (t *Topology) Resume(name string) error {
	p, err := t.proc(name)
	if err != nil {
		return err
	}
	t.Logf("chaos: resumed %s", name)
	return t.signal(p, syscall.SIGCONT)
}

// Restart starts the component again with the same arguments (killing it
// first if it still runs) and waits until it serves.
func (t *Topology) Restart(ctx context.Context, name string) error {
	p, err := t.proc(name)
	if err != nil {
		return err
	}
	var err2 error
	for try := range 3 { // one that exits first (JetStream busy electing leaders) again, as up does
		if err := t.Kill(name); err != nil {
			return err
		}
		if err := t.spawn(p); err != nil {
			return err
		}
		if err2 = t.WaitReady(ctx, name); err2 == nil {
			return nil
		}
		t.Logf("chaos: %s did not restart (try %d): %v", name, try+1, err2)
	}
	return err2
}

// WaitReady waits until the component's current process serves.
func (t *Topology) WaitReady(ctx context.Context, name string) error {
	p, err := t.proc(name)
	if err != nil {
		return err
	}
	if p.Ready != "" {
		return t.waitLog(ctx, name, p.Ready, p.from, 90*time.Second)
	}
	if addr := t.Redis[name]; addr != "" {
		return t.waitRedis(ctx, addr)
	}
	return nil
}

// Close kills every component, in the reverse order of their start.
func (t *Topology) Close() {
	t.mu.Lock()
	order := append([]string(nil), t.order...)
	t.mu.Unlock()
	for i := len(order) - 1; i >= 0; i-- {
		t.Kill(order[i])
	}
}

// Names lists the components in their start order.
func (t *Topology) Names() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.order...)
}

// LogTail returns the last n lines of the component's log.
func (t *Topology) LogTail(name string, n int) string {
	b, _ := os.ReadFile(filepath.Join(t.Dir, name+".log"))
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (t *Topology) waitLog(ctx context.Context, name, pattern string, from int64, timeout time.Duration) error {
	p, err := t.proc(name)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		if b, err := os.ReadFile(p.Log); err == nil && int64(len(b)) > from && strings.Contains(string(b[from:]), pattern) {
			return nil
		}
		if !p.Running() {
			return fmt.Errorf("chaos: %s exited before %q: %s", name, pattern, t.LogTail(name, 3))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("chaos: %s: no %q after %v: %s", name, pattern, timeout, t.LogTail(name, 3))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (t *Topology) waitAnyLog(ctx context.Context, names []string, pattern string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, n := range names {
			if b, err := os.ReadFile(filepath.Join(t.Dir, n+".log")); err == nil && strings.Contains(string(b), pattern) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("chaos: no %q in %v after %v", pattern, names, timeout)
}

func (t *Topology) waitRedis(ctx context.Context, addr string) error {
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err := c.Ping(pctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("chaos: redis %s: %w", addr, errors.Join(err, ctx.Err()))
		}
		time.Sleep(200 * time.Millisecond)
	}
}
