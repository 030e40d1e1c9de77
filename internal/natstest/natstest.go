// Package natstest runs an embedded nats-server with JetStream on a random
// loopback port for tests, the way httptest runs an HTTP server.
package natstest

import (
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/uims/uims/miap/natsauth"
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
	return shutDownAtEnd(t, launch(t, options(server.RANDOM_PORT, dir)))
}

// Restart shuts ns down, waits down, and starts a server on the same
// address and JetStream folder dir: what its clients see of a NATS outage.
// Their connections reconnect by themselves. The new server is shut down
// when the test ends.
func Restart(t testing.TB, ns *server.Server, dir string, down time.Duration) *server.Server {
	t.Helper()
	return shutDownAtEnd(t, RestartKept(t, ns, dir, down))
}

// RestartKept is Restart for a caller that shuts the new server down
// itself: a test's clean-ups run last registered first, so a server that
// Restart brought back is shut down before the components the test
// started earlier stop, which then stop against a server that is gone.
func RestartKept(t testing.TB, ns *server.Server, dir string, down time.Duration) *server.Server {
	t.Helper()
	port := ns.Addr().(*net.TCPAddr).Port
	ns.Shutdown()
	ns.WaitForShutdown()
	time.Sleep(down)
	return launch(t, options(port, dir))
}

// options are the test servers' options: loopback, JetStream in dir,
// 8 MiB payloads as under uims run.
func options(port int, dir string) *server.Options {
	return &server.Options{Host: "127.0.0.1", Port: port, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: dir, MaxPayload: 8 << 20}
}

// launch starts a server with opts and waits until it is ready.
func launch(t testing.TB, opts *server.Options) *server.Server {
	t.Helper()
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		t.Fatal("natstest: server not ready")
	}
	return ns
}

// shutDownAtEnd shuts ns down when the test ends.
func shutDownAtEnd(t testing.TB, ns *server.Server) *server.Server {
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

// RunAuth starts a server like Run that trusts the authority a (operator,
// system account, account resolver): anonymous connections are refused and
// every party connects with credentials that a issued.
func RunAuth(t testing.TB, a *natsauth.Authority) *server.Server {
	t.Helper()
	dir := t.TempDir()
	opts := options(server.RANDOM_PORT, filepath.Join(dir, "js"))
	if err := a.ServerOptions(opts, filepath.Join(dir, "resolver")); err != nil {
		t.Fatal(err)
	}
	return shutDownAtEnd(t, launch(t, opts))
}

// ConnectAs returns a connection of party name, issued by a with role and
// media, closed when the test ends. Errors the server reports on it
// (permissions violations) go to errs when it is not nil.
func ConnectAs(t testing.TB, ns *server.Server, a *natsauth.Authority, name string, role natsauth.Role, media []string, errs chan<- error) *nats.Conn {
	t.Helper()
	creds, err := a.Issue(name, role, media)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := natsauth.CredsOption(name, creds)
	if err != nil {
		t.Fatal(err)
	}
	opts = append(opts, nats.Name(name), nats.MaxReconnects(-1))
	if errs != nil {
		opts = append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case errs <- err:
			default:
			}
		}))
	}
	nc, err := nats.Connect(ns.ClientURL(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}
