package system

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/email"
	"github.com/uims/uims/gateways/fax"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/gateways/sms"
	"github.com/uims/uims/gateways/voice"
	"github.com/uims/uims/gateways/web"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/ops"
	"github.com/uims/uims/processor"
)

// Config is the configuration of `uims run` (README "Configuration").
type Config struct {
	HTTPAddr     string // UIMS_HTTP_ADDR
	NATSAddr     string // UIMS_NATS_ADDR: the embedded server's client port
	RedisURL     string // UIMS_REDIS_URL; empty: embedded, not durable
	DataDir      string // UIMS_DATA_DIR
	KeysFile     string // UIMS_KEYS; default <DataDir>/keys.json
	ProfilesFile string // UIMS_PROFILES; empty: demo clients
	Strict       bool   // UIMS_MIAP_MODE=strict
	Window       time.Duration
	// OpsAddr is the operator view's HTTP address (UIMS_OPS_ADDR; package
	// ops); "off" disables it. Default 127.0.0.1:8081, or a random port
	// when HTTPAddr's port is 0 (tests).
	OpsAddr string
	// Operator is the operator view's token (UIMS_OPERATOR_TOKEN).
	Operator string
	// WebMaxUpload bounds the files of one message sent on the web page
	// (UIMS_WEB_MAX_UPLOAD; default 25 MiB, web.Config.MaxUpload).
	WebMaxUpload int64
	// SMTPAddr, SMTPRelay, SMTPDomains: the e-mail gateway (UIMS_SMTP_ADDR,
	// UIMS_SMTP_RELAY, UIMS_SMTP_DOMAINS). SMTPAddr "off" disables it.
	SMTPAddr    string
	SMTPRelay   string
	SMTPDomains []string
	// SMTPMaxPerIP bounds concurrent SMTP connections per client address
	// (UIMS_SMTP_MAX_PER_IP; default 10, email.Config.MaxPerIP).
	SMTPMaxPerIP int
	// SMTPMaxSize is the largest message the SMTP server takes (RFC 1870
	// SIZE; UIMS_SMTP_MAX_SIZE; default 25 MiB, email.Config.MaxSize).
	SMTPMaxSize int64
	// SMPPAddr and SMSC: the SMS gateway (UIMS_SMPP_ADDR, UIMS_SMSC_*).
	// SMPPAddr "off" disables it.
	SMPPAddr string
	SMSC     sms.SMSCConfig
	// ContentRef is the content size from which a hop goes by reference
	// through the object store (UIMS_CONTENT_REF; PROTOCOL.md §10);
	// default 256 KiB.
	ContentRef int
	// Seal says when content is sealed from hop to hop (UIMS_SEAL: auto,
	// off, required; PROTOCOL.md §14); every built-in gateway and the
	// processor have an encryption key.
	Seal miap.SealMode
	// NoAudit turns off the brokers' audit trail (UIMS_AUDIT=off;
	// PROTOCOL.md §15), on by default.
	NoAudit bool
	// Voice configures the voice gateway (UIMS_SIP_*, docs/VOICE.md):
	// Voice.SIPAddr is its SIP listener (uims run's default
	// 127.0.0.1:5060), a mailbox for every client's voice address and
	// calls out to them; empty or "off": no voice gateway.
	Voice voice.Config
	// Fax configures the fax gateway (UIMS_FAX_*, docs/FAX.md): it starts
	// when T.37 (T37Relay and T37Domain) or HylaFAX is configured; else
	// the log says what is missing.
	Fax fax.Config
	// TLSCert and TLSKey (UIMS_TLS_CERT, UIMS_TLS_KEY), both or neither:
	// PEM server certificate and key; the NATS client port and HTTP (the web
	// page, the API and /metrics) then require TLS. TLSCA (UIMS_TLS_CA), if
	// set, is the CA bundle clients trust; Run checks that it verifies the
	// certificate. The in-process connections of the components stay plain.
	TLSCert, TLSKey, TLSCA string
	Version                string
	// Ready, if set, is called with the running system's addresses.
	Ready func(Addrs)
}

// Addrs are where a running system listens.
type Addrs struct {
	HTTP string
	NATS string
	Ops  string // the operator view; empty when it is off
	SMTP string // empty when the e-mail gateway is off
	// FaxSMTP is the fax gateway's SMTP listener (onramps, DSNs); empty
	// when the fax gateway is off or has none.
	FaxSMTP string
	// SIP is the voice gateway's SIP address; empty when it is off.
	SIP  string
	SMPP string // empty when the SMS gateway is off
	// Creds is the folder of the parties' NATS credentials
	// (ops.creds: the operator's read-only observer; admin.creds).
	Creds string
}

