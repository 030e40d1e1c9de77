package kit_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"testing"
	"time"

	json "github.com/goccy/go-json"
	"github.com/nats-io/nats.go"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// A destination in strict mode answers a transfer without a session token
// with BAD_SESSION, the originator's cue to log in to it (PROTOCOL.md §6.5,
// §6.6), and refuses a ticket whose MAC or key id does not verify, or whose
// routed IMI names another destination, with BAD_TICKET, at the login as at
// the transfer.
func TestStrictDestinationCodes(t *testing.T) {
	f := fabrictest.New(t)
	f.StartBroker(broker.Config{})
	f.PutProfiles(&schemas.Profile{ID: "alice", Addresses: map[string]string{"test": "alice"}},
		&schemas.Profile{ID: "bob", Addresses: map[string]string{"web": "bob"}, Prefer: []string{"web"}})
	dg := fabrictest.NewInbox()
	ogKit, _ := f.StartKit(fabrictest.NewInbox(), kit.Config{Gateway: "test", Medium: "test"}) // fast
	f.StartKit(dg, kit.Config{Gateway: "peer", Medium: "web", Strict: true})

	var err error
	fabrictest.Eventually(t, 5*time.Second, "an answer from the strict destination", func() bool {
		_, err = ogKit.Send(context.Background(), &kit.Submission{From: schemas.Endpoint{Medium: "test", Address: "alice", Client: "alice"},
			To: "bob", Content: []byte("hello bob")})
		return err != nil && !kit.IsCode(err, schemas.CodeNoRoute)
	})
	if !kit.IsCode(err, schemas.CodeBadSession) {
		t.Fatalf("transfer without a session token to a strict destination: %v, want BAD_SESSION", err)
	}
	if dg.Len() != 0 {
		t.Fatal("delivered without a session token")
	}

	// Tickets made with the brokers' keys, presented directly.
	eng, err := miap.New(miap.Config{Keys: f.Keyring(miap.BrokerParty)})
	if err != nil {
		t.Fatal(err)
	}
	content := []byte("x")
	ticket := func(dest string, id byte) *miap.Frame {
		routed, _ := json.Marshal(schemas.RoutedIMI{V: 1, Tx: "t1", Dest: schemas.Hop{Gateway: dest, Medium: "web", Address: "bob"},
			IMI: schemas.IMI{V: 1, MsgID: kit.NewMsgID(), Gateway: "test"}})
		sum := sha256.Sum256(content)
		tk := &miap.Frame{Purpose: miap.PurposeTicket, Party: "peer", ID: bytes.Repeat([]byte{id}, 32), Peer: "test",
			CType: "text/plain", CLen: int64(len(content)), CSHA: sum[:], Expiry: time.Now().Add(time.Minute).UnixMilli(), Body: routed}
		if err := eng.Sign(tk); err != nil {
			t.Fatal(err)
		}
		return tk
	}
	nc := f.Conn("prober")
	ask := func(subject string, tk *miap.Frame, token string, im bool) *nats.Msg {
		t.Helper()
		m := nats.NewMsg(subject)
		if im {
			m.Data = miap.AppendTransfer(m.Header, tk, content, "")
		} else {
			tk.PutHeader(m.Header)
			m.Data = tk.Body
		}
		if token != "" {
			m.Header.Set(miap.HdrGwSess, token)
		}
		r, err := nc.RequestMsg(m, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	code := func(r *nats.Msg) string { return r.Header.Get(miap.HdrError) }
	login, im := schemas.GatewayLogin("peer"), schemas.GatewayIM("peer")

	good := ticket("peer", 1)
	token := ask(login, good, "", false).Header.Get(miap.HdrGwSess)
	if token == "" {
		t.Fatal("no session token for a valid ticket")
	}
	badMAC := *good
	badMAC.MAC = bytes.Clone(good.MAC)
	badMAC.MAC[0] ^= 1
	unknownKid := *good
	unknownKid.Kid = "peer-9"
	elsewhere := ticket("web", 2)
	elsewhereToken := ask(login, elsewhere, "", false).Header.Get(miap.HdrGwSess)

	for _, tc := range []struct {
		name    string
		subject string
		tk      *miap.Frame
		token   string
		want    string
	}{
		{"login, bad ticket MAC", login, &badMAC, "", "BAD_TICKET"},
		{"login, unknown ticket kid", login, &unknownKid, "", "BAD_TICKET"},
		{"transfer, bad ticket MAC", im, &badMAC, token, "BAD_TICKET"},
		{"transfer, unknown ticket kid", im, &unknownKid, token, "BAD_TICKET"},
		{"transfer, routed to another destination", im, elsewhere, elsewhereToken, "BAD_TICKET"},
		{"transfer, no session token", im, good, "", "BAD_SESSION"},
		{"transfer, garbage session token", im, good, "AAAA", "BAD_SESSION"},
		{"transfer, token of another transfer", im, good, elsewhereToken, "BAD_SESSION"},
	} {
		if got := code(ask(tc.subject, tc.tk, tc.token, tc.subject == im)); got != tc.want {
			t.Errorf("%s: %q, want %s", tc.name, got, tc.want)
		}
	}
	if dg.Len() != 0 {
		t.Fatal("a refused transfer was delivered")
	}
}
