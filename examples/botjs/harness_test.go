package botjs_test

// The harness: an authenticated fabric (NATS with decentralised JWT,
// redis, a broker, the web gateway), the bot's party bundle, the bot as a
// subprocess, and alice's side of the web API.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/gateways/web"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/internal/natstest"
	"github.com/uims/uims/internal/peertest"
	"github.com/uims/uims/internal/redistest"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/miap/bundle"
	"github.com/uims/uims/miap/natsauth"
	"github.com/uims/uims/schemas"
)

const (
	botParty   = "botjs"
	natsJSVer  = "2.29.3"
	installCmd = "apt-get install nodejs npm && (cd examples/botjs && npm ci)"
)

// requireNode returns the path of node, or skips loudly (fails under CI)
// when node or the locked npm packages are missing.
func requireNode(t *testing.T) string {
	t.Helper()
	missing := func(what string) { peertest.Missing(t, what, installCmd) }
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node (Node.js) not on PATH")
	}
	b, err := os.ReadFile(filepath.Join("node_modules", "nats", "package.json"))
	if err != nil {
		missing("npm package nats not installed in examples/botjs/node_modules")
	}
	var pkg struct{ Version string }
	if json.Unmarshal(b, &pkg); pkg.Version != natsJSVer {
		missing(fmt.Sprintf("npm package nats is %q, package-lock.json wants %s", pkg.Version, natsJSVer))
	}
	return node
}

// packageVersion is the bot's version (package.json), which its micro
// service reports.
func packageVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("package.json")
	if err != nil {
		t.Fatal(err)
	}
	var pkg struct{ Version string }
	if err := json.Unmarshal(b, &pkg); err != nil || pkg.Version == "" {
		t.Fatalf("package.json: version %q, %v", pkg.Version, err)
	}
	return pkg.Version
}

type fabric struct {
	ns     *server.Server
	auth   *natsauth.Authority
	keys   *miap.KeyFile
	web    string
	bundle string
	broker broker.Config
}

// fabricConfig changes the fabric of startFabric.
type fabricConfig struct {
	// strict: the brokers enforce strict mode, the web gateway speaks it.
	strict bool
	// deadline and grace, if set, are the brokers' transfer deadline and
	// the grace the sweeper adds to it (broker.Config).
	deadline, grace time.Duration
}

