package web_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/gateways/web"
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
	p, err := processor.New(f.Conn("proc"), f.Keyring("proc"), processor.Config{Conversions: []processor.Conversion{processor.HTMLToText(64 << 10)}}, f.Log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, nil) }()
	t.Cleanup(func() { cancel(); <-done })
	return sms
}

// chromium returns the browser to drive. Without one the test is skipped
// loudly on a developer machine and fails in CI (env CI set).
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("UIMS_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "no chromium on PATH (Debian: apt-get install chromium chromium-driver fonts-dejavu-core, as .ci/deps.d/web.sh does)"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	fmt.Fprintf(os.Stderr, "\n*** %s SKIPPED: %s ***\n\n", t.Name(), msg)
	t.Skip(msg)
	return ""
}

// artifacts returns the screenshot folder of the test.
func artifacts(t *testing.T) string {
	t.Helper()
	root := os.Getenv("UIMS_ARTIFACTS")
	if root == "" {
		dir, err := os.Getwd()
		if err != nil {
			t.Fatal(err)
		}
		for {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				break
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				t.Fatal("no go.mod above the test's directory")
			}
			dir = parent
		}
		root = filepath.Join(dir, "artifacts")
	}
	dir := filepath.Join(root, "screenshots", strings.ReplaceAll(t.Name(), "/", "_"))
	os.RemoveAll(dir) // only this run's screenshots
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browser is one headless chromium with isolated sessions (tabs in their
// own browser contexts: separate cookies and sessionStorage).
type browser struct {
	t    *testing.T
	ctx  context.Context
	dir  string
	mu   sync.Mutex
	errs []string
	shot int
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox, // as root in CI containers
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("lang", "en-US"),
		chromedp.WindowSize(1366, 900),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, bcancel := chromedp.NewContext(actx)
	if err := chromedp.Do(bctx); err != nil {
		acancel()
		t.Fatalf("start chromium: %v", err)
	}
	b := &browser{t: t, ctx: bctx, dir: artifacts(t)}
	t.Cleanup(func() {
		bcancel()
		acancel()
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, e := range b.errs {
			t.Errorf("page error: %s", e)
		}
	})
	return b
}

// tab is one session in the browser.
type tab struct {
	b    *browser
	name string
	ctx  context.Context
}

func (b *browser) tab(name string) *tab {
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	b.t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		b.t.Fatalf("%s: new tab: %v", name, err)
	}
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			// exceptions and console.error calls; failed loads (the wrong
			// token's 401) are the browser's network log, not page errors
			if m.IsException() || (m.Type == "error" && m.Source == "") {
				b.mu.Lock()
				b.errs = append(b.errs, name+": "+m.String())
				b.mu.Unlock()
			}
		}
	}()
	return &tab{b: b, name: name, ctx: ctx}
}

// do runs steps with a timeout; on failure it saves a screenshot and fails the test.
func (p *tab) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	p.b.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		p.screenshot("FAILED-" + what)
		p.b.t.Fatalf("%s: %s: %v", p.name, what, err)
	}
}

// waitJS waits until a JavaScript expression is true.
func (p *tab) waitJS(what, expr string) {
	p.b.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		p.screenshot("FAILED-" + what)
		p.b.t.Fatalf("%s: waiting for %s: %v", p.name, what, err)
	}
}

func (p *tab) eval(expr string) string {
	p.b.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		p.b.t.Fatalf("%s: eval %s: %v", p.name, expr, err)
	}
	return v
}

func (p *tab) text(sel string) string {
	return p.eval(fmt.Sprintf(`(document.querySelector(%q) || {}).textContent || ""`, sel))
}

var unsafeName = regexp.MustCompile(`[^a-zA-Z0-9_.-]+`)

// screenshot saves the whole page as a PNG and logs its path.
func (p *tab) screenshot(name string) string {
	return p.screenshotOf("", name)
}

// screenshotOf saves one element (the whole page if sel is empty) as a PNG
// and logs its path.
func (p *tab) screenshotOf(sel, name string) string {
	p.b.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	shot := chromedp.FullScreenshot(100)
	if sel != "" {
		shot = chromedp.ScreenshotScale(chromedp.CSS(sel), 1.5)
	}
	png, err := chromedp.Run(ctx, shot)
	if err != nil {
		p.b.t.Logf("%s: screenshot %s: %v", p.name, name, err)
		return ""
	}
	p.b.mu.Lock()
	p.b.shot++
	n := p.b.shot
	p.b.mu.Unlock()
	path := filepath.Join(p.b.dir, fmt.Sprintf("%02d-%s-%s.png", n, p.name, unsafeName.ReplaceAllString(name, "-")))
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.b.t.Fatal(err)
	}
	p.b.t.Logf("screenshot: %s", path)
	return path
}

