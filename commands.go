package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
	"github.com/uims/uims/internal/system"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/miap/natsauth"
	"github.com/uims/uims/ops"
	"github.com/uims/uims/processor"
	"github.com/uims/uims/schemas"
)

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// common flags
type opts struct {
	fs                  *flag.FlagSet
	logFormat, logLevel string
	natsURL, keys       string
	tlsCA               string
	creds               string // NATS credentials (docs/SECURITY.md)
	data                string // UIMS_DATA_DIR; the key file's folder unless --keys says otherwise
	redisURL            string
	strict              bool
	seal                string // UIMS_SEAL: auto, off or required (PROTOCOL.md §14.6)
	metrics             string
}

func newOpts(name string) *opts {
	o := &opts{fs: flag.NewFlagSet("uims "+name, flag.ExitOnError)}
	o.fs.StringVar(&o.logFormat, "log-format", env("UIMS_LOG_FORMAT", "console"), "log format: console or json (UIMS_LOG_FORMAT)")
	o.fs.StringVar(&o.logLevel, "log-level", env("UIMS_LOG_LEVEL", "info"), "log level (UIMS_LOG_LEVEL)")
	o.fs.StringVar(&o.creds, "creds", env("UIMS_NATS_CREDS", ""), "NATS credentials file of this party (UIMS_NATS_CREDS; default <data>/creds/<party>.creds when it exists)")
	return o
}

func (o *opts) client() {
	o.fs.StringVar(&o.metrics, "metrics", env("UIMS_METRICS_ADDR", ""), "serve Prometheus /metrics on this address (UIMS_METRICS_ADDR)")
	o.fs.StringVar(&o.natsURL, "nats", env("UIMS_NATS_URL", "nats://127.0.0.1:4222"), "NATS URL (UIMS_NATS_URL)")
	o.fs.StringVar(&o.tlsCA, "tls-ca", env("UIMS_TLS_CA", ""), "PEM CA bundle to verify the NATS server with; set: TLS required (UIMS_TLS_CA)")
	o.keyFlags()
	o.fs.BoolVar(&o.strict, "strict", env("UIMS_MIAP_MODE", "fast") == "strict", "strict MIAP mode (UIMS_MIAP_MODE=strict)")
	o.fs.StringVar(&o.seal, "seal", env("UIMS_SEAL", "auto"), "content sealed from hop to hop: auto, off or required (UIMS_SEAL; PROTOCOL.md §14)")
}

// keyFlags are --data and --keys: the key file is <data>/keys.json unless
// --keys (UIMS_KEYS) names another (README "Configuration").
func (o *opts) keyFlags() {
	o.fs.StringVar(&o.data, "data", env("UIMS_DATA_DIR", "uims-data"), "data folder, where the key file is (UIMS_DATA_DIR)")
	o.fs.StringVar(&o.keys, "keys", env("UIMS_KEYS", ""), "MIAP key file (UIMS_KEYS; default <data>/keys.json)")
}

// keyFile is the MIAP key file's path.
func (o *opts) keyFile() string {
	if o.keys != "" {
		return o.keys
	}
	return filepath.Join(o.data, "keys.json")
}

