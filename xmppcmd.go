package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/uims/uims/gateways/xmpp"
)

// cmdXMPP runs the XMPP bridge (gateways/xmpp, docs/XMPP.md): a component
// of an XMPP server, joined to the fabric with the party bundle of
// `uims party add xmpp --role gateway --medium xmpp`.
func cmdXMPP(ctx context.Context, args []string) error {
	// The bundle holds the NATS identity: no --creds, --keys or --data.
	o := &opts{fs: flag.NewFlagSet("uims xmpp", flag.ExitOnError)}
	o.fs.StringVar(&o.logFormat, "log-format", env("UIMS_LOG_FORMAT", "console"), "log format: console or json (UIMS_LOG_FORMAT)")
	o.fs.StringVar(&o.logLevel, "log-level", env("UIMS_LOG_LEVEL", "info"), "log level (UIMS_LOG_LEVEL)")
	var cfg xmpp.Config
	o.fs.StringVar(&cfg.Bundle, "bundle", env("UIMS_XMPP_BUNDLE", "xmpp-bundle"), "the bridge's party bundle folder (UIMS_XMPP_BUNDLE)")
	o.fs.StringVar(&cfg.Server, "component-addr", env("UIMS_XMPP_COMPONENT_ADDR", "127.0.0.1:5347"), "the XMPP server's component port, host:port (UIMS_XMPP_COMPONENT_ADDR)")
	o.fs.StringVar(&cfg.Domain, "domain", env("UIMS_XMPP_DOMAIN", ""), "the component's domain, e.g. uims.chat.example.test (UIMS_XMPP_DOMAIN)")
	o.fs.StringVar(&cfg.ServerDomain, "server-domain", env("UIMS_XMPP_SERVER_DOMAIN", ""), "the XMPP server's domain (default: --domain without its first label)")
	secretFile := o.fs.String("secret-file", env("UIMS_XMPP_SECRET_FILE", ""), "file holding the component secret (default: UIMS_XMPP_SECRET)")
	o.fs.IntVar(&cfg.MaxBody, "max-body", 64<<10, "largest message body in bytes, either way")
	o.fs.StringVar(&cfg.Bot.NATSURL, "nats", env("UIMS_NATS_URL", ""), "NATS URL (default: the bundle's)")
	o.fs.StringVar(&cfg.Bot.TLSCA, "tls-ca", env("UIMS_TLS_CA", ""), "PEM CA bundle to verify the NATS server with (UIMS_TLS_CA)")
	o.fs.BoolVar(&cfg.Bot.Strict, "strict", env("UIMS_MIAP_MODE", "fast") == "strict", "strict MIAP mode (UIMS_MIAP_MODE=strict)")
	if rest := o.parse(args); len(rest) > 0 {
		return fmt.Errorf("unexpected arguments %q", rest)
	}
	secret, err := xmppSecret(*secretFile)
	if err != nil {
		return err
	}
	cfg.Secret = secret
	cfg.Bot.Version = version
	br, err := xmpp.New(cfg, o.logger())
	if err != nil {
		return err
	}
	return br.Run(ctx, nil)
}

// xmppSecret reads the component secret from file, else from
// UIMS_XMPP_SECRET; a flag would show it in the process list.
func xmppSecret(file string) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", err
		}
		if s := strings.TrimSpace(string(b)); s != "" {
			return s, nil
		}
		return "", fmt.Errorf("%s is empty", file)
	}
	if s := os.Getenv("UIMS_XMPP_SECRET"); s != "" {
		return s, nil
	}
	return "", errors.New("no component secret: set UIMS_XMPP_SECRET or --secret-file (prosody's component_secret)")
}
