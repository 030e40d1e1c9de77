package miap_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

var update = flag.Bool("update", false, "rewrite testdata/vectors.json")

// The vector file format is described in PROTOCOL.md §11.
type vectorFile struct {
	Comment  string           `json:"comment"`
	Now      int64            `json:"now"`
	WindowMS int64            `json:"window_ms"`
	SkewMS   int64            `json:"skew_ms"`
	Keys     []miap.KeyEntry  `json:"keys"`
	Subkeys  []subkeyVector   `json:"subkeys"`
	Frames   []frameVector    `json:"frames"`
	IDs      []idVector       `json:"ids"`
	Negative []negativeVector `json:"negative"`
}

type subkeyVector struct {
	Party   string `json:"party"`
	Kid     string `json:"kid"`
	Purpose string `json:"purpose"`
	Subkey  string `json:"subkey"`
}

type wireFrame struct {
	Purpose string `json:"purpose"`
	Party   string `json:"party"`
	Kid     string `json:"kid"`
	TS      int64  `json:"ts"`
	Nonce   string `json:"nonce"`
	Session string `json:"session"`
	ID      string `json:"id"`
	Peer    string `json:"peer"`
	CType   string `json:"ctype"`
	CLen    int64  `json:"clen"`
	CSHA    string `json:"csha"`
	Expiry  int64  `json:"expiry"`
	Body    string `json:"body"`
	MAC     string `json:"mac"`
}

type frameVector struct {
	Name     string    `json:"name"`
	Frame    wireFrame `json:"frame"`
	MACInput string    `json:"mac_input"`
	Compact  string    `json:"compact"`
}

type idVector struct {
	Name    string `json:"name"`
	Kid     string `json:"k2_kid"`
	Routed  string `json:"routed"`
	Session string `json:"session"`
	ID      string `json:"id"`
}

type negativeVector struct {
	Name  string    `json:"name"`
	Frame wireFrame `json:"frame"`
	Want  string    `json:"error"`
}

func toWire(f *miap.Frame) wireFrame {
	return wireFrame{Purpose: f.Purpose.String(), Party: f.Party, Kid: f.Kid, TS: f.TS, Nonce: hex.EncodeToString(f.Nonce[:]),
		Session: hex.EncodeToString(f.Session), ID: hex.EncodeToString(f.ID), Peer: f.Peer, CType: f.CType, CLen: f.CLen,
		CSHA: hex.EncodeToString(f.CSHA), Expiry: f.Expiry, Body: string(f.Body), MAC: hex.EncodeToString(f.MAC)}
}

func fromWire(t *testing.T, w wireFrame) *miap.Frame {
	t.Helper()
	p, ok := miap.ParsePurpose(w.Purpose)
	if !ok {
		t.Fatalf("purpose %q", w.Purpose)
	}
	dec := func(s string) []byte {
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) == 0 {
			return nil
		}
		return b
	}
	f := &miap.Frame{Purpose: p, Party: w.Party, Kid: w.Kid, TS: w.TS, Session: dec(w.Session), ID: dec(w.ID), Peer: w.Peer,
		CType: w.CType, CLen: w.CLen, CSHA: dec(w.CSHA), Expiry: w.Expiry, Body: []byte(w.Body), MAC: dec(w.MAC)}
	copy(f.Nonce[:], dec(w.Nonce))
	return f
}