func (o *opts) logger() zerolog.Logger {
	l, err := system.Logger(o.logFormat, o.logLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	return l
}

// connect connects to NATS as party (docs/SECURITY.md): with its
// credentials (--creds, or <data>/creds/<party>.creds when that exists, as
// `uims run` and `uims nats` write them) and its own inbox prefix, which its
// permissions require.
func (o *opts) connect(party string) (*nats.Conn, error) {
	tlsOpts, err := system.NATSClientTLS(o.tlsCA)
	if err != nil {
		return nil, err
	}
	nopts := append([]nats.Option{nats.Name("uims-" + party), nats.MaxReconnects(-1)}, tlsOpts...)
	creds := o.creds
	if creds == "" {
		data := o.data
		if data == "" {
			data = env("UIMS_DATA_DIR", "uims-data")
		}
		if f := filepath.Join(data, "creds", party+".creds"); fileExists(f) {
			creds = f
		}
	}
	if creds != "" {
		nopts = append(nopts, nats.UserCredentials(creds))
		if party != "admin" && party != "ops" {
			nopts = append(nopts, nats.CustomInboxPrefix(natsauth.InboxPrefix(party)))
		}
	}
	nc, err := nats.Connect(o.natsURL, nopts...)
	if errors.Is(err, nats.ErrAuthorization) && creds == "" {
		return nil, fmt.Errorf("%w: this fabric needs credentials: --creds FILE or UIMS_NATS_CREDS (uims run writes them under <data>/creds)", err)
	}
	return nc, err
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// tlsFlags are the server certificate flags (UIMS_TLS_CERT, UIMS_TLS_KEY).
func tlsFlags(fs *flag.FlagSet, cert, key *string) {
	fs.StringVar(cert, "tls-cert", env("UIMS_TLS_CERT", ""), "PEM server certificate; with --tls-key: TLS required (UIMS_TLS_CERT)")
	fs.StringVar(key, "tls-key", env("UIMS_TLS_KEY", ""), "PEM key of --tls-cert (UIMS_TLS_KEY)")
}

func (o *opts) keyring(party string) (*miap.Keyring, error) {
	kf, err := miap.ReadKeyFile(o.keyFile())
	if err != nil {
		return nil, err
	}
	if party != miap.BrokerParty {
		kf = kf.For(party)
	} else {
		kf = kf.Public() // the brokers hold no encryption key (PROTOCOL.md §14.2)
	}
	return kf.Keyring()
}

func cmdRun(ctx context.Context, args []string) error {
	o := newOpts("run")
	var cfg system.Config
	o.fs.StringVar(&cfg.HTTPAddr, "http", env("UIMS_HTTP_ADDR", "127.0.0.1:8080"), "HTTP API and web page address (UIMS_HTTP_ADDR)")
	webFlags(o.fs, &cfg.WebMaxUpload)
	o.fs.StringVar(&cfg.NATSAddr, "nats", env("UIMS_NATS_ADDR", "127.0.0.1:4222"), "embedded NATS client address (UIMS_NATS_ADDR)")
	o.fs.StringVar(&cfg.RedisURL, "redis", env("UIMS_REDIS_URL", ""), "Redis URL; empty: embedded, not durable (UIMS_REDIS_URL)")
	o.fs.StringVar(&cfg.DataDir, "data", env("UIMS_DATA_DIR", "uims-data"), "data folder: JetStream, keys (UIMS_DATA_DIR)")
	o.fs.StringVar(&cfg.KeysFile, "keys", env("UIMS_KEYS", ""), "MIAP key file, generated when absent (UIMS_KEYS; default <data>/keys.json)")
	o.fs.StringVar(&cfg.ProfilesFile, "profiles", env("UIMS_PROFILES", ""), "YAML client profiles; empty: demo clients alice and bob (UIMS_PROFILES)")
	o.fs.BoolVar(&cfg.Strict, "strict", env("UIMS_MIAP_MODE", "fast") == "strict", "strict MIAP mode (UIMS_MIAP_MODE=strict)")
	seal := o.fs.String("seal", env("UIMS_SEAL", "auto"), "content sealed from hop to hop: auto, off or required (UIMS_SEAL; PROTOCOL.md §14)")
	audit := o.fs.String("audit", env("UIMS_AUDIT", "on"), "the brokers' audit trail of their decisions: on or off (UIMS_AUDIT; PROTOCOL.md §15)")
	o.fs.StringVar(&cfg.OpsAddr, "ops", env("UIMS_OPS_ADDR", ops.DefaultAddr), "operator view address, or off (UIMS_OPS_ADDR)")
	o.fs.StringVar(&cfg.Operator, "operator-token", env("UIMS_OPERATOR_TOKEN", "operator-token"), "operator view token (UIMS_OPERATOR_TOKEN)")
	mailFlags(o.fs, &cfg.SMTPAddr, &cfg.SMTPRelay, &cfg.SMTPDomains, &cfg.SMTPMaxPerIP, &cfg.SMTPMaxSize)
	smsFlags(o.fs, &cfg.SMPPAddr, &cfg.SMSC)
	faxFlags(o.fs, &cfg.Fax)
	voiceFlags(o.fs, &cfg.Voice)
	ref, _ := strconv.Atoi(env("UIMS_CONTENT_REF", "262144"))
	o.fs.IntVar(&cfg.ContentRef, "content-ref", ref, "content of this many bytes or more travels by reference through the object store (UIMS_CONTENT_REF; at least 65536)")
	tlsFlags(o.fs, &cfg.TLSCert, &cfg.TLSKey)
	o.fs.StringVar(&cfg.TLSCA, "tls-ca", env("UIMS_TLS_CA", ""), "PEM CA bundle clients trust; checked against --tls-cert (UIMS_TLS_CA)")
	o.parse(args)
	cfg.Version = version
	cfg.Seal = miap.SealMode(*seal)
	cfg.NoAudit = *audit == "off"
	scheme := "http"
	if cfg.TLSCert != "" {
		scheme = "https"
	}
	log := o.logger()
	cfg.Ready = func(a system.Addrs) {
		ops := filepath.Join(a.Creds, "ops.creds")
		smtp, smpp := "off", "off"
		if a.SMTP != "" {
			smtp = a.SMTP + "   (swaks --server " + a.SMTP + " --from carol@outside.test --to bob@example.test)"
		}
		if a.SMPP != "" {
			smpp = a.SMPP + "   (bind as system_id carol, password carol-pw: an SMS application)"
		}
		sip, fax := "off", "off (docs/FAX.md: UIMS_FAX_T37_RELAY and UIMS_FAX_T37_DOMAIN, or UIMS_FAX_HYLAFAX)"
		if a.SIP != "" {
			sip = a.SIP + "   (a call to a client's voice address leaves a message: docs/VOICE.md)"
		}
		if a.FaxSMTP != "" {
			fax = a.FaxSMTP + "   (T.37 onramps and DSNs; docs/FAX.md)"
		}
		fmt.Fprintf(os.Stderr, `
UIMS is running.
  web page and API   %s://%s   (demo tokens: alice-token, bob-token)
  operator view      %s   (token: UIMS_OPERATOR_TOKEN, operator-token unless set)
  NATS               %s   (anonymous connections are refused; parties' credentials in %s)
                     watch: nats --creds %s sub 'uims.>'   ;   nats --creds %s micro ls
  SMTP               %s
  SMPP               %s
  SIP (voice)        %s
  fax                %s
  send a message     uims send --from alice --to bob "hello"
                     curl -H 'Authorization: Bearer alice-token' -d '{"to":"bob","text":"hello"}' %s://%s/api/v1/messages
  add a bot          uims party add mybot --role gateway --medium bot ; uims bot example --bundle mybot-bundle (docs/GATEWAYS.md)
`, scheme, a.HTTP, opsURL(scheme, a.Ops), a.NATS, a.Creds, ops, ops, smtp, smpp, sip, fax, scheme, a.HTTP)
	}
	return system.Run(ctx, cfg, log)
}

func cmdNATS(ctx context.Context, args []string) error {
	o := newOpts("nats")
	addr := o.fs.String("addr", env("UIMS_NATS_ADDR", "127.0.0.1:4222"), "client address (UIMS_NATS_ADDR)")
	data := o.fs.String("data", env("UIMS_DATA_DIR", "uims-data"), "JetStream data folder (UIMS_DATA_DIR)")
	fabric := o.fs.String("fabric", env("UIMS_FABRIC_DIR", ""), "folder of the fabric's trust material: auth/, creds/, keys.json (UIMS_FABRIC_DIR; default --data); every member of a cluster names the same")
	var cc system.ClusterConfig
	o.fs.StringVar(&cc.Listen, "cluster", "", "cluster route address host:port (empty: no cluster)")
	o.fs.StringVar(&cc.Routes, "routes", "", "comma-separated routes to the other members (nats://host:port)")
	o.fs.StringVar(&cc.Name, "name", "uims", "server name, unique in the cluster")
	var tlsCert, tlsKey string
	tlsFlags(o.fs, &tlsCert, &tlsKey)
	o.parse(args)
	log := o.logger()
	var err error
	if cc.TLS, err = system.ServerTLS(tlsCert, tlsKey); err != nil {
		return err
	}
	if *fabric == "" {
		*fabric = *data
	}
	au, kf, err := system.Provision(*fabric, log)
	if err != nil {
		return err
	}
	cc.Auth = au.Authority
	ns, err := system.StartClusterNATS(*addr, *data, cc, log)
	if err != nil {
		return err
	}
	go system.PublishKeysWhenReady(ctx, ns, au, kf, log)
	log.Info().Str("creds", au.CredsDir).Msg("parties' credentials; anonymous connections are refused")
	<-ctx.Done()
	ns.Shutdown()
	ns.WaitForShutdown()
	return nil
}

func cmdBroker(ctx context.Context, args []string) error {
	o := newOpts("broker")
	o.client()
	var cfg broker.Config
	o.fs.StringVar(&o.redisURL, "redis", env("UIMS_REDIS_URL", "redis://127.0.0.1:6379/0"), "Redis URL (UIMS_REDIS_URL)")
	o.fs.StringVar(&cfg.Instance, "instance", env("UIMS_INSTANCE", ""), "instance name (UIMS_INSTANCE)")
	o.fs.DurationVar(&cfg.Deadline, "deadline", 30*time.Second, "transfer and acknowledgement deadline")
	wait := o.fs.String("redis-wait", env("UIMS_REDIS_WAIT", ""), "Redis replicas that must have each write (WAIT); default 1 for a redis-sentinel URL, else 0 (UIMS_REDIS_WAIT)")
	auditMode := o.fs.String("audit", env("UIMS_AUDIT", "on"), "the audit trail of the brokers' decisions: on or off (UIMS_AUDIT; PROTOCOL.md §15)")
	o.parse(args)
	if *auditMode != "on" && *auditMode != "off" {
		return fmt.Errorf("--audit %q: want on or off", *auditMode)
	}
	cfg.NoAudit = *auditMode == "off"
	cfg.Version = version
	cfg.Strict = o.strict
	var err error
	if cfg.WaitReplicas, err = system.WaitReplicas(o.redisURL, *wait); err != nil {
		return err
	}
	log := o.logger()
	kf, err := miap.ReadKeyFile(o.keyFile())
	if err != nil {
		return err
	}
	if system.AddGrants(kf) { // a key file written before PROTOCOL.md §3.5
		log.Warn().Str("file", o.keyFile()).Msg("built-in parties' keys carry no grant: using the built-in grants; run 'uims keys generate' to write them")
	}
	kr, err := kf.Public().Keyring() // the brokers hold no encryption key (PROTOCOL.md §14.2)
	if err != nil {
		return err
	}
	eng, err := miap.New(miap.Config{Keys: kr})
	if err != nil {
		return err
	}
	rdb, closeStore, err := system.OpenStore(o.redisURL, log)
	if err != nil {
		return err
	}
	defer closeStore()
	nc, err := o.connect("broker")
	if err != nil {
		return err
	}
	defer nc.Close()
	reg := system.NewRegistry()
	cfg.Metrics = reg
	if err := system.ServeMetrics(ctx, o.metrics, reg, log); err != nil {
		return err
	}
	b, err := broker.New(cfg, nc, rdb, eng, log)
	if err != nil {
		return err
	}
	return b.Run(ctx, nil)
}

func cmdGateway(ctx context.Context, args []string) error {
	o := newOpts("gateway")
	o.client()
	httpAddr := o.fs.String("http", env("UIMS_HTTP_ADDR", "127.0.0.1:8080"), "HTTP address (web) (UIMS_HTTP_ADDR)")
	var maxUpload int64
	webFlags(o.fs, &maxUpload)
	smtpAddr, smtpRelay, smppAddr := new(string), new(string), new(string)
	var smtpDomains []string
	var smtpPerIP int
	var smtpMaxSize int64
	var smsc sms.SMSCConfig
	mailFlags(o.fs, smtpAddr, smtpRelay, &smtpDomains, &smtpPerIP, &smtpMaxSize)
	smsFlags(o.fs, smppAddr, &smsc)
	var faxCfg fax.Config
	faxFlags(o.fs, &faxCfg)
	var tlsCert, tlsKey string
	tlsFlags(o.fs, &tlsCert, &tlsKey) // HTTPS of the web gateway
	rest := o.parse(args)
	if len(rest) != 1 {
		return errors.New("which gateway? uims gateway web|email|sms|fax")
	}
	medium := rest[0]
	log := o.logger()
	httpTLS, err := system.ServerTLS(tlsCert, tlsKey)
	if err != nil {
		return err
	}
	kr, err := o.keyring(medium)
	if err != nil {
		return err
	}
	nc, err := o.connect(medium)
	if err != nil {
		return err
	}
	defer nc.Close()
	if medium != "web" { // the web gateway serves /metrics on its own port
		if err := system.ServeMetrics(ctx, o.metrics, system.NewRegistry(), log); err != nil {
			return err
		}
	}
	switch medium {
	case "web":
		shards, err := strconv.Atoi(env("UIMS_WEB_INBOX_SHARDS", strconv.Itoa(web.DefaultInboxShards)))
		if err != nil || shards < 1 {
			return fmt.Errorf("UIMS_WEB_INBOX_SHARDS: want a positive number")
		}
		wc := web.Config{Addr: *httpAddr, TLS: httpTLS, Metrics: system.NewRegistry(),
			Kit: kit.Config{Version: version, Strict: o.strict, Seal: miap.SealMode(o.seal)}, InboxShards: shards, MaxUpload: maxUpload,
			InboxEachWrite: env("UIMS_WEB_INBOX_COMMIT", "group") == "each"}
		g, err := web.New(wc, nc, kr, log)
		if err != nil {
			return err
		}
		return g.Run(ctx, nil)
	case "email":
		g, err := email.New(email.Config{Addr: *smtpAddr, Relay: *smtpRelay, Domains: smtpDomains, MaxPerIP: smtpPerIP, MaxSize: smtpMaxSize, Kit: kit.Config{Version: version, Strict: o.strict, Seal: miap.SealMode(o.seal)}}, nc, kr, log)
		if err != nil {
			return err
		}
		return g.Run(ctx, nil)
	case "sms":
		g, err := sms.New(sms.Config{Addr: *smppAddr, SMSC: smsc, Kit: kit.Config{Version: version, Strict: o.strict, Seal: miap.SealMode(o.seal)}}, nc, kr, log)
		if err != nil {
			return err
		}
		return g.Run(ctx, nil)
	case "fax":
		if m := faxCfg.Missing(); len(m) > 0 {
			return fmt.Errorf("the fax gateway reaches no fax world: set %s", strings.Join(m, ", or "))
		}
		if faxCfg.SMTPAddr == "off" {
			faxCfg.SMTPAddr = ""
		}
		faxCfg.Kit = kit.Config{Version: version, Strict: o.strict, Seal: miap.SealMode(o.seal)}
		g, err := fax.New(faxCfg, nc, kr, log)
		if err != nil {
			return err
		}
		return g.Run(ctx, nil)
	}
	return fmt.Errorf("unknown gateway %q", medium)
}

// opsURL is the operator view's page, or a note that it is off.
func opsURL(scheme, addr string) string {
	if addr == "" {
		return "off"
	}
	return scheme + "://" + addr + "/ops.html"
}

// cmdOps runs the operator view (package ops, docs/OPS.md) as the observer
// party: it reads the whole fabric and writes nothing but its own bucket.
func cmdOps(ctx context.Context, args []string) error {
	o := newOpts("ops")
	o.client()
	var cfg ops.Config
	o.fs.StringVar(&cfg.Addr, "http", env("UIMS_OPS_ADDR", ops.DefaultAddr), "HTTP address of the operator view (UIMS_OPS_ADDR)")
	o.fs.StringVar(&cfg.Token, "operator-token", env("UIMS_OPERATOR_TOKEN", ""), "operator token; empty: the operator API is off (UIMS_OPERATOR_TOKEN)")
	o.fs.BoolVar(&cfg.Observer.NoStore, "memory", false, "keep the timelines in memory only, not in the shared bucket "+ops.DefaultBucket)
	auditPub := o.fs.String("audit-pub", env("UIMS_AUDIT_PUB", ""), "the brokers' public audit keys (uims audit keys) to verify timelines with; default: derived from the key file when it is readable (UIMS_AUDIT_PUB)")
	var tlsCert, tlsKey string
	tlsFlags(o.fs, &tlsCert, &tlsKey) // HTTPS of the operator view
	o.parse(args)
	log := o.logger()
	var err error
	if cfg.TLS, err = system.ServerTLS(tlsCert, tlsKey); err != nil {
		return err
	}
	if cfg.AuditKeys, err = auditKeys(o, *auditPub); err != nil {
		log.Warn().Err(err).Msg("no public audit keys: timelines do not show their audit chain (--audit-pub)")
		cfg.AuditKeys = nil
	}
	if cfg.Token == "" {
		log.Warn().Msg("no operator token (UIMS_OPERATOR_TOKEN): the operator API answers 404; /metrics is served")
	}
	if o.creds == "" { // the name the web gateway's observer used before it moved here
		o.creds = env("UIMS_OBSERVER_CREDS", "")
	}
	nc, err := o.connect("ops")
	if err != nil {
		return err
	}
	defer nc.Close()
	cfg.Metrics = system.NewRegistry()
	if err := system.ServeMetrics(ctx, o.metrics, cfg.Metrics, log); err != nil {
		return err
	}
	s, err := ops.New(cfg, nc, log)
	if err != nil {
		return err
	}
	return s.Run(ctx, nil)
}

// mailFlags are the e-mail gateway's flags.
// webFlags are the web gateway's flags beyond its address.
func webFlags(fs *flag.FlagSet, maxUpload *int64) {
	// A malformed value becomes -1, which web.New refuses.
	parse := func(v string) int64 {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
			return n
		}
		return -1
	}
	*maxUpload = parse(env("UIMS_WEB_MAX_UPLOAD", strconv.Itoa(web.DefaultMaxUpload)))
	fs.Func("web-max-upload", "bytes of files one web message takes (UIMS_WEB_MAX_UPLOAD; default 26214400, the SMTP SIZE)", func(v string) error {
		if *maxUpload = parse(v); *maxUpload < 0 {
			return errors.New("want a positive number of bytes")
		}
		return nil
	})
}

func mailFlags(fs *flag.FlagSet, addr, relay *string, domains *[]string, perIP *int, maxSize *int64) {
	// A malformed value becomes -1, which email.New refuses.
	atoi := func(v string) int {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			return n
		}
		return -1
	}
	*maxSize = int64(atoi(env("UIMS_SMTP_MAX_SIZE", "26214400")))
	fs.Func("smtp-max-size", "largest message the SMTP server takes, RFC 1870 SIZE, base64 counted (UIMS_SMTP_MAX_SIZE; default 26214400)", func(v string) error {
		if *maxSize = int64(atoi(v)); *maxSize < 0 {
			return errors.New("want a positive number")
		}
		return nil
	})
	*perIP = atoi(env("UIMS_SMTP_MAX_PER_IP", "10"))
	fs.Func("smtp-max-per-ip", "concurrent SMTP connections per client address (UIMS_SMTP_MAX_PER_IP; default 10)", func(v string) error {
		if *perIP = atoi(v); *perIP < 0 {
			return errors.New("want a positive number")
		}
		return nil
	})
	fs.StringVar(addr, "smtp", env("UIMS_SMTP_ADDR", "127.0.0.1:2525"), "SMTP listen address, or off (UIMS_SMTP_ADDR)")
	fs.StringVar(relay, "smtp-relay", env("UIMS_SMTP_RELAY", ""), "smarthost host:port for outside addresses (UIMS_SMTP_RELAY)")
	*domains = strings.Split(env("UIMS_SMTP_DOMAINS", "example.test"), ",")
	fs.Func("smtp-domains", "comma-separated local mail domains (UIMS_SMTP_DOMAINS; default example.test)", func(v string) error {
		*domains = strings.Split(v, ",")
		return nil
	})
}

