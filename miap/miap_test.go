package miap_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// fixedSecret returns a deterministic 32-byte key for party.
func fixedSecret(party string, n byte) string {
	b := make([]byte, miap.KeySize)
	for i := range b {
		b[i] = byte(i) + n
	}
	copy(b, party)
	return base64.StdEncoding.EncodeToString(b)
}

var t0 = time.UnixMilli(1_790_000_000_000) // 2026-09-21, the vectors' clock

func testKeys(t testing.TB) *miap.Keyring {
	t.Helper()
	kr, err := miap.NewKeyring([]miap.KeyEntry{
		{Party: "web", Kid: "web-1", Secret: fixedSecret("web", 1)},
		{Party: "email", Kid: "email-1", Secret: fixedSecret("email", 2)},
		{Party: miap.BrokerParty, Kid: "k2-1", Secret: fixedSecret("broker", 3)},
	})
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

// counterRand is a deterministic, endless randomness source for tests.
type counterRand struct{ n byte }

func (r *counterRand) Read(b []byte) (int, error) {
	for i := range b {
		r.n++
		b[i] = r.n
	}
	return len(b), nil
}

type clock struct{ t time.Time }

func (c *clock) Now() time.Time          { return c.t }
func (c *clock) Advance(d time.Duration) { c.t = c.t.Add(d) }

func testEngine(t testing.TB, c *clock) *miap.Engine {
	t.Helper()
	e, err := miap.New(miap.Config{Keys: testKeys(t), Now: c.Now, Rand: &counterRand{}})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func imiFrame() *miap.Frame {
	return &miap.Frame{Purpose: miap.PurposeIMI, Party: "web", Body: []byte(`{"v":1,"msg_id":"00112233445566778899aabbccddeeff","to":"bob"}`)}
}

func TestSignVerifyEveryPurpose(t *testing.T) {
	c := &clock{t0}
	e := testEngine(t, c)
	for p := miap.PurposeLogin; p.Valid(); p++ {
		if p == miap.PurposeID {
			continue
		}
		f := &miap.Frame{Purpose: p, Party: "web", Body: []byte("body"), Expiry: t0.UnixMilli() + 1000}
		if err := e.Sign(f); err != nil {
			t.Fatalf("%s: sign: %v", p, err)
		}
		if err := e.Verify(f, p); err != nil {
			t.Fatalf("%s: verify: %v", p, err)
		}
		// Through headers and through the compact form.
		h := map[string][]string{}
		f.PutHeader(h)
		g, err := miap.ParseHeader(h, f.Body)
		if err != nil {
			t.Fatalf("%s: parse header: %v", p, err)
		}
		if err := e.Verify(g, p); err != nil {
			t.Fatalf("%s: verify after headers: %v", p, err)
		}
		k, err := miap.ParseCompact(miap.AppendCompact(nil, f))
		if err != nil {
			t.Fatalf("%s: parse compact: %v", p, err)
		}
		if err := e.Verify(k, p); err != nil {
			t.Fatalf("%s: verify after compact: %v", p, err)
		}
	}
}

func TestVerifyRejects(t *testing.T) {
	c := &clock{t0}
	e := testEngine(t, c)
	window := miap.DefaultWindow
	cases := []struct {
		name   string
		mutate func(f *miap.Frame)
		want   schemas.Code
	}{
		{"tampered body", func(f *miap.Frame) { f.Body[3] ^= 1 }, schemas.CodeBadMAC},
		{"tampered timestamp", func(f *miap.Frame) { f.TS-- }, schemas.CodeBadMAC},
		{"tampered nonce", func(f *miap.Frame) { f.Nonce[0] ^= 0x80 }, schemas.CodeBadMAC},
		{"session added", func(f *miap.Frame) { f.Session = []byte("x") }, schemas.CodeBadMAC},
		{"other party claims it", func(f *miap.Frame) { f.Party = "email"; f.Kid = "email-1" }, schemas.CodeBadMAC},
		{"unknown kid", func(f *miap.Frame) { f.Kid = "web-9" }, schemas.CodeUnknownKey},
		{"unknown party", func(f *miap.Frame) { f.Party = "fax" }, schemas.CodeUnknownKey},
		{"broker key id", func(f *miap.Frame) { f.Party = miap.BrokerParty; f.Kid = "k2-1" }, schemas.CodeUnknownKey},
		{"stale", func(f *miap.Frame) { c.Advance(window + time.Millisecond) }, schemas.CodeStale},
		{"future beyond skew", func(f *miap.Frame) { c.Advance(-miap.DefaultSkew - time.Millisecond) }, schemas.CodeClockSkew},
		{"truncated MAC", func(f *miap.Frame) { f.MAC = f.MAC[:31] }, schemas.CodeMalformed},
		{"too large", func(f *miap.Frame) { f.Body = make([]byte, schemas.MaxIMI+1) }, schemas.CodeTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c.t = t0
			f := imiFrame()
			if err := e.Sign(f); err != nil {
				t.Fatal(err)
			}
			tc.mutate(f)
			err := e.Verify(f, miap.PurposeIMI)
			if got := miap.CodeOf(err); got != tc.want {
				t.Fatalf("got %v (%v), want %v", got, err, tc.want)
			}
		})
	}
}

func TestClockSkewReturnsServerTime(t *testing.T) {
	c := &clock{t0}
	e := testEngine(t, c)
	f := imiFrame()
	f.TS = t0.Add(time.Minute).UnixMilli()
	if err := e.Sign(f); err != nil {
		t.Fatal(err)
	}
	var se *miap.SkewError
	if err := e.Verify(f, miap.PurposeIMI); !errors.As(err, &se) || se.ServerTime != t0.UnixMilli() {
		t.Fatalf("want SkewError with server time %d, got %v", t0.UnixMilli(), err)
	}
	// Within the skew it passes.
	f = imiFrame()
	f.TS = t0.Add(miap.DefaultSkew).UnixMilli()
	e.Sign(f)
	if err := e.Verify(f, miap.PurposeIMI); err != nil {
		t.Fatalf("frame %v ahead: %v", miap.DefaultSkew, err)
	}
}

// S8: a broker → gateway frame presented as a gateway → broker frame, and a
// frame of one purpose presented as another, never verify.
func TestReflection(t *testing.T) {
	c := &clock{t0}
	e := testEngine(t, c)
	for p := miap.PurposeLogin; p.Valid(); p++ {
		if p == miap.PurposeID {
			continue
		}
		f := &miap.Frame{Purpose: p, Party: "web", Body: []byte("x"), Expiry: t0.UnixMilli() + 1}
		if err := e.Sign(f); err != nil {
			t.Fatal(err)
		}
		for q := miap.PurposeLogin; q.Valid(); q++ {
			if q == p || q == miap.PurposeID {
				continue
			}
			g := *f
			g.Purpose = q // an attacker relabels the frame
			if err := e.Verify(&g, q); err == nil {
				t.Fatalf("%s frame accepted as %s", p, q)
			}
		}
	}
}

// S7: moving a field boundary changes the MAC input, so a MAC never carries over.
func TestFieldBoundaryShift(t *testing.T) {
	a := &miap.Frame{Purpose: miap.PurposeIMI, Party: "web", Kid: "web-1", Peer: "bob", Body: []byte("1")}
	b := &miap.Frame{Purpose: miap.PurposeIMI, Party: "web", Kid: "web-1", Peer: "bob1", Body: nil}
	if bytes.Equal(miap.AppendMACInput(nil, a), miap.AppendMACInput(nil, b)) {
		t.Fatal("shifted boundary gives the same MAC input")
	}
	// The patent's bare concatenation does collide (PROTOCOL.md §5.4).
	imi1, cack1 := "gwAbob1", "23"
	imi2, cack2 := "gwAbob12", "3"
	if imi1+cack1 != imi2+cack2 {
		t.Fatal("example is wrong")
	}
	x := &miap.Frame{Purpose: miap.PurposeIMI, Body: []byte(imi1), Session: []byte(cack1)}
	y := &miap.Frame{Purpose: miap.PurposeIMI, Body: []byte(imi2), Session: []byte(cack2)}
	if bytes.Equal(miap.AppendMACInput(nil, x), miap.AppendMACInput(nil, y)) {
		t.Fatal("MIAP encoding collides where bare concatenation does")
	}
}

// S5: every single-bit flip of a valid frame's compact form is rejected.
func TestEveryBitFlip(t *testing.T) {
	c := &clock{t0}
	e := testEngine(t, c)
	f := imiFrame()
	f.Session = bytes.Repeat([]byte{1}, 32)
	if err := e.Sign(f); err != nil {
		t.Fatal(err)
	}
	wire := miap.AppendCompact(nil, f)
	for i := range len(wire) * 8 {
		flipped := bytes.Clone(wire)
		flipped[i/8] ^= 1 << (i % 8)
		g, err := miap.ParseCompact(flipped)
		if err != nil {
			continue
		}
		if err := e.Verify(g, miap.PurposeIMI); err == nil {
			t.Fatalf("bit %d flipped and the frame still verifies", i)
		}
	}
}

func TestRotationOverlap(t *testing.T) {
	c := &clock{t0}
	rot := t0.Add(time.Hour)
	kr, err := miap.NewKeyring([]miap.KeyEntry{
		{Party: "web", Kid: "web-1", Secret: fixedSecret("web", 1), NotAfter: rot.Add(24 * time.Hour)},
		{Party: "web", Kid: "web-2", Secret: fixedSecret("web", 9), NotBefore: rot},
	})
	if err != nil {
		t.Fatal(err)
	}
	e, _ := miap.New(miap.Config{Keys: kr, Now: c.Now})
	old := imiFrame()
	e.Sign(old)
	if old.Kid != "web-1" {
		t.Fatalf("before rotation signed with %s", old.Kid)
	}
	c.t = rot
	old.TS = c.t.UnixMilli()
	e.Sign(old) // re-sign at rotation time: the new key is the current one
	if old.Kid != "web-2" {
		t.Fatalf("after rotation signed with %s", old.Kid)
	}
	// During the overlap a frame under the old key still verifies.
	legacy := &miap.Frame{Purpose: miap.PurposeIMI, Party: "web", Body: []byte("x")}
	c.t = rot.Add(-time.Second)
	e.Sign(legacy)
	c.t = rot.Add(time.Second)
	if err := e.Verify(legacy, miap.PurposeIMI); err != nil {
		t.Fatalf("old key during overlap: %v", err)
	}
	// After the overlap the old key is retired (S14).
	c.t = rot.Add(24 * time.Hour)
	legacy.TS = c.t.UnixMilli()
	if err := e.Verify(legacy, miap.PurposeIMI); miap.CodeOf(err) != schemas.CodeUnknownKey {
		t.Fatalf("retired key: got %v", err)
	}
}

func TestInnerDigestID(t *testing.T) {
	c := &clock{t0}
	e := testEngine(t, c)
	routed := []byte(`{"v":1,"tx":"t1"}`)
	cack := bytes.Repeat([]byte{5}, 32)
	id, kid, err := e.MintID(routed, cack)
	if err != nil || kid != "k2-1" || len(id) != miap.MACSize {
		t.Fatalf("mint: %x %s %v", id, kid, err)
	}
	if err := e.CheckID(kid, routed, cack, id); err != nil {
		t.Fatalf("check: %v", err)
	}
	forged := bytes.Clone(id)
	forged[0] ^= 1
	if err := e.CheckID(kid, routed, cack, forged); !errors.Is(err, miap.ErrIDMismatch) {
		t.Fatalf("forged ID: %v", err)
	}
	if err := e.CheckID(kid, routed, bytes.Repeat([]byte{6}, 32), id); !errors.Is(err, miap.ErrIDMismatch) {
		t.Fatalf("other C_ack: %v", err)
	}
	if miap.EqualID(id, forged) || !miap.EqualID(id, bytes.Clone(id)) {
		t.Fatal("EqualID")
	}
	// A gateway's keyring cannot mint IDs: it holds no K2.
	gw, _ := miap.NewKeyring([]miap.KeyEntry{{Party: "web", Kid: "web-1", Secret: fixedSecret("web", 1)}})
	ge, _ := miap.New(miap.Config{Keys: gw, Now: c.Now})
	if _, _, err := ge.MintID(routed, cack); !errors.Is(err, miap.ErrNoKey) {
		t.Fatalf("gateway minted an ID: %v", err)
	}
}

func TestTicketExpiry(t *testing.T) {
	c := &clock{t0}
	e := testEngine(t, c)
	f := &miap.Frame{Purpose: miap.PurposeTicket, Party: "web", Peer: "email", ID: bytes.Repeat([]byte{1}, 32),
		CType: "text/plain", CLen: 5, CSHA: sha(t, "hello"), Expiry: t0.Add(30 * time.Second).UnixMilli(), Body: []byte("{}")}
	if err := e.Sign(f); err != nil {
		t.Fatal(err)
	}
	c.Advance(29 * time.Second)
	if err := e.Verify(f, miap.PurposeTicket); err != nil {
		t.Fatal(err)
	}
	c.Advance(2 * time.Second)
	if err := e.Verify(f, miap.PurposeTicket); miap.CodeOf(err) != schemas.CodeExpired {
		t.Fatalf("expired ticket: %v", err)
	}
	// S6: content swapped under a valid ticket.
	c.t = t0
	g := *f
	g.CSHA = sha(t, "HELLO")
	if err := e.Verify(&g, miap.PurposeTicket); miap.CodeOf(err) != schemas.CodeBadMAC {
		t.Fatalf("swapped content digest: %v", err)
	}
}

func sha(t testing.TB, s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

func TestParseHeaderRejects(t *testing.T) {
	c := &clock{t0}
	e := testEngine(t, c)
	f := imiFrame()
	e.Sign(f)
	good := map[string][]string{}
	f.PutHeader(good)
	cases := map[string]func(h map[string][]string){
		"no version":       func(h map[string][]string) { delete(h, miap.HdrVersion) },
		"version 2":        func(h map[string][]string) { h[miap.HdrVersion] = []string{"2"} },
		"unknown purpose":  func(h map[string][]string) { h[miap.HdrPurpose] = []string{"none"} },
		"no timestamp":     func(h map[string][]string) { delete(h, miap.HdrTS) },
		"negative ts":      func(h map[string][]string) { h[miap.HdrTS] = []string{"-1"} },
		"leading zero ts":  func(h map[string][]string) { h[miap.HdrTS] = []string{"0123"} },
		"short nonce":      func(h map[string][]string) { h[miap.HdrNonce] = []string{"AAAA"} },
		"bad base64 mac":   func(h map[string][]string) { h[miap.HdrMAC] = []string{"!!"} },
		"no mac":           func(h map[string][]string) { delete(h, miap.HdrMAC) },
		"long party":       func(h map[string][]string) { h[miap.HdrParty] = []string{strings.Repeat("a", 65)} },
		"short digest":     func(h map[string][]string) { h[miap.HdrCSHA] = []string{"abcd"} },
		"long session key": func(h map[string][]string) { h[miap.HdrSession] = []string{strings.Repeat("A", 200)} },
	}
	for name, mutate := range cases {
		h := map[string][]string{}
		for k, v := range good {
			h[k] = v
		}
		mutate(h)
		if _, err := miap.ParseHeader(h, f.Body); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestConfigBounds(t *testing.T) {
	kr := testKeys(t)
	if _, err := miap.New(miap.Config{Keys: kr, Window: 301 * time.Second}); err == nil {
		t.Error("window above 300 s accepted")
	}
	if _, err := miap.New(miap.Config{Keys: kr, Window: 60 * time.Second, Skew: 61 * time.Second}); err == nil {
		t.Error("skew above window accepted")
	}
	e, err := miap.New(miap.Config{Keys: kr})
	if err != nil {
		t.Fatal(err)
	}
	if e.NonceTTL() != 2*miap.DefaultWindow+miap.DefaultSkew {
		t.Errorf("nonce TTL %v", e.NonceTTL())
	}
}

func TestKeyringRejects(t *testing.T) {
	bad := [][]miap.KeyEntry{
		{{Party: "Web", Kid: "k", Secret: fixedSecret("x", 1)}},
		{{Party: "web", Kid: "k", Secret: "c2hvcnQ="}},
		{{Party: "web", Kid: "k", Secret: fixedSecret("x", 1)}, {Party: "web", Kid: "k", Secret: fixedSecret("x", 2)}},
		{{Party: "web.x", Kid: "k", Secret: fixedSecret("x", 1)}},
	}
	for i, entries := range bad {
		if _, err := miap.NewKeyring(entries); !errors.Is(err, miap.ErrKeyFile) {
			t.Errorf("case %d: %v", i, err)
		}
	}
}

func decodeStd(t testing.TB, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNewKidIsValid(t *testing.T) {
	at := time.Date(2026, 12, 4, 22, 10, 33, 0, time.UTC)
	for _, p := range []string{"web", "cli", strings.Repeat("b", 64)} {
		kid := miap.NewKid(p, at)
		if !miap.ValidName(kid) {
			t.Errorf("miap.NewKid(%q) = %q, which ValidName refuses", p, kid)
		}
	}
	if got := miap.NewKid("web", at); got != "web-20261204t221033" {
		t.Errorf("NewKid = %q", got)
	}
}

func TestKeyringGrantOfNewestEntry(t *testing.T) {
	old, _ := miap.NewKeyEntry(rand.Reader, "bot", "bot-1", time.Time{})
	old.Role, old.Media = "gateway", []string{"bot"}
	nu, _ := miap.NewKeyEntry(rand.Reader, "bot", "bot-2", time.Now())
	nu.Role, nu.Media = "gateway", []string{"bot", "web"}
	plain, _ := miap.NewKeyEntry(rand.Reader, "web", "web-1", time.Time{})
	kr, err := miap.NewKeyring([]miap.KeyEntry{nu, old, plain})
	if err != nil {
		t.Fatal(err)
	}
	g, ok := kr.Grant("bot")
	if !ok || g.Role != "gateway" || !g.Speaks("web") || !g.Speaks("bot") || g.Speaks("sms") {
		t.Errorf("grant of bot = %+v, %v; want the newest entry's", g, ok)
	}
	if _, ok := kr.Grant("web"); ok {
		t.Error("an entry without role or media has a grant")
	}
}
