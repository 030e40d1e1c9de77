package miap_test

import (
	"bytes"
	"strconv"
	"testing"

	"github.com/uims/uims/miap"
)

// FuzzParseCompact: the compact parser never panics, and whatever it accepts
// re-encodes to the same bytes (the encoding is injective, §5.3).
func FuzzParseCompact(f *testing.F) {
	c := &clock{t0}
	e := testEngine(f, c)
	for p := miap.PurposeLogin; p.Valid(); p++ {
		if p == miap.PurposeID {
			continue
		}
		fr := &miap.Frame{Purpose: p, Party: "web", Body: []byte(`{"v":1}`), Session: bytes.Repeat([]byte{1}, 32), CType: "text/plain", CLen: 3, Expiry: 5}
		e.Sign(fr)
		f.Add(miap.AppendCompact(nil, fr))
	}
	f.Add([]byte("MIAP"))
	f.Add([]byte("MIAP\x01\x03\x01\x01\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := miap.ParseCompact(b)
		if err != nil {
			return
		}
		if again := miap.AppendCompact(nil, fr); !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n%x\n%x", b, again)
		}
		_ = e.Verify(fr, fr.Purpose) // must not panic
	})
}

// FuzzParseHeader: header parsing never panics; an accepted frame survives
// PutHeader/ParseHeader unchanged.
func FuzzParseHeader(f *testing.F) {
	c := &clock{t0}
	e := testEngine(f, c)
	fr := imiFrame()
	e.Sign(fr)
	h := map[string][]string{}
	fr.PutHeader(h)
	f.Add(h[miap.HdrPurpose][0], h[miap.HdrParty][0], h[miap.HdrKid][0], h[miap.HdrTS][0], h[miap.HdrNonce][0], "", "", h[miap.HdrMAC][0], "", "", fr.Body)
	f.Add("route", "web", "web-1", "1", "", "AAAA", "_-_-", "", "text/plain", "64", []byte{})
	f.Fuzz(func(t *testing.T, purpose, party, kid, ts, nonce, session, id, mac, ctype, clen string, body []byte) {
		h := map[string][]string{miap.HdrVersion: {"1"}, miap.HdrPurpose: {purpose}, miap.HdrParty: {party}, miap.HdrKid: {kid},
			miap.HdrTS: {ts}, miap.HdrNonce: {nonce}, miap.HdrSession: {session}, miap.HdrID: {id}, miap.HdrMAC: {mac},
			miap.HdrCType: {ctype}, miap.HdrCLen: {clen}}
		fr, err := miap.ParseHeader(h, body)
		if err != nil {
			return
		}
		h2 := map[string][]string{}
		fr.PutHeader(h2)
		fr2, err := miap.ParseHeader(h2, body)
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if !bytes.Equal(miap.AppendCompact(nil, fr), miap.AppendCompact(nil, fr2)) {
			t.Fatal("header round trip changed the frame")
		}
		_ = e.Verify(fr, fr.Purpose)
	})
}

// FuzzVerify: a signed frame with any one field changed never verifies, and
// verification never panics.
func FuzzVerify(f *testing.F) {
	c := &clock{t0}
	e := testEngine(f, c)
	f.Add([]byte(`{"v":1}`), uint8(0), 0, byte(1))
	f.Add([]byte{}, uint8(3), 5, byte(0x80))
	f.Fuzz(func(t *testing.T, body []byte, field uint8, pos int, flip byte) {
		if flip == 0 {
			flip = 1
		}
		fr := &miap.Frame{Purpose: miap.PurposeAck, Party: "web", Body: body, ID: bytes.Repeat([]byte{9}, 32), Session: []byte("s")}
		if err := e.Sign(fr); err != nil {
			t.Fatal(err)
		}
		if err := e.Verify(fr, miap.PurposeAck); err != nil {
			if len(body) > 16<<10 {
				return // too large: refused before the MAC, as specified
			}
			t.Fatalf("valid frame refused: %v", err)
		}
		g := *fr
		mutate := func(b []byte) []byte {
			b = bytes.Clone(b)
			if len(b) == 0 {
				return []byte{flip}
			}
			i := pos % len(b)
			if i < 0 {
				i = -i
			}
			b[i] ^= flip
			return b
		}
		switch field % 6 {
		case 0:
			g.Body = mutate(g.Body)
		case 1:
			g.ID = mutate(g.ID)
		case 2:
			g.Session = mutate(g.Session)
		case 3:
			g.Nonce[pos&15] ^= flip
		case 4:
			g.Peer = strconv.Itoa(pos)
		case 5:
			g.MAC = mutate(g.MAC)
		}
		if err := e.Verify(&g, miap.PurposeAck); err == nil {
			t.Fatalf("changed field %d still verifies", field%6)
		}
	})
}
