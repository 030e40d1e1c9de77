package fax_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/fax"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/gateways/web"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/internal/peertest"
	"github.com/uims/uims/processor"
	"github.com/uims/uims/processor/faxtiff"
	"github.com/uims/uims/schemas"
)

// TestFaxThroughTheProcessors is the user story on one fabric:
// the processors of processor.Standard and processor.Fax, the fax gateway
// on a T.37 offramp, bob on the web (the web gateway's own Accepts),
// dave on SMS (text only), carol on fax.
//   - alice's text to carol arrives at the offramp as a TIFF-F that
//     libtiff reads as CCITT Group 3, 1728 pixels wide;
//   - a fax an onramp mails in (ImageMagick's page, by swaks) reaches bob's
//     web inbox as its OCR text with the pages as a PDF, and dave as SMS
//     text.
func TestFaxThroughTheProcessors(t *testing.T) {
	tiffinfo := peertest.Require(t, "tiffinfo", "apt-get install libtiff-tools")
	f := fabrictest.New(t)
	f.StartBroker(broker.Config{})
	f.PutProfiles(
		&schemas.Profile{ID: "alice", Name: "Alice", Prefer: []string{"test"}, Addresses: map[string]string{"test": "alice"}},
		&schemas.Profile{ID: "bob", Name: "Bob", Prefer: []string{"web"}, Addresses: map[string]string{"web": "bob"}},
		&schemas.Profile{ID: "carol", Name: "Carol", Prefer: []string{"fax"}, Addresses: map[string]string{"fax": "+15550133"}},
		&schemas.Profile{ID: "dave", Name: "Dave", Prefer: []string{"sms"}, Addresses: map[string]string{"sms": "+15550144"}},
	)
	conv, missing := processor.Fax(processor.FaxConfig{})
	if len(missing) > 0 {
		peertest.Require(t, "tesseract", "apt-get install tesseract-ocr tesseract-ocr-eng")
	}
	p, err := processor.New(processor.Config{Conversions: append(processor.Standard(64<<10), conv...)}, f.Conn("proc"), f.Keyring("proc"), f.Log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, nil) }()
	t.Cleanup(func() { cancel(); <-done })
	bob, dave, alice := fabrictest.NewInbox(), fabrictest.NewInbox(), fabrictest.NewInbox()
	f.StartKit(bob, kit.Config{Gateway: "web", Medium: schemas.MediumWeb, Accepts: web.Accepts()})
	f.StartKit(dave, kit.Config{Gateway: "sms", Medium: schemas.MediumSMS, Accepts: []string{"text/plain"}})
	sender, _ := f.StartKit(alice, kit.Config{Gateway: "test", Medium: "test"})
	off := startOfframp(t)
	g, err := fax.New(fax.Config{T37Relay: off.addr, T37Domain: "offramp.test", Domain: "fax.test", SMTPAddr: "127.0.0.1:0", Poll: 200 * time.Millisecond},
		f.Conn("fax"), f.Keyring("fax"), f.Log)
	if err != nil {
		t.Fatal(err)
	}
	fabrictest.Start(t, "fax", g.Run)

	// alice → carol: text → text2fax → the fax gateway → the offramp
	var res *kit.Result
	fabrictest.Eventually(t, 20*time.Second, "a route to carol's fax", func() bool {
		sctx, scancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer scancel()
		res, err = sender.Send(sctx, &kit.Submission{From: schemas.Endpoint{Medium: "test", Address: "alice", Client: "alice"},
			To: "carol", Content: []byte("Hello Carol, the meeting moves to three o'clock.")})
		return err == nil
	})
	if res.Dest.Medium != "fax" {
		t.Fatalf("routed to %+v", res.Dest)
	}
	off.mu.Lock()
	raw := off.raw
	off.mu.Unlock()
	tiff := faxPart(t, raw)
	pages, err := faxtiff.Read(tiff, faxtiff.DefaultLimits)
	if err != nil || len(pages) != 1 || pages[0].Width != 1728 {
		t.Fatalf("the fax at the offramp: %d pages, %v", len(pages), err)
	}
	info, err := exec.Command(tiffinfo, fileOf(t, tiff)).CombinedOutput()
	if err != nil || !strings.Contains(string(info), "CCITT Group 3") || !strings.Contains(string(info), "Image Width: 1728") {
		t.Fatalf("tiffinfo: %v\n%s", err, info)
	}

	// an onramp's fax → bob (web: OCR text, pages as PDF) and dave (SMS: text)
	in := page(t)
	for _, to := range []string{"bob@fax.test", "dave@fax.test"} {
		if out, code := swaks(t, "--server", g.Addr(), "--from", "FAX=+15550199@onramp.test", "--to", to,
			"--attach-type", "image/tiff", "--attach", "@"+fileOf(t, in)); code != 0 {
			t.Fatalf("swaks to %s: %d\n%s", to, code, out)
		}
	}
	fabrictest.Eventually(t, 60*time.Second, "the fax in bob's inbox and dave's phone", func() bool { return bob.Len() == 1 && dave.Len() == 1 })
	d := bob.All()[0]
	mt, params, _ := mime.ParseMediaType(d.Type)
	if mt != "multipart/mixed" || d.Routed.IMI.From.Address != "+15550199" {
		t.Fatalf("bob got %s from %+v", d.Type, d.Routed.IMI.From)
	}
	var text string
	var pdf bool
	mr := multipart.NewReader(bytes.NewReader(d.Content), params["boundary"])
	for {
		part, err := mr.NextPart()
		if err != nil {
			break
		}
		b, _ := io.ReadAll(part)
		if strings.EqualFold(part.Header.Get("Content-Transfer-Encoding"), "base64") {
			b, _ = base64.StdEncoding.DecodeString(strings.NewReplacer("\r", "", "\n", "").Replace(string(b)))
		}
		switch pt, _, _ := mime.ParseMediaType(part.Header.Get("Content-Type")); pt {
		case "text/plain":
			text = string(b)
		case "application/pdf":
			pdf = bytes.HasPrefix(b, []byte("%PDF-"))
		}
	}
	if !strings.Contains(text, "Hello fax") || !pdf {
		t.Fatalf("bob's fax: text %q, pdf %v", text, pdf)
	}
	if s := dave.All()[0]; !strings.HasPrefix(s.Type, "text/plain") || !strings.Contains(string(s.Content), "Hello fax") {
		t.Fatalf("dave got %s %q", s.Type, s.Content)
	}
}

// faxPart returns the image/tiff part of a T.37 mail.
func faxPart(t *testing.T, raw []byte) []byte {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	_, params, _ := mime.ParseMediaType(m.Header.Get("Content-Type"))
	mr := multipart.NewReader(m.Body, params["boundary"])
	for {
		p, err := mr.NextRawPart()
		if err != nil {
			t.Fatal("no image/tiff part in the T.37 mail")
		}
		if strings.HasPrefix(p.Header.Get("Content-Type"), "image/tiff") {
			b, _ := io.ReadAll(p)
			out, err := base64.StdEncoding.DecodeString(strings.NewReplacer("\r", "", "\n", "").Replace(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			return out
		}
	}
}
