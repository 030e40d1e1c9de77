package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/gateways/web"
	"github.com/uims/uims/internal/groupcommit"
	"github.com/uims/uims/internal/system"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/ops"
	"github.com/uims/uims/schemas"
)

const contentType = "text/plain; charset=utf-8"

// fabric is everything a run needs: NATS, Redis, keys, the broker side, the
// web gateway (whose kit originates and receives the real flow's messages)
// and the gateway ends of the reference flows.
type fabric struct {
	cfg     *Config
	log     zerolog.Logger
	dir     string
	tempDir bool
	ns      *server.Server
	natsURL string
	// credsDir holds the parties' NATS credentials when the embedded
	// server requires authentication (as `uims run` does); empty: none.
	credsDir string
	redis    *RedisServer
	redisURL string
	keys     *miap.KeyFile
	keysPath string
	side     sideHandle
	// pins is where the processes run (--pin); unpin puts this process's
	// CPUs back.
	pins  *pinPlan
	unpin func()

	gw  *nats.Conn // the reference flows' gateway connection (originator and destination)
	js  jetstream.JetStream
	rdb *redis.Client // the Redis reference line

	subs []*nats.Subscription
	sfw  *groupcommit.Writer // the store-and-forward inbox's group commit; nil: each write

	web       *web.Gateway
	webNC     *nats.Conn
	obsNC     *nats.Conn // the operator view's observer (ops), with authentication
	webStop   context.CancelFunc
	webDone   chan error
	webStrict bool
	// brokersNC is the brokers flow's connection while it runs (brokers.go).
	brokersNC *nats.Conn
	// kitSent counts the real flow's delivered messages (accounting.go).
	kitSent atomic.Int64
}