// faxFlags are the fax gateway's flags (docs/FAX.md).
func faxFlags(fs *flag.FlagSet, c *fax.Config) {
	fs.StringVar(&c.T37Relay, "fax-t37-relay", env("UIMS_FAX_T37_RELAY", ""), "SMTP server host:port for outgoing T.37 fax mail (UIMS_FAX_T37_RELAY)")
	fs.StringVar(&c.T37Domain, "fax-t37-domain", env("UIMS_FAX_T37_DOMAIN", ""), "the T.37 offramp's mail domain: FAX=+number@domain (UIMS_FAX_T37_DOMAIN)")
	fs.StringVar(&c.SMTPAddr, "fax-smtp", env("UIMS_FAX_SMTP_ADDR", "127.0.0.1:2526"), "the fax gateway's SMTP listener for onramps and DSNs, or off (UIMS_FAX_SMTP_ADDR)")
	fs.StringVar(&c.Domain, "fax-domain", env("UIMS_FAX_DOMAIN", "fax.localhost"), "the fax gateway's own mail domain (UIMS_FAX_DOMAIN)")
	fs.StringVar(&c.HylaFAX.Addr, "fax-hylafax", env("UIMS_FAX_HYLAFAX", ""), "HylaFAX hfaxd host:port (UIMS_FAX_HYLAFAX)")
	fs.StringVar(&c.HylaFAX.User, "fax-hylafax-user", env("UIMS_FAX_HYLAFAX_USER", "uims"), "login at hfaxd (UIMS_FAX_HYLAFAX_USER)")
	c.HylaFAX.Password = env("UIMS_FAX_HYLAFAX_PASSWORD", "")
	fs.StringVar(&c.HookAddr, "fax-hook", env("UIMS_FAX_HOOK_ADDR", "127.0.0.1:4580"), "loopback HTTP address of the faxrcvd hook (UIMS_FAX_HOOK_ADDR)")
	c.HookToken = env("UIMS_FAX_HOOK_TOKEN", "")
}

