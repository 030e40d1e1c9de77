// Package fabrictest assembles a real UIMS fabric for tests: an embedded
// nats-server with JetStream on a random port, a real redis-server, MIAP
// keys, brokers and gateway kits, each stopped when the test ends.
package fabrictest

import (
	"context"
	"crypto/rand"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/internal/natstest"
	"github.com/uims/uims/internal/redistest"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// Fabric is a running test fabric.
type Fabric struct {
	T     testing.TB
	NATS  *server.Server
	Redis *redistest.Server
	RDB   *redis.Client
	Keys  *miap.KeyFile
	Log   zerolog.Logger
	// natsDir is the JetStream folder, kept across RestartNATS.
	natsDir string
}

// Parties are the parties that get keys by default.
var Parties = []string{"web", "email", "sms", "fax", "voice", "proc", "test", "peer"}

// Grants are what Parties are provisioned as (PROTOCOL.md §3.5): the
// gateways speak for their medium; test originates on medium "test" for
// the clients of the tests, peer plays a web or SMS destination.
var Grants = map[string]miap.Grant{
	"web":   {Role: miap.RoleGateway, Media: []string{schemas.MediumWeb}},
	"email": {Role: miap.RoleGateway, Media: []string{schemas.MediumEmail}},
	"sms":   {Role: miap.RoleGateway, Media: []string{schemas.MediumSMS}},
	"fax":   {Role: miap.RoleGateway, Media: []string{schemas.MediumFax}},
	"voice": {Role: miap.RoleGateway, Media: []string{schemas.MediumVoice}},
	"proc":  {Role: miap.RoleProcessor},
	"test":  {Role: miap.RoleGateway, Media: []string{"test"}},
	"peer":  {Role: miap.RoleGateway, Media: []string{schemas.MediumWeb, schemas.MediumSMS}},
}

// New starts NATS and Redis and makes keys for Parties and the broker.
func New(t testing.TB) *Fabric {
	t.Helper()
	srv, rdb := redistest.Run(t)
	dir := t.TempDir()
	f := &Fabric{T: t, NATS: natstest.RunDir(t, dir), natsDir: dir, Redis: srv, RDB: rdb, Keys: &miap.KeyFile{MIAP: 1},
		Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)}
	// registered before any component: runs after they all stopped, on
	// the server RestartNATS may have put in the first one's place
	t.Cleanup(func() { f.NATS.Shutdown(); f.NATS.WaitForShutdown() })
	f.AddParty(miap.BrokerParty, miap.Grant{})
	for _, p := range Parties {
		f.AddParty(p, Grants[p])
	}
	return f
}

// AddParty makes a key "<party>-1" for party with grant g (none when g is
// the zero Grant). Brokers started afterwards know it.
func (f *Fabric) AddParty(party string, g miap.Grant) {
	f.T.Helper()
	e, err := miap.NewKeyEntry(rand.Reader, party, party+"-1", time.Time{})
	if err != nil {
		f.T.Fatal(err)
	}
	e.Role, e.Media = g.Role, append([]string(nil), g.Media...)
	f.Keys.Keys = append(f.Keys.Keys, e)
}

// RestartNATS takes the NATS server down for down and brings it back on
// the same address and data: a NATS outage for every component. The
// server it brings back is shut down after the components stop, as the
// first one would have been.
func (f *Fabric) RestartNATS(down time.Duration) {
	f.T.Helper()
	f.NATS = natstest.RestartKept(f.T, f.NATS, f.natsDir, down)
}

// Conn returns a new NATS connection.
func (f *Fabric) Conn(name string) *nats.Conn { return natstest.Connect(f.T, f.NATS, name) }

// Keyring returns the keyring of one party (or every key for the broker).
func (f *Fabric) Keyring(party string) *miap.Keyring {
	kf := f.Keys
	if party != miap.BrokerParty {
		kf = kf.For(party)
	} else {
		kf = kf.Public() // the brokers hold no encryption key (PROTOCOL.md §14.2)
	}
	kr, err := kf.Keyring()
	if err != nil {
		f.T.Fatal(err)
	}
	return kr
}

// Running is a component running in the background.
type Running struct {
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// Stop stops the component and waits for it.
func (r *Running) Stop() {
	r.once.Do(func() {
		r.cancel()
		<-r.done
	})
}

func run(t testing.TB, fn func(ctx context.Context) error) *Running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &Running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- fn(ctx) }()
	t.Cleanup(r.Stop)
	return r
}

// Start runs a component (a gateway, a processor: anything with
// Run(ctx, ready)) until the test ends, and waits until it is ready; it
// fails the test if the component stops first or is not ready in 20 s.
func Start(t testing.TB, name string, runFn func(ctx context.Context, ready func()) error) *Running {
	t.Helper()
	ready := make(chan struct{})
	var once sync.Once
	r := run(t, func(ctx context.Context) error { return runFn(ctx, func() { once.Do(func() { close(ready) }) }) })
	select {
	case <-ready:
	case err := <-r.done:
		r.done <- err // for Stop
		t.Fatalf("%s stopped before it was ready: %v", name, err)
	case <-time.After(20 * time.Second):
		t.Fatalf("%s not ready after 20 s", name)
	}
	return r
}

