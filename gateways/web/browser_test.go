package web_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/gateways/web"
	"github.com/uims/uims/internal/browsertest"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/processor"
	"github.com/uims/uims/schemas"
)

// The browser tests drive the real pages in Debian's chromium through
// chromedp, against a real fabric (embedded NATS, redis-server, a broker
// and the web gateway) started in this process. Each saves screenshots of
// the pages it drove under artifacts/screenshots/<test>/ at the module root
// (or $UIMS_ARTIFACTS/screenshots/<test>/) and logs their paths.

// startFabric starts a fabric with alice and bob and a web gateway.
func startFabric(t *testing.T) (string, *fabrictest.Fabric) {
	t.Helper()
	f := fabrictest.New(t)
	f.StartBroker(broker.Config{})
	f.PutProfiles(
		&schemas.Profile{ID: "alice", Name: "Alice Example", Token: "alice-token", Addresses: map[string]string{"web": "alice"}, Prefer: []string{"web"}},
		&schemas.Profile{ID: "bob", Name: "Bob Example", Token: "bob-token", Addresses: map[string]string{"web": "bob"}, Prefer: []string{"web"}},
	)
	g, err := web.New(web.Config{Addr: "127.0.0.1:0"}, f.Conn("web"), f.Keyring("web"), f.Log)
	if err != nil {
		t.Fatal(err)
	}
	fabrictest.Start(t, "web gateway", g.Run)
	return "http://" + g.Addr(), f
}

// startSMSAndProcessor adds an SMS gateway kit (an in-memory medium that
// reaches any phone number and takes plain text only) and the html2text
// processor, so that messages come from and go to another medium.
func startSMSAndProcessor(t *testing.T, f *fabrictest.Fabric) *kit.Kit {
	t.Helper()
	sms, _ := f.StartKit(fabrictest.NewInbox(), kit.Config{Gateway: "sms", Medium: "sms", Accepts: []string{"text/plain"}, Reach: []string{"+"}})
	p, err := processor.New(processor.Config{Conversions: []processor.Conversion{processor.HTMLToText(64 << 10)}}, f.Conn("proc"), f.Keyring("proc"), f.Log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, nil) }()
	t.Cleanup(func() { cancel(); <-done })
	return sms
}

// signIn opens the client page and signs in with the keyboard only.
func signIn(p *browsertest.Tab, base, token string) {
	p.Do("open the page", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.ID("token")))
	p.Do("sign in", chromedp.SendKeys(chromedp.ID("token"), token+"\r"), chromedp.WaitVisible(chromedp.ID("app")))
	p.WaitJS("the live event stream", `document.getElementById('live').classList.contains('on')`)
}

// clear empties form fields.
func clearFields(p *browsertest.Tab, ids ...string) {
	for _, id := range ids {
		p.Eval(fmt.Sprintf(`document.getElementById(%q).value = ""`, id))
	}
}

func compose(p *browsertest.Tab, to, subject, text string) {
	clearFields(p, "to", "subject", "text")
	p.Do("compose", chromedp.SendKeys(chromedp.ID("to"), to), chromedp.SendKeys(chromedp.ID("subject"), subject),
		chromedp.SendKeys(chromedp.ID("text"), text))
}

