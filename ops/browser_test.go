package ops_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/bot"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/internal/browsertest"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/ops"
	"github.com/uims/uims/processor"
	"github.com/uims/uims/schemas"
)

// The operator view against a real fabric (embedded NATS, redis-server, a
// broker, gateway kits and a processor) started in this process. The
// gateways are kits with in-memory media: the operator view meets them only
// on NATS, as it meets any gateway.

const opsToken = "operator-token"

// scene is a fabric with traffic to watch.
type scene struct {
	base   string // the operator view
	f      *fabrictest.Fabric
	sender *kit.Kit // "test": alice's gateway
	peer   *kit.Kit // "peer", medium web: bob's gateway
	inbox  *fabrictest.Inbox
	bot    *bot.Bot // "mybot", medium bot: the client echo
}

// startScene starts a fabric where alice (gateway "test") writes to bob
// (gateway "peer", medium web), to phones (gateway "sms", plain text
// only, through the processor's alternative and html2text) and to the bot echo (party
// "mybot" on the SDK, medium bot, which refuses the text "no"), and the
// operator view.
func startScene(t *testing.T) *scene {
	t.Helper()
	f := fabrictest.New(t)
	f.AddParty("mybot", miap.Grant{Role: miap.RoleGateway, Media: []string{schemas.MediumBot}}) // before the broker, which learns the keys
	f.StartBroker(broker.Config{})
	f.PutProfiles(
		&schemas.Profile{ID: "alice", Name: "Alice Example", Addresses: map[string]string{"test": "alice"}, Prefer: []string{"test"}},
		&schemas.Profile{ID: "bob", Name: "Bob Example", Addresses: map[string]string{"web": "bob"}, Prefer: []string{"web"}},
		&schemas.Profile{ID: "echo", Name: "Echo", Addresses: map[string]string{schemas.MediumBot: "echo"}, Prefer: []string{schemas.MediumBot}},
	)
	s := &scene{f: f, inbox: fabrictest.NewInbox()}
	// the operator view first, so that it hears the gateways' first heartbeats
	srv, err := ops.New(ops.Config{Addr: "127.0.0.1:0", Token: opsToken,
		Observer: ops.ObserverConfig{Poll: 250 * time.Millisecond, Query: func(ctx context.Context, id string) (*schemas.TxStatus, error) {
			return s.sender.Query(ctx, id)
		}}, AuditKeys: f.Keyring(miap.BrokerParty).AuditPublicKeys()}, f.Conn("ops"), f.Log)
	if err != nil {
		t.Fatal(err)
	}
	fabrictest.Start(t, "operator view", srv.Run)
	s.base = "http://" + srv.Addr()
	s.sender, _ = f.StartKit(fabrictest.NewInbox(), kit.Config{Gateway: "test", Medium: "test"})
	s.peer, _ = f.StartKit(s.inbox, kit.Config{Gateway: "peer", Medium: schemas.MediumWeb})
	f.StartKit(fabrictest.NewInbox(), kit.Config{Gateway: "sms", Medium: "sms", Accepts: []string{"text/plain"}, Reach: []string{"+"}})
	p, err := processor.New(processor.Config{Conversions: processor.Standard(64 << 10)}, f.Conn("proc"), f.Keyring("proc"), f.Log)
	if err != nil {
		t.Fatal(err)
	}
	fabrictest.Start(t, "processor", p.Run)
	s.bot, err = bot.New(f.Conn("mybot"), f.Keyring("mybot"), bot.Config{Party: "mybot", Medium: schemas.MediumBot, Address: "echo",
		Instance: "mybot-1", Version: "1.2.3"}, f.Log)
	if err != nil {
		t.Fatal(err)
	}
	s.bot.Handle(func(ctx context.Context, m *bot.Message) error {
		if m.Text() == "no" {
			return bot.Reject("not today")
		}
		return nil
	})
	fabrictest.Start(t, "bot", s.bot.Run)
	return s
}

// send sends as alice, retrying while the fabric is still starting.
func (s *scene) send(t *testing.T, to, ctype, text string) (*kit.Result, error) {
	t.Helper()
	var res *kit.Result
	var err error
	sub := &kit.Submission{MsgID: kit.NewMsgID(), From: schemas.Endpoint{Medium: "test", Address: "alice", Client: "alice"}, To: to, Type: ctype, Content: []byte(text)}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if res, err = s.sender.Send(context.Background(), sub); err == nil || !miap.CodeOf(err).Retryable() {
			break
		}
	}
	return res, err
}

