package system_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/uims/uims/internal/system"
	"github.com/uims/uims/internal/tlstest"
)

func TestServerTLSArguments(t *testing.T) {
	f := tlstest.New(t)
	if cfg, err := system.ServerTLS("", ""); cfg != nil || err != nil {
		t.Fatalf("neither: %v %v", cfg, err)
	}
	if _, err := system.ServerTLS(f.Cert, ""); err == nil {
		t.Fatal("certificate without key accepted")
	}
	if _, err := system.ServerTLS("", f.Key); err == nil {
		t.Fatal("key without certificate accepted")
	}
	if _, err := system.ServerTLS(f.CA, f.Key); err == nil {
		t.Fatal("key of another certificate accepted")
	}
	cfg, err := system.ServerTLS(f.Cert, f.Key)
	if err != nil || cfg.MinVersion != tls.VersionTLS12 || len(cfg.Certificates) != 1 {
		t.Fatalf("%+v %v", cfg, err)
	}
	if cfg, err := system.ClientTLS(""); cfg != nil || err != nil {
		t.Fatalf("no CA: %v %v", cfg, err)
	}
	if _, err := system.ClientTLS(f.Key); err == nil {
		t.Fatal("a key file taken for a CA bundle")
	}
	if _, err := system.ClientTLS(filepath.Join(t.TempDir(), "missing.pem")); err == nil {
		t.Fatal("missing CA file accepted")
	}
	if opts, err := system.NATSClientTLS(""); opts != nil || err != nil {
		t.Fatalf("no CA: %v %v", opts, err)
	}
}

// startTLSNATS starts the embedded server the way `uims nats` does, with TLS
// on its client port.
func startTLSNATS(t *testing.T, f tlstest.Files) string {
	t.Helper()
	cfg, err := system.ServerTLS(f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := system.StartClusterNATS("127.0.0.1:0", t.TempDir(), system.ClusterConfig{TLS: cfg}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !strings.HasPrefix(ns.ClientURL(), "tls://") {
		t.Fatalf("client URL %s", ns.ClientURL())
	}
	return ns.Addr().String()
}

// The client port requires TLS: a client trusting the CA talks (with a
// nats:// URL too: the server's INFO says TLS is required), one without the
// CA fails on the certificate, and plain NATS gets no answer.
func TestNATSClientPortTLS(t *testing.T) {
	f := tlstest.New(t)
	addr := startTLSNATS(t, f)
	opts, err := system.NATSClientTLS(f.CA)
	if err != nil {
		t.Fatal(err)
	}
	for _, url := range []string{"tls://" + addr, "nats://" + addr} {
		nc, err := nats.Connect(url, append(opts, nats.Timeout(5*time.Second))...)
		if err != nil {
			t.Fatalf("%s with the CA: %v", url, err)
		}
		if !nc.TLSRequired() {
			t.Errorf("%s: server does not say TLS is required", url)
		}
		if cs, err := nc.TLSConnectionState(); err != nil || cs.Version < tls.VersionTLS12 {
			t.Errorf("%s: TLS state %v %v", url, cs.Version, err)
		}
		sub, _ := nc.SubscribeSync("tls.test")
		nc.Publish("tls.test", []byte("hi"))
		if m, err := sub.NextMsg(5 * time.Second); err != nil || string(m.Data) != "hi" {
			t.Errorf("%s: round trip: %v", url, err)
		}
		nc.Close()
	}

	_, err = nats.Connect("nats://"+addr, nats.Timeout(5*time.Second))
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Fatalf("without the CA: want an unknown-authority error, got %v", err)
	}

	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	info, err := r.ReadString('\n')
	if err != nil || !strings.Contains(info, `"tls_required":true`) {
		t.Fatalf("INFO %q %v", info, err)
	}
	c.Write([]byte("CONNECT {\"verbose\":false}\r\nPING\r\n"))
	if line, err := r.ReadString('\n'); err == nil && strings.HasPrefix(line, "PONG") {
		t.Fatal("plain NATS answered on a TLS port")
	}
}

// A client whose CA bundle holds another CA refuses the server.
func TestNATSClientWrongCA(t *testing.T) {
	f := tlstest.New(t)
	addr := startTLSNATS(t, f)
	opts, err := system.NATSClientTLS(tlstest.New(t).CA)
	if err != nil {
		t.Fatal(err)
	}
	_, err = nats.Connect("tls://"+addr, append(opts, nats.Timeout(5*time.Second))...)
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Fatalf("want an unknown-authority error, got %v", err)
	}
}

// `uims run` with a certificate: the components' in-process connections
// stay plain and the system delivers over HTTPS; outside NATS clients need
// the CA; plain HTTP gets no page; a CA that does not verify the
// certificate stops the start.
func TestRunWithTLS(t *testing.T) {
	f := tlstest.New(t)
	a := runSystem(t, system.Config{TLSCert: f.Cert, TLSKey: f.Key, TLSCA: f.CA})
	if !strings.HasPrefix(a.NATS, "tls://") {
		t.Fatalf("NATS URL %s", a.NATS)
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: f.Pool}}}
	var code int
	var out map[string]any
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if code, out = postWith(t, hc, "https://"+a.HTTP+"/api/v1/messages", "alice-token", `{"to":"bob","text":"hello"}`); code == 202 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code != 202 || out["status"] != "delivered" {
		t.Fatalf("%d %v", code, out)
	}
	if resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + a.HTTP + "/"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest { // net/http: "client sent an HTTP request to an HTTPS server"
			t.Fatalf("plain HTTP: %s", resp.Status)
		}
	}

	opts, err := system.NATSClientTLS(f.CA)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(a.NATS, append(opts, nats.UserCredentials(filepath.Join(a.Creds, "ops.creds")))...)
	if err != nil {
		t.Fatalf("outside client with the CA: %v", err)
	}
	nc.Close()
	if nc, err := nats.Connect(a.NATS, append(opts, nats.MaxReconnects(0))...); err == nil || !errors.Is(err, nats.ErrAuthorization) {
		if nc != nil {
			nc.Close()
		}
		t.Fatalf("outside client with the CA but no credentials: %v, want an authorization violation", err)
	}
	if nc, err := nats.Connect(a.NATS, nats.Timeout(5*time.Second), nats.UserCredentials(filepath.Join(a.Creds, "ops.creds"))); err == nil {
		nc.Close()
		t.Fatal("outside client without the CA connected")
	}

	other := tlstest.New(t)
	cfg := system.Config{TLSCert: f.Cert, TLSKey: f.Key, TLSCA: other.CA, DataDir: t.TempDir(),
		HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0", SMTPAddr: "off", SMPPAddr: "off"}
	if err := system.Run(t.Context(), cfg, zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("run with a CA that does not verify the certificate: %v", err)
	}
	cfg.TLSCA, cfg.TLSKey = "", ""
	if err := system.Run(t.Context(), cfg, zerolog.Nop()); err == nil {
		t.Fatal("run with a certificate but no key started")
	}
}