func (c *Config) setDefaults() {
	if c.HTTPAddr == "" {
		c.HTTPAddr = "127.0.0.1:8080"
	}
	if c.NATSAddr == "" {
		c.NATSAddr = "127.0.0.1:4222"
	}
	if c.OpsAddr == "" {
		c.OpsAddr = ops.DefaultAddr
		if host, port, err := net.SplitHostPort(c.HTTPAddr); err == nil && port == "0" {
			c.OpsAddr = net.JoinHostPort(host, "0")
		}
	}
	if c.DataDir == "" {
		c.DataDir = "uims-data"
	}
	if c.KeysFile == "" {
		c.KeysFile = filepath.Join(c.DataDir, "keys.json")
	}
	if c.SMTPAddr == "" {
		c.SMTPAddr = "127.0.0.1:2525"
	}
	if len(c.SMTPDomains) == 0 {
		c.SMTPDomains = []string{"example.test"}
	}
	if c.SMPPAddr == "" {
		c.SMPPAddr = "127.0.0.1:2775"
	}
}

// party returns a connection and the keyring of one party.
func party(kf *miap.KeyFile, name string, conn func(string) (*nats.Conn, error)) (*nats.Conn, *miap.Keyring, error) {
	kr, err := kf.For(name).Keyring()
	if err != nil {
		return nil, nil, err
	}
	nc, err := conn(name)
	return nc, kr, err
}

// component is one part of the running system.
type component struct {
	name string
	run  func(ctx context.Context, ready func()) error
}