// sendRead sends alice → bob and bob reads it; it returns the message id.
func (s *scene) sendRead(t *testing.T, text string) string {
	t.Helper()
	res, err := s.send(t, "bob", "text/plain", text)
	if err != nil {
		t.Fatal(err)
	}
	id := res.MsgID
	d := s.inbox.Get(id)
	if d == nil {
		t.Fatalf("bob's gateway has not got %s", id)
	}
	if err := s.peer.Ack(context.Background(), d.Ref, schemas.StatusRead, "", ""); err != nil {
		t.Fatal(err)
	}
	return id
}

func (s *scene) get(t *testing.T, path, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", s.base+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return r.StatusCode, string(b)
}

// TestOpsAndMetricsAcrossTheFabric checks the operator API and /metrics
// against a real fabric, without a browser.
func TestOpsAndMetricsAcrossTheFabric(t *testing.T) {
	s := startScene(t)
	id := s.sendRead(t, "hi")
	if _, err := s.send(t, "nobody-here", "text/plain", "hi"); !kit.IsCode(err, schemas.CodeUnknownRecipient) {
		t.Fatalf("unknown recipient: %v", err)
	}
	if code, _ := s.get(t, "/ops/api/messages/"+id, "alice-token"); code != 401 {
		t.Fatalf("a client token opened the operator API: %d", code)
	}
	// Trace events come in batches (internal/tracing): wait for all of them.
	waitContains(t, func() string { _, b := s.get(t, "/ops/api/messages/"+id, opsToken); return b }, "timeline",
		`"state":"read"`, `"sender":"alice"`, `"step":"accepted"`, `"step":"imi"`, `"id_match":true`, `"step":"notify"`, `"step":"notified"`)
	fabrictest.Eventually(t, 10*time.Second, "brokers from $SRV.PING and bob's gateway from its heartbeat", func() bool {
		_, body := s.get(t, "/ops/api/fabric", opsToken)
		return strings.Contains(body, `"endpoints":[`) && strings.Contains(body, `"queue":"uims.gw.peer.im","instances":[{"id":"peer-`)
	})
	metrics := waitContains(t, func() string { _, m := s.get(t, "/metrics", ""); return m }, "metrics",
		`uims_broker_rejections_total{code="UNKNOWN_RECIPIENT",endpoint="imi"} 1`,
		`uims_fabric_messages_total{dest_medium="web",origin_medium="test",outcome="read"} 1`,
		`uims_fabric_rejections_total{code="UNKNOWN_RECIPIENT",source="test",step="imi"} 1`,
		`uims_fabric_instances{kind="broker",medium="",name="uims-broker"} 1`,
		`uims_fabric_instances{kind="gateway",medium="web",name="peer"} 1`,
		`uims_ops_http_requests_total{code="401",route="GET /ops/api/messages/{id}"} 1`,
		`go_goroutines`,
	)
	if t.Failed() {
		t.Log(metrics)
	}
	// the page is served at / and /ops.html
	if code, body := s.get(t, "/", ""); code != 200 || !strings.Contains(body, "UIMS operator view") {
		t.Fatalf("page: %d", code)
	}
	// with the stylesheet it shares with the web client page (webui)
	if code, body := s.get(t, "/base.css", ""); code != 200 || !strings.Contains(body, "--accent:") {
		t.Fatalf("base.css: %d", code)
	}
}

