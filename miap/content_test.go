package miap_test

import (
	"bytes"
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// A sealed object opens with the transfer's ID and the content's digest
// only; its name tells neither; a changed byte, another ID or another
// digest is DIGEST_MISMATCH.
func TestSealContent(t *testing.T) {
	id := bytes.Repeat([]byte{7}, 32)
	content := []byte(strings.Repeat("the content itself ", 100))
	sum := sha256.Sum256(content)
	sealed, err := miap.SealContent(id, sum[:], content)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("the content itself")) || len(sealed) != len(content)+16 {
		t.Fatalf("sealed: %d bytes, clear text inside %v", len(sealed), bytes.Contains(sealed, []byte("the content")))
	}
	if out, err := miap.OpenContent(id, sum[:], sealed); err != nil || !bytes.Equal(out, content) {
		t.Fatalf("open: %v", err)
	}
	other := bytes.Repeat([]byte{8}, 32)
	flipped := append([]byte{}, sealed...)
	flipped[10] ^= 1
	for name, try := range map[string]func() error{
		"a changed byte": func() error { _, err := miap.OpenContent(id, sum[:], flipped); return err },
		"another ID":     func() error { _, err := miap.OpenContent(other, sum[:], sealed); return err },
		"another digest": func() error { _, err := miap.OpenContent(id, make([]byte, 32), sealed); return err },
	} {
		if c := miap.CodeOf(try()); c != schemas.CodeDigestMismatch {
			t.Errorf("%s: %v, want DIGEST_MISMATCH", name, c)
		}
	}
	name := miap.ContentName(id, int64(len(content)))
	if !strings.HasSuffix(name, "-1900") || len(name) != 32+5 || strings.Contains(name, "0707070707") {
		t.Fatalf("name %q", name)
	}
	if miap.ContentName(other, 1900) == name {
		t.Fatal("two IDs, one name")
	}
}

// A transfer by reference opens only with the object the ticket binds,
// sealed under its key; the header of the seal without a reference is
// MALFORMED, an unknown seal UNSUPPORTED.
func TestTransferByReference(t *testing.T) {
	c := &clock{t0}
	e := testEngine(t, c)
	content := bytes.Repeat([]byte("large "), 20000)
	sum := sha256.Sum256(content)
	tk := &miap.Frame{Purpose: miap.PurposeTicket, Party: "web", Peer: "email", ID: bytes.Repeat([]byte{1}, 32),
		CType: "text/plain", CLen: int64(len(content)), CSHA: sum[:], Expiry: t0.Add(time.Minute).UnixMilli(), Body: []byte(`{"v":1}`)}
	if err := e.Sign(tk); err != nil {
		t.Fatal(err)
	}
	ref := miap.ContentName(tk.ID, tk.CLen)
	sealed, _ := miap.SealContent(tk.ID, tk.CSHA, content)
	store := map[string][]byte{ref: sealed}
	fetch := func(name string) ([]byte, error) {
		if b, ok := store[name]; ok {
			return b, nil
		}
		return nil, miap.ErrDigest
	}
	open := func(mutate func(h map[string][]string)) (*miap.Transfer, error) {
		h := map[string][]string{}
		body := miap.AppendTransfer(h, tk, content, ref)
		if mutate != nil {
			mutate(h)
		}
		return e.OpenTransfer("web", h, body, fetch)
	}
	tr, err := open(nil)
	if err != nil || !bytes.Equal(tr.Content, content) {
		t.Fatalf("genuine transfer by reference: %v", err)
	}
	store[ref] = content // the object in clear under a header that says sealed
	if _, err := open(nil); miap.CodeOf(err) != schemas.CodeDigestMismatch {
		t.Fatalf("an object not sealed: %v", err)
	}
	store[ref] = sealed
	for name, tc := range map[string]struct {
		mutate func(h map[string][]string)
		want   schemas.Code
	}{
		"seal without a reference": {func(h map[string][]string) { delete(h, miap.HdrContentRef) }, schemas.CodeMalformed},
		"unknown seal":             {func(h map[string][]string) { h[miap.HdrContentEnc] = []string{"ROT13"} }, schemas.CodeUnsupported},
		"another object":           {func(h map[string][]string) { h[miap.HdrContentRef] = []string{"nothing-1"} }, schemas.CodeDigestMismatch},
	} {
		if _, err := open(tc.mutate); miap.CodeOf(err) != tc.want {
			t.Errorf("%s: %v, want %v", name, miap.CodeOf(err), tc.want)
		}
	}
}

// FuzzOpenContent: any object opens or fails with DIGEST_MISMATCH, and
// never opens under a key it was not sealed with.
func FuzzOpenContent(f *testing.F) {
	id := bytes.Repeat([]byte{3}, 32)
	sum := sha256.Sum256([]byte("x"))
	s, _ := miap.SealContent(id, sum[:], []byte("x"))
	f.Add(s)
	f.Add([]byte{})
	f.Add(make([]byte, 16))
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := miap.OpenContent(id, sum[:], b)
		if err != nil {
			if miap.CodeOf(err) != schemas.CodeDigestMismatch {
				t.Fatalf("code %v", miap.CodeOf(err))
			}
			return
		}
		if !bytes.Equal(out, []byte("x")) {
			t.Fatalf("opened %q", out)
		}
	})
}