// voiceFlags are the voice gateway's flags (docs/VOICE.md).
func voiceFlags(fs *flag.FlagSet, c *voice.Config) {
	fs.StringVar(&c.SIPAddr, "sip", env("UIMS_SIP_ADDR", "127.0.0.1:5060"), "the voice gateway's SIP listener, UDP and TCP (an IP address), or off (UIMS_SIP_ADDR)")
	fs.StringVar(&c.Domain, "sip-domain", env("UIMS_SIP_DOMAIN", ""), "the SIP domain of mailbox addresses and of our From; default the listener's host (UIMS_SIP_DOMAIN)")
	fs.StringVar(&c.Proxy, "sip-proxy", env("UIMS_SIP_PROXY", ""), "outbound proxy or trunk for calls out, sip:host:port (UIMS_SIP_PROXY)")
	fs.StringVar(&c.Registrar, "sip-registrar", env("UIMS_SIP_REGISTRAR", ""), "registrar to register with as <sip-user>@<sip-domain>, sip:host:port (UIMS_SIP_REGISTRAR)")
	fs.StringVar(&c.User, "sip-user", env("UIMS_SIP_USER", ""), "SIP user for registration, digest and our From; default voice (UIMS_SIP_USER)")
	c.Password = env("UIMS_SIP_PASSWORD", "")
}