func miapNonceHex() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func startFabric(ctx context.Context, cfg *Config) (f *fabric, err error) {
	f = &fabric{cfg: cfg, log: newLogger(cfg.LogLevel).With().Str("process", "bench").Logger()}
	defer func() {
		if err != nil {
			f.close()
			f = nil
		}
	}()
	if f.pins, err = planPins(cfg); err != nil {
		return
	}
	if f.unpin, err = f.pins.pinSelf(); err != nil {
		return
	}
	if f.dir = cfg.DataDir; f.dir == "" {
		if f.dir, err = os.MkdirTemp("", "uims-bench-"); err != nil {
			return
		}
		f.tempDir = true
	} else if err = os.MkdirAll(f.dir, 0o700); err != nil {
		return
	}

	// NATS: embedded as `uims run` starts it (JetStream, sync always,
	// authentication: every part connects as its party), or given.
	if f.natsURL = cfg.NATSURL; f.natsURL == "" {
		var cc system.ClusterConfig
		if !cfg.NoAuth {
			var au *system.Auth
			if au, err = system.OpenAuth(f.dir); err != nil {
				return
			}
			for _, id := range system.Builtin {
				if _, err = au.Creds(id); err != nil {
					return
				}
			}
			cc.Auth, f.credsDir = au.Authority, au.CredsDir
		}
		if cfg.Sync == "" || cfg.Sync == "always" {
			f.ns, err = system.StartClusterNATS("127.0.0.1:0", f.dir, cc, f.log)
		} else {
			f.ns, err = startNATSNoSync(f.dir, cc)
		}
		if err != nil {
			return
		}
		f.natsURL = f.ns.ClientURL()
	}
	// Redis: a real redis-server started here, or given.
	if f.redisURL = cfg.RedisURL; f.redisURL == "" {
		rdir := filepath.Join(f.dir, "redis")
		if err = os.MkdirAll(rdir, 0o700); err != nil {
			return
		}
		if f.redis, err = StartRedis(rdir); err != nil {
			return
		}
		if f.pins.on() {
			if err = f.pins.pin(f.redis.PID(), f.pins.redis); err != nil {
				return
			}
		}
		f.redisURL = f.redis.URL()
	}

	// Keys for the broker and the web gateway.
	f.keys = &miap.KeyFile{MIAP: 1}
	for _, p := range []string{miap.BrokerParty, "web"} {
		e, kerr := miap.NewKeyEntry(rand.Reader, p, p+"-bench", time.Time{})
		if kerr != nil {
			return nil, kerr
		}
		if g, ok := system.Grants[p]; ok { // web speaks for web senders (PROTOCOL.md §3.5)
			e.Role, e.Media = g.Role, g.Media
		}
		f.keys.Keys = append(f.keys.Keys, e)
	}
	f.keysPath = filepath.Join(f.dir, "keys.json")
	if err = miap.WriteKeyFile(f.keysPath, f.keys); err != nil {
		return
	}

	if f.gw, err = nats.Connect(f.natsURL, f.connOpts("bench-gw", "admin")...); err != nil {
		return
	}
	if f.js, err = jetstream.New(f.gw); err != nil {
		return
	}
	// The demo profiles alice and bob, as `uims run` loads them.
	prdb, err := broker.OpenRedis(f.redisURL)
	if err != nil {
		return
	}
	_, err = system.LoadProfiles(ctx, prdb, f.gw, "")
	prdb.Close()
	if err != nil {
		return
	}
	ropt, err := redis.ParseURL(f.redisURL)
	if err != nil {
		return
	}
	ropt.PoolSize = 512
	f.rdb = redis.NewClient(ropt)
	for _, s := range []*redis.Script{sfCreate, sfTransition} {
		if err = s.Load(ctx, f.rdb).Err(); err != nil {
			return
		}
	}

	// The broker side.
	scfg := SideConfig{NATSURL: f.natsURL, CredsDir: f.credsDir, RedisURL: f.redisURL, Keys: f.keys, NoTrace: cfg.NoTrace, NoAudit: cfg.NoAudit, Bare: cfg.Bare,
		Log: f.log.With().Str("process", "bench-broker").Logger()}
	if len(cfg.BrokerArgv) > 0 {
		f.side, err = startBrokerProcs(f.pins.brokerArgv(cfg.BrokerArgv), scfg, f.keysPath, cfg.LogLevel)
	} else {
		var s *Side
		if s, err = StartSide(ctx, scfg); err == nil {
			f.side = localSide{s}
		}
	}
	if err != nil {
		return
	}

	// The reference flows' destinations.
	webKeys, err := f.keys.For("web").Keyring()
	if err != nil {
		return
	}
	eng, err := miap.New(miap.Config{Keys: webKeys})
	if err != nil {
		return
	}
	if f.sfw, err = ensureSFInbox(ctx, f.gw, f.js, cfg.InboxEachWrite); err != nil {
		return
	}
	if err = ensureJSRef(ctx, f.js); err != nil {
		return
	}
	sub, err := serveBareDG(f.gw, cfg.Bare)
	if err != nil {
		return
	}
	f.subs = append(f.subs, sub)
	if sub, err = serveSFDG(f.gw, f.js, f.sfw, eng); err != nil {
		return
	}
	f.subs = append(f.subs, sub)
	f.gw.Flush()
	return f, nil
}

// startNATSNoSync starts the embedded server as system.StartClusterNATS
// does, but with JetStream's default sync interval instead of a sync on
// every write.
func startNATSNoSync(dir string, cc system.ClusterConfig) (*server.Server, error) {
	opts := &server.Options{ServerName: "uims", Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true,
		JetStream: true, StoreDir: filepath.Join(dir, "nats"), MaxPayload: 8 << 20}
	if cc.Auth != nil {
		if err := cc.Auth.ServerOptions(opts, filepath.Join(dir, "nats", "accounts")); err != nil {
			return nil, err
		}
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, err
	}
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("bench: nats not ready")
	}
	return ns, nil
}

