// Package redistest runs a real redis-server on a loopback port for tests,
// the way net/http/httptest runs an HTTP server: Run starts it, registers
// its shutdown with t.Cleanup and returns a ready client.
package redistest

import (
	"os"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/uims/uims/internal/redisproc"
)

// Server is a running redis-server.
type Server struct {
	*redisproc.Server
}

// Require skips t when redis-server is missing, loudly, or fails it when the
// environment variable CI is set: CI installs redis-server, so its absence
// there is a broken CI, not a reason to pass.
func Require(t testing.TB) {
	t.Helper()
	if redisproc.Binary() == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server not found on PATH, but CI is set: .ci/run must install it (apt-get install -y redis-server)")
		}
		t.Skip("SKIPPED: redis-server not found on PATH; install it (apt-get install -y redis-server) to run this test")
	}
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
	Require(t)
	s, err := redisproc.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return &Server{s}
}

// Restart stops the server and starts a new empty one on the same address.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.Server.Restart(); err != nil {
		t.Fatal(err)
	}
}
