package system

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// TLS (README "Configuration"): UIMS_TLS_CERT and UIMS_TLS_KEY make the NATS
// client port and the web gateway's HTTP listener speak TLS; UIMS_TLS_CA is
// what clients trust. Servers do not ask for client certificates: NATS
// identities are JWT/nkey based, HTTP ones bearer tokens.

// ServerTLS returns the server side of TLS from a PEM certificate (chain)
// and key file: nil, nil when both are empty, an error when only one is
// given or they do not load. The minimum version is TLS 1.2.
func ServerTLS(certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" && keyFile == "" {
		return nil, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, errors.New("system: tls: give both a certificate and a key (UIMS_TLS_CERT, UIMS_TLS_KEY)")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("system: tls: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// ClientTLS returns the client side of TLS trusting the PEM CA bundle in
// caFile instead of the system roots: nil, nil when caFile is empty.
func ClientTLS(caFile string) (*tls.Config, error) {
	if caFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("system: tls ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("system: tls ca: no PEM certificate in %s", caFile)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// NATSClientTLS returns the options a NATS client needs to trust the CA
// bundle in caFile: none when it is empty (a tls:// URL or a server that
// requires TLS then still gets TLS, verified against the system roots).
// With a CA the client insists on TLS.
func NATSClientTLS(caFile string) ([]nats.Option, error) {
	cfg, err := ClientTLS(caFile)
	if cfg == nil {
		return nil, err
	}
	return []nats.Option{nats.Secure(cfg)}, nil
}

// ApplyServerTLS makes the server of opts require TLS on its client port
// with cfg (nothing when cfg is nil). Cluster routes, leaf nodes and
// monitoring keep their own settings. In-process connections
// (nats.InProcessServer) may still speak plain NATS: the server only offers
// them TLS.
func ApplyServerTLS(opts *server.Options, cfg *tls.Config) {
	if cfg == nil {
		return
	}
	opts.TLSConfig = cfg
	opts.TLS = true
	opts.TLSTimeout = 2 // seconds
}

// checkCA reports whether the CA bundle in caFile verifies the certificate
// that cfg serves, so a wrong UIMS_TLS_CA fails at start, not at the first
// client.
func checkCA(cfg *tls.Config, caFile string) error {
	ccfg, err := ClientTLS(caFile)
	if err != nil || cfg == nil || ccfg == nil {
		return err
	}
	chain := cfg.Certificates[0].Certificate
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return fmt.Errorf("system: tls: %w", err)
	}
	inter := x509.NewCertPool()
	for _, der := range chain[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: ccfg.RootCAs, Intermediates: inter}); err != nil {
		return fmt.Errorf("system: tls: %s does not verify the server certificate: %w", caFile, err)
	}
	return nil
}