// smsFlags are the SMS gateway's flags.
func smsFlags(fs *flag.FlagSet, addr *string, smsc *sms.SMSCConfig) {
	fs.StringVar(addr, "smpp", env("UIMS_SMPP_ADDR", "127.0.0.1:2775"), "SMPP listen address for applications, or off (UIMS_SMPP_ADDR)")
	fs.StringVar(&smsc.Addr, "smsc", env("UIMS_SMSC_ADDR", ""), "upstream SMS centre host:port (UIMS_SMSC_ADDR)")
	fs.StringVar(&smsc.SystemID, "smsc-system-id", env("UIMS_SMSC_SYSTEM_ID", ""), "system_id at the SMS centre (UIMS_SMSC_SYSTEM_ID)")
	fs.StringVar(&smsc.Password, "smsc-password", env("UIMS_SMSC_PASSWORD", ""), "password at the SMS centre (UIMS_SMSC_PASSWORD)")
	rate, _ := strconv.ParseFloat(env("UIMS_SMSC_RATE", "50"), 64)
	fs.Float64Var(&smsc.Rate, "smsc-rate", rate, "submit_sm per second to the SMS centre (UIMS_SMSC_RATE)")
}

func cmdProcessor(ctx context.Context, args []string) error {
	o := newOpts("processor")
	o.client()
	o.parse(args)
	log := o.logger()
	kr, err := o.keyring("proc")
	if err != nil {
		return err
	}
	nc, err := o.connect("proc")
	if err != nil {
		return err
	}
	defer nc.Close()
	if err := system.ServeMetrics(ctx, o.metrics, system.NewRegistry(), log); err != nil {
		return err
	}
	fax, missing := processor.Fax(processor.FaxConfig{})
	for _, m := range missing {
		log.Warn().Msg("fax conversions: " + m)
	}
	voice, missing := processor.Voice(processor.VoiceConfig{})
	for _, m := range missing {
		log.Warn().Msg("voice conversions: " + m)
	}
	p, err := processor.New(processor.Config{Version: version, Strict: o.strict, Seal: miap.SealMode(o.seal),
		Conversions: append(append(processor.Standard(64<<10), fax...), voice...)}, nc, kr, log)
	if err != nil {
		return err
	}
	return p.Run(ctx, nil)
}