// TestBrowserOperatorView follows messages through the protocol in the
// operator view's page in a real browser: the MIAP timeline of a message
// that was read, the fabric picture with rates, a message through the
// processor, and a search by client.
func TestBrowserOperatorView(t *testing.T) {
	b := browsertest.New(t)
	s := startScene(t)
	id := s.sendRead(t, "Hello Bob, lunch at noon?")
	toPhone, err := s.send(t, "+15550199", "text/html", "<p>Running <b>late</b>.</p>")
	if err != nil || toPhone.Dest.Gateway != "sms" {
		t.Fatalf("to a phone: %+v %v", toPhone, err)
	}
	s.sendRead(t, "And another one.")

	p := b.Tab("operator")
	p.Do("open the operator view", chromedp.Navigate(s.base+"/ops.html#msg="+id), chromedp.WaitVisible(chromedp.ID("token")))
	p.Do("operator sign in", chromedp.SendKeys(chromedp.ID("token"), opsToken+"\r"), chromedp.WaitVisible(chromedp.ID("app")))
	want := []string{"accepted", "broker.imi", "route", "transfer", "deliver", "broker.ack", "ack", "broker.notify", "notified"}
	// Trace events come in batches (internal/tracing): wait for the whole timeline.
	p.WaitJS("the timeline of the message read, every step in", fmt.Sprintf(`(() => {
		const steps = Array.from(document.querySelectorAll('#steps tbody tr')).map(r => r.dataset.step);
		return (document.getElementById('tl-state')||{}).textContent === 'read' && %s.every(s => steps.includes(s));
	})()`, jsList(want)))
	p.WaitJS("the gateways, the processor and the broker in the fabric picture",
		`['gw:test', 'gw:peer', 'gw:sms', 'gw:mybot', 'proc:proc', 'broker'].every(id => document.querySelector('#graph g.node[data-id="' + id + '"]'))`)
	p.WaitJS("rates on the edges", `/IMI \d/.test(document.getElementById('graph').textContent)`)
	steps := strings.Fields(p.Eval(`Array.from(document.querySelectorAll('#steps tbody tr')).map(r => r.dataset.step).join(' ')`))
	for _, w := range want {
		if !slices.Contains(steps, w) {
			t.Errorf("timeline lacks step %s: %v", w, steps)
		}
	}
	if seq := p.Text("#seq"); !strings.Contains(seq, "ID compared: match") || !strings.Contains(seq, "outer digest verified") {
		t.Errorf("sequence diagram %q", seq)
	}
	p.Screenshot("operator-view-timeline")
	p.ScreenshotOf("#app > section:first-child", "operator-fabric")

	// the message to the phone went through the processor
	p.Eval(fmt.Sprintf(`location.hash = "msg=%s", "ok"`, toPhone.MsgID))
	p.WaitJS("the timeline through the processor", `(document.getElementById('tl-state')||{}).textContent === 'delivered' && /conversion report/.test(document.getElementById('seq').textContent)`)
	p.ScreenshotOf("#timeline", "operator-timeline-through-processor")

	// search by client: alice's three messages
	p.Do("search for alice", chromedp.SendKeys(chromedp.ID("q"), "alice"))
	p.WaitJS("alice's transactions", fmt.Sprintf(`!!document.querySelector('#txs tr[data-msg=%q]') && document.querySelectorAll('#txs tr').length === 3`, id))
	p.Eval(`window.scrollTo(0, 0), "ok"`)
	p.Screenshot("operator-search-alice")

	// the usage panel (docs/OPS.md, "Usage"): alice sent three messages,
	// two of them to bob on the web, one to a phone by SMS
	p.WaitJS("alice and bob in the usage panel", `(() => {
		const rows = Array.from(document.querySelectorAll('#usage tr')).map(r => Array.from(r.cells).map(c => c.textContent).join('|'));
		return rows.includes('alice|test|3|0|0|68|0') && rows.includes('bob|Web|0|0|2|0|41') &&
			/messages ended/.test(document.getElementById('usage-figures').textContent);
	})()`)
	p.Do("usage of bob alone", chromedp.SendKeys(chromedp.ID("usage-q"), "bob"))
	p.WaitJS("bob alone in the usage panel", `document.querySelectorAll('#usage tr').length === 1`)
	p.ScreenshotOf("#usage-card", "operator-usage")

	// the bot: a gateway like the others, with its medium, its instance
	// and version, and its rates
	if _, err := s.send(t, "echo", "text/plain", "hello bot"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.send(t, "echo", "text/plain", "no"); !kit.IsCode(err, schemas.CodeRejected) {
		t.Fatalf("the bot's refusal: %v", err)
	}
	p.WaitJS("the bot in the fabric picture and in the gateways table", `(() => {
		const row = document.querySelector('#gateway-table tr[data-gw="mybot"]');
		return !!document.querySelector('#graph g.node[data-id="gw:mybot"]') && !!row && row.cells[0].textContent.startsWith('Bot') &&
			row.cells[1].textContent === 'mybot-1 v1.2.3 · fast' && parseFloat(row.cells[2].textContent) > 0 &&
			[2, 3, 4, 5].map(i => row.cells[i].querySelector('.sub').textContent).join() === '2 / min,1 / min,1 / min,0 / min' &&
			row.cells[6].textContent === 'REJECTED 1';
	})()`)
	p.ScreenshotOf("#app > section:first-child", "operator-fabric-gateways")

	// a mail with an HTML part only to the phone: two conversion steps,
	// alternative then html2text, each with its report and its forward
	alt := "--b\r\nContent-Type: text/html\r\n\r\n<p>Two <b>steps</b></p>\r\n--b--\r\n"
	chained, err := s.send(t, "+15550199", "multipart/alternative; boundary=b", alt)
	if err != nil || chained.Dest.Gateway != "sms" {
		t.Fatalf("a chain to a phone: %+v %v", chained, err)
	}
	p.Eval(fmt.Sprintf(`location.hash = "msg=%s", "ok"`, chained.MsgID))
	p.WaitJS("the timeline through two conversion steps", `(() => {
		const seq = (document.getElementById('seq')||{}).textContent || '';
		return (document.getElementById('tl-state')||{}).textContent === 'delivered' &&
			seq.includes('conversion report (alternative)') && seq.includes('conversion report (html2text)');
	})()`)
	seq := p.Text("#seq")
	for _, w := range []string{"IM: converted content + new ticket to proc", "IM: converted content + new ticket"} {
		if !strings.Contains(seq, w) {
			t.Errorf("sequence diagram lacks %q: %q", w, seq)
		}
	}
	if rows := p.Eval(`String(document.querySelectorAll('#steps tbody tr[data-step="broker.conv"]').length)`); rows != "2" {
		t.Errorf("%s conversion steps in the table, want 2", rows)
	}
	p.ScreenshotOf("#timeline", "operator-timeline-two-conversion-steps")
}

func jsList(s []string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = fmt.Sprintf("%q", v)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// waitContains fetches until the text holds every want (10 s at most), then
// reports each one missing, and returns the last text.
func waitContains(t *testing.T, fetch func() string, what string, wants ...string) string {
	t.Helper()
	var text string
	all := func() bool {
		text = fetch()
		for _, w := range wants {
			if !strings.Contains(text, w) {
				return false
			}
		}
		return true
	}
	for deadline := time.Now().Add(10 * time.Second); !all() && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	for _, w := range wants {
		if !strings.Contains(text, w) {
			t.Errorf("%s lacks %s", what, w)
		}
	}
	return text
}

// TestBrowserFallbackTimeline follows a message routed with fallback
// (docs/ROUTING.md) in the operator view: carol prefers e-mail, then the
// web; her e-mail gateway refuses the message for good (550 5.1.1), the
// brokers move it on to the web (peer), which delivers it. The timeline
// shows two attempt bands, each with its steps and outcome, the reroute
// as the broker's new route to the originator and the originator's
// transfer of the content it kept; the list says "2 attempts".
func TestBrowserFallbackTimeline(t *testing.T) {
	b := browsertest.New(t)
	s := startScene(t)
	s.f.PutProfiles(&schemas.Profile{ID: "carol", Name: "Carol Example", Addresses: map[string]string{schemas.MediumEmail: "carol@example.test", schemas.MediumWeb: "carol"},
		Prefer: []string{schemas.MediumEmail, schemas.MediumWeb}})
	relay := fabrictest.NewInbox()
	relay.Fail = schemas.Errorf(schemas.CodeUnknownRecipient, nil, "550 5.1.1 no such mailbox")
	s.f.StartKit(relay, kit.Config{Gateway: "email", Medium: schemas.MediumEmail})
	// until the brokers know the e-mail gateway, carol's messages go to the web at once
	var id string
	fabrictest.Eventually(t, 10*time.Second, "a message to carol routed to e-mail first", func() bool {
		res, err := s.send(t, "carol", "text/plain", "Dinner on Friday?")
		if err != nil {
			t.Fatalf("a message routed with fallback whose first medium refused it: %v", err)
		}
		id = res.MsgID
		return res.Status == schemas.StatusRerouted || res.Status == schemas.StatusRouted
	})
	if s.inbox.Get(id) == nil {
		fabrictest.Eventually(t, 5*time.Second, "carol's web delivery", func() bool { return s.inbox.Get(id) != nil })
	}

	p := b.Tab("operator")
	p.Do("open the operator view", chromedp.Navigate(s.base+"/ops.html#msg="+id), chromedp.WaitVisible(chromedp.ID("token")))
	p.Do("operator sign in", chromedp.SendKeys(chromedp.ID("token"), opsToken+"\r"), chromedp.WaitVisible(chromedp.ID("app")))
	// Trace events come in batches (internal/tracing): wait for both attempts.
	p.WaitJS("two attempt bands, the second delivered", `(() => {
		const bands = document.querySelectorAll('#seq g.band.attempt');
		return (document.getElementById('tl-state')||{}).textContent === 'delivered' && bands.length === 2 &&
			!!document.querySelector('#seq g.band.attempt.outcome-delivered[data-attempt="2"]');
	})()`)
	bands := p.Eval(`Array.from(document.querySelectorAll('#seq g.band.attempt')).map(g =>
		g.dataset.attempt + ' ' + g.querySelector('.band-label').textContent + ' | ' + g.querySelector('.band-outcome').textContent).join('\n')`)
	want := "1 attempt 1 — email via email | failed: UNKNOWN_RECIPIENT 550 5.1.1 no such mailbox\n2 attempt 2 — web via peer | delivered"
	if bands != want {
		t.Errorf("attempt bands\n got %q\nwant %q", bands, want)
	}
	// the bands are in order, each over the steps of its attempt
	if order := p.Eval(`(() => {
		const y = (sel) => document.querySelector(sel).getBoundingClientRect().top;
		return String(y('#seq g.band[data-attempt="1"]') < y('#seq g.row[data-step="deliver"][data-attempt="1"]') &&
			y('#seq g.row[data-step="deliver"][data-attempt="1"]') < y('#seq g.band[data-attempt="2"]') &&
			y('#seq g.band[data-attempt="2"]') < y('#seq g.row[data-step="broker.reroute"]') &&
			y('#seq g.row[data-step="broker.reroute"]') < y('#seq g.row[data-step="deliver"][data-attempt="2"]'));
	})()`); order != "true" {
		t.Errorf("the bands and their steps are out of order")
	}
	seq := p.Text("#seq")
	for _, w := range []string{"route attempt 2 to peer", "notification rerouted: new IMI′ + ticket", "new route verified", "IM: kept content + new ticket"} {
		if !strings.Contains(seq, w) {
			t.Errorf("sequence diagram lacks %q: %q", w, seq)
		}
	}
	if list := p.Text("#attempts"); !strings.Contains(list, "attempt 1 — email via email (carol@example.test): failed: UNKNOWN_RECIPIENT") ||
		!strings.Contains(list, "attempt 2 — web via peer (carol): delivered") {
		t.Errorf("attempts list %q", list)
	}
	p.WaitJS("the list's attempts", fmt.Sprintf(`(document.querySelector('#txs tr[data-msg=%q] td.attempts')||{}).textContent === '2 attempts: email ✗ → web ✓'`, id))
	// the audit badge (PROTOCOL.md §15): the chain of both attempts'
	// decisions verified against the brokers' audit keys; the records
	// come in the publisher's batches, so the view may show fewer first
	verified := `String((() => {
		const a = document.getElementById('tl-audit');
		return !!a && a.classList.contains('res-ok') && /^auditverified \(\d+ records\)$/.test(a.textContent);
	})())`
	for deadline := time.Now().Add(20 * time.Second); p.Eval(verified) != "true"; time.Sleep(500 * time.Millisecond) {
		if time.Now().After(deadline) {
			p.Screenshot("FAILED-audit")
			t.Fatalf("audit badge %q, want verified", p.Text("#tl-audit"))
		}
		p.Do("reload the timeline", chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("app")))
		p.WaitJS("the timeline reloaded", `(document.getElementById('tl-state')||{}).textContent === 'delivered'`)
	}
	if audit := p.Text("#tl-audit"); !strings.Contains(audit, "verified (") {
		t.Errorf("audit badge %q", audit)
	}
	p.ScreenshotOf("#timeline", "operator-timeline-fallback")
}
