package bench

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// RedisServer is a redis-server started by the load generator on a free
// loopback port, without persistence (as internal/redistest runs it for
// tests, without testing.TB).
type RedisServer struct {
	Addr string
	cmd  *exec.Cmd
}

// StartRedis starts redis-server (found on PATH) with its working folder dir.
func StartRedis(dir string) (*RedisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("bench: redis-server not on PATH (apt-get install -y redis-server), or pass --redis URL: %w", err)
	}
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s := &RedisServer{Addr: "127.0.0.1:" + strconv.Itoa(port)}
		if lastErr = s.start(bin, port, dir); lastErr == nil {
			return s, nil
		}
	}
	return nil, fmt.Errorf("bench: could not start redis-server: %w", lastErr)
}

// URL returns the redis:// URL of the server.
func (s *RedisServer) URL() string { return "redis://" + s.Addr + "/0" }

// PID returns the server's process id.
func (s *RedisServer) PID() int { return s.cmd.Process.Pid }

func (s *RedisServer) start(bin string, port int, dir string) error {
	s.cmd = exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir, "--maxmemory-policy", "noeviction")
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := s.cmd.Start(); err != nil {
		return err
	}
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			if strings.Contains(line, "Ready to accept connections") {
				ready <- nil
				break
			}
			if strings.Contains(line, "Address already in use") || strings.Contains(line, "Could not create server TCP") {
				ready <- fmt.Errorf("%s", line)
				break
			}
		}
		for sc.Scan() {
		}
		ready <- fmt.Errorf("redis-server exited")
	}()
	select {
	case err := <-ready:
		if err != nil {
			s.Stop()
		}
		return err
	case <-time.After(10 * time.Second):
		s.Stop()
		return fmt.Errorf("redis-server not ready after 10s")
	}
}

// Stop stops the server (by its pid); it is safe to call twice.
func (s *RedisServer) Stop() {
	if s == nil || s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.cmd = nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// procCPU returns the user+system CPU time of process pid from
// /proc/<pid>/stat, or -1 when it cannot be read.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return -1
	}
	// The command name (field 2) may hold spaces; fields after ")" are fixed.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return -1
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / clkTck
}

// machineBusy returns the CPU time all processes of the machine spent
// (user, nice, system, irq, softirq, steal) from /proc/stat, or -1.
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return -1
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return -1
	}
	var busy int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system irq softirq steal
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return -1
		}
		busy += v
	}
	const clkTck = 100
	return time.Duration(busy) * time.Second / clkTck
}

// diskWrites returns the bytes this process caused to be written to
// storage (/proc/self/io write_bytes), or -1.
func diskWrites() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "write_bytes:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return -1
			}
			return n
		}
	}
	return -1
}