// sendTime reads --at: empty (now), an RFC 3339 time, or a duration from
// now; Unix ms.
func sendTime(at string, now time.Time) (int64, error) {
	if at == "" {
		return 0, nil
	}
	if d, err := time.ParseDuration(at); err == nil {
		return now.Add(d).UnixMilli(), nil
	}
	t, err := time.Parse(time.RFC3339, at)
	if err != nil {
		return 0, fmt.Errorf("--at %q: an RFC 3339 time (2026-12-08T07:00:00+01:00) or a duration from now (10m)", at)
	}
	return t.UnixMilli(), nil
}

// cliKit is the command-line sender's kit (party cli), and the function
// that closes its connection.
func (o *opts) cliKit() (*kit.Kit, func(), error) {
	kr, err := o.keyring("cli")
	if err != nil {
		return nil, nil, fmt.Errorf("%w (run 'uims run' first, or point --keys/UIMS_KEYS at its key file)", err)
	}
	nc, err := o.connect("cli")
	if err != nil {
		return nil, nil, err
	}
	k, err := kit.New(nc, kr, kit.SendOnly{}, kit.Config{Gateway: "cli", Medium: "cli", Strict: o.strict, Seal: miap.SealMode(o.seal)}, o.logger().Level(zerolog.WarnLevel))
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return k, nc.Close, nil
}

