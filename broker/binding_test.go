package broker_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// brokerMode returns the miap_mode of the broker service's metadata, as
// `nats micro info uims-broker` shows it.
func brokerMode(t *testing.T, nc *nats.Conn) string {
	t.Helper()
	subj, err := micro.ControlSubject(micro.InfoVerb, schemas.BrokerService, "")
	if err != nil {
		t.Fatal(err)
	}
	m, err := nc.Request(subj, nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var info micro.Info
	if err := json.Unmarshal(m.Data, &info); err != nil {
		t.Fatal(err)
	}
	return info.Metadata["miap_mode"]
}

// imiFrom is a valid IMI of gateway for bob, from the given sender.
func imiFrom(gateway string, from schemas.Endpoint) schemas.IMI {
	imi := newIMI(gateway)
	imi.From = from
	return imi
}

// A party signs perfectly valid IMIs, but may only name senders on the
// media it was provisioned for (PROTOCOL.md §3.5), and a client only with
// an address that client owns (§6.2). Refused IMIs deliver nothing.
func TestSenderBoundToGrant(t *testing.T) {
	f := fabrictest.New(t)
	f.AddParty("bot", miap.Grant{Role: miap.RoleGateway, Media: []string{schemas.MediumBot}})
	f.AddParty("legacy", miap.Grant{}) // a key file written before grants
	f.AddParty("cli", miap.Grant{Role: miap.RoleClient, Media: []string{schemas.MediumCLI}})
	f.StartBroker(broker.Config{})
	f.PutProfiles(&schemas.Profile{ID: "alice", Addresses: map[string]string{"test": "alice", "bot": "alice-bot", "email": "Alice@Example.test"}},
		&schemas.Profile{ID: "bob", Addresses: map[string]string{"web": "bob"}})
	og, dg := fabrictest.NewInbox(), fabrictest.NewInbox()
	ogKit, _ := f.StartKit(og, kit.Config{Gateway: "test", Medium: "test"})
	f.StartKit(dg, kit.Config{Gateway: "peer", Medium: "web"})
	waitRoute(t, ogKit)
	nc := f.Conn("bot")
	if mode := brokerMode(t, nc); mode != "fast" {
		t.Errorf("miap_mode = %q, want fast", mode)
	}
	before := dg.Len()

	refused := []struct {
		name, party string
		from        schemas.Endpoint
	}{
		{"bot names a web client", "bot", schemas.Endpoint{Medium: schemas.MediumWeb, Address: "alice", Client: "alice"}},
		{"bot names alice with an address she does not own", "bot", schemas.Endpoint{Medium: schemas.MediumBot, Address: "x", Client: "alice"}},
		{"bot names alice with her address on another medium", "bot", schemas.Endpoint{Medium: schemas.MediumBot, Address: "alice", Client: "alice"}},
		{"a party without a grant", "legacy", schemas.Endpoint{Medium: "test", Address: "alice", Client: "alice"}},
		{"a party without a grant, outside sender", "legacy", schemas.Endpoint{Medium: schemas.MediumBot, Address: "someone"}},
		{"test names a bot sender", "test", schemas.Endpoint{Medium: schemas.MediumBot, Address: "alice-bot", Client: "alice"}},
		{"cli on another medium", "cli", schemas.Endpoint{Medium: schemas.MediumWeb, Address: "alice", Client: "alice"}},
		{"cli with another client's address", "cli", schemas.Endpoint{Medium: schemas.MediumCLI, Address: "bob", Client: "alice"}},
		{"cli without a client", "cli", schemas.Endpoint{Medium: schemas.MediumCLI, Address: "alice"}},
		{"a processor originates", "proc", schemas.Endpoint{Medium: "test", Address: "alice", Client: "alice"}},
	}
	for _, c := range refused {
		if _, code := request(t, nc, rawIMI(t, f, c.party, imiFrom(c.party, c.from))); code != schemas.CodeNotAllowed {
			t.Errorf("%s: %v, want NOT_ALLOWED", c.name, code)
		}
	}
	if _, code := request(t, nc, rawIMI(t, f, "cli", imiFrom("cli", schemas.Endpoint{Medium: schemas.MediumCLI, Address: "nobody", Client: "nobody"}))); code != schemas.CodeUnknownSender {
		t.Errorf("cli naming a client that does not exist: %v", code)
	}
	time.Sleep(200 * time.Millisecond)
	if n := dg.Len() - before; n != 0 {
		t.Fatalf("%d messages delivered to bob by refused IMIs", n)
	}

	// The legitimate cases: bot for alice's own bot address (routed, then
	// transferred with the broker's ticket and delivered), and cli naming
	// an existing client.
	route, code := request(t, nc, rawIMI(t, f, "bot", imiFrom("bot", schemas.Endpoint{Medium: schemas.MediumBot, Address: " alice-bot", Client: "alice"})))
	if code != schemas.CodeOK {
		t.Fatalf("bot for alice's own bot address: %v", code)
	}
	rf, err := miap.ParseHeader(route.Header, route.Data)
	if err != nil {
		t.Fatal(err)
	}
	tk, err := routeTicket(route, rf)
	if err != nil {
		t.Fatal(err)
	}
	im := nats.NewMsg(schemas.GatewayIM("peer"))
	im.Data = miap.AppendTransfer(im.Header, tk, []byte("hello"), "")
	if _, code := request(t, nc, im); code != schemas.CodeOK || dg.Len() != before+1 {
		t.Fatalf("transfer of the legitimate IMI: %v, %d delivered", code, dg.Len()-before)
	}
	var routed schemas.RoutedIMI
	json.Unmarshal(rf.Body, &routed)
	if routed.Sender != "alice" {
		t.Errorf("routed sender %q, want alice", routed.Sender)
	}
	if _, code := request(t, nc, rawIMI(t, f, "cli", imiFrom("cli", schemas.Endpoint{Medium: schemas.MediumCLI, Address: "alice", Client: "alice"}))); code != schemas.CodeOK {
		t.Errorf("cli naming alice on medium cli: %v", code)
	}
}

// A strict broker refuses a fast-mode IMI and a fast-mode acknowledgement
// with STRICT_REQUIRED, says so in its metadata, and delivers strict-mode
// traffic (PROTOCOL.md §6.13).
func TestStrictBrokerRefusesFastMode(t *testing.T) {
	f := fabrictest.New(t)
	f.StartBroker(broker.Config{Strict: true})
	profiles(f)
	og, dg := fabrictest.NewInbox(), fabrictest.NewInbox()
	ogKit, _ := f.StartKit(og, kit.Config{Gateway: "test", Medium: "test", Strict: true})
	f.StartKit(dg, kit.Config{Gateway: "peer", Medium: "web", Strict: true})
	res := waitRoute(t, ogKit)
	if res.Status != schemas.StatusDelivered || dg.Get(res.MsgID) == nil {
		t.Fatalf("strict-mode message: %+v", res)
	}
	nc := f.Conn("fast")
	if mode := brokerMode(t, nc); mode != "strict" {
		t.Errorf("miap_mode = %q, want strict", mode)
	}
	before := dg.Len()
	if _, code := request(t, nc, rawIMI(t, f, "test", newIMI("test"))); code != schemas.CodeStrictRequired {
		t.Errorf("fast-mode IMI: %v, want STRICT_REQUIRED", code)
	}
	if schemas.CodeStrictRequired.Retryable() {
		t.Error("STRICT_REQUIRED is retryable")
	}

	// A fast-mode acknowledgement with the genuine ID changes nothing.
	ref := dg.Get(res.MsgID).Ref
	id, _ := miap.DecodeB64(ref.ID)
	eng, _ := miap.New(miap.Config{Keys: f.Keyring("peer")})
	body, _ := json.Marshal(schemas.Ack{V: schemas.Version, Tx: ref.Tx, MsgID: ref.MsgID, Gateway: "peer", Status: schemas.StatusRead, At: time.Now().UnixMilli()})
	fr := &miap.Frame{Purpose: miap.PurposeAck, Party: "peer", ID: id, Body: body}
	if err := eng.Sign(fr); err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(schemas.SubjectBrokerAck)
	fr.PutHeader(m.Header)
	m.Data = body
	if _, code := request(t, nc, m); code != schemas.CodeStrictRequired {
		t.Errorf("fast-mode ack: %v, want STRICT_REQUIRED", code)
	}
	st, err := ogKit.Query(context.Background(), res.MsgID)
	if err != nil || st.State != schemas.StatusDelivered {
		t.Fatalf("state after the fast-mode ack: %v %v", st, err)
	}

	// Strict-mode traffic still flows.
	res2, err := ogKit.Send(context.Background(), submission("strict"))
	if err != nil || res2.Status != schemas.StatusDelivered || dg.Len() != before+1 {
		t.Fatalf("strict-mode message after the refusals: %+v %v", res2, err)
	}
}