// useWeb makes sure the web gateway runs in the given MIAP mode and that
// the brokers route to it.
func (f *fabric) useWeb(ctx context.Context, strict bool) error {
	if f.web != nil && f.webStrict == strict {
		return nil
	}
	f.stopWeb()
	keys, err := f.keys.For("web").Keyring()
	if err != nil {
		return err
	}
	if f.webNC, err = nats.Connect(f.natsURL, f.connOpts("uims-web", "web")...); err != nil {
		return err
	}
	if f.credsDir != "" { // the observer reads the whole fabric, which web may not
		if f.obsNC, err = nats.Connect(f.natsURL, f.connOpts("uims-ops", "ops")...); err != nil {
			f.webNC.Close()
			return err
		}
	}
	g, err := web.New(web.Config{Addr: "127.0.0.1:0", InboxShards: f.cfg.InboxShards, InboxEachWrite: f.cfg.InboxEachWrite, Kit: kit.Config{Strict: strict, NoTrace: f.cfg.NoTrace, Seal: f.cfg.Seal, ContentRef: f.cfg.ContentRef}},
		f.webNC, keys, f.log)
	if err != nil {
		f.closeWebConns()
		return err
	}
	wctx, cancel := context.WithCancel(ctx)
	if !f.cfg.NoTrace {
		// the operator view's observer listens, as under uims run (in
		// memory: its bucket's writes are not part of these figures)
		obsNC := f.obsNC
		if obsNC == nil { // no authentication: any connection may listen
			obsNC = f.webNC
		}
		obs := ops.NewObserver(obsNC, nil, ops.ObserverConfig{NoStore: true}, f.log)
		go obs.Run(wctx, nil)
	}
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- g.Run(wctx, func() { close(ready) }) }()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		return fmt.Errorf("bench: web gateway: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		return errors.New("bench: web gateway not ready")
	}
	f.web, f.webStop, f.webDone, f.webStrict = g, cancel, done, strict
	// Wait until the brokers route to it.
	kf := &kitFlow{k: g.Kit(), sent: &f.kitSent}
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := kf.send(ctx, []byte("warm up"))
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: no route to the web gateway: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (f *fabric) stopWeb() {
	if f.web == nil {
		return
	}
	f.webStop()
	<-f.webDone
	f.closeWebConns()
	f.web = nil
}

func (f *fabric) closeWebConns() {
	f.webNC.Close()
	if f.obsNC != nil {
		f.obsNC.Close()
		f.obsNC = nil
	}
}

// settle waits until the asynchronous work of the last cell is done: the
// status notifications stored and taken by the originating gateway.
func (f *fabric) settle(ctx context.Context) {
	deadline := time.Now().Add(30 * time.Second)
	var last uint64
	stable := 0
	for time.Now().Before(deadline) && stable < 3 {
		time.Sleep(50 * time.Millisecond)
		st, err := f.js.Stream(ctx, schemas.StatusStream)
		if err != nil {
			return
		}
		info, err := st.Info(ctx)
		if err != nil {
			return
		}
		pending := uint64(0)
		if c, err := st.Consumer(ctx, "status-web"); err == nil {
			if ci, err := c.Info(ctx); err == nil {
				pending = ci.NumPending + uint64(ci.NumAckPending)
			}
		}
		if info.State.LastSeq == last && pending == 0 {
			stable++
		} else {
			stable = 0
		}
		last = info.State.LastSeq
	}
}

// connOpts are the options of the load generator's own connections: to an
// embedded server in process, as uims run connects its components (the
// bare flow's connection too, so that the ceiling is measured alike), as
// party when the server requires authentication.
func (f *fabric) connOpts(name, party string) []nats.Option {
	opts := append([]nats.Option{nats.Name(name), nats.MaxReconnects(-1)}, credsOpts(f.credsDir, party)...)
	if f.ns != nil {
		opts = append(opts, nats.InProcessServer(f.ns))
	}
	return opts
}

// purge empties the streams that hold content, so that a run's disk use
// stays small.
func (f *fabric) purge(ctx context.Context) {
	names := []string{"OBJ_uims_content", web.JournalStream, sfJournalStream}
	for i := range web.DefaultInboxShards {
		names = append(names, web.InboxStreamName(i), shardName(sfInboxStream, i), shardName(jsRefStream, i))
	}
	for _, name := range names {
		if st, err := f.js.Stream(ctx, name); err == nil {
			st.Purge(ctx)
		}
	}
}

func (f *fabric) close() {
	if f == nil {
		return
	}
	f.stopWeb()
	for _, s := range f.subs {
		s.Unsubscribe()
	}
	if f.sfw != nil {
		f.sfw.Close()
	}
	if f.side != nil {
		f.side.Close()
	}
	if f.gw != nil {
		f.gw.Close()
	}
	if f.rdb != nil {
		f.rdb.Close()
	}
	f.redis.Stop()
	if f.ns != nil {
		f.ns.Shutdown()
		f.ns.WaitForShutdown()
	}
	if f.tempDir {
		os.RemoveAll(f.dir)
	}
	if f.unpin != nil {
		f.unpin()
	}
}

