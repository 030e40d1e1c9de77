package botjs_test

// The echo bot of this folder (Node.js, the stock nats.js client, MIAP from
// PROTOCOL.md alone) joins an authenticated fabric with a party bundle
// alone and exchanges messages both ways with a web client, receipts
// included.

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/internal/natstest"
	"github.com/uims/uims/internal/peertest"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/miap/natsauth"
	"github.com/uims/uims/schemas"
)

func TestEchoBotJoinsWithBundleAlone(t *testing.T) {
	node := requireNode(t)
	f := startFabric(t, fabricConfig{})

	// no credentials, no fabric
	if nc, err := nats.Connect(f.ns.ClientURL(), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("a connection without credentials was accepted")
	}

	b := startBot(t, node, f.bundle)
	alice := openEvents(t, f)

	// alice (web) -> echo (bot): the broker routes to medium bot, the bot delivers
	code, sent, id := post(t, f, "hi")
	if code != http.StatusAccepted || sent["status"] != schemas.StatusDelivered || sent["id"] != id {
		t.Fatalf("POST answer %d %v", code, sent)
	}
	fabrictest.Eventually(t, 10*time.Second, "the bot's delivery of hi", func() bool {
		for _, m := range b.lines(t) {
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

	// Receipts to alice (PROTOCOL.md §6.8, §6.9): the bot acknowledged
	// delivered with the ID inside its answer (the receipt her web gateway
	// relays to her page), and read once it had sent the echo (a
	// notification through the brokers).
	alice.waitStatus(t, 10*time.Second, id, schemas.StatusDelivered)
	alice.waitStatus(t, 10*time.Second, id, schemas.StatusRead)
	if code, st := call(t, "GET", f.web+"/api/v1/messages/"+id, "alice-token", ""); code != 200 || st["state"] != schemas.StatusRead {
		t.Fatalf("status of alice's message: %d %v", code, st)
	}
	for _, want := range []string{"ticket ok", "digest ok", "ID accepted, state delivered", "outer digest ok", "receipt verified: delivered",
		"ack " + id + " read -> uims.broker.ack: ID accepted, state read"} {
		b.waitLog(t, 5*time.Second, want)
	}

	// Receipts to the bot: its echo was delivered (the web gateway's receipt,
	// relayed in the answer to its transfer); alice reads it through the web
	// API, and the read notification reaches the bot on its status stream
	// (§6.9), verified and acknowledged.
	if st := b.status(t, echoID, schemas.StatusDelivered); st == nil || st["via"] != "receipt" {
		t.Fatalf("the bot's delivered receipt for its echo %s: %v", echoID, st)
	}
	if code, _ := call(t, "POST", f.web+"/api/v1/messages/"+echoID+"/read", "alice-token", ""); code != 200 {
		t.Fatalf("read: %d", code)
	}
	fabrictest.Eventually(t, 10*time.Second, "the read notification at the bot", func() bool {
		st := b.status(t, echoID, schemas.StatusRead)
		return st != nil && st["via"] == "notify"
	})

	testDiscovery(t, f, b)
	testRefusals(t, f)
	// the refusals count as errors of the im endpoint
	var stats struct{ Endpoints []endpointStats }
	request(t, f, "$SRV.STATS."+schemas.GatewayService(botParty), &stats)
	i := slices.IndexFunc(stats.Endpoints, func(e endpointStats) bool { return e.Name == "im" })
	if i < 0 || stats.Endpoints[i].NumErrors < 5 || stats.Endpoints[i].LastError == "" {
		t.Errorf("im endpoint stats after 5 refusals: %+v", stats.Endpoints)
	}
	testHeld(t, f, id)

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

// endpointStats is one endpoint in a $SRV.STATS answer.
type endpointStats struct {
	Name      string `json:"name"`
	NumErrors int    `json:"num_errors"`
	LastError string `json:"last_error"`
}

// request sends a request on an observer's connection (the operator view's
// identity) and decodes its JSON answer into v.
func request(t *testing.T, f *fabric, subject string, v any) {
	t.Helper()
	obs := natstest.ConnectAs(t, f.ns, f.auth, "observer", natsauth.RoleObserver, nil, nil)
	defer obs.Close()
	m, err := obs.Request(subject, nil, 2*time.Second)
	if err != nil {
		t.Fatalf("%s: %v", subject, err)
	}
	if err := json.Unmarshal(m.Data, v); err != nil {
		t.Fatalf("%s: %v: %s", subject, err, m.Data)
	}
}

// testDiscovery: the bot is the nats micro service uims-gw-botjs, found
// by $SRV.PING from an observer, with the metadata and endpoints the Go
// gateways register (gateways/kit/service.go), in their queue group.
func testDiscovery(t *testing.T, f *fabric, b *bot) {
	t.Helper()
	name := schemas.GatewayService(botParty)
	b.waitLog(t, 5*time.Second, "micro service "+name+" ")
	if strings.Contains(b.logs.String(), "not discoverable") {
		t.Fatalf("the bot's micro service is not discoverable")
	}
	var ping struct {
		Type, Name, ID, Version string
		Metadata                map[string]string
	}
	request(t, f, "$SRV.PING."+name, &ping)
	if ping.Type != "io.nats.micro.v1.ping_response" || ping.Name != name || ping.Version != packageVersion(t) || ping.ID == "" {
		t.Errorf("$SRV.PING.%s answered %+v", name, ping)
	}
	inst := ping.Metadata["instance"]
	want := map[string]string{"party": botParty, "medium": schemas.MediumBot, "instance": inst, "miap_mode": "fast", "kind": "gateway"}
	if !strings.HasPrefix(inst, "botjs-") || fmt.Sprint(ping.Metadata) != fmt.Sprint(want) {
		t.Errorf("metadata %v, want %v", ping.Metadata, want)
	}
	var info struct {
		Description string
		Endpoints   []struct {
			Name, Subject string
			QueueGroup    string `json:"queue_group"`
		}
	}
	request(t, f, "$SRV.INFO."+name, &info)
	if info.Description != "UIMS gateway botjs (medium bot)" {
		t.Errorf("description %q", info.Description)
	}
	got := map[string]string{}
	for _, e := range info.Endpoints {
		if q := schemas.GatewayQueue(botParty); e.QueueGroup != q {
			t.Errorf("endpoint %s in queue group %q, want %s", e.Name, e.QueueGroup, q)
		}
		got[e.Name] = e.Subject
	}
	if fmt.Sprint(got) != fmt.Sprint(map[string]string{"im": schemas.GatewayIM(botParty), "login": schemas.GatewayLogin(botParty), "held": schemas.GatewayHeld(botParty)}) {
		t.Errorf("endpoints %v", got)
	}
}

// testHeld: the brokers' deadline check (PROTOCOL.md §6.14). A message the
// bot delivered is held (and acknowledged again); one it never saw is not.
func testHeld(t *testing.T, f *fabric, delivered string) {
	t.Helper()
	nc := natstest.ConnectAs(t, f.ns, f.auth, "sweeper", natsauth.RoleBroker, nil, nil)
	defer nc.Close()
	for _, c := range []struct {
		msgID string
		held  bool
	}{{delivered, true}, {strings.Repeat("0", 32), false}} {
		q, _ := json.Marshal(schemas.HeldQuery{V: schemas.Version, MsgID: c.msgID, Tx: c.msgID,
			Recipient: "echo", Dest: schemas.Hop{Gateway: botParty, Medium: schemas.MediumBot, Address: "echo"}})
		m, err := nc.Request(schemas.GatewayHeld(botParty), q, 5*time.Second)
		if err != nil {
			t.Fatalf("held %s: %v", c.msgID, err)
		}
		var r schemas.HeldReply
		if err := json.Unmarshal(m.Data, &r); err != nil || r.V != 1 || r.Held != c.held || r.Later {
			t.Errorf("held %s: answered %s (%v), want held %v", c.msgID, m.Data, err, c.held)
		}
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
	f := startFabric(t, fabricConfig{strict: true})
	b := startBot(t, node, f.bundle)
	code, sent, _ := post(t, f, "strictly hi")
	if code != http.StatusAccepted || sent["status"] != schemas.StatusDelivered {
		t.Fatalf("POST answer %d %v", code, sent)
	}
	fabrictest.Eventually(t, 15*time.Second, `"echo: strictly hi" in alice's inbox`, func() bool {
		return inboxHas(t, f, "echo", "echo: strictly hi") != ""
	})
	for _, want := range []string{"session token issued", "switching to strict mode", "C_ack received", "route-ack", "ID accepted, state delivered",
		"with the ticket and session token", "ID accepted, state read"} {
		b.waitLog(t, 5*time.Second, want)
	}
	// its micro service's INFO tells the mode it switched to
	var info struct{ Metadata map[string]string }
	request(t, f, "$SRV.INFO."+schemas.GatewayService(botParty), &info)
	if info.Metadata["miap_mode"] != "strict" {
		t.Errorf("metadata after the switch to strict mode: %v", info.Metadata)
	}
}