// StartBroker starts a broker replica and waits until it serves.
func (f *Fabric) StartBroker(cfg broker.Config) (*broker.Broker, *Running) {
	f.T.Helper()
	eng, err := miap.New(miap.Config{Keys: f.Keyring(miap.BrokerParty), Now: cfg.Now})
	if err != nil {
		f.T.Fatal(err)
	}
	b, err := broker.New(cfg, f.Conn("broker"), f.RDB, eng, f.Log)
	if err != nil {
		f.T.Fatal(err)
	}
	return b, Start(f.T, "broker", b.Run)
}

// StartDefaultBroker starts a broker replica with the default configuration,
// for suites that must not depend on the broker package themselves.
func (f *Fabric) StartDefaultBroker() { f.StartBroker(broker.Config{}) }

// PutProfiles stores client profiles.
func (f *Fabric) PutProfiles(ps ...*schemas.Profile) {
	f.T.Helper()
	store := broker.NewProfiles(f.RDB, nil)
	for _, p := range ps {
		if err := store.Put(context.Background(), p); err != nil {
			f.T.Fatal(err)
		}
	}
	f.Conn("profiles").Publish(schemas.SubjectProfilesChanged, nil)
}

// StartKit starts a gateway kit for medium and waits until brokers know it.
func (f *Fabric) StartKit(m kit.Medium, cfg kit.Config) (*kit.Kit, *Running) {
	f.T.Helper()
	k, err := kit.New(f.Conn("gw-"+cfg.Gateway), f.Keyring(cfg.Gateway), m, cfg, f.Log)
	if err != nil {
		f.T.Fatal(err)
	}
	return k, Start(f.T, "kit "+cfg.Gateway, k.Run)
}

// Eventually polls cond until it holds or the timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Inbox is a gateway medium that records deliveries and notifications in
// memory: the simplest medium, for tests of the fabric itself.
type Inbox struct {
	mu        sync.Mutex
	Delivered map[string]*kit.Delivery
	Count     map[string]int
	Notes     []schemas.StatusEvent
	// Status is what Deliver reports; default delivered.
	Status string
	// Fail, if set, makes Deliver fail with it.
	Fail error
}

// NewInbox returns an empty Inbox.
func NewInbox() *Inbox {
	return &Inbox{Delivered: map[string]*kit.Delivery{}, Count: map[string]int{}}
}

// Deliver implements kit.Medium; a second delivery of a message id is a no-op.
func (m *Inbox) Deliver(ctx context.Context, d *kit.Delivery) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Fail != nil {
		return "", m.Fail
	}
	if _, dup := m.Delivered[d.Routed.IMI.MsgID]; !dup {
		m.Delivered[d.Routed.IMI.MsgID] = d
	}
	m.Count[d.Routed.IMI.MsgID]++
	if m.Status != "" {
		return m.Status, nil
	}
	return schemas.StatusDelivered, nil
}

// Notify implements kit.Medium.
func (m *Inbox) Notify(ctx context.Context, ev *schemas.StatusEvent) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.Notes = append(m.Notes, *ev)
	return nil
}

// All returns every delivery, in no particular order.
func (m *Inbox) All() []*kit.Delivery {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*kit.Delivery, 0, len(m.Delivered))
	for _, d := range m.Delivered {
		out = append(out, d)
	}
	return out
}

// Get returns the delivery of a message id.
func (m *Inbox) Get(msgID string) *kit.Delivery {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.Delivered[msgID]
}

// Held implements kit.Holder: the reference of a message it holds.
func (m *Inbox) Held(ctx context.Context, q *schemas.HeldQuery) (*kit.AckRef, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if d := m.Delivered[q.MsgID]; d != nil {
		ref := d.Ref
		return &ref, nil
	}
	return nil, nil
}

// Deliveries returns how many times Deliver was called for a message id.
func (m *Inbox) Deliveries(msgID string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.Count[msgID]
}

// Len returns the number of distinct messages delivered.
func (m *Inbox) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.Delivered)
}

// Statuses returns the notified statuses of a message, in order.
func (m *Inbox) Statuses(msgID string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, n := range m.Notes {
		if n.MsgID == msgID {
			out = append(out, n.Status)
		}
	}
	return out
}

// Note returns the last notification of a message.
func (m *Inbox) Note(msgID string) *schemas.StatusEvent {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := len(m.Notes) - 1; i >= 0; i-- {
		if m.Notes[i].MsgID == msgID {
			n := m.Notes[i]
			return &n
		}
	}
	return nil
}

// NoteOf returns the last notification of a message with a status, nil.
func (m *Inbox) NoteOf(msgID, status string) *schemas.StatusEvent {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := len(m.Notes) - 1; i >= 0; i-- {
		if m.Notes[i].MsgID == msgID && m.Notes[i].Status == status {
			n := m.Notes[i]
			return &n
		}
	}
	return nil
}