// startFabric starts NATS with authentication, redis, a broker, the web
// gateway, the profiles, and writes the bot's party bundle.
func startFabric(t *testing.T, fc fabricConfig) *fabric {
	t.Helper()
	a, err := natsauth.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ns := natstest.RunAuth(t, a)
	_, rdb := redistest.Run(t)
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)

	kf := &miap.KeyFile{MIAP: 1}
	add := func(party, role string, media ...string) {
		e, err := miap.NewKeyEntry(rand.Reader, party, party+"-1", time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		e.Role, e.Media = role, media
		kf.Keys = append(kf.Keys, e)
	}
	add(miap.BrokerParty, "")
	add("web", "gateway", schemas.MediumWeb)
	add(botParty, "gateway", schemas.MediumBot)
	keyring := func(kf *miap.KeyFile) *miap.Keyring {
		kr, err := kf.Keyring()
		if err != nil {
			t.Fatal(err)
		}
		return kr
	}

	// the broker, on a connection issued for role broker
	eng, err := miap.New(miap.Config{Keys: keyring(kf)})
	if err != nil {
		t.Fatal(err)
	}
	bcfg := broker.Config{Strict: fc.strict, Deadline: fc.deadline, Grace: fc.grace}
	b, err := broker.New(bcfg, natstest.ConnectAs(t, ns, a, "broker", natsauth.RoleBroker, nil, nil), rdb, eng, log)
	if err != nil {
		t.Fatal(err)
	}
	fabrictest.Start(t, "broker", b.Run)

	// the profiles: alice on the web; echo, the bot's own client, on medium bot
	store := broker.NewProfiles(rdb, nil)
	for _, p := range []*schemas.Profile{
		{ID: "alice", Name: "Alice", Token: "alice-token", Addresses: map[string]string{schemas.MediumWeb: "alice"}},
		{ID: "echo", Name: "Echo bot", Addresses: map[string]string{schemas.MediumBot: "echo"}, Prefer: []string{schemas.MediumBot}},
	} {
		if err := store.Put(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}

	// the web gateway, on a connection issued for role gateway, medium web
	wnc := natstest.ConnectAs(t, ns, a, "web", natsauth.RoleGateway, []string{schemas.MediumWeb}, nil)
	g, err := web.New(web.Config{Addr: "127.0.0.1:0", MaxBody: 64 << 10, Kit: kit.Config{Strict: fc.strict}}, wnc, keyring(kf.For("web")), log)
	if err != nil {
		t.Fatal(err)
	}
	fabrictest.Start(t, "web gateway", g.Run)

	// the bot's party bundle, written as `uims party add` writes it
	dir := t.TempDir()
	creds, err := a.Issue(botParty, natsauth.RoleGateway, []string{schemas.MediumBot})
	if err != nil {
		t.Fatal(err)
	}
	meta := bundle.Meta{Party: botParty, Role: "gateway", Media: []string{schemas.MediumBot}, NATSURL: ns.ClientURL(), InboxPrefix: natsauth.InboxPrefix(botParty)}
	if err := bundle.Write(dir, meta, kf.For(botParty), creds); err != nil {
		t.Fatal(err)
	}
	return &fabric{ns: ns, auth: a, keys: kf, web: "http://" + g.Addr(), bundle: dir, broker: bcfg}
}

// bot is `node bot.js` running until stopped or the test ends.
type bot struct {
	cmd    *exec.Cmd
	inbox  string
	logs   *peertest.Output
	exited chan struct{}
}

// startBot runs `node bot.js BUNDLE` with env added to the environment
// and waits for its first announcement.
func startBot(t *testing.T, node, bundle string, env ...string) *bot {
	t.Helper()
	b := &bot{inbox: filepath.Join(t.TempDir(), "inbox.jsonl"), logs: &peertest.Output{}, exited: make(chan struct{})}
	b.cmd = exec.Command(node, "bot.js", bundle)
	b.cmd.Env = append(append(os.Environ(), "BOT_INBOX="+b.inbox), env...)
	b.cmd.Stderr = b.logs
	b.cmd.Stdout = b.logs
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { b.cmd.Wait(); close(b.exited) }()
	t.Cleanup(func() {
		b.stop()
		if t.Failed() {
			t.Logf("bot log:\n%s", b.logs.String())
		}
	})
	fabrictest.Eventually(t, 15*time.Second, "the bot's announcement", func() bool {
		select {
		case <-b.exited:
			t.Fatalf("bot exited:\n%s", b.logs.String())
		default:
		}
		return strings.Contains(b.logs.String(), "announced on uims.broker.announce")
	})
	return b
}

// stop ends the bot with SIGTERM (it announces TTL 0), or SIGKILL after 5 s.
func (b *bot) stop() {
	b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.exited:
	case <-time.After(5 * time.Second):
		b.cmd.Process.Kill()
		<-b.exited
	}
}

// kill ends the bot with SIGKILL: no TTL 0, no answer, no acknowledgement.
func (b *bot) kill() {
	b.cmd.Process.Kill()
	<-b.exited
}

// waitLog waits until the bot's log has a line containing want.
func (b *bot) waitLog(t *testing.T, timeout time.Duration, want string) {
	t.Helper()
	fabrictest.Eventually(t, timeout, "bot log line "+want, func() bool { return strings.Contains(b.logs.String(), want) })
}

