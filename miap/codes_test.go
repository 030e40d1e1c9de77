package miap_test

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// One fault, one code (PROTOCOL.md §4.2, §8, rev 1.3): each case is a
// fault the library answered with another code, or let through, before.
func TestHeaderFaultCodes(t *testing.T) {
	c := &clock{t0}
	e := testEngine(t, c)
	ack := &miap.Frame{Purpose: miap.PurposeAck, Party: "web", ID: bytes.Repeat([]byte{7}, 32), Body: []byte(`{"v":1}`),
		CType: "text/plain", CLen: 5, CSHA: sha(t, "hello")}
	if err := e.Sign(ack); err != nil {
		t.Fatal(err)
	}
	good := map[string][]string{}
	ack.PutHeader(good)
	cases := []struct {
		name   string
		mutate func(h map[string][]string)
		want   schemas.Code
	}{
		// A 16-byte ID parsed, and the broker answered ID_MISMATCH (a
		// destination BAD_TICKET); §4.2 says an ID is 32 bytes.
		{"16-byte ID", func(h map[string][]string) { h[miap.HdrID] = []string{miap.EncodeB64(make([]byte, 16))} }, schemas.CodeMalformed},
		{"33-byte ID", func(h map[string][]string) { h[miap.HdrID] = []string{miap.EncodeB64(make([]byte, 33))} }, schemas.CodeMalformed},
		// Upper-case hex decoded to the same digest; §4.2 says lower case.
		{"upper-case digest", func(h map[string][]string) { h[miap.HdrCSHA] = []string{strings.ToUpper(h[miap.HdrCSHA][0])} }, schemas.CodeMalformed},
		// Base64url with non-zero trailing bits decoded to the same nonce.
		{"non-canonical nonce", func(h map[string][]string) {
			v := []byte(h[miap.HdrNonce][0])
			v[len(v)-1] = nextB64(v[len(v)-1])
			h[miap.HdrNonce] = []string{string(v)}
		}, schemas.CodeMalformed},
		{"padded MAC", func(h map[string][]string) { h[miap.HdrMAC] = []string{h[miap.HdrMAC][0] + "="} }, schemas.CodeMalformed},
		// No nonce is 16 zero bytes; a gateway → broker frame without one
		// was claimed once and then answered REPLAY.
		{"no nonce", func(h map[string][]string) { delete(h, miap.HdrNonce) }, schemas.CodeMalformed},
		{"zero nonce", func(h map[string][]string) { h[miap.HdrNonce] = []string{miap.EncodeB64(make([]byte, 16))} }, schemas.CodeMalformed},
		{"lower-case header name", func(h map[string][]string) { h["miap-version"] = h[miap.HdrVersion]; delete(h, miap.HdrVersion) }, schemas.CodeMalformed},
	}
	for _, tc := range cases {
		h := map[string][]string{}
		for k, v := range good {
			h[k] = append([]string(nil), v...)
		}
		tc.mutate(h)
		f, err := miap.ParseHeader(h, ack.Body)
		if err == nil {
			err = e.Verify(f, miap.PurposeAck)
		}
		if got := miap.CodeOf(err); got != tc.want {
			t.Errorf("%s: %v (%v), want %v", tc.name, got, err, tc.want)
		}
	}
	// The unchanged frame verifies; a ticket needs no nonce.
	f, err := miap.ParseHeader(good, ack.Body)
	if err == nil {
		err = e.Verify(f, miap.PurposeAck)
	}
	if err != nil {
		t.Fatalf("genuine frame: %v", err)
	}
	tk := &miap.Frame{Purpose: miap.PurposeTicket, Party: "web", ID: bytes.Repeat([]byte{1}, 32), Expiry: t0.Add(time.Minute).UnixMilli(), Body: []byte("{}")}
	if err := e.Sign(tk); err != nil || tk.Nonce != ([miap.NonceSize]byte{}) {
		t.Fatalf("ticket signed with a nonce or failed: %v", err)
	}
	if err := e.Verify(tk, miap.PurposeTicket); err != nil {
		t.Fatalf("ticket without a nonce: %v", err)
	}
}