// vectorFrames are the frames of figure 5, one per purpose, with fixed inputs.
func vectorFrames(now int64) []struct {
	name string
	f    miap.Frame
} {
	nonce := func(b byte) (n [miap.NonceSize]byte) {
		for i := range n {
			n[i] = b + byte(i)
		}
		return n
	}
	cack := bytes.Repeat([]byte{0xca}, 32)
	id := bytes.Repeat([]byte{0x1d}, 32)
	csha, _ := hex.DecodeString("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824") // SHA-256("hello")
	imi := `{"v":1,"msg_id":"0123456789abcdef0123456789abcdef","gateway":"web","from":{"medium":"web","address":"alice","client":"alice"},"to":"bob","content":{"type":"text/plain; charset=utf-8","length":5,"sha256":"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"},"created":1790000000000}`
	routed := `{"v":1,"imi":` + imi + `,"tx":"0123456789abcdef0123456789abcdef","sender":"alice","recipient":"bob","dest":{"gateway":"web","medium":"web","address":"bob"},"routed":1790000000000,"deadline":1790000030000,"attempt":1}`
	exp := now + 30_000
	return []struct {
		name string
		f    miap.Frame
	}{
		{"tscs login C", miap.Frame{Purpose: miap.PurposeLogin, Party: "web", TS: now, Nonce: nonce(1)}},
		{"tscs acknowledgement with C_ack", miap.Frame{Purpose: miap.PurposeLoginAck, Party: "web", TS: now, Nonce: nonce(1), Session: cack}},
		{"imi bound to C_ack (strict)", miap.Frame{Purpose: miap.PurposeIMI, Party: "web", TS: now, Nonce: nonce(2), Session: cack, Body: []byte(imi)}},
		{"imi (fast)", miap.Frame{Purpose: miap.PurposeIMI, Party: "web", TS: now, Nonce: nonce(3), Body: []byte(imi)}},
		{"routed imi with outer digest", miap.Frame{Purpose: miap.PurposeRoute, Party: "web", TS: now, Nonce: nonce(3), Session: cack, ID: id, Body: []byte(routed)}},
		{"originator acknowledges routed imi", miap.Frame{Purpose: miap.PurposeRouteAck, Party: "web", TS: now, Nonce: nonce(4), ID: id, Body: []byte(`{"v":1,"tx":"0123456789abcdef0123456789abcdef"}`)}},
		{"destination ticket", miap.Frame{Purpose: miap.PurposeTicket, Party: "email", TS: now, ID: id, Peer: "web", CType: "text/plain; charset=utf-8", CLen: 5, CSHA: csha, Expiry: exp, Body: []byte(routed)}},
		{"destination session token", miap.Frame{Purpose: miap.PurposeGwSession, Party: "email", TS: now, Nonce: nonce(5), ID: id}},
		{"delivery acknowledgement with ID", miap.Frame{Purpose: miap.PurposeAck, Party: "email", TS: now, Nonce: nonce(6), ID: id, Body: []byte(`{"v":1,"tx":"0123456789abcdef0123456789abcdef","msg_id":"0123456789abcdef0123456789abcdef","gateway":"email","status":"delivered","at":1790000000000}`)}},
		{"broker answer to the acknowledgement", miap.Frame{Purpose: miap.PurposeAckReply, Party: "email", TS: now, Nonce: nonce(6), ID: id, Body: []byte(`{"v":1,"tx":"0123456789abcdef0123456789abcdef","state":"delivered"}`)}},
		{"receipt for the originator", miap.Frame{Purpose: miap.PurposeReceipt, Party: "web", TS: now, Nonce: nonce(6), ID: id, Peer: "email", Body: []byte(`{"v":1,"status":"delivered"}`)}},
		{"notification to the originator", miap.Frame{Purpose: miap.PurposeNotify, Party: "web", TS: now, Nonce: nonce(7), Body: []byte(`{"v":1,"status":"read"}`)}},
		{"processor conversion report", miap.Frame{Purpose: miap.PurposeConv, Party: "proc", TS: now, Nonce: nonce(8), ID: id, CType: "text/plain; charset=utf-8", CLen: 5, CSHA: csha, Body: []byte(`{"v":1}`)}},
		{"heartbeat", miap.Frame{Purpose: miap.PurposeAnnounce, Party: "web", TS: now, Nonce: nonce(9), Body: []byte(`{"v":1,"gateway":"web","medium":"web","instance":"a","ttl":10000,"at":1790000000000}`)}},
	}
}

