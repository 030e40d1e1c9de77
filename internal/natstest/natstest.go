// Package natstest runs an embedded nats-server with JetStream on a random
// loopback port for tests, the way httptest runs an HTTP server.
package natstest

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Run starts a server with JetStream (data in a temporary folder) and
// returns it; it is shut down when the test ends.
func Run(t testing.TB) *server.Server {
	t.Helper()
	return RunDir(t, t.TempDir())
}

// RunDir starts a server whose JetStream data lives in dir, so that a test
// can restart it on the same data.
func RunDir(t testing.TB, dir string) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: dir, MaxPayload: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("natstest: server not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

// Connect returns a client connection to ns, closed when the test ends.
func Connect(t testing.TB, ns *server.Server, name string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(ns.ClientURL(), nats.Name(name), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}
