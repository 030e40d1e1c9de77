// Package system assembles UIMS processes from the components: the whole
// fabric in one process for `uims run` (embedded NATS with JetStream, the
// profile store, broker, processor and every gateway that needs no outside
// service), and the single-role processes of a scaled deployment. It is the
// only place, with package main, that imports every component.
package system

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/miap/natsauth"
	"github.com/uims/uims/schemas"
)

// Parties are the built-in parties that sign MIAP frames (Builtin's
// gateways, processor and command-line sender): a generated key file holds
// a key for each.
var Parties = func() []string {
	var out []string
	for _, id := range Builtin {
		if id.signs() {
			out = append(out, id.Name)
		}
	}
	return out
}()

// Grants are what the built-in parties are provisioned as (PROTOCOL.md
// §3.5), from Builtin: each gateway speaks for senders on its own medium,
// the processor for none, and cli (`uims send`, the operator's tool) names
// clients on medium cli.
var Grants = func() map[string]miap.Grant {
	out := map[string]miap.Grant{}
	for _, id := range Builtin {
		if id.signs() {
			out[id.Name] = miap.Grant{Role: string(id.Role), Media: id.Media}
		}
	}
	return out
}()

// AddGrants gives the key entries of built-in parties that carry no grant
// (key files written before PROTOCOL.md §3.5) the grant of Grants, so that
// old data folders keep working. It reports whether it changed an entry.
func AddGrants(kf *miap.KeyFile) bool {
	changed := false
	for i := range kf.Keys {
		e := &kf.Keys[i]
		g, ok := Grants[e.Party]
		if !ok || e.Role != "" || len(e.Media) > 0 {
			continue
		}
		e.Role, e.Media = g.Role, append([]string(nil), g.Media...)
		changed = true
	}
	return changed
}

// ClusterConfig makes an embedded server a member of a NATS cluster.
type ClusterConfig struct {
	Name   string // server name
	Listen string // cluster route listen address, host:port
	Routes string // comma-separated nats://host:port of the other members
	// Auth, if set, is the authority the server trusts: anonymous
	// connections are refused, parties connect with its credentials.
	Auth *natsauth.Authority
	// TLS, if set, makes the client port require TLS (ServerTLS,
	// ApplyServerTLS); routes stay as they are.
	TLS *tls.Config
}

// StartNATS starts an embedded nats-server with JetStream (data under dir,
// fsync on every write: an acknowledgement means stored) listening on addr.
func StartNATS(addr, dir string, log zerolog.Logger) (*server.Server, error) {
	return StartClusterNATS(addr, dir, ClusterConfig{}, log)
}

// StartClusterNATS is StartNATS joining a cluster (`uims nats`).
func StartClusterNATS(addr, dir string, cc ClusterConfig, log zerolog.Logger) (*server.Server, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("system: nats address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("system: nats port %q: %w", portStr, err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{ServerName: "uims", Host: host, Port: port, NoSigs: true, NoLog: true,
		JetStream: true, StoreDir: filepath.Join(dir, "nats"), MaxPayload: 8 << 20, SyncAlways: true,
		// streams in asynchronous persist mode (the web inbox, written
		// through a group-commit journal) are fsynced this often; their
		// journal keeps records much longer (internal/groupcommit)
		SyncInterval: 10 * time.Second}
	if cc.Listen != "" {
		ch, cp, err := net.SplitHostPort(cc.Listen)
		if err != nil {
			return nil, fmt.Errorf("system: cluster address %q: %w", cc.Listen, err)
		}
		opts.Cluster.Name, opts.Cluster.Host = "uims", ch
		opts.Cluster.Port, _ = strconv.Atoi(cp)
		opts.Routes = server.RoutesFromStr(cc.Routes)
		opts.ServerName = cc.Name
	}
	ApplyServerTLS(opts, cc.TLS)
	if cc.Auth != nil {
		if err := cc.Auth.ServerOptions(opts, filepath.Join(dir, "nats", "accounts")); err != nil {
			return nil, err
		}
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("system: nats: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("system: nats not ready on %s (is the port taken?)", addr)
	}
	log.Info().Str("url", ns.ClientURL()).Str("store", opts.StoreDir).Bool("auth", cc.Auth != nil).Msg("embedded NATS with JetStream started (sync always)")
	return ns, nil
}

// OpenStore returns the profile, nonce and transaction store: Redis at url,
// or, when url is empty, an embedded Redis-compatible store in this process,
// which is NOT durable. The returned stop function closes it.
func OpenStore(url string, log zerolog.Logger) (redis.UniversalClient, func(), error) {
	if url != "" {
		rdb, err := broker.OpenRedis(url)
		if err != nil {
			return nil, nil, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := rdb.Ping(ctx).Err(); err != nil {
			rdb.Close()
			return nil, nil, fmt.Errorf("system: redis %s: %w", url, err)
		}
		return rdb, func() { rdb.Close() }, nil
	}
	mr := miniredis.NewMiniRedis()
	if err := mr.StartAddr("127.0.0.1:0"); err != nil {
		return nil, nil, fmt.Errorf("system: embedded store: %w", err)
	}
	log.Warn().Str("addr", mr.Addr()).Msg("embedded in-memory store (miniredis): NOT durable, profiles reload from the profile file at start; set UIMS_REDIS_URL for Redis")
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), PoolSize: 256, Protocol: 2})
	return rdb, func() { rdb.Close(); mr.Close() }, nil
}