func vectorKeys() []miap.KeyEntry {
	return []miap.KeyEntry{
		{Party: "web", Kid: "web-1", Secret: fixedSecret("web", 1)},
		{Party: "email", Kid: "email-1", Secret: fixedSecret("email", 2)},
		{Party: "proc", Kid: "proc-1", Secret: fixedSecret("proc", 4)},
		{Party: miap.BrokerParty, Kid: "k2-1", Secret: fixedSecret("broker", 3)},
	}
}

func buildVectors(t *testing.T) *vectorFile {
	now := t0.UnixMilli()
	kr, err := miap.NewKeyring(vectorKeys())
	if err != nil {
		t.Fatal(err)
	}
	e, _ := miap.New(miap.Config{Keys: kr, Now: func() time.Time { return t0 }})
	vf := &vectorFile{Comment: "MIAP test vectors, PROTOCOL.md §11. Hex unless noted; body is UTF-8 text.",
		Now: now, WindowMS: miap.DefaultWindow.Milliseconds(), SkewMS: miap.DefaultSkew.Milliseconds(), Keys: vectorKeys()}
	for _, p := range []miap.Purpose{miap.PurposeIMI, miap.PurposeRoute, miap.PurposeTicket} {
		sk, _ := miap.DeriveSubkey(mustSecret(t, "web"), p, "web", "web-1")
		vf.Subkeys = append(vf.Subkeys, subkeyVector{Party: "web", Kid: "web-1", Purpose: p.String(), Subkey: hex.EncodeToString(sk)})
	}
	for _, v := range vectorFrames(now) {
		f := v.f
		if err := e.Sign(&f); err != nil {
			t.Fatal(err)
		}
		vf.Frames = append(vf.Frames, frameVector{Name: v.name, Frame: toWire(&f),
			MACInput: hex.EncodeToString(miap.AppendMACInput(nil, &f)), Compact: hex.EncodeToString(miap.AppendCompact(nil, &f))})
	}
	routed := vectorFrames(now)[4].f.Body
	cack := bytes.Repeat([]byte{0xca}, 32)
	id, kid, _ := e.MintID(routed, cack)
	vf.IDs = append(vf.IDs, idVector{Name: "inner digest of the routed imi", Kid: kid, Routed: string(routed), Session: hex.EncodeToString(cack), ID: hex.EncodeToString(id)})

	base := vectorFrames(now)[3].f // imi (fast)
	e.Sign(&base)
	neg := func(name string, want schemas.Code, mutate func(f *miap.Frame)) {
		f := base
		f.Body = bytes.Clone(base.Body)
		mutate(&f)
		vf.Negative = append(vf.Negative, negativeVector{Name: name, Frame: toWire(&f), Want: want.String()})
	}
	neg("tampered body (recipient changed)", schemas.CodeBadMAC, func(f *miap.Frame) { f.Body = bytes.Replace(f.Body, []byte(`"to":"bob"`), []byte(`"to":"eve"`), 1) })
	neg("tampered timestamp", schemas.CodeBadMAC, func(f *miap.Frame) { f.TS -= 1 })
	neg("signed with email's key, claims web", schemas.CodeBadMAC, func(f *miap.Frame) {
		g := *f
		g.Party = "email"
		e.Sign(&g)
		f.MAC = g.MAC
	})
	neg("shifted field boundary (body byte moved into peer)", schemas.CodeBadMAC, func(f *miap.Frame) { f.Peer = string(f.Body[:1]); f.Body = f.Body[1:] })
	neg("broker frame reflected as a gateway frame", schemas.CodeBadMAC, func(f *miap.Frame) {
		r := vectorFrames(now)[4].f
		e.Sign(&r)
		*f = r
		f.Purpose = miap.PurposeIMI
	})
	neg("wrong direction: notify presented as announce", schemas.CodeBadMAC, func(f *miap.Frame) {
		r := vectorFrames(now)[11].f
		e.Sign(&r)
		*f = r
		f.Purpose = miap.PurposeAnnounce
	})
	neg("unknown key id", schemas.CodeUnknownKey, func(f *miap.Frame) { f.Kid = "web-7" })
	neg("stale", schemas.CodeStale, func(f *miap.Frame) {
		f.TS = now - miap.DefaultWindow.Milliseconds() - 1
		e.Sign(f)
	})
	neg("ahead beyond skew", schemas.CodeClockSkew, func(f *miap.Frame) {
		f.TS = now + miap.DefaultSkew.Milliseconds() + 1
		e.Sign(f)
	})
	return vf
}

