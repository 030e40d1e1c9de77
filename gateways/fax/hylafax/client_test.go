package hylafax_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/uims/uims/gateways/fax/hylafax"
	"github.com/uims/uims/gateways/fax/hylafax/hfaxdtest"
	"github.com/uims/uims/internal/peertest"
)

// page makes a one-page TIFF-F with ImageMagick (an independent tool).
func page(t *testing.T) []byte {
	t.Helper()
	convert := peertest.Require(t, "convert", "apt-get install imagemagick")
	out := filepath.Join(t.TempDir(), "in.tif")
	cmd := exec.Command(convert, "-size", "1728x1100", "xc:white", "-font", "DejaVu-Sans", "-pointsize", "40",
		"-draw", "text 100,200 'Hello fax'", "-compress", "Fax", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("convert: %v: %s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSubmitStatusKill submits a job to a real hfaxd, finds it in faxstat
// with its number and page count, removes it and sees it fail.
func TestSubmitStatusKill(t *testing.T) {
	srv := hfaxdtest.Start(t)
	doc := page(t)
	// jobs belong to the login name; faxrm removes the jobs of its user's
	c, err := hylafax.New(hylafax.Config{Addr: srv.Addr, User: srv.User, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	id, err := c.Submit(ctx, hylafax.Job{Number: "+15550133", Document: doc, FromUser: "alice", MaxDials: 3})
	if err != nil {
		t.Fatal(err)
	}
	var line string
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := srv.Client("faxstat", "-s")
		if err != nil {
			t.Fatalf("faxstat: %v: %s", err, out)
		}
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) > 0 && f[0] == id {
				line = l
			}
		}
		if strings.Contains(line, "+15550133") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s not in faxstat with +15550133:\n%s", id, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	st, err := c.Status(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if st.Done() {
		t.Fatalf("status %+v, want a queued job", st)
	}
	if n, err := srv.DocPages(id); err != nil || n != 1 {
		t.Fatalf("the server keeps %d pages for job %s (%v), want 1", n, id, err)
	}
	if out, err := srv.Client("faxrm", id); err != nil || !strings.Contains(out, "removed") {
		t.Fatalf("faxrm: %v: %s", err, out)
	}
	deadline = time.Now().Add(20 * time.Second)
	for {
		st, err = c.Status(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if st.Done() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job not done after faxrm: %+v", st)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if st.Sent() {
		t.Fatalf("removed job reported sent: %+v", st)
	}
	if st.State != "FAILED" || !strings.Contains(st.Status, "abort") {
		t.Fatalf("after faxrm: %+v, want FAILED, Job aborted by request", st)
	}
}