// cmdCancel cancels a message 'uims send' sent and the brokers still hold
// (PROTOCOL.md §6.16).
func cmdCancel(ctx context.Context, args []string) error {
	o := newOpts("cancel")
	o.client()
	ids := o.parse(args)
	if len(ids) != 1 {
		return errors.New("usage: uims cancel <message id>")
	}
	k, done, err := o.cliKit()
	if err != nil {
		return err
	}
	defer done()
	st, err := k.Cancel(ctx, ids[0])
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, st.State, "(cancelled)")
	return nil
}

func cmdSend(ctx context.Context, args []string) error {
	o := newOpts("send")
	o.client()
	from := o.fs.String("from", "", "sending client id (required)")
	to := o.fs.String("to", "", "recipient: client id, e-mail address or phone number (required)")
	subject := o.fs.String("subject", "", "subject")
	html := o.fs.Bool("html", false, "the text is HTML")
	at := o.fs.String("at", "", "send at this time: RFC 3339 (2026-12-08T07:00:00+01:00) or from now (10m, 2h); the brokers hold it until then")
	urgent := o.fs.Bool("urgent", false, "pass the recipient's quiet hours, if its profile names the sender in urgent_from")
	wait := o.fs.Duration("wait", time.Minute, "how long to wait for the final status")
	read := o.fs.Bool("wait-read", false, "wait for the read receipt too")
	text := strings.Join(o.parse(args), " ")
	if *from == "" || *to == "" || text == "" {
		return errors.New(`usage: uims send --from alice --to bob "hello"`)
	}
	k, done, err := o.cliKit()
	if err != nil {
		return err
	}
	defer done()
	ctype := "text/plain; charset=utf-8"
	if *html {
		ctype = "text/html; charset=utf-8"
	}
	sendAt, err := sendTime(*at, time.Now())
	if err != nil {
		return err
	}
	res, err := k.Send(ctx, &kit.Submission{From: schemas.Endpoint{Medium: "cli", Address: *from, Client: *from},
		To: *to, Subject: *subject, Type: ctype, Content: []byte(text), SendAt: sendAt, Urgent: *urgent})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, res.MsgID)
	fmt.Fprintf(stdout, "%s  %s → %s:%s\n", res.Status, *from, res.Dest.Gateway, res.Dest.Address)
	if res.Status == schemas.StatusHeld {
		// 'uims run' serves the release of the command-line sender's
		// messages (its routes by notification) when this process is gone
		fmt.Fprintf(stdout, "held until %s: %s\n(uims run sends it then; 'uims cancel %s' cancels it before)\n",
			time.UnixMilli(res.HeldUntil).Format(time.RFC3339), res.Held, res.MsgID)
		return nil
	}
	// While it waits, the sender serves its notifications: a reroute to
	// the recipient's next medium is transferred from here (PROTOCOL.md §6.15).
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	go k.FollowStatus(fctx)
	deadline := time.Now().Add(*wait)
	seen := map[string]bool{res.Status: true}
	for time.Now().Before(deadline) {
		st, err := k.Query(ctx, res.MsgID)
		if err == nil {
			for _, h := range st.History {
				if !seen[h.Status] && h.Status != schemas.StatusAccepted && h.Status != schemas.StatusRouted {
					seen[h.Status] = true
					fmt.Fprintf(stdout, "%s  %s %s\n", h.Status, time.UnixMilli(h.At).Format(time.TimeOnly), h.Reason)
				}
			}
			if st.State == schemas.StatusFailed || st.State == schemas.StatusRead || (st.State == schemas.StatusDelivered && !*read) {
				fmt.Fprintln(stdout, "final:", st.State)
				if st.State == schemas.StatusFailed {
					os.Exit(1)
				}
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("no final status after %v", *wait)
}