// Run runs the whole fabric in this process until ctx is done.
func Run(ctx context.Context, cfg Config, log zerolog.Logger) error {
	cfg.setDefaults()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("system: data dir: %w", err)
	}
	kf, err := LoadOrCreateKeys(cfg.KeysFile, Parties, log)
	if err != nil {
		return err
	}
	au, _, err := Provision(cfg.DataDir, log)
	if err != nil {
		return err
	}
	ids := map[string]Identity{}
	for _, id := range Builtin {
		ids[id.Name] = id
	}
	tcfg, err := ServerTLS(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return err
	}
	if err := checkCA(tcfg, cfg.TLSCA); err != nil {
		return err
	}
	ns, err := StartClusterNATS(cfg.NATSAddr, cfg.DataDir, ClusterConfig{TLS: tcfg, Auth: au.Authority}, log)
	if err != nil {
		return err
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	rdb, closeStore, err := OpenStore(cfg.RedisURL, log)
	if err != nil {
		return err
	}
	defer closeStore()
	var conns []*nats.Conn
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
	}()
	// In process, the server offers TLS but does not require it; a nats://
	// URL (ClientURL says tls:// with TLS on) keeps these connections plain.
	inProcURL := "nats://" + ns.Addr().String()
	// Every part connects as its own party, with least privilege
	// (docs/SECURITY.md), in process.
	conn := func(name string) (*nats.Conn, error) {
		nc, err := au.ConnectAs(inProcURL, ids[name], nats.InProcessServer(ns))
		if err == nil {
			conns = append(conns, nc)
		}
		return nc, err
	}
	all, err := kf.Public().Keyring() // the brokers hold no encryption key (PROTOCOL.md §14.2)
	if err != nil {
		return err
	}
	admin, err := conn("admin")
	if err != nil {
		return err
	}
	if err := PublishKeyFile(ctx, admin, kf); err != nil {
		return err
	}
	saved := filepath.Join(cfg.DataDir, SavedProfiles)
	profiles := cfg.ProfilesFile
	if _, err := os.Stat(saved); err == nil {
		if profiles == "" {
			profiles = saved
		} else {
			log.Warn().Str("file", saved).Str("profiles", profiles).Msg("profiles saved by an earlier run are not loaded: UIMS_PROFILES names another file")
		}
	}
	ps, err := LoadProfiles(ctx, rdb, admin, profiles)
	if err != nil {
		return err
	}
	log.Info().Int("clients", len(ps)).Str("file", profiles).Msg("profiles loaded")

	eng, err := miap.New(miap.Config{Keys: all, Window: cfg.Window})
	if err != nil {
		return err
	}
	var b *broker.Broker
	var proc *processor.Processor
	var wg *web.Gateway
	var eg *email.Gateway
	var fg *fax.Gateway
	var vg *voice.Gateway
	var sg *sms.Gateway
	var ov *ops.Server
	var cli *kit.Kit
	kc := kit.Config{Version: cfg.Version, Strict: cfg.Strict, Window: cfg.Window, ContentRef: cfg.ContentRef, Seal: cfg.Seal}
	reg := NewRegistry() // served by the web gateway and the operator view at /metrics
	httpScheme := "http://"
	if tcfg != nil {
		httpScheme = "https://"
	}
	parts := []func() error{
		func() error {
			wait, err := WaitReplicas(cfg.RedisURL, os.Getenv("UIMS_REDIS_WAIT"))
			if err != nil {
				return err
			}
			bc := broker.Config{Version: cfg.Version, Strict: cfg.Strict, Metrics: reg, WaitReplicas: wait,
				NoAudit: cfg.NoAudit}
			if cfg.RedisURL == "" { // the embedded store forgets: keep profile changes in the data folder
				bc.OnProfilesChanged = func(ctx context.Context) error { return SaveProfiles(ctx, rdb, saved) }
			}
			nc, err := conn("broker")
			if err == nil {
				b, err = broker.New(bc, nc, rdb, eng, log)
			}
			return err
		},
		func() error {
			nc, kr, err := party(kf, "proc", conn)
			if err == nil {
				fax, missing := processor.Fax(processor.FaxConfig{})
				for _, m := range missing {
					log.Warn().Str("role", "processor").Msg("fax conversions: " + m)
				}
				voice, missing := processor.Voice(processor.VoiceConfig{})
				for _, m := range missing {
					log.Warn().Str("role", "processor").Msg("voice conversions: " + m)
				}
				proc, err = processor.New(processor.Config{Version: cfg.Version, Strict: cfg.Strict, ContentRef: cfg.ContentRef, Seal: cfg.Seal,
					Conversions: append(append(processor.Standard(64<<10), fax...), voice...)}, nc, kr, log)
			}
			return err
		},
		func() error {
			nc, kr, err := party(kf, "web", conn)
			if err != nil {
				return err
			}
			wc := web.Config{Addr: cfg.HTTPAddr, TLS: tcfg, Metrics: reg, Kit: kc, MaxUpload: cfg.WebMaxUpload}
			if cfg.OpsAddr != "off" { // the operator view moved out of the web gateway: send its old address there
				wc.Extra = map[string]http.Handler{"GET /ops.html": opsRedirect(httpScheme, func() string { return ov.Addr() })}
			}
			wg, err = web.New(wc, nc, kr, log)
			return err
		},
		func() error {
			if cfg.OpsAddr == "off" {
				return nil
			}
			// the observer's read-only identity; its history queries go
			// through the web gateway's kit, since it has no MIAP key
			nc, err := conn("ops")
			if err == nil {
				ov, err = ops.New(ops.Config{Addr: cfg.OpsAddr, TLS: tcfg, Token: cfg.Operator, Metrics: reg,
					Observer: ops.ObserverConfig{Query: wg.Kit().Query}, AuditKeys: all.AuditPublicKeys()}, nc, log)
			}
			return err
		},
		func() error {
			// the command-line sender's routes by notification (a
			// scheduled message released, a reroute) are served here
			// when 'uims send' is gone (PROTOCOL.md §6.15, §6.16)
			nc, kr, err := party(kf, "cli", conn)
			if err == nil {
				cli, err = kit.New(nc, kr, kit.SendOnly{}, kit.Config{Gateway: "cli", Medium: "cli", Version: cfg.Version, Strict: cfg.Strict, Window: cfg.Window, Seal: cfg.Seal}, log)
			}
			return err
		},
		func() error {
			if cfg.SMTPAddr == "off" {
				return nil
			}
			nc, kr, err := party(kf, "email", conn)
			if err == nil {
				eg, err = email.New(email.Config{Addr: cfg.SMTPAddr, Relay: cfg.SMTPRelay, Domains: cfg.SMTPDomains, MaxPerIP: cfg.SMTPMaxPerIP, MaxSize: cfg.SMTPMaxSize, Kit: kc}, nc, kr, log)
			}
			return err
		},
		func() error {
			missing := cfg.Fax.Missing()
			if len(missing) > 0 {
				log.Info().Strs("missing", missing).Msg("fax gateway not started (docs/FAX.md)")
				return nil
			}
			nc, kr, err := party(kf, "fax", conn)
			if err == nil {
				fc := cfg.Fax
				fc.Kit = kc
				if fc.SMTPAddr == "off" {
					fc.SMTPAddr = ""
				}
				fg, err = fax.New(fc, nc, kr, log)
			}
			return err
		},
		func() error {
			if cfg.Voice.SIPAddr == "" || cfg.Voice.SIPAddr == "off" {
				return nil
			}
			nc, kr, err := party(kf, "voice", conn)
			if err == nil {
				vc := cfg.Voice
				vc.Kit = kc
				if missing := vc.Missing(); len(missing) > 0 {
					log.Warn().Strs("missing", missing).Msg("voice gateway: starting without them (docs/VOICE.md)")
				}
				vg, err = voice.New(vc, nc, kr, log)
			}
			return err
		},
		func() error {
			if cfg.SMPPAddr == "off" {
				return nil
			}
			nc, kr, err := party(kf, "sms", conn)
			if err == nil {
				sg, err = sms.New(sms.Config{Addr: cfg.SMPPAddr, SMSC: cfg.SMSC, InboxURL: httpScheme + cfg.HTTPAddr + "/", Kit: kc}, nc, kr, log)
			}
			return err
		},
	}
	for _, p := range parts {
		if err := p(); err != nil {
			return err
		}
	}
	comps := []component{
		{"broker", b.Run},
		{"processor", proc.Run},
	}
	if ov != nil { // before the gateways, so that it hears their first heartbeats
		comps = append(comps, component{"ops", ov.Run})
	}
	comps = append(comps, component{"web", wg.Run}, component{"cli routes", func(ctx context.Context, ready func()) error {
		ready()
		return cli.FollowStatus(ctx)
	}})
	if eg != nil {
		comps = append(comps, component{"email", eg.Run})
	}
	if sg != nil {
		comps = append(comps, component{"sms", sg.Run})
	}
	if fg != nil {
		comps = append(comps, component{"fax", fg.Run})
	}
	if vg != nil {
		comps = append(comps, component{"voice", vg.Run})
	}
	if err := runAll(ctx, comps, log, func() {
		a := Addrs{HTTP: wg.Addr(), NATS: ns.ClientURL(), Creds: au.CredsDir}
		if ov != nil {
			a.Ops = ov.Addr()
		}
		if eg != nil {
			a.SMTP = eg.Addr()
		}
		if fg != nil {
			a.FaxSMTP = fg.Addr()
		}
		if vg != nil {
			a.SIP = vg.Addr()
		}
		if sg != nil {
			a.SMPP = sg.Addr().String()
		}
		log.Info().Str("web", httpScheme+a.HTTP).Str("ops", a.Ops).Str("nats", a.NATS).Str("smtp", a.SMTP).Str("smpp", a.SMPP).Bool("strict", cfg.Strict).Bool("tls", tcfg != nil).Msg("UIMS is running")
		if cfg.Ready != nil {
			cfg.Ready(a)
		}
	}); err != nil {
		return err
	}
	return nil
}