// signIn opens the client page and signs in with the keyboard only.
func (p *tab) signIn(base, token string) {
	p.do("open the page", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.ID("token")))
	p.do("sign in", chromedp.SendKeys(chromedp.ID("token"), token+"\r"), chromedp.WaitVisible(chromedp.ID("app")))
	p.waitJS("the live event stream", `document.getElementById('live').classList.contains('on')`)
}

// clear empties form fields.
func (p *tab) clear(ids ...string) {
	for _, id := range ids {
		p.eval(fmt.Sprintf(`document.getElementById(%q).value = ""`, id))
	}
}

func (p *tab) compose(to, subject, text string) {
	p.clear("to", "subject", "text")
	p.do("compose", chromedp.SendKeys(chromedp.ID("to"), to), chromedp.SendKeys(chromedp.ID("subject"), subject),
		chromedp.SendKeys(chromedp.ID("text"), text))
}

// TestBrowserAliceAndBob is the scenario in a real browser: alice
// sends, bob's inbox shows the message without a reload, bob opens it,
// alice's page shows it read, and bob replies with the keyboard. (The
// operator view's page is tested in package ops.)
func TestBrowserAliceAndBob(t *testing.T) {
	b := newBrowser(t)
	base, f := startFabric(t)
	sms := startSMSAndProcessor(t, f)
	alice, bob := b.tab("alice"), b.tab("bob")

	alice.signIn(base, "alice-token")
	bob.signIn(base, "bob-token")
	if me := alice.text("#me"); !strings.Contains(me, "Alice Example") {
		t.Fatalf("alice's page shows %q", me)
	}

	alice.compose("bob", "Lunch?", "Hello Bob, lunch at noon? The usual place.")
	alice.screenshot("compose")
	alice.do("send", chromedp.Click(chromedp.ID("send")), chromedp.WaitVisible(chromedp.CSS("#sent li.sent-item")))
	id := alice.eval(`document.querySelector('#sent li.sent-item').dataset.id`)
	if !schemas.ValidMsgID(id) {
		t.Fatalf("sent message id %q", id)
	}
	alice.waitJS("delivered on alice's page", fmt.Sprintf(`['delivered','read'].includes(document.querySelector('#sent li[data-id=%q]').dataset.status)`, id))

	// bob's inbox shows it without a reload
	item := fmt.Sprintf(`#inbox .item[data-id=%q]`, id)
	bob.do("the message in bob's inbox", chromedp.WaitVisible(chromedp.CSS(item)))
	if txt := bob.text(item); !strings.Contains(txt, "Alice Example") || !strings.Contains(txt, "Web") || !strings.Contains(txt, "Lunch?") {
		t.Fatalf("inbox item %q", txt)
	}
	if cls := bob.eval(fmt.Sprintf(`document.querySelector(%q).className`, item)); !strings.Contains(cls, "unread") {
		t.Fatalf("new message not unread: %q", cls)
	}
	// a message from a phone: bob's inbox shows the medium it came from
	fabrictest.Eventually(t, 10*time.Second, "an SMS to bob", func() bool {
		_, err := sms.Send(context.Background(), &kit.Submission{From: schemas.Endpoint{Medium: "sms", Address: "+15550199"},
			To: "bob", Content: []byte("On my way, 10 minutes late.")})
		return err == nil
	})
	bob.do("the SMS in bob's inbox", chromedp.WaitVisible(chromedp.CSS(`#inbox .item .m-sms`)))
	if txt := bob.text("#inbox li:first-child .item"); !strings.Contains(txt, "+15550199") || !strings.Contains(txt, "SMS") {
		t.Fatalf("SMS inbox item %q", txt)
	}
	bob.screenshot("inbox-new-messages")
	// the inbox list moves with the arrow keys
	bob.eval(`document.querySelector('#inbox .item').focus(), "ok"`)
	bob.do("arrow down in the inbox", chromedp.KeyEvent(kb.ArrowDown))
	if got := bob.eval(`document.activeElement.dataset.id || ""`); got != id {
		t.Fatalf("ArrowDown moved the focus to %q, want alice's message %s", got, id)
	}

	// bob opens it: the read receipt goes back to alice
	bob.do("open the message", chromedp.Click(chromedp.CSS(item)), chromedp.WaitVisible(chromedp.ID("message-text")))
	bob.waitJS("the read receipt sent", `/^sent to/.test(document.getElementById('receipt').textContent)`)
	if txt := bob.text("#message-text"); txt != "Hello Bob, lunch at noon? The usual place." {
		t.Fatalf("message text %q", txt)
	}
	if focused := bob.eval(`document.activeElement.id`); focused != "reader-h" {
		t.Fatalf("focus after opening is on %q, want the message heading", focused)
	}
	bob.screenshot("message-opened")

	alice.waitJS("read on alice's page", fmt.Sprintf(`document.querySelector('#sent li[data-id=%q]').dataset.status === 'read'`, id))
	if steps := alice.text(fmt.Sprintf(`#sent li[data-id=%q] .steps`, id)); steps != "AcceptedRoutedDeliveredRead" {
		t.Fatalf("status steps %q", steps)
	}
	alice.screenshot("sent-message-read")

	// bob replies with the keyboard: Reply, type, Ctrl+Enter
	bob.do("reply", chromedp.Click(chromedp.CSS("#reader-body .actions button")))
	if to, focused := bob.eval(`document.getElementById('to').value`), bob.eval(`document.activeElement.id`); to != "alice" || focused != "text" {
		t.Fatalf("reply: to %q, focus on %q", to, focused)
	}
	bob.do("type the reply and press Ctrl+Enter", chromedp.SendKeys(chromedp.ID("text"), "Noon is fine, see you there."),
		chromedp.KeyEvent("\r", chromedp.KeyModifiers(chromedp.ModifierCtrl)))
	bob.waitJS("the reply in bob's sent list", `document.querySelectorAll('#sent li.sent-item').length === 1`)
	alice.waitJS("the reply in alice's inbox", `Array.from(document.querySelectorAll('#inbox .item')).some(e => e.textContent.includes('Re: Lunch?'))`)
	alice.screenshot("reply-received")

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
	b := newBrowser(t)
	base, _ := startFabric(t)
	p := b.tab("alice")

	p.do("open the page", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.ID("token")))
	p.do("a wrong token", chromedp.SendKeys(chromedp.ID("token"), "not-a-token\r"), chromedp.WaitVisible(chromedp.ID("signin-error")))
	if msg := p.text("#signin-error"); !strings.Contains(msg, "not valid") {
		t.Fatalf("wrong token message %q", msg)
	}
	if inv := p.eval(`document.getElementById('token').getAttribute('aria-invalid') || ''`); inv != "true" {
		t.Fatal("token field not marked invalid")
	}
	p.screenshot("wrong-token")
	p.clear("token")
	p.do("sign in", chromedp.SendKeys(chromedp.ID("token"), "alice-token\r"), chromedp.WaitVisible(chromedp.ID("app")))

	p.do("send an empty form", chromedp.Click(chromedp.ID("send")), chromedp.WaitVisible(chromedp.ID("compose-error")))
	if msg, focused := p.text("#compose-error"), p.eval(`document.activeElement.id`); !strings.Contains(msg, "Enter a recipient") || focused != "to" {
		t.Fatalf("empty form: %q, focus on %q", msg, focused)
	}

	p.compose("nobody-here", "", "hello?")
	p.do("send to an unknown recipient", chromedp.Click(chromedp.ID("send")))
	p.waitJS("the unknown recipient error", `/Unknown recipient/.test(document.getElementById('compose-error').textContent)`)
	if inv := p.eval(`document.getElementById('to').getAttribute('aria-invalid') || ''`); inv != "true" {
		t.Fatal("recipient field not marked invalid")
	}
	if role := p.eval(`document.getElementById('compose-error').getAttribute('role')`); role != "alert" {
		t.Fatalf("error role %q", role)
	}
	p.screenshot("unknown-recipient")

	// A busy fabric: the gateway answers 503 with Retry-After. The page
	// retries with the same Idempotency-Key, then says nothing was sent.
	p.eval(`(() => {
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
	p.compose("bob", "", "are you there?")
	p.do("send while the fabric is busy", chromedp.Click(chromedp.ID("send")))
	p.waitJS("the busy notice", `/Retrying in 1 s/.test(document.getElementById('compose-error').textContent)`)
	p.screenshot("fabric-busy-retrying")
	p.waitJS("the final busy error", `/nothing was sent/.test(document.getElementById('compose-error').textContent)`)
	keys := p.eval(`window.__busy.join(' ')`)
	if k := strings.Fields(keys); len(k) != 3 || k[0] != k[1] || k[1] != k[2] {
		t.Fatalf("busy retries with idempotency keys %q, want 3 equal", keys)
	}
	if v := p.eval(`document.getElementById('text').value`); v != "are you there?" {
		t.Fatalf("the message was not kept in the form: %q", v)
	}
	p.screenshot("fabric-busy-gave-up")
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
