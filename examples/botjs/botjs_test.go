package botjs_test

// The echo bot of this folder (Node.js, the stock nats.js client, MIAP from
// PROTOCOL.md alone) joins an authenticated fabric with a party bundle
// alone and exchanges messages both ways with a web client.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
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
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/gateways/web"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/internal/natstest"
	"github.com/uims/uims/internal/peertest"
	"github.com/uims/uims/internal/redistest"
	"github.com/uims/uims/miap"
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

// syncBuffer collects a process's stderr.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type fabric struct {
	ns     *server.Server
	auth   *natsauth.Authority
	keys   *miap.KeyFile
	web    string
	bundle string
}

// startFabric starts NATS with authentication, redis, a broker, the web
// gateway, the profiles, and writes the bot's party bundle.
func startFabric(t *testing.T, strict bool) *fabric {
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
	b, err := broker.New(broker.Config{Strict: strict}, natstest.ConnectAs(t, ns, a, "broker", natsauth.RoleBroker, nil, nil), rdb, eng, log)
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
	g, err := web.New(web.Config{Addr: "127.0.0.1:0", MaxBody: 64 << 10, Kit: kit.Config{Strict: strict}}, wnc, keyring(kf.For("web")), log)
	if err != nil {
		t.Fatal(err)
	}
	fabrictest.Start(t, "web gateway", g.Run)

	// the bot's party bundle: exactly what `uims party add` writes
	dir := t.TempDir()
	creds, err := a.Issue(botParty, natsauth.RoleGateway, []string{schemas.MediumBot})
	if err != nil {
		t.Fatal(err)
	}
	bundle, _ := json.Marshal(map[string]any{"party": botParty, "role": "gateway", "media": []string{schemas.MediumBot},
		"nats_url": ns.ClientURL(), "inbox_prefix": natsauth.InboxPrefix(botParty)})
	keys, _ := json.MarshalIndent(kf.For(botParty), "", "  ")
	for name, b := range map[string][]byte{"bundle.json": bundle, "keys.json": keys, botParty + ".creds": creds} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return &fabric{ns: ns, auth: a, keys: kf, web: "http://" + g.Addr(), bundle: dir}
}

// startBot runs `node bot.js BUNDLE` until the test ends; it returns the
// bot's inbox file and its log.
func startBot(t *testing.T, node, bundle string) (string, *syncBuffer) {
	t.Helper()
	inbox := filepath.Join(t.TempDir(), "inbox.jsonl")
	logs := &syncBuffer{}
	cmd := exec.Command(node, "bot.js", bundle)
	cmd.Env = append(os.Environ(), "BOT_INBOX="+inbox)
	cmd.Stderr = logs
	cmd.Stdout = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		t.Logf("bot log:\n%s", logs.String())
	})
	fabrictest.Eventually(t, 15*time.Second, "the bot's announcement", func() bool {
		select {
		case <-exited:
			t.Fatalf("bot exited:\n%s", logs.String())
		default:
		}
		return strings.Contains(logs.String(), "announced on uims.broker.announce")
	})
	return inbox, logs
}