// opsRedirect sends a request for the operator view's page to where it
// lives now: the same host, the operator view's port.
func opsRedirect(scheme string, addr func() string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, port, err := net.SplitHostPort(addr())
		host := r.Host
		if h, _, err := net.SplitHostPort(r.Host); err == nil {
			host = h
		}
		if err != nil || host == "" {
			http.NotFound(w, r)
			return
		}
		http.Redirect(w, r, scheme+net.JoinHostPort(host, port)+"/ops.html", http.StatusFound)
	})
}

// runAll starts the components in order, each after the previous one is
// ready, calls up once all are, and stops them in reverse order when ctx is
// done or one fails.
func runAll(ctx context.Context, comps []component, log zerolog.Logger, up func()) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		name string
		err  error
	}
	done := make(chan result, len(comps))
	cancels := make([]context.CancelFunc, len(comps))
	var wg sync.WaitGroup
	var first error
	for i, c := range comps {
		cctx, ccancel := context.WithCancel(context.Background())
		cancels[i] = ccancel
		ready := make(chan struct{})
		var once sync.Once
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := c.run(cctx, func() { once.Do(func() { close(ready) }) })
			done <- result{c.name, err}
		}()
		select {
		case <-ready:
			log.Debug().Str("component", c.name).Msg("ready")
		case r := <-done:
			first = fmt.Errorf("system: %s: %w", r.name, r.err)
		case <-ctx.Done():
			first = ctx.Err()
		}
		if first != nil {
			break
		}
	}
	if first == nil {
		up()
		select {
		case <-ctx.Done():
		case r := <-done:
			if r.err != nil {
				first = fmt.Errorf("system: %s stopped: %w", r.name, r.err)
			} else {
				first = fmt.Errorf("system: %s stopped", r.name)
			}
		}
	}
	for i := len(cancels) - 1; i >= 0; i-- {
		cancels[i]()
		// give each component a moment to drain before the next one stops
		time.Sleep(50 * time.Millisecond)
	}
	wg.Wait()
	if errors.Is(first, context.Canceled) {
		return nil
	}
	return first
}
