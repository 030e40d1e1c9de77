// Package redisproc runs a real redis-server process on a free loopback
// port, without persistence: for tests (through internal/redistest) and
// for the load generator.
package redisproc

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// ErrNotInstalled is returned when redis-server is not on PATH.
var ErrNotInstalled = errors.New("redisproc: redis-server not on PATH (apt-get install -y redis-server)")

// Server is a running redis-server.
type Server struct {
	Addr string
	bin  string
	dir  string
	cmd  *exec.Cmd
}

// Binary returns the path of redis-server, or "" when it is not installed.
func Binary() string {
	p, err := exec.LookPath("redis-server")
	if err != nil {
		return ""
	}
	return p
}

// Start starts redis-server with working folder dir on a free port.
func Start(dir string) (*Server, error) {
	bin := Binary()
	if bin == "" {
		return nil, ErrNotInstalled
	}
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s := &Server{Addr: "127.0.0.1:" + strconv.Itoa(port), bin: bin, dir: dir}
		if lastErr = s.start(port); lastErr == nil {
			return s, nil
		}
	}
	return nil, fmt.Errorf("redisproc: could not start redis-server: %w", lastErr)
}

// URL returns the redis:// URL of the server.
func (s *Server) URL() string { return "redis://" + s.Addr + "/0" }

// PID returns the server's process id.
func (s *Server) PID() int { return s.cmd.Process.Pid }

func (s *Server) start(port int) error {
	s.cmd = exec.Command(s.bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
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
				ready <- fmt.Errorf("redisproc: %s", line)
				break
			}
		}
		for sc.Scan() {
		}
		ready <- fmt.Errorf("redisproc: redis-server exited")
	}()
	select {
	case err := <-ready:
		if err != nil {
			s.Stop()
		}
		return err
	case <-time.After(10 * time.Second):
		s.Stop()
		return fmt.Errorf("redisproc: redis-server not ready after 10s")
	}
}

// Stop stops the server; it is safe to call twice.
func (s *Server) Stop() {
	if s == nil || s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.cmd = nil
}

// Restart stops the server and starts a new empty one on the same address:
// a store that lost its state, as after a crash without persistence.
func (s *Server) Restart() error {
	s.Stop()
	_, portStr, _ := net.SplitHostPort(s.Addr)
	port, _ := strconv.Atoi(portStr)
	var err error
	for range 50 {
		if err = s.start(port); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("redisproc: restart: %w", err)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