// TestBrowserAliceAndBob is the scenario in a real browser: alice
// sends, bob's inbox shows the message without a reload, bob opens it,
// alice's page shows it read, and bob replies with the keyboard. (The
// operator view's page is tested in package ops.)
func TestBrowserAliceAndBob(t *testing.T) {
	b := browsertest.New(t)
	base, f := startFabric(t)
	sms := startSMSAndProcessor(t, f)
	alice, bob := b.Tab("alice"), b.Tab("bob")

	signIn(alice, base, "alice-token")
	signIn(bob, base, "bob-token")
	if me := alice.Text("#me"); !strings.Contains(me, "Alice Example") {
		t.Fatalf("alice's page shows %q", me)
	}

	compose(alice, "bob", "Lunch?", "Hello Bob, lunch at noon? The usual place.")
	alice.Screenshot("compose")
	alice.Do("send", chromedp.Click(chromedp.ID("send")), chromedp.WaitVisible(chromedp.CSS("#sent li.sent-item")))
	id := alice.Eval(`document.querySelector('#sent li.sent-item').dataset.id`)
	if !schemas.ValidMsgID(id) {
		t.Fatalf("sent message id %q", id)
	}
	alice.WaitJS("delivered on alice's page", fmt.Sprintf(`['delivered','read'].includes(document.querySelector('#sent li[data-id=%q]').dataset.status)`, id))
	// the usage panel counts it once its outcome is in the accounting
	alice.WaitJS("alice's usage panel: 1 sent on the web", `(() => {
		const r = Array.from(document.querySelectorAll('#usage-rows tr')).find(tr => tr.querySelector('th').textContent === 'web');
		return r && r.children[1].textContent === '1';
	})() || (document.getElementById('usage-refresh').click(), false)`)
	if txt := alice.Text("#usage-quota"); !strings.Contains(txt, "quota") {
		t.Fatalf("usage quota line %q", txt)
	}
	alice.Screenshot("usage-panel")

	// bob's inbox shows it without a reload
	item := fmt.Sprintf(`#inbox .item[data-id=%q]`, id)
	bob.Do("the message in bob's inbox", chromedp.WaitVisible(chromedp.CSS(item)))
	if txt := bob.Text(item); !strings.Contains(txt, "Alice Example") || !strings.Contains(txt, "Web") || !strings.Contains(txt, "Lunch?") {
		t.Fatalf("inbox item %q", txt)
	}
	if cls := bob.Eval(fmt.Sprintf(`document.querySelector(%q).className`, item)); !strings.Contains(cls, "unread") {
		t.Fatalf("new message not unread: %q", cls)
	}
	// a message from a phone: bob's inbox shows the medium it came from
	fabrictest.Eventually(t, 10*time.Second, "an SMS to bob", func() bool {
		_, err := sms.Send(context.Background(), &kit.Submission{From: schemas.Endpoint{Medium: "sms", Address: "+15550199"},
			To: "bob", Content: []byte("On my way, 10 minutes late.")})
		return err == nil
	})
	bob.Do("the SMS in bob's inbox", chromedp.WaitVisible(chromedp.CSS(`#inbox .item .m-sms`)))
	if txt := bob.Text("#inbox li:first-child .item"); !strings.Contains(txt, "+15550199") || !strings.Contains(txt, "SMS") {
		t.Fatalf("SMS inbox item %q", txt)
	}
	bob.Screenshot("inbox-new-messages")
	// the inbox list moves with the arrow keys
	bob.Eval(`document.querySelector('#inbox .item').focus(), "ok"`)
	bob.Do("arrow down in the inbox", chromedp.KeyEvent(kb.ArrowDown))
	if got := bob.Eval(`document.activeElement.dataset.id || ""`); got != id {
		t.Fatalf("ArrowDown moved the focus to %q, want alice's message %s", got, id)
	}

	// bob opens it: the read receipt goes back to alice
	bob.Do("open the message", chromedp.Click(chromedp.CSS(item)), chromedp.WaitVisible(chromedp.ID("message-text")))
	bob.WaitJS("the read receipt sent", `/^sent to/.test(document.getElementById('receipt').textContent)`)
	if txt := bob.Text("#message-text"); txt != "Hello Bob, lunch at noon? The usual place." {
		t.Fatalf("message text %q", txt)
	}
	if focused := bob.Eval(`document.activeElement.id`); focused != "reader-h" {
		t.Fatalf("focus after opening is on %q, want the message heading", focused)
	}
	bob.Screenshot("message-opened")

	alice.WaitJS("read on alice's page", fmt.Sprintf(`document.querySelector('#sent li[data-id=%q]').dataset.status === 'read'`, id))
	if steps := alice.Text(fmt.Sprintf(`#sent li[data-id=%q] .steps`, id)); steps != "AcceptedRoutedDeliveredRead" {
		t.Fatalf("status steps %q", steps)
	}
	alice.Screenshot("sent-message-read")

	// bob replies with the keyboard: Reply, type, Ctrl+Enter
	bob.Do("reply", chromedp.Click(chromedp.CSS("#reader-body .actions button")))
	if to, focused := bob.Eval(`document.getElementById('to').value`), bob.Eval(`document.activeElement.id`); to != "alice" || focused != "text" {
		t.Fatalf("reply: to %q, focus on %q", to, focused)
	}
	bob.Do("type the reply and press Ctrl+Enter", chromedp.SendKeys(chromedp.ID("text"), "Noon is fine, see you there."),
		chromedp.KeyEvent("\r", chromedp.KeyModifiers(chromedp.ModifierCtrl)))
	bob.WaitJS("the reply in bob's sent list", `document.querySelectorAll('#sent li.sent-item').length === 1`)
	alice.WaitJS("the reply in alice's inbox", `Array.from(document.querySelectorAll('#inbox .item')).some(e => e.textContent.includes('Re: Lunch?'))`)
	alice.Screenshot("reply-received")

	// an HTML message to a phone number: through the processor to the SMS gateway
	toPhone := send(t, base, "alice-token", `{"to":"+15550199","html":"<p>Running <b>late</b> too.</p>"}`)
	if toPhone["dest"].(map[string]any)["gateway"] != "sms" {
		t.Fatalf("to a phone: %v", toPhone)
	}
}