// nextB64 returns a base64url character that differs from c only in its
// lowest bits, which a 16-byte value leaves unused.
func nextB64(c byte) byte {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, c)
	return alphabet[i^1]
}

// The transfer's Miap-Imi-Len (PROTOCOL.md §6.6 step 1): a routed IMI over
// its limit is TOO_LARGE, as the same routed IMI is at the login (§6.5),
// where it is the whole body (it was MALFORMED at the transfer); content by
// reference at a destination without a content store is UNSUPPORTED (it
// was MALFORMED), as §10 says.
func TestTransferFaultCodes(t *testing.T) {
	c := &clock{t0}
	e := testEngine(t, c)
	content := []byte("hello")
	routed := []byte(`{"v":1}`)
	tk := &miap.Frame{Purpose: miap.PurposeTicket, Party: "web", Peer: "email", ID: bytes.Repeat([]byte{1}, 32),
		CType: "text/plain", CLen: int64(len(content)), CSHA: sha(t, "hello"), Expiry: t0.Add(time.Minute).UnixMilli(), Body: routed}
	if err := e.Sign(tk); err != nil {
		t.Fatal(err)
	}
	fetch := func(string) ([]byte, error) { return content, nil }
	open := func(mutate func(h map[string][]string, body []byte) []byte, fetch miap.Fetch) error {
		h := map[string][]string{}
		body := miap.AppendTransfer(h, tk, content, "")
		if mutate != nil {
			body = mutate(h, body)
		}
		_, err := e.OpenTransfer("web", h, body, fetch)
		return err
	}
	if err := open(nil, fetch); err != nil {
		t.Fatalf("genuine transfer: %v", err)
	}
	big := make([]byte, miap.MaxRouted+1)
	login := &miap.Frame{Purpose: miap.PurposeTicket, Party: "web", ID: tk.ID, Expiry: tk.Expiry, TS: tk.TS, Kid: tk.Kid, MAC: tk.MAC, Body: big}
	if err := e.VerifyTicket("web", login); miap.CodeOf(err) != schemas.CodeTooLarge {
		t.Fatalf("login with a routed IMI over the limit: %v, want TOO_LARGE", err)
	}
	imiLen := func(v string) func(h map[string][]string, body []byte) []byte {
		return func(h map[string][]string, body []byte) []byte { h[miap.HdrIMILen] = []string{v}; return body }
	}
	for _, tc := range []struct {
		name   string
		mutate func(h map[string][]string, body []byte) []byte
		fetch  miap.Fetch
		want   schemas.Code
	}{
		{"routed IMI over the limit", func(h map[string][]string, body []byte) []byte {
			h[miap.HdrIMILen] = []string{strconv.Itoa(len(big))}
			return append(big, content...)
		}, fetch, schemas.CodeTooLarge},
		{"no Miap-Imi-Len", func(h map[string][]string, body []byte) []byte { delete(h, miap.HdrIMILen); return body }, fetch, schemas.CodeMalformed},
		{"signed Miap-Imi-Len", imiLen("+7"), fetch, schemas.CodeMalformed},
		{"leading zero", imiLen("07"), fetch, schemas.CodeMalformed},
		{"zero", imiLen("0"), fetch, schemas.CodeMalformed},
		{"beyond the body", imiLen("100"), fetch, schemas.CodeMalformed},
		{"by reference without a store", func(h map[string][]string, body []byte) []byte {
			h[miap.HdrContentRef] = []string{"obj"}
			return body[:len(routed)]
		}, nil, schemas.CodeUnsupported},
		{"inline and by reference", func(h map[string][]string, body []byte) []byte {
			h[miap.HdrContentRef] = []string{"obj"}
			return body
		}, fetch, schemas.CodeMalformed},
	} {
		if got := miap.CodeOf(open(tc.mutate, tc.fetch)); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