func mustSecret(t *testing.T, party string) []byte {
	for _, k := range vectorKeys() {
		if k.Party == party {
			return decodeStd(t, k.Secret)
		}
	}
	t.Fatalf("no key for %s", party)
	return nil
}

// TestVectors checks the library against testdata/vectors.json; run with
// -update to rewrite the file after a deliberate protocol change.
func TestVectors(t *testing.T) {
	path := "testdata/vectors.json"
	if *update {
		b, _ := json.MarshalIndent(buildVectors(t), "", " ")
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var vf vectorFile
	if err := json.Unmarshal(raw, &vf); err != nil {
		t.Fatal(err)
	}
	kr, err := miap.NewKeyring(vf.Keys)
	if err != nil {
		t.Fatal(err)
	}
	now := time.UnixMilli(vf.Now)
	e, _ := miap.New(miap.Config{Keys: kr, Now: func() time.Time { return now }})
	for _, sv := range vf.Subkeys {
		p, _ := miap.ParsePurpose(sv.Purpose)
		var secret []byte
		for _, k := range vf.Keys {
			if k.Party == sv.Party && k.Kid == sv.Kid {
				secret = decodeStd(t, k.Secret)
			}
		}
		sk, _ := miap.DeriveSubkey(secret, p, sv.Party, sv.Kid)
		if hex.EncodeToString(sk) != sv.Subkey {
			t.Errorf("subkey %s/%s/%s differs", sv.Party, sv.Kid, sv.Purpose)
		}
	}
	for _, v := range vf.Frames {
		f := fromWire(t, v.Frame)
		if got := hex.EncodeToString(miap.AppendMACInput(nil, f)); got != v.MACInput {
			t.Errorf("%s: MAC input differs:\n got %s\nwant %s", v.Name, got, v.MACInput)
		}
		if got := hex.EncodeToString(miap.AppendCompact(nil, f)); got != v.Compact {
			t.Errorf("%s: compact form differs", v.Name)
		}
		if err := e.Verify(f, f.Purpose); err != nil {
			t.Errorf("%s: %v", v.Name, err)
		}
	}
	for _, v := range vf.IDs {
		routed := []byte(v.Routed)
		sess, _ := hex.DecodeString(v.Session)
		id, _ := hex.DecodeString(v.ID)
		if err := e.CheckID(v.Kid, routed, sess, id); err != nil {
			t.Errorf("%s: %v", v.Name, err)
		}
	}
	for _, v := range vf.Negative {
		f := fromWire(t, v.Frame)
		if got := miap.CodeOf(e.Verify(f, f.Purpose)).String(); got != v.Want {
			t.Errorf("%s: got %s, want %s", v.Name, got, v.Want)
		}
	}
	if len(vf.Frames) < 14 || len(vf.Negative) < 9 {
		t.Fatalf("vector file has only %d frames and %d negative vectors", len(vf.Frames), len(vf.Negative))
	}
}

// TestVectorsIndependent runs the spec-only Python implementation in
// testdata/check_vectors.py over the same vectors: a second implementation,
// written from PROTOCOL.md alone, must agree byte for byte.
func TestVectorsIndependent(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("python3 not found but CI is set: .ci/run must install python3")
		}
		t.Skip("SKIPPED: python3 not found; the independent vector check needs it")
	}
	out, err := exec.Command(py, "testdata/check_vectors.py", "testdata/vectors.json").CombinedOutput()
	if err != nil {
		t.Fatalf("check_vectors.py: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
