// Package browsertest drives the real pages of UIMS (the web client page,
// the operator view) in Debian's chromium through chromedp, for tests. A
// missing chromium skips the test loudly, and fails it when CI is set
// (.ci/deps.d/web.sh installs it; UIMS_CHROMIUM names another binary).
// Each test's screenshots go under artifacts/screenshots/<test>/ at the
// module root (or $UIMS_ARTIFACTS/screenshots/<test>/), their paths logged.
package browsertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Chromium returns the browser to drive. Without one the test is skipped
// loudly on a developer machine and fails in CI (env CI set).
func Chromium(t testing.TB) string {
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

// Artifacts returns the screenshot folder of the test:
// artifacts/screenshots/<test>/ at the module root, or
// $UIMS_ARTIFACTS/screenshots/<test>/.
func Artifacts(t testing.TB) string {
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

// Browser is one headless chromium with isolated sessions (tabs in their
// own browser contexts: separate cookies and sessionStorage).
type Browser struct {
	t    testing.TB
	ctx  context.Context
	dir  string
	mu   sync.Mutex
	errs []string
	shot int
}

// New starts a headless chromium for the test (Chromium: skipped loudly
// without one, failed under CI), stopped when the test ends; page errors
// fail the test.
func New(t testing.TB) *Browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(Chromium(t)),
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
	b := &Browser{t: t, ctx: bctx, dir: Artifacts(t)}
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

// Tab is one session in the browser.
type Tab struct {
	b    *Browser
	name string
	ctx  context.Context
}

// Tab opens a session in a browser context of its own (separate cookies
// and sessionStorage).
func (b *Browser) Tab(name string) *Tab {
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
	return &Tab{b: b, name: name, ctx: ctx}
}

// Do runs steps with a timeout; on failure it saves a screenshot and fails the test.
func (p *Tab) Do(what string, steps ...chromedp.Action[chromedp.Void]) {
	p.b.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		p.Screenshot("FAILED-" + what)
		p.b.t.Fatalf("%s: %s: %v", p.name, what, err)
	}
}

// WaitJS waits until a JavaScript expression is true.
func (p *Tab) WaitJS(what, expr string) {
	p.b.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		p.Screenshot("FAILED-" + what)
		p.b.t.Fatalf("%s: waiting for %s: %v", p.name, what, err)
	}
}

// Eval evaluates a JavaScript expression whose value is a string.
func (p *Tab) Eval(expr string) string {
	p.b.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		p.b.t.Fatalf("%s: eval %s: %v", p.name, expr, err)
	}
	return v
}

// Text is the text content of the first element sel selects.
func (p *Tab) Text(sel string) string {
	return p.Eval(fmt.Sprintf(`(document.querySelector(%q) || {}).textContent || ""`, sel))
}

var unsafeName = regexp.MustCompile(`[^a-zA-Z0-9_.-]+`)

// Screenshot saves the whole page as a PNG and logs its path.
func (p *Tab) Screenshot(name string) string {
	return p.ScreenshotOf("", name)
}

// ScreenshotOf saves one element (the whole page if sel is empty) as a PNG
// and logs its path.
func (p *Tab) ScreenshotOf(sel, name string) string {
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