func call(t *testing.T, method, url, token, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
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

func readLines(t *testing.T, path string) []map[string]any {
	f, err := os.Open(path)
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

func TestEchoBotJoinsWithBundleAlone(t *testing.T) {
	node := requireNode(t)
	f := startFabric(t, false)

	// no credentials, no fabric
	if nc, err := nats.Connect(f.ns.ClientURL(), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("a connection without credentials was accepted")
	}

	inbox, logs := startBot(t, node, f.bundle)

	// alice (web) -> echo (bot): the broker routes to medium bot, the bot delivers
	var sent map[string]any
	fabrictest.Eventually(t, 15*time.Second, "alice's message accepted", func() bool {
		var code int
		code, sent = call(t, "POST", f.web+"/api/v1/messages", "alice-token", `{"to":"echo","text":"hi"}`)
		return code == http.StatusAccepted
	})
	id, _ := sent["id"].(string)
	if sent["status"] != schemas.StatusDelivered {
		t.Fatalf("POST answer %v", sent)
	}
	fabrictest.Eventually(t, 10*time.Second, "the bot's delivery of hi", func() bool {
		for _, m := range readLines(t, inbox) {
			fr, _ := m["from"].(map[string]any)
			if m["kind"] == "message" && m["msg_id"] == id && m["text"] == "hi" && fr["client"] == "alice" && m["recipient"] == "echo" {
				return true
			}
		}
		return false
	})
	// ... and its echo comes back to alice, from client echo on medium bot
	var echoID string
	fabrictest.Eventually(t, 15*time.Second, `"echo: hi" in alice's inbox`, func() bool {
		echoID = inboxHas(t, f, "echo", "echo: hi")
		return echoID != ""
	})
	// alice's message reached delivered, acknowledged by the bot with the ID
	code, st := call(t, "GET", f.web+"/api/v1/messages/"+id, "alice-token", "")
	if code != 200 || st["state"] != schemas.StatusDelivered {
		t.Fatalf("status of alice's message: %d %v", code, st)
	}
	// the bot logs the transfer's answer after alice's inbox has the echo
	for _, want := range []string{"ticket ok", "digest ok", "ID accepted, state delivered", "outer digest ok", "receipt verified: delivered"} {
		fabrictest.Eventually(t, 5*time.Second, "bot log line "+want, func() bool { return strings.Contains(logs.String(), want) })
	}

	// alice reads the echo: the read receipt reaches the bot as a
	// notification on its status stream (§6.9), verified and acknowledged
	if code, _ := call(t, "POST", f.web+"/api/v1/messages/"+echoID+"/read", "alice-token", ""); code != 200 {
		t.Fatalf("read: %d", code)
	}
	fabrictest.Eventually(t, 10*time.Second, "the read notification at the bot", func() bool {
		for _, m := range readLines(t, inbox) {
			if m["kind"] == "status" && m["msg_id"] == echoID && m["status"] == schemas.StatusRead {
				return true
			}
		}
		return false
	})

	testRefusals(t, f)

	// the one-shot send from the command line
	cmd := exec.Command(node, "bot.js", "send", "--bundle", f.bundle, "--from", "echo", "--client", "echo", "--to", "alice", "hello from the command line")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("bot.js send: %v\nstdout: %s\nstderr: %s", err, out.String(), errb.String())
	}
	var res map[string]any
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || res["status"] != schemas.StatusDelivered || len(res["msg_id"].(string)) != 32 {
		t.Fatalf("bot.js send printed %q (%v)\nstderr: %s", out.String(), err, errb.String())
	}
	fabrictest.Eventually(t, 10*time.Second, "the command line's message in alice's inbox", func() bool {
		return inboxHas(t, f, "echo", "hello from the command line") != ""
	})

	// the sender binding (PROTOCOL.md §3.5, §6.2): the bot cannot name alice,
	// whose profile owns no address on medium bot
	cmd = exec.Command(node, "bot.js", "send", "--bundle", f.bundle, "--from", "echo", "--client", "alice", "--to", "alice", "I am alice")
	out.Reset()
	errb.Reset()
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err == nil || !strings.Contains(out.String(), `"error":"NOT_ALLOWED"`) {
		t.Fatalf("bot.js send as alice: %v, printed %q\nstderr: %s", err, out.String(), errb.String())
	}
}

// forged transfers: the bot refuses what no broker authorised, or content
// other than the ticket binds, with the error of PROTOCOL.md §6.6 and §9.
func testRefusals(t *testing.T, f *fabric) {
	peer := natstest.ConnectAs(t, f.ns, f.auth, "peer", natsauth.RoleGateway, []string{schemas.MediumWeb}, nil)
	signer := func(kf *miap.KeyFile) *miap.Engine {
		eng, err := miap.New(miap.Config{Keys: func() *miap.Keyring {
			kr, err := kf.Keyring()
			if err != nil {
				t.Fatal(err)
			}
			return kr
		}()})
		if err != nil {
			t.Fatal(err)
		}
		return eng
	}
	good := signer(f.keys)
	// the same parties, but the bot's key replaced: a ticket no broker made
	wrong := &miap.KeyFile{MIAP: 1}
	for _, e := range f.keys.Keys {
		if e.Party == botParty {
			e, _ = miap.NewKeyEntry(rand.Reader, botParty, e.Kid, time.Time{})
		}
		wrong.Keys = append(wrong.Keys, e)
	}
	forger := signer(wrong)
	content := []byte("hi")
	now := time.Now().UnixMilli()
	routed := fmt.Sprintf(`{"v":1,"imi":{"v":1,"msg_id":"%032x","gateway":"peer","from":{"medium":"web","address":"alice","client":"alice"},"to":"echo","content":{"type":"text/plain; charset=utf-8","length":2,"sha256":"8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4"},"created":%d},"tx":"%032x","sender":"alice","recipient":"echo","dest":{"gateway":"botjs","medium":"bot","address":"echo"},"routed":%d,"deadline":%d,"attempt":1}`, now, now, now, now, now+30000)
	ticket := func(eng *miap.Engine, party string, expiry int64) *miap.Frame {
		sum := sha256.Sum256(content)
		fr := &miap.Frame{Purpose: miap.PurposeTicket, Party: party, ID: bytes.Repeat([]byte{0x1d}, 32), Peer: "peer",
			CType: "text/plain; charset=utf-8", CLen: int64(len(content)), CSHA: sum[:], Expiry: expiry, Body: []byte(routed)}
		if err := eng.Sign(fr); err != nil {
			t.Fatal(err)
		}
		return fr
	}
	for _, c := range []struct {
		name    string
		ticket  *miap.Frame
		content []byte
		want    string
		session string
	}{
		{"session token not made by this gateway", ticket(good, botParty, now+30000), content, "BAD_SESSION", "TUlBUAEG"},
		{"content other than the ticket binds", ticket(good, botParty, now+30000), []byte("hj"), "DIGEST_MISMATCH", ""},
		{"ticket under a key no broker holds", ticket(forger, botParty, now+30000), content, "BAD_TICKET", ""},
		{"ticket for another party", ticket(good, "web", now+30000), content, "BAD_TICKET", ""},
		{"expired ticket", ticket(good, botParty, now-1000), content, "EXPIRED", ""},
	} {
		h := nats.Header{}
		body := miap.AppendTransfer(h, c.ticket, c.content, "")
		if c.session != "" {
			h.Set("Miap-Gw-Session", c.session)
		}
		msg := &nats.Msg{Subject: "uims.gw." + botParty + ".im", Header: h, Data: body}
		reply, err := peer.RequestMsg(msg, 5*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := reply.Header.Get("Miap-Error"); got != c.want || !strings.HasPrefix(reply.Header.Get("Nats-Service-Error"), c.want+": ") {
			t.Errorf("%s: answered %v, want %s", c.name, reply.Header, c.want)
		}
	}
}

// TestVectorsNode runs node test_vectors.js: the Node.js MIAP against
// miap/testdata/vectors.json (it needs no npm package).
func TestVectorsNode(t *testing.T) {
	node := peertest.Require(t, "node", installCmd)
	out, err := exec.Command(node, "test_vectors.js").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "agree with PROTOCOL.md") {
		t.Fatalf("node test_vectors.js: %v\n%s", err, out)
	}
	t.Log(strings.TrimSpace(string(out)))
}

// TestEchoBotStrict: brokers that enforce strict mode (§6.13) and the web
// gateway in strict mode. The bot, fast by default, switches to strict mode
// on STRICT_REQUIRED (logins before its acknowledgement and IMI, route-ack);
// the web gateway logs in to the bot (§6.5) before each transfer, and the
// bot logs in to the web gateway before its own.
func TestEchoBotStrict(t *testing.T) {
	node := requireNode(t)
	f := startFabric(t, true)
	_, logs := startBot(t, node, f.bundle)
	var sent map[string]any
	fabrictest.Eventually(t, 15*time.Second, "alice's message accepted", func() bool {
		var code int
		code, sent = call(t, "POST", f.web+"/api/v1/messages", "alice-token", `{"to":"echo","text":"strictly hi"}`)
		return code == http.StatusAccepted
	})
	if sent["status"] != schemas.StatusDelivered {
		t.Fatalf("POST answer %v", sent)
	}
	fabrictest.Eventually(t, 15*time.Second, `"echo: strictly hi" in alice's inbox`, func() bool {
		return inboxHas(t, f, "echo", "echo: strictly hi") != ""
	})
	for _, want := range []string{"session token issued", "switching to strict mode", "C_ack received", "route-ack", "ID accepted, state delivered", "with the ticket and session token"} {
		fabrictest.Eventually(t, 5*time.Second, "bot log line "+want, func() bool { return strings.Contains(logs.String(), want) })
	}
}
