// Package xmpptest runs the real peers of the XMPP bridge's tests: a
// prosody server of its own in a temporary folder (Start), and chat users
// logged in to it with the mellium.im/xmpp client library (Dial). Neither
// is code of this project's making.
package xmpptest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/uims/uims/internal/peertest"
)

// Install is how .ci/deps.d/xmpp.sh installs the peer.
const Install = "apt-get install prosody (.ci/deps.d/xmpp.sh)"

// Options configure a Server.
type Options struct {
	// Domain is the chat domain, default chat.example.test; Component the
	// bridge's subdomain, default uims.<Domain>; Secret its
	// component_secret, default a fixed test value.
	Domain    string
	Component string
	Secret    string
	// Offline keeps messages for users that are not logged in
	// (mod_offline); default on, as in prosody's stock configuration.
	NoOffline bool
}

// Server is a prosody of the test's own, listening on 127.0.0.1 only.
type Server struct {
	Domain, Component, Secret string
	// C2S and ComponentAddr are host:port of the client and component
	// listeners.
	C2S, ComponentAddr string

	dir, config, prosody, ctl string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  *peertest.Output
}

// Start writes a configuration in a temporary folder and starts prosody
// in the foreground; it is stopped when the test ends. A missing prosody
// skips the test loudly (fails it under CI).
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	prosody := peertest.Require(t, "prosody", Install)
	ctl := peertest.Require(t, "prosodyctl", Install)
	if o.Domain == "" {
		o.Domain = "chat.example.test"
	}
	if o.Component == "" {
		o.Component = "uims." + o.Domain
	}
	if o.Secret == "" {
		o.Secret = "component-secret-for-tests"
	}
	dir := t.TempDir()
	for _, d := range []string{"data", "certs"} { // prosody refuses to start without its certificate folder
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	s := &Server{Domain: o.Domain, Component: o.Component, Secret: o.Secret,
		C2S: freeAddr(t), ComponentAddr: freeAddr(t), dir: dir, config: filepath.Join(dir, "prosody.cfg.lua"),
		prosody: prosody, ctl: ctl, log: &peertest.Output{}}
	modules := `"disco"; "roster"; "saslauth"; "ping"; "posix"`
	if !o.NoOffline {
		modules += `; "offline"`
	}
	// CI runs as root: without run_as_root mod_posix refuses to run and c2s
	// stays off. daemonize = false with prosody -F keeps it our child.
	cfg := fmt.Sprintf(`-- written by gateways/xmpp/xmpptest
run_as_root = true
daemonize = false
pidfile = %[1]q
data_path = %[2]q
certificates = %[3]q
log = { { levels = { min = os.getenv("XMPPTEST_LOG") or "info" }, to = "console" } }
interfaces = { "127.0.0.1" }
c2s_ports = { %[4]s }
c2s_direct_tls_ports = { }
s2s_ports = { }
http_ports = { }
https_ports = { }
component_ports = { %[5]s }
component_interface = "127.0.0.1"
modules_enabled = { %[6]s }
modules_disabled = { "s2s" }
authentication = "internal_plain"
c2s_require_encryption = false
allow_unencrypted_plain_auth = true

VirtualHost %[7]q

Component %[8]q
  component_secret = %[9]q
`, filepath.Join(dir, "prosody.pid"), filepath.Join(dir, "data"), filepath.Join(dir, "certs"),
		port(s.C2S), port(s.ComponentAddr), modules, o.Domain, o.Component, o.Secret)
	if err := os.WriteFile(s.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	s.Start(t)
	t.Cleanup(func() {
		s.Stop(t)
		if t.Failed() {
			t.Logf("prosody log:\n%s", s.log.String())
		}
	})
	return s
}

// Register creates a chat account user@Domain with password pw.
func (s *Server) Register(t testing.TB, user, pw string) {
	t.Helper()
	out, err := exec.Command(s.ctl, "--config", s.config, "register", user, s.Domain, pw).CombinedOutput()
	if err != nil {
		t.Fatalf("prosodyctl register %s: %v\n%s", user, err, out)
	}
}

// Start starts prosody (again, after Stop) and waits until both ports
// take connections.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		t.Fatal("xmpptest: prosody runs already")
	}
	cmd := exec.Command(s.prosody, "-F", "--config", s.config)
	cmd.Stdout, cmd.Stderr = s.log, s.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start prosody: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	deadline := time.Now().Add(15 * time.Second)
	for _, addr := range []string{s.C2S, s.ComponentAddr} {
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-done:
				t.Fatalf("prosody exited at start:\n%s", s.log.String())
			case <-time.After(20 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				t.Fatalf("prosody did not listen on %s within 15s:\n%s", addr, s.log.String())
			}
		}
	}
	s.cmd, s.done = cmd, done
}

// Stop stops prosody with SIGTERM (SIGKILL after 5 s) and waits for it.
func (s *Server) Stop(t testing.TB) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

// Log returns what prosody logged so far.
func (s *Server) Log() string { return s.log.String() }

// freeAddr returns a port on 127.0.0.1 free at the moment.
func freeAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func port(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }
