package xmpp_test

// The bridge between a real prosody (xmpptest) and an authenticated fabric
// (NATS with JWT identities, Redis, a broker, the web gateway): chat users
// logged in with mellium.im/xmpp write to web clients and back, with
// receipts and markers both ways.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/bot"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/gateways/web"
	"github.com/uims/uims/gateways/xmpp"
	"github.com/uims/uims/gateways/xmpp/xmpptest"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/internal/natstest"
	"github.com/uims/uims/internal/redistest"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/miap/bundle"
	"github.com/uims/uims/miap/natsauth"
	"github.com/uims/uims/schemas"
)

const party = "xmpp"

type env struct {
	t      *testing.T
	srv    *xmpptest.Server
	ns     *server.Server
	web    string
	bundle string
	bridge *fabrictest.Running
	cfg    xmpp.Config
	log    zerolog.Logger
	echoed chan *bot.Message // what the echo bot got
}

// start starts prosody with chat users carol, dave and erin, the fabric
// with web client bob (who also owns bob@example.com) and carol (whose
// profile names her JID and prefers XMPP), and the bridge.
func start(t *testing.T, mod func(*xmpp.Config)) *env {
	t.Helper()
	srv := xmpptest.Start(t, xmpptest.Options{})
	for _, u := range []string{"carol", "dave", "erin"} {
		srv.Register(t, u, u+"-pw")
	}

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
	add(party, "gateway", schemas.MediumXMPP)
	add("echo", "gateway", schemas.MediumBot)
	keyring := func(kf *miap.KeyFile) *miap.Keyring {
		kr, err := kf.Keyring()
		if err != nil {
			t.Fatal(err)
		}
		return kr
	}
	eng, err := miap.New(miap.Config{Keys: keyring(kf)})
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.New(broker.Config{}, natstest.ConnectAs(t, ns, a, "broker", natsauth.RoleBroker, nil, nil), rdb, eng, log)
	if err != nil {
		t.Fatal(err)
	}
	fabrictest.Start(t, "broker", b.Run)
	store := broker.NewProfiles(rdb, nil)
	for _, p := range []*schemas.Profile{
		{ID: "bob", Name: "Bob", Token: "bob-token", Addresses: map[string]string{schemas.MediumWeb: "bob", schemas.MediumEmail: "bob@example.com"}},
		{ID: "echo", Name: "Echo bot", Addresses: map[string]string{schemas.MediumBot: "echo"}, Prefer: []string{schemas.MediumBot}},
		{ID: "carol", Name: "Carol", Token: "carol-token", Addresses: map[string]string{schemas.MediumWeb: "carol", schemas.MediumXMPP: "carol@chat.example.test"},
			Prefer: []string{schemas.MediumXMPP, schemas.MediumWeb}},
	} {
		if err := store.Put(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	wnc := natstest.ConnectAs(t, ns, a, "web", natsauth.RoleGateway, []string{schemas.MediumWeb}, nil)
	g, err := web.New(web.Config{Addr: "127.0.0.1:0", MaxBody: 256 << 10, Kit: kit.Config{}}, wnc, keyring(kf.For("web")), log)
	if err != nil {
		t.Fatal(err)
	}
	fabrictest.Start(t, "web gateway", g.Run)

	// the parties' bundles, as `uims party add NAME --role gateway --medium M` writes them
	writeBundle := func(party, medium string) string {
		dir := t.TempDir()
		creds, err := a.Issue(party, natsauth.RoleGateway, []string{medium})
		if err != nil {
			t.Fatal(err)
		}
		if err := bundle.Write(dir, bundle.Meta{Party: party, Role: "gateway", Media: []string{medium},
			NATSURL: ns.ClientURL(), InboxPrefix: natsauth.InboxPrefix(party)}, kf.For(party), creds); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	dir := writeBundle(party, schemas.MediumXMPP)

	// an echo bot on the SDK, which answers with Reply and records what it got
	echo, err := bot.Dial(writeBundle("echo", schemas.MediumBot), bot.Config{}, log)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *bot.Message, 16)
	echo.Handle(func(ctx context.Context, m *bot.Message) error {
		got <- m
		switch {
		case strings.HasPrefix(m.Text(), "echo"):
			return nil
		case m.Text() == "fail later":
			go echo.Failed(context.Background(), m.Ref, "the echo bot gave up")
			return bot.ErrLater
		}
		_, err := echo.Reply(ctx, m, "echo: "+m.Text())
		return err
	})
	fabrictest.Start(t, "echo bot", echo.Run)

	e := &env{t: t, srv: srv, ns: ns, web: "http://" + g.Addr(), bundle: dir, log: log, echoed: got,
		cfg: xmpp.Config{Bundle: dir, Server: srv.ComponentAddr, Domain: srv.Component, Secret: srv.Secret, KeepAlive: 2 * time.Second}}
	if mod != nil {
		mod(&e.cfg)
	}
	e.startBridge()
	return e
}

func (e *env) startBridge() {
	e.t.Helper()
	br, err := xmpp.New(e.cfg, e.log)
	if err != nil {
		e.t.Fatal(err)
	}
	e.bridge = fabrictest.Start(e.t, "xmpp bridge", br.Run)
}

func (e *env) call(method, path, token, body string) (int, map[string]any) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.web+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	if method == "POST" && path == "/api/v1/messages" {
		req.Header.Set("Idempotency-Key", fmt.Sprintf("%x", sha(body)))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	json.Unmarshal(b, &out)
	return resp.StatusCode, out
}

func sha(s string) []byte {
	var h [8]byte
	for i := 0; i < len(s); i++ {
		h[i%8] = h[i%8]*31 + s[i]
	}
	return h[:]
}

// inbox returns the message with text in token's web inbox, or nil.
func (e *env) inbox(token, text string) map[string]any {
	code, in := e.call("GET", "/api/v1/inbox", token, "")
	if code != 200 {
		return nil
	}
	msgs, _ := in["messages"].([]any)
	for _, m := range msgs {
		if m := m.(map[string]any); m["text"] == text {
			return m
		}
	}
	return nil
}

// send posts a message as a web client until the fabric takes it.
func (e *env) send(token, to, text string) string {
	e.t.Helper()
	body, _ := json.Marshal(map[string]string{"to": to, "text": text})
	var out map[string]any
	fabrictest.Eventually(e.t, 20*time.Second, "the web message accepted", func() bool {
		var code int
		code, out = e.call("POST", "/api/v1/messages", token, string(body))
		if code != http.StatusAccepted && code != http.StatusServiceUnavailable {
			e.t.Fatalf("POST %s: %d %v", body, code, out)
		}
		return code == http.StatusAccepted
	})
	return out["id"].(string)
}

func (e *env) state(token, id string) string {
	_, st := e.call("GET", "/api/v1/messages/"+id, token, "")
	s, _ := st["state"].(string)
	return s
}

// (1) and (2): carol's chat client and bob's web client, both ways, with
// receipts and markers.
func TestChatAndWebBothWays(t *testing.T) {
	e := start(t, nil)
	carol := xmpptest.Dial(t, e.srv, "carol", "carol-pw")

	// (1) carol → bob: in bob's web inbox, from client carol on medium xmpp
	carol.Send(t, `<message to='bob@uims.chat.example.test' type='chat' id='c1'><body>hello bob</body>`+
		`<request xmlns='urn:xmpp:receipts'/><markable xmlns='urn:xmpp:chat-markers:0'/></message>`)
	var in map[string]any
	fabrictest.Eventually(t, 15*time.Second, "carol's message in bob's inbox", func() bool {
		in = e.inbox("bob-token", "hello bob")
		return in != nil
	})
	if f := in["from"].(map[string]any); f["client"] != "carol" || f["medium"] != schemas.MediumXMPP || f["address"] != "carol@chat.example.test" {
		t.Fatalf("from %v", f)
	}
	r := carol.Wait(t, 10*time.Second, "the receipt for c1", func(m *xmpptest.Message) bool { return m.ReceivedID() == "c1" })
	if r.From != "bob@uims.chat.example.test" || r.To != carol.JID.String() {
		t.Fatalf("receipt %s", r)
	}
	if code, _ := e.call("POST", "/api/v1/messages/"+in["id"].(string)+"/read", "bob-token", ""); code != 200 {
		t.Fatalf("read: %d", code)
	}
	carol.Wait(t, 10*time.Second, "the displayed marker for c1", func(m *xmpptest.Message) bool { return m.DisplayedID() == "c1" })

	// the same through bob's e-mail address, escaped (XEP-0106)
	carol.Send(t, `<message to='bob\40example.com@uims.chat.example.test' type='chat' id='c2'><body>escaped hello</body></message>`)
	fabrictest.Eventually(t, 15*time.Second, "the escaped address's message in bob's inbox", func() bool {
		return e.inbox("bob-token", "escaped hello") != nil
	})

	// (2) bob → carol (her client id): to her JID, from bob's, with a
	// receipt request and a markable; her receipt and marker reach bob
	id := e.send("bob-token", "carol", "hello carol")
	m := carol.Wait(t, 10*time.Second, "bob's message", func(m *xmpptest.Message) bool { return m.Body == "hello carol" })
	if m.From != "bob@uims.chat.example.test" || m.Type != "chat" || m.Request == nil || m.Markable == nil || m.ID == "" {
		t.Fatalf("bob's message at carol: %s", m)
	}
	// carol's client asked for receipts: delivered waits for hers
	if s := e.state("bob-token", id); s != schemas.StatusTransferred {
		t.Fatalf("before carol's receipt: state %q, want transferred", s)
	}
	carol.Send(t, `<message to='bob@uims.chat.example.test' id='r1'><received xmlns='urn:xmpp:receipts' id='`+m.ID+`'/></message>`)
	fabrictest.Eventually(t, 10*time.Second, "delivered", func() bool { return e.state("bob-token", id) == schemas.StatusDelivered })
	carol.Send(t, `<message to='bob@uims.chat.example.test' type='chat' id='d1'><displayed xmlns='urn:xmpp:chat-markers:0' id='`+m.ID+`'/></message>`)
	fabrictest.Eventually(t, 10*time.Second, "read", func() bool { return e.state("bob-token", id) == schemas.StatusRead })
}

// (3) dave, a chat user without a profile (an outside sender), writes to
// the echo bot and to bob: the bot's Reply and bob's answer, written
// xmpp:dave@chat.example.test, come back to dave's client; dave's reply
// (XEP-0461) to the echo is a reply in UIMS.
func TestOutsideChatUser(t *testing.T) {
	e := start(t, nil)
	dave := xmpptest.Dial(t, e.srv, "dave", "dave-pw")

	dave.Send(t, `<message to='echo@uims.chat.example.test' type='chat' id='d1'><body>hi echo</body></message>`)
	var m *bot.Message
	select {
	case m = <-e.echoed:
	case <-time.After(15 * time.Second):
		t.Fatal("the echo bot got nothing")
	}
	if m.Text() != "hi echo" || m.From.Client != "" || m.From.Medium != schemas.MediumXMPP || m.From.Address != "dave@chat.example.test" ||
		m.Meta[xmpp.MetaID] != "d1" || m.Meta[xmpp.MetaJID] != dave.JID.String() {
		t.Fatalf("the echo bot got %+v", m)
	}
	echoMsg := dave.Wait(t, 15*time.Second, "the echo", func(m *xmpptest.Message) bool { return m.Body == "echo: hi echo" })
	if echoMsg.From != "echo@uims.chat.example.test" {
		t.Fatalf("the echo comes from %s", echoMsg.From)
	}

	dave.Send(t, `<message to='echo@uims.chat.example.test' type='chat' id='d2'><body>echo noted</body>`+
		`<reply xmlns='urn:xmpp:reply:0' to='echo@uims.chat.example.test' id='`+echoMsg.ID+`'/></message>`)
	select {
	case m = <-e.echoed:
	case <-time.After(15 * time.Second):
		t.Fatal("the echo bot got no reply")
	}
	ref, err := bot.ParseRef(echoMsg.ID)
	if err != nil || m.Text() != "echo noted" || m.InReplyTo != ref.MsgID {
		t.Fatalf("dave's reply: %q in reply to %q, want %s (%v)", m.Text(), m.InReplyTo, ref.MsgID, err)
	}

	// dave writes to bob (web); bob answers on the web, to the address
	// the web page's Reply fills in
	dave.Send(t, `<message to='bob@uims.chat.example.test' type='chat' id='d3'><body>hi bob, dave here</body></message>`)
	var in map[string]any
	fabrictest.Eventually(t, 15*time.Second, "dave's message in bob's inbox", func() bool {
		in = e.inbox("bob-token", "hi bob, dave here")
		return in != nil
	})
	if f := in["from"].(map[string]any); f["client"] != nil || f["medium"] != schemas.MediumXMPP || f["address"] != "dave@chat.example.test" {
		t.Fatalf("from %v", f)
	}
	id := e.send("bob-token", "xmpp:dave@chat.example.test", "hello dave")
	a := dave.Wait(t, 15*time.Second, "bob's answer", func(m *xmpptest.Message) bool { return m.Body == "hello dave" })
	if a.From != "bob@uims.chat.example.test" {
		t.Fatalf("bob's answer comes from %s", a.From)
	}
	// dave's client was not seen to speak receipts: prosody's routing is
	// the delivery
	if s := e.state("bob-token", id); s != schemas.StatusDelivered {
		t.Fatalf("bob's answer: state %q, want delivered", s)
	}
}

// (4) what the bridge refuses, and how a chat user learns it: an unknown
// recipient, an oversized body, a recipient's side that gives up later, a
// chat recipient the XMPP server does not know.
func TestRefusals(t *testing.T) {
	e := start(t, func(c *xmpp.Config) { c.MaxBody = 4 << 10 })
	carol := xmpptest.Dial(t, e.srv, "carol", "carol-pw")

	errorFor := func(id string) *xmpptest.Message {
		return carol.Wait(t, 15*time.Second, "the error for "+id, func(m *xmpptest.Message) bool { return m.ID == id && m.Type == "error" })
	}
	carol.Send(t, `<message to='nobody@uims.chat.example.test' type='chat' id='u1'><body>anyone?</body></message>`)
	m := errorFor("u1")
	if m.Condition() != "item-not-found" || m.Error.Type != "cancel" || !strings.Contains(m.ErrorText(), "UNKNOWN_RECIPIENT") || !strings.Contains(m.ErrorText(), "nobody") {
		t.Errorf("unknown recipient: %s", m)
	}

	big := strings.Repeat("x", 5<<10)
	carol.Send(t, `<message to='bob@uims.chat.example.test' type='chat' id='u2'><body>`+big+`</body></message>`)
	m = errorFor("u2")
	if m.Condition() != "policy-violation" || m.Error.Type != "modify" || !strings.Contains(m.ErrorText(), "at most 4096") {
		t.Errorf("oversized body: %s", m)
	}

	// the echo bot takes it (ErrLater) and fails it later: a non-delivery
	// report, as a stanza error with the message's id
	carol.Send(t, `<message to='echo@uims.chat.example.test' type='chat' id='u3'><body>fail later</body></message>`)
	m = errorFor("u3")
	if m.From != "echo@uims.chat.example.test" || m.Condition() != "not-acceptable" || !strings.Contains(m.ErrorText(), "the echo bot gave up") {
		t.Errorf("failed later: %s", m)
	}

	// bob writes to a JID prosody has no account for: prosody bounces it,
	// and bob's send fails with the XMPP condition
	body, _ := json.Marshal(map[string]string{"to": "xmpp:nobody@chat.example.test", "text": "hello?"})
	code, out := e.call("POST", "/api/v1/messages", "bob-token", string(body))
	if code != http.StatusUnprocessableEntity || out["code"] != "REJECTED" { // permanent: 422 (docs/WEB.md)
		t.Errorf("to an unknown JID: %d %v", code, out)
	}
	sum := sha256.Sum256([]byte("bob\x00" + fmt.Sprintf("%x", sha(string(body)))))
	_, st := e.call("GET", "/api/v1/messages/"+hex.EncodeToString(sum[:16]), "bob-token", "")
	if h, _ := st["history"].([]any); st["state"] != schemas.StatusFailed || len(h) == 0 ||
		!strings.Contains(fmt.Sprint(h[len(h)-1]), "the XMPP server bounced the message: service-unavailable") {
		t.Errorf("status of the message to an unknown JID: %v", st)
	}
	// and nothing came out of the bridge for a message the fabric refused
	for _, r := range carol.Received() {
		if r.ID == "u1" && r.Type != "error" {
			t.Errorf("unexpected %s", r)
		}
	}
}

// (4) prosody restarts: the bridge reconnects on its own, a message bob
// sends meanwhile is either taken (and reaches carol, who was offline, when
// she comes back, with her receipt making it delivered) or refused as
// temporary and sent again with the same id — never silently lost; and
// carol's messages flow again.
func TestProsodyRestart(t *testing.T) {
	e := start(t, nil)
	carol := xmpptest.Dial(t, e.srv, "carol", "carol-pw")
	// carol's client speaks receipts: the bridge learns it from her message
	carol.Send(t, `<message to='bob@uims.chat.example.test' type='chat' id='b1'><body>before</body><request xmlns='urn:xmpp:receipts'/></message>`)
	carol.Wait(t, 15*time.Second, "the receipt for b1", func(m *xmpptest.Message) bool { return m.ReceivedID() == "b1" })

	e.srv.Stop(t)
	<-carol.Done()
	sent := make(chan string, 1)
	go func() { sent <- e.send("bob-token", "carol", "while prosody restarts") }()
	e.srv.Start(t)
	id := <-sent

	carol = xmpptest.Dial(t, e.srv, "carol", "carol-pw")
	m := carol.Wait(t, 20*time.Second, "bob's message after the restart", func(m *xmpptest.Message) bool { return m.Body == "while prosody restarts" })
	if s := e.state("bob-token", id); s != schemas.StatusTransferred {
		t.Fatalf("before carol's receipt: %q, want transferred", s)
	}
	carol.Send(t, `<message to='bob@uims.chat.example.test' id='r2'><received xmlns='urn:xmpp:receipts' id='`+m.ID+`'/></message>`)
	fabrictest.Eventually(t, 10*time.Second, "delivered", func() bool { return e.state("bob-token", id) == schemas.StatusDelivered })
	for _, r := range carol.Received() {
		if r.Body == "while prosody restarts" && r.ID != m.ID {
			t.Logf("sent twice (the barrier's ping was lost with the server): %s", r)
		}
	}

	carol.Send(t, `<message to='bob@uims.chat.example.test' type='chat' id='b2'><body>after</body></message>`)
	fabrictest.Eventually(t, 15*time.Second, "carol's message after the restart", func() bool { return e.inbox("bob-token", "after") != nil })
}