// A flow sends one message and returns once it is delivered.
type flow interface {
	send(ctx context.Context, content []byte) error
}

// kitFlow is the real flow: web to web through the web gateway's kit.
// sent, if not nil, counts the messages it saw delivered (the accounting
// check, accounting.go).
type kitFlow struct {
	k    *kit.Kit
	sent *atomic.Int64
}

func (f *kitFlow) send(ctx context.Context, content []byte) error {
	res, err := f.k.Send(ctx, &kit.Submission{
		From: schemas.Endpoint{Medium: schemas.MediumWeb, Address: "alice", Client: "alice", Name: "Alice Example"},
		To:   "bob", Type: contentType, Content: content})
	if err != nil {
		return err
	}
	if res.Status != schemas.StatusDelivered {
		return fmt.Errorf("status %s", res.Status)
	}
	if f.sent != nil {
		f.sent.Add(1)
	}
	return nil
}

// jsFlow is the JetStream reference line: one synchronous publish of the
// content, with a message id, to a file stream shaped like the web inbox
// (the write every delivered web message waits for).
type jsFlow struct{ js jetstream.JetStream }

const (
	jsRefStream  = "BENCH_JS_REF"
	jsRefSubject = "uims.bench.jsref."
)

func ensureJSRef(ctx context.Context, js jetstream.JetStream) error {
	return ensureShards(ctx, js, jsRefStream, jsRefSubject, jetstream.DefaultPersistMode)
}

// ensureShards creates the streams name_0… with subjects prefix<k>.>, as
// many as the web gateway's inbox has by default: the reference lines write
// as the web inbox does, side by side by message id.
func ensureShards(ctx context.Context, js jetstream.JetStream, name, prefix string, persist jetstream.PersistModeType) error {
	for i := range web.DefaultInboxShards {
		st, err := js.Stream(ctx, shardName(name, i))
		if err == nil && st.CachedInfo().Config.PersistMode != persist {
			// the mode cannot change: another run's streams, in a --data folder
			if err := js.DeleteStream(ctx, shardName(name, i)); err != nil {
				return err
			}
		}
		_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			PersistMode: persist,
			Name:        shardName(name, i), Subjects: []string{prefix + strconv.Itoa(i) + ".>"}, Storage: jetstream.FileStorage,
			MaxAge: 30 * 24 * time.Hour, Duplicates: 10 * time.Minute,
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func shardName(name string, i int) string { return name + "_" + strconv.Itoa(i) }

// shardSubject returns prefix<k>. for the shard of id, as the web inbox
// chooses it.
func shardSubject(prefix, id string) string {
	return prefix + strconv.Itoa(web.InboxShard(id, web.DefaultInboxShards)) + "."
}

func (f *jsFlow) send(ctx context.Context, content []byte) error {
	id := kit.NewMsgID()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	_, err := f.js.Publish(ctx, shardSubject(jsRefSubject, id)+"bob."+id, content, jetstream.WithMsgID(id))
	return err
}

// redisFlow is the Redis reference line: per operation one round trip
// with SET NX (a nonce) and a Lua call (a transaction, as the broker
// stores one), pipelined, as the broker's IMI step does.
type redisFlow struct{ rdb *redis.Client }

func (f *redisFlow) send(ctx context.Context, _ []byte) error {
	id := kit.NewMsgID()
	pipe := f.rdb.Pipeline()
	claim := pipe.SetNX(ctx, "bench:ref:nonce:"+id, 1, 270*time.Second)
	pipe.EvalSha(ctx, sfCreate.Hash(), []string{"bench:ref:tx:" + id, "bench:ref:deadlines"}, time.Now().UnixMilli(), 600,
		"state", "routed", "og", "web", "sender", "alice", "recipient", "bob")
	if _, err := pipe.Exec(ctx); err != nil {
		return err
	}
	if !claim.Val() {
		return miap.ErrReplay
	}
	return nil
}
