package kit_test

import (
	"bytes"
	"crypto/sha256"
	"strconv"
	"strings"
	"testing"
	"time"

	json "github.com/goccy/go-json"
	"github.com/nats-io/nats.go"

	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// One fault, one code at a destination (PROTOCOL.md §6.5, §6.6, rev 1.3),
// at the login as at the transfer. Before, a routed IMI over its limit was
// TOO_LARGE at the login but MALFORMED at the transfer; a ticket whose ID
// is not 32 bytes got a session token and was delivered; a content digest
// in upper-case hex was taken.
func TestDestinationFaultCodes(t *testing.T) {
	f := fabrictest.New(t)
	dg := fabrictest.NewInbox()
	f.StartKit(dg, kit.Config{Gateway: "peer", Medium: "web"})
	eng, err := miap.New(miap.Config{Keys: f.Keyring(miap.BrokerParty)})
	if err != nil {
		t.Fatal(err)
	}
	content := []byte("x")
	sum := sha256.Sum256(content)
	ticket := func(id []byte, pad int) *miap.Frame {
		routed, _ := json.Marshal(schemas.RoutedIMI{V: 1, Tx: "t1", Dest: schemas.Hop{Gateway: "peer", Medium: "web", Address: "bob"},
			IMI: schemas.IMI{V: 1, MsgID: kit.NewMsgID(), Gateway: "test", Subject: strings.Repeat("s", pad)}})
		tk := &miap.Frame{Purpose: miap.PurposeTicket, Party: "peer", ID: id, Peer: "test",
			CType: "text/plain", CLen: int64(len(content)), CSHA: sum[:], Expiry: time.Now().Add(time.Minute).UnixMilli(), Body: routed}
		if err := eng.Sign(tk); err != nil {
			t.Fatal(err)
		}
		return tk
	}
	nc := f.Conn("prober")
	ask := func(tk *miap.Frame, im bool, mutate func(nats.Header)) string {
		t.Helper()
		subject := schemas.GatewayLogin("peer")
		m := nats.NewMsg(subject)
		if im {
			m.Subject = schemas.GatewayIM("peer")
			m.Data = miap.AppendTransfer(m.Header, tk, content, "")
		} else {
			tk.PutHeader(m.Header)
			m.Data = tk.Body
		}
		if mutate != nil {
			mutate(m.Header)
		}
		r, err := nc.RequestMsg(m, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if c := r.Header.Get(miap.HdrError); c != "" {
			return c
		}
		return "OK"
	}
	id := bytes.Repeat([]byte{1}, 32)
	large := ticket(id, miap.MaxRouted)
	shortID := ticket(id[:16], 0)
	upper := func(h nats.Header) { h.Set(miap.HdrCSHA, strings.ToUpper(h.Get(miap.HdrCSHA))) }
	for _, tc := range []struct {
		name   string
		tk     *miap.Frame
		im     bool
		mutate func(nats.Header)
		want   string
	}{
		{"login, routed IMI over the limit", large, false, nil, "TOO_LARGE"},
		{"transfer, routed IMI over the limit", large, true, nil, "TOO_LARGE"},
		{"login, 16-byte ID", shortID, false, nil, "MALFORMED"},
		{"transfer, 16-byte ID", shortID, true, nil, "MALFORMED"},
		{"login, upper-case digest", ticket(id, 0), false, upper, "MALFORMED"},
		{"transfer, upper-case digest", ticket(id, 0), true, upper, "MALFORMED"},
		{"transfer, Miap-Imi-Len with a sign", ticket(id, 0), true, func(h nats.Header) {
			h.Set(miap.HdrIMILen, "+"+h.Get(miap.HdrIMILen))
		}, "MALFORMED"},
		{"transfer, routed IMI length 0", ticket(id, 0), true, func(h nats.Header) { h.Set(miap.HdrIMILen, strconv.Itoa(0)) }, "MALFORMED"},
	} {
		if got := ask(tc.tk, tc.im, tc.mutate); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
	if dg.Len() != 0 {
		t.Fatalf("%d refused transfers delivered", dg.Len())
	}
}