// lines reads the bot's inbox: its deliveries and status notifications.
func (b *bot) lines(t *testing.T) []map[string]any {
	f, err := os.Open(b.inbox)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("bot inbox line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// status returns the bot's status line for msgID and status, or nil.
func (b *bot) status(t *testing.T, msgID, status string) map[string]any {
	for _, m := range b.lines(t) {
		if m["kind"] == "status" && m["msg_id"] == msgID && m["status"] == status {
			return m
		}
	}
	return nil
}

func call(t *testing.T, method, url, token, body string, hdr ...string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	json.Unmarshal(b, &out)
	return resp.StatusCode, out
}

// idempotent returns a fresh Idempotency-Key and the message id the web
// gateway derives from it for alice.
func idempotent(t *testing.T) (key, id string) {
	key = fmt.Sprintf("%s-%d", t.Name(), time.Now().UnixNano())
	sum := sha256.Sum256([]byte("alice\x00" + key))
	return key, hex.EncodeToString(sum[:16])
}

// send posts alice's message text to the bot's client echo with the
// Idempotency-Key key, again while the brokers know no live bot yet
// (NO_ROUTE: its announcement is on its way), until timeout; the retries
// are one message. It returns the last HTTP status and answer; it may run
// outside the test's goroutine.
func send(url, key, text string, timeout time.Duration) (int, map[string]any, error) {
	body, _ := json.Marshal(map[string]string{"to": "echo", "text": text})
	for until := time.Now().Add(timeout); ; {
		req, _ := http.NewRequest("POST", url+"/api/v1/messages", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer alice-token")
		req.Header.Set("Idempotency-Key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, nil, err
		}
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if out["code"] != schemas.CodeNoRoute.String() || time.Now().After(until) {
			return resp.StatusCode, out, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// post sends alice's message text to echo (send) and returns the HTTP
// status, the answer and the message id.
func post(t *testing.T, f *fabric, text string) (int, map[string]any, string) {
	t.Helper()
	key, id := idempotent(t)
	code, out, err := send(f.web, key, text, 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return code, out, id
}

// inboxHas returns the id of the message with text from client from in
// alice's web inbox, or "".
func inboxHas(t *testing.T, f *fabric, from, text string) string {
	code, inbox := call(t, "GET", f.web+"/api/v1/inbox", "alice-token", "")
	if code != 200 {
		return ""
	}
	msgs, _ := inbox["messages"].([]any)
	for _, m := range msgs {
		m := m.(map[string]any)
		fr, _ := m["from"].(map[string]any)
		if m["text"] == text && fr["client"] == from && fr["medium"] == schemas.MediumBot {
			id, _ := m["id"].(string)
			return id
		}
	}
	return ""
}

// events are alice's live events (GET /api/v1/events, Server-Sent Events),
// as her web page sees them.
type events struct {
	mu  sync.Mutex
	evs []web.Event
}

// openEvents opens alice's event stream and returns once it is connected.
func openEvents(t *testing.T, f *fabric) *events {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", f.web+"/api/v1/events?access_token=alice-token", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("events: %v %v", err, resp)
	}
	e := &events{}
	connected := make(chan struct{})
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if line == ": connected" {
				close(connected)
			}
			if d, ok := strings.CutPrefix(line, "data: "); ok {
				var ev web.Event
				if json.Unmarshal([]byte(d), &ev) == nil {
					e.mu.Lock()
					e.evs = append(e.evs, ev)
					e.mu.Unlock()
				}
			}
		}
	}()
	select {
	case <-connected:
	case <-time.After(5 * time.Second):
		t.Fatal("events: not connected after 5 s")
	}
	return e
}

// status returns alice's status event for msgID and status, or nil.
func (e *events) status(msgID, status string) *schemas.StatusEvent {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ev := range e.evs {
		if ev.Type == "status" && ev.Status != nil && ev.Status.MsgID == msgID && ev.Status.Status == status {
			return ev.Status
		}
	}
	return nil
}

// waitStatus waits for alice's status event for msgID and status.
func (e *events) waitStatus(t *testing.T, timeout time.Duration, msgID, status string) *schemas.StatusEvent {
	t.Helper()
	var ev *schemas.StatusEvent
	fabrictest.Eventually(t, timeout, fmt.Sprintf("alice's %s event for %s", status, msgID), func() bool {
		ev = e.status(msgID, status)
		return ev != nil
	})
	return ev
}
