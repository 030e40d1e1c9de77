package web_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/web"
	"github.com/uims/uims/internal/browsertest"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/schemas"
)

// pickFiles sets the compose form's file input to files made in the page
// (a DataTransfer, as a file picker would fill it) and fires its change
// event. Each file is name, type and size in bytes.
func pickFiles(p *browsertest.Tab, files ...[3]any) {
	var js strings.Builder
	js.WriteString("(() => { const dt = new DataTransfer();\n")
	for _, f := range files {
		fmt.Fprintf(&js, "{ const b = new Uint8Array(%d); for (let i = 0; i < b.length; i++) b[i] = (i * 7) %% 251; dt.items.add(new File([b], %q, {type: %q})); }\n", f[2], f[0], f[1])
	}
	js.WriteString("const input = document.getElementById('files'); input.files = dt.files; input.dispatchEvent(new Event('change', {bubbles: true})); return 'ok'; })()")
	p.Eval(js.String())
}

// TestBrowserAttachments: alice attaches files through the file picker and
// by dropping one on the compose form, removes one, sees a file over the
// limit refused before anything is sent, and sends; the upload's progress
// bar reaches 100%; bob's inbox shows the attachments with their names
// and sizes, and downloads one whole.
func TestBrowserAttachments(t *testing.T) {
	b := browsertest.New(t)
	f := fabrictest.New(t)
	f.StartBroker(broker.Config{})
	f.PutProfiles(
		&schemas.Profile{ID: "alice", Name: "Alice Example", Token: "alice-token", Addresses: map[string]string{"web": "alice"}, Prefer: []string{"web"}},
		&schemas.Profile{ID: "bob", Name: "Bob Example", Token: "bob-token", Addresses: map[string]string{"web": "bob"}, Prefer: []string{"web"}},
	)
	g, err := web.New(web.Config{Addr: "127.0.0.1:0", MaxUpload: 4 << 20}, f.Conn("web"), f.Keyring("web"), f.Log)
	if err != nil {
		t.Fatal(err)
	}
	fabrictest.Start(t, "web gateway", g.Run)
	base := "http://" + g.Addr()
	alice, bob := b.Tab("alice"), b.Tab("bob")
	signIn(alice, base, "alice-token")
	signIn(bob, base, "bob-token")
	alice.WaitJS("the upload limit shown", `document.getElementById('max-upload').textContent === '4.0 MiB'`)

	compose(alice, "bob", "Files for you", "The report and my notes.")
	pickFiles(alice, [3]any{"Bericht über 2026.pdf", "application/pdf", 3 << 20}, [3]any{"notes.txt", "text/plain", 1200})
	alice.WaitJS("two files listed", `document.querySelectorAll('#file-list li').length === 2`)
	if txt := alice.Text("#file-list"); !strings.Contains(txt, "Bericht über 2026.pdf") || !strings.Contains(txt, "3.0 MiB") || !strings.Contains(txt, "1.2 KiB") {
		t.Fatalf("file list %q", txt)
	}
	// one more, dropped on the form: over the limit in all, refused here
	alice.Eval(`(() => { const dt = new DataTransfer(); dt.items.add(new File([new Uint8Array(2 << 20)], 'big.bin', {type: 'application/octet-stream'}));
		const form = document.getElementById('compose');
		form.dispatchEvent(new DragEvent('dragover', {dataTransfer: dt, bubbles: true, cancelable: true}));
		window.__dragging = form.classList.contains('dragging');
		form.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true})); return 'ok'; })()`)
	if alice.Eval(`String(window.__dragging)`) != "true" {
		t.Error("the compose form does not show that files can be dropped on it")
	}
	alice.WaitJS("the dropped file listed", `document.querySelectorAll('#file-list li').length === 3`)
	alice.WaitJS("the too-large error", `!document.getElementById('compose-error').hidden`)
	if msg := alice.Text("#compose-error"); !strings.Contains(msg, "too large") || !strings.Contains(msg, "at most 4.0 MiB") {
		t.Fatalf("over the limit: %q", msg)
	}
	if role, inv, focused := alice.Eval(`document.getElementById('compose-error').getAttribute('role')`),
		alice.Eval(`document.getElementById('files').getAttribute('aria-invalid') || ''`), alice.Eval(`document.activeElement.id`); role != "alert" || inv != "true" || focused != "files" {
		t.Fatalf("over the limit: role %q, aria-invalid %q, focus on %q", role, inv, focused)
	}
	alice.Eval(`(() => { window.__posts = 0; const send = XMLHttpRequest.prototype.send;
		XMLHttpRequest.prototype.send = function (b) { window.__posts++; return send.call(this, b); }; return 'ok'; })()`)
	alice.Do("send over the limit", chromedp.Click(chromedp.ID("send")))
	if n := alice.Eval(`String(window.__posts)`); n != "0" {
		t.Fatalf("files over the limit were posted (%s requests)", n)
	}
	alice.Screenshot("attachments-over-the-limit")
	alice.Do("remove the big file", chromedp.Click(chromedp.CSS(`#file-list button[aria-label="Remove big.bin"]`)))
	alice.WaitJS("two files left, the error gone", `document.querySelectorAll('#file-list li').length === 2 && document.getElementById('compose-error').hidden`)
	alice.Screenshot("attachments-chosen")

	// the progress bar's values as the upload reports them
	alice.Eval(`(() => { window.__progress = []; const bar = document.getElementById('upload-progress');
		new MutationObserver(() => window.__progress.push(bar.value)).observe(bar, {attributes: true, attributeFilter: ['value']}); return 'ok'; })()`)
	alice.Do("send", chromedp.Click(chromedp.ID("send")), chromedp.WaitVisible(chromedp.CSS("#sent li.sent-item")))
	alice.WaitJS("the progress bar at 100%", `document.getElementById('upload-progress').value === 100 && document.getElementById('upload-pct').textContent === '100%'`)
	if n := alice.Eval(`String(window.__posts)`); n != "1" {
		t.Fatalf("%s uploads, want 1", n)
	}
	t.Logf("progress bar values: %s", alice.Eval(`window.__progress.join(' ')`))
	if note := alice.Text("#compose-note"); !strings.Contains(note, "with 2 attachments") {
		t.Errorf("note %q", note)
	}
	alice.WaitJS("the file list emptied", `document.querySelectorAll('#file-list li').length === 0`)
	alice.Screenshot("attachments-sent")
	id := alice.Eval(`document.querySelector('#sent li.sent-item').dataset.id`)

	item := fmt.Sprintf(`#inbox .item[data-id=%q]`, id)
	bob.Do("the message in bob's inbox", chromedp.WaitVisible(chromedp.CSS(item)))
	if label := bob.Eval(fmt.Sprintf(`document.querySelector(%q).getAttribute('aria-label')`, item)); !strings.Contains(label, "2 attachments") {
		t.Errorf("inbox item label %q", label)
	}
	bob.Do("open it", chromedp.Click(chromedp.CSS(item)), chromedp.WaitVisible(chromedp.CSS("#reader-body .att")))
	atts := bob.Text("#reader-body .atts")
	for _, want := range []string{"Bericht über 2026.pdf", "application/pdf, 3.0 MiB", "notes.txt", "text/plain, 1.2 KiB"} {
		if !strings.Contains(atts, want) {
			t.Errorf("attachments %q lack %q", atts, want)
		}
	}
	bob.Screenshot("attachments-received")
	bob.Eval(`(() => { window.__blobs = []; const make = URL.createObjectURL;
		URL.createObjectURL = (b) => { window.__blobs.push(b.size + ' ' + b.type); return make(b); }; return 'ok'; })()`)
	bob.Do("download the report", chromedp.Click(chromedp.CSS(`#reader-body button[aria-label^="Download Bericht"]`)))
	bob.WaitJS("the report downloaded", `/^Downloaded Bericht/.test(document.getElementById('download-note').textContent)`)
	if got, want := bob.Eval(`window.__blobs.join(',')`), fmt.Sprintf("%d application/pdf", 3<<20); got != want {
		t.Fatalf("downloaded %q, want %q", got, want)
	}
}