// TestBrowserErrors checks the client page's clear errors: an unknown
// recipient, a busy fabric (503 with Retry-After, retried with the same
// Idempotency-Key), an empty form and a wrong token.
func TestBrowserErrors(t *testing.T) {
	b := browsertest.New(t)
	base, _ := startFabric(t)
	p := b.Tab("alice")

	p.Do("open the page", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.ID("token")))
	p.Do("a wrong token", chromedp.SendKeys(chromedp.ID("token"), "not-a-token\r"), chromedp.WaitVisible(chromedp.ID("signin-error")))
	if msg := p.Text("#signin-error"); !strings.Contains(msg, "not valid") {
		t.Fatalf("wrong token message %q", msg)
	}
	if inv := p.Eval(`document.getElementById('token').getAttribute('aria-invalid') || ''`); inv != "true" {
		t.Fatal("token field not marked invalid")
	}
	p.Screenshot("wrong-token")
	clearFields(p, "token")
	p.Do("sign in", chromedp.SendKeys(chromedp.ID("token"), "alice-token\r"), chromedp.WaitVisible(chromedp.ID("app")))

	p.Do("send an empty form", chromedp.Click(chromedp.ID("send")), chromedp.WaitVisible(chromedp.ID("compose-error")))
	if msg, focused := p.Text("#compose-error"), p.Eval(`document.activeElement.id`); !strings.Contains(msg, "Enter a recipient") || focused != "to" {
		t.Fatalf("empty form: %q, focus on %q", msg, focused)
	}

	compose(p, "nobody-here", "", "hello?")
	p.Do("send to an unknown recipient", chromedp.Click(chromedp.ID("send")))
	p.WaitJS("the unknown recipient error", `/Unknown recipient/.test(document.getElementById('compose-error').textContent)`)
	if inv := p.Eval(`document.getElementById('to').getAttribute('aria-invalid') || ''`); inv != "true" {
		t.Fatal("recipient field not marked invalid")
	}
	if role := p.Eval(`document.getElementById('compose-error').getAttribute('role')`); role != "alert" {
		t.Fatalf("error role %q", role)
	}
	p.Screenshot("unknown-recipient")

	// A permanent refusal: no gateway is set up to reach the address (422
	// UNREACHABLE, no Retry-After). The page says why, marks the field,
	// and does not retry.
	p.Eval(`(() => {
		window.__unreachable = 0;
		const real = window.fetch;
		window.fetch = (url, opts) => {
			if (opts && opts.method === 'POST' && String(url).endsWith('/api/v1/messages')) {
				window.__unreachable++;
				return Promise.resolve(new Response(JSON.stringify({error: 'no gateway is set up to reach this address: no SMS centre configured for +15550123, a number no client owns', code: 'UNREACHABLE'}),
					{status: 422, headers: {'Content-Type': 'application/json'}}));
			}
			return real(url, opts);
		};
		window.__realFetch = real;
		return 'ok';
	})()`)
	compose(p, "+15550123", "", "hello?")
	p.Do("send to a number nothing reaches", chromedp.Click(chromedp.ID("send")))
	p.WaitJS("the unreachable error", `/cannot be reached/.test(document.getElementById('compose-error').textContent)`)
	if msg := p.Text("#compose-error"); !strings.Contains(msg, "no SMS centre configured") {
		t.Fatalf("unreachable message %q", msg)
	}
	if inv, n := p.Eval(`document.getElementById('to').getAttribute('aria-invalid') || ''`), p.Eval(`String(window.__unreachable)`); inv != "true" || n != "1" {
		t.Fatalf("unreachable: field invalid %q, %s tries", inv, n)
	}
	p.Screenshot("unreachable")
	p.Eval(`(() => { window.fetch = window.__realFetch; return 'ok'; })()`)

	// A busy fabric: the gateway answers 503 with Retry-After. The page
	// retries with the same Idempotency-Key, then says nothing was sent.
	p.Eval(`(() => {
		window.__busy = [];
		const real = window.fetch;
		window.fetch = (url, opts) => {
			if (opts && opts.method === 'POST' && String(url).endsWith('/api/v1/messages')) {
				window.__busy.push(opts.headers['Idempotency-Key']);
				return Promise.resolve(new Response(JSON.stringify({error: 'busy, retry later', code: 'BUSY'}),
					{status: 503, headers: {'Retry-After': '1', 'Content-Type': 'application/json'}}));
			}
			return real(url, opts);
		};
		return 'ok';
	})()`)
	compose(p, "bob", "", "are you there?")
	p.Do("send while the fabric is busy", chromedp.Click(chromedp.ID("send")))
	p.WaitJS("the busy notice", `/Retrying in 1 s/.test(document.getElementById('compose-error').textContent)`)
	p.Screenshot("fabric-busy-retrying")
	p.WaitJS("the final busy error", `/nothing was sent/.test(document.getElementById('compose-error').textContent)`)
	keys := p.Eval(`window.__busy.join(' ')`)
	if k := strings.Fields(keys); len(k) != 3 || k[0] != k[1] || k[1] != k[2] {
		t.Fatalf("busy retries with idempotency keys %q, want 3 equal", keys)
	}
	if v := p.Eval(`document.getElementById('text').value`); v != "are you there?" {
		t.Fatalf("the message was not kept in the form: %q", v)
	}
	p.Screenshot("fabric-busy-gave-up")
}