// WaitReplicas is how many Redis replicas must have each of the brokers'
// writes (broker.Config.WaitReplicas): the number given, or by default 1
// for a Sentinel URL, whose failover would otherwise lose the writes its
// old master had not replicated yet, and 0 otherwise.
func WaitReplicas(redisURL, given string) (int, error) {
	if given != "" {
		n, err := strconv.Atoi(given)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("system: UIMS_REDIS_WAIT %q: want a number of replicas", given)
		}
		return n, nil
	}
	if strings.HasPrefix(redisURL, "redis-sentinel://") {
		return 1, nil
	}
	return 0, nil
}

// LoadOrCreateKeys reads the key file at path, creating it with a key for
// each party and the broker key K2 when it does not exist, adding keys for
// parties it lacks, and grants (Grants) to the built-in parties' keys that
// have none.
func LoadOrCreateKeys(path string, parties []string, log zerolog.Logger) (*miap.KeyFile, error) {
	kf, err := miap.ReadKeyFile(path)
	created := false
	if errors.Is(err, os.ErrNotExist) {
		kf, created, err = &miap.KeyFile{MIAP: 1}, true, nil
	}
	if err != nil {
		return nil, err
	}
	have := map[string]bool{}
	for _, e := range kf.Keys {
		have[e.Party] = true
	}
	granted := AddGrants(kf)
	added := false
	for _, p := range append([]string{miap.BrokerParty}, parties...) {
		if have[p] {
			continue
		}
		e, err := miap.NewKeyEntry(rand.Reader, p, miap.NewKid(p, time.Now()), time.Time{})
		if err != nil {
			return nil, err
		}
		if g, ok := Grants[p]; ok {
			e.Role, e.Media = g.Role, append([]string(nil), g.Media...)
		}
		kf.Keys = append(kf.Keys, e)
		added = true
	}
	xadded, err := kf.AddXKeys(rand.Reader) // encryption keys (PROTOCOL.md §14.2)
	if err != nil {
		return nil, err
	}
	if added || granted || xadded {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		if err := miap.WriteKeyFile(path, kf); err != nil {
			return nil, err
		}
		switch {
		case created:
			log.Info().Str("file", path).Msg("generated MIAP keys (keep this file secret)")
		case added:
			log.Info().Str("file", path).Msg("added MIAP keys for new parties")
		}
		if granted && !created {
			log.Info().Str("file", path).Msg("added grants (role, media) to the keys of built-in parties (PROTOCOL.md §3.5)")
		}
	}
	return kf, nil
}

// DemoProfiles are seeded when no profile file is given.
func DemoProfiles() []*schemas.Profile {
	return []*schemas.Profile{
		{ID: "alice", Name: "Alice Example", Token: "alice-token",
			Addresses: map[string]string{"web": "alice", "email": "alice@example.test", "sms": "+15550100"},
			Prefer:    []string{"web", "email", "sms"},
			SMPP:      &schemas.SMPPCredentials{SystemID: "alice", Password: "alice-pw"},
			SMTP:      &schemas.SMTPCredentials{Username: "alice", Password: "alice-smtp"}},
		{ID: "bob", Name: "Bob Example", Token: "bob-token",
			Addresses: map[string]string{"web": "bob", "email": "bob@example.test", "sms": "+15550101"},
			Prefer:    []string{"web", "email", "sms"},
			SMPP:      &schemas.SMPPCredentials{SystemID: "bob", Password: "bob-pw"},
			SMTP:      &schemas.SMTPCredentials{Username: "bob", Password: "bob-smtp"}},
		// carol is an SMS application (e.g. Kannel bound as carol): messages
		// to her go out over SMPP first.
		{ID: "carol", Name: "Carol (SMS application)", Token: "carol-token",
			Addresses: map[string]string{"web": "carol", "sms": "+15550102"},
			Prefer:    []string{"sms", "web"},
			SMPP:      &schemas.SMPPCredentials{SystemID: "carol", Password: "carol-pw"}},
		{ID: "operator", Name: "Operator", Token: "operator-token", Operator: true},
	}
}

// LoadProfiles stores the profiles of the file at path (or the demo
// profiles when path is empty) and tells the brokers.
func LoadProfiles(ctx context.Context, rdb redis.UniversalClient, nc *nats.Conn, path string) ([]*schemas.Profile, error) {
	ps := DemoProfiles()
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("system: profiles: %w", err)
		}
		defer f.Close()
		if ps, err = broker.ReadProfiles(f); err != nil {
			return nil, err
		}
	}
	store := broker.NewProfiles(rdb, nil)
	for _, p := range ps {
		if err := store.Put(ctx, p); err != nil {
			return nil, err
		}
	}
	if nc != nil {
		nc.Publish(schemas.SubjectProfilesChanged, nil)
	}
	return ps, nil
}

// Logger returns a zerolog logger writing console or JSON lines to stderr.
func Logger(format, level string) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		lvl = zerolog.InfoLevel
	}
	var l zerolog.Logger
	switch format {
	case "json":
		l = zerolog.New(os.Stderr)
	case "console", "":
		l = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: "15:04:05.000"})
	default:
		return l, fmt.Errorf("system: log format %q (console or json)", format)
	}
	return l.Level(lvl).With().Timestamp().Logger(), nil
}

// NewRegistry returns a Prometheus registry with the Go runtime and process
// collectors, for one process's components to register into.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// ServeMetrics serves reg on addr at /metrics until ctx is done (the
// single-role commands; `uims run` serves it on the web gateway's port).
func ServeMetrics(ctx context.Context, addr string, reg *prometheus.Registry, log zerolog.Logger) error {
	if addr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("system: metrics listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	go func() { <-ctx.Done(); srv.Close() }()
	log.Info().Str("addr", ln.Addr().String()).Msg("metrics at /metrics")
	return nil
}
