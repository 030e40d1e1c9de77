// Package redistest runs a real redis-server on a loopback port for tests,
// the way net/http/httptest runs an HTTP server: Run starts it, registers
// its shutdown with t.Cleanup and returns a ready client.
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is a running redis-server.
type Server struct {
	Addr string
	cmd  *exec.Cmd
	dir  string
}

// Binary returns the path of redis-server, or "" when it is not installed.
func Binary() string {
	p, err := exec.LookPath("redis-server")
	if err != nil {
		return ""
	}
	return p
}

// Require skips t when redis-server is missing, loudly, or fails it when the
// environment variable CI is set: CI installs redis-server, so its absence
// there is a broken CI, not a reason to pass.
func Require(t testing.TB) string {
	t.Helper()
	bin := Binary()
	if bin == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server not found on PATH, but CI is set: .ci/run must install it (apt-get install -y redis-server)")
		}
		t.Skip("SKIPPED: redis-server not found on PATH; install it (apt-get install -y redis-server) to run this test")
	}
	return bin
}

// Run starts a redis-server with no persistence on a free loopback port and
// returns it with a client; both are closed when the test ends.
func Run(t testing.TB) (*Server, *redis.Client) {
	t.Helper()
	s := Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr, Protocol: 2, PoolSize: 256})
	t.Cleanup(func() { rdb.Close() })
	return s, rdb
}

// Start starts a redis-server without a client.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Require(t)
	dir := t.TempDir()
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		s := &Server{Addr: "127.0.0.1:" + strconv.Itoa(port), dir: dir}
		if lastErr = s.start(bin, port); lastErr == nil {
			t.Cleanup(s.Stop)
			return s
		}
	}
	t.Fatalf("redistest: could not start redis-server: %v", lastErr)
	return nil
}

func (s *Server) start(bin string, port int) error {
	s.cmd = exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir, "--maxmemory-policy", "noeviction")
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
				ready <- fmt.Errorf("redistest: %s", line)
				break
			}
		}
		for sc.Scan() {
		}
		ready <- fmt.Errorf("redistest: redis-server exited")
	}()
	select {
	case err := <-ready:
		if err != nil {
			s.cmd.Process.Kill()
			s.cmd.Wait()
		}
		return err
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		s.cmd.Wait()
		return fmt.Errorf("redistest: redis-server not ready after 10s")
	}
}

// Stop stops the server; it is safe to call twice.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.cmd = nil
}

// Restart stops the server and starts a new empty one on the same address:
// the store lost its state, as after a crash without persistence.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	_, portStr, _ := net.SplitHostPort(s.Addr)
	port, _ := strconv.Atoi(portStr)
	var err error
	for range 50 {
		if err = s.start(Require(t), port); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("redistest: restart: %v", err)
}

// Ping waits until the server answers.
func (s *Server) Ping(ctx context.Context) error {
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr})
	defer rdb.Close()
	return rdb.Ping(ctx).Err()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