// TestMetricsAcrossTheFabric checks the web gateway's /metrics against a
// real fabric, without a browser.
func TestMetricsAcrossTheFabric(t *testing.T) {
	base, _ := startFabric(t)
	send(t, base, "alice-token", `{"to":"bob","text":"hi"}`)
	if code, _ := call(t, "POST", base+"/api/v1/messages", "alice-token", `{"to":"nobody-here","text":"hi"}`); code != 404 {
		t.Fatalf("unknown recipient: %d", code)
	}
	get := func(path string) string {
		r, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return string(b)
	}
	metrics := waitContains(t, func() string { return get("/metrics") }, "metrics",
		`uims_web_http_requests_total{code="202",route="POST /api/v1/messages"} 1`,
		`uims_web_http_requests_total{code="404",route="POST /api/v1/messages"} 1`,
		`go_goroutines`,
	)
	if strings.Contains(metrics, "uims_fabric_") {
		t.Error("the web gateway reports fabric-wide metrics: those are the operator view's (package ops)")
	}
	if code, _ := call(t, "GET", base+"/ops.html", "", ""); code != 404 {
		t.Errorf("/ops.html on the web gateway: %d, want 404 (the operator view is uims ops)", code)
	}
	if t.Failed() {
		t.Log(metrics)
	}
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

// TestBrowserScheduledAndCancel: alice sends with "Send at" an hour
// ahead; her sent list says it waits until then, with a Cancel button
// that cancels it (docs/WEB.md, "Scheduled messages"); bob gets nothing.
func TestBrowserScheduledAndCancel(t *testing.T) {
	b := browsertest.New(t)
	base, _ := startFabric(t)
	alice := b.Tab("alice")
	signIn(alice, base, "alice-token")
	send(t, base, "alice-token", `{"to":"bob","text":"warm-up"}`)

	compose(alice, "bob", "Later", "See you tomorrow morning.")
	// datetime-local takes the browser's local time, without a zone
	at := time.Now().Add(time.Hour).Format("2006-01-02T15:04")
	alice.Eval(fmt.Sprintf(`document.getElementById('send-at').value = %q, "ok"`, at))
	alice.Do("send", chromedp.Click(chromedp.ID("send")))
	mine := `Array.from(document.querySelectorAll('#sent li.sent-item')).find(e => e.textContent.includes('See you tomorrow'))`
	alice.WaitJS("the message in alice's sent list", mine+` !== undefined`)
	alice.WaitJS("held on alice's page", mine+`.dataset.status === 'held'`)
	id := alice.Eval(mine + `.dataset.id`)
	item := fmt.Sprintf(`#sent li[data-id=%q]`, id)
	if txt := alice.Text(item + " .held"); !strings.Contains(txt, "Waiting until") || !strings.Contains(txt, "scheduled for") {
		t.Fatalf("held item says %q", txt)
	}
	if v := alice.Eval(`document.getElementById('send-at').value`); v != "" {
		t.Fatalf("Send at not cleared after sending: %q", v)
	}
	// the shared stylesheet's custom properties apply (a broken comment
	// in base.css once dropped its :root rule, and with it every colour)
	if accent := alice.Eval(`getComputedStyle(document.documentElement).getPropertyValue('--accent').trim()`); accent != "#2454d6" {
		t.Fatalf("--accent is %q: /base.css did not apply", accent)
	}
	alice.Screenshot("scheduled")
	alice.Do("cancel", chromedp.Click(chromedp.CSS(item+" button.cancel")))
	alice.WaitJS("cancelled on alice's page", fmt.Sprintf(`document.querySelector(%q).dataset.status === 'failed'`, item))
	if txt := alice.Text(item + " .fail"); !strings.Contains(txt, "cancelled by the sender") || !strings.Contains(txt, "CANCELLED") {
		t.Fatalf("cancelled item says %q", txt)
	}
	alice.Screenshot("cancelled")
	code, body := call(t, "GET", base+"/api/v1/messages/"+id, "alice-token", "")
	if code != 200 || body["state"] != "failed" {
		t.Fatalf("status after the cancel: %d %v", code, body)
	}
}
