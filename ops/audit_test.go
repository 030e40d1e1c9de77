package ops_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/uims/uims/audit"
	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/ops"
	"github.com/uims/uims/schemas"
)

func timeline(t *testing.T, base, id string) *ops.Timeline {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/ops/api/messages/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+opsToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tl ops.Timeline
	json.NewDecoder(resp.Body).Decode(&tl)
	return &tl
}

// A message's timeline shows the verified state of its audit chain
// (PROTOCOL.md §15): verified with its records, then broken once a batch
// that holds one of them is removed from the stream.
func TestTimelineShowsTheAuditChain(t *testing.T) {
	f := fabrictest.New(t)
	f.StartBroker(broker.Config{})
	f.PutProfiles(&schemas.Profile{ID: "alice", Addresses: map[string]string{"test": "alice"}},
		&schemas.Profile{ID: "bob", Addresses: map[string]string{"web": "bob"}})
	srv, err := ops.New(ops.Config{Addr: "127.0.0.1:0", Token: opsToken, Observer: ops.ObserverConfig{NoStore: true},
		AuditKeys: f.Keyring(miap.BrokerParty).AuditPublicKeys()}, f.Conn("ops"), f.Log)
	if err != nil {
		t.Fatal(err)
	}
	fabrictest.Start(t, "operator view", srv.Run)
	base := "http://" + srv.Addr()
	sender, _ := f.StartKit(fabrictest.NewInbox(), kit.Config{Gateway: "test", Medium: "test"})
	f.StartKit(fabrictest.NewInbox(), kit.Config{Gateway: "peer", Medium: "web"})
	s := &kit.Submission{MsgID: kit.NewMsgID(), From: schemas.Endpoint{Medium: "test", Address: "alice", Client: "alice"}, To: "bob", Content: []byte("hello")}
	fabrictest.Eventually(t, 10*time.Second, "the message sent", func() bool {
		_, err := sender.Send(context.Background(), s)
		return err == nil
	})
	var tl *ops.Timeline
	fabrictest.Eventually(t, 10*time.Second, "the audit chain verified", func() bool {
		tl = timeline(t, base, s.MsgID)
		return tl.Audit != nil && tl.Audit.State == "verified" && len(tl.Audit.Records) >= 2
	})
	if tl.Audit.Summary != "verified (2 records)" || tl.Audit.Records[0].Body.Kind != "route" {
		t.Errorf("audit %+v", tl.Audit)
	}
	// a holder of the brokers' key re-signs the route record's batch
	// without it: the chain still misses record 1
	js, _ := jetstream.New(f.Conn("admin"))
	st, err := js.Stream(context.Background(), schemas.AuditStream)
	if err != nil {
		t.Fatal(err)
	}
	orig, err := st.GetMsg(context.Background(), tl.Audit.Records[0].StreamSeq)
	if err != nil {
		t.Fatal(err)
	}
	b, err := audit.ParseBatch(orig.Data)
	if err != nil {
		t.Fatal(err)
	}
	var keep [][]byte
	for _, r := range b.Records {
		if r.Body.Tx != s.MsgID || r.N != 1 {
			keep = append(keep, audit.Link([][]byte{r.B}, r.N, r.Prev)[0])
		}
	}
	_, key, _ := f.Keyring(miap.BrokerParty).AuditSigner(time.Now())
	data, sig := audit.EncodeBatch(b.Header, keep, key)
	m := nats.NewMsg(orig.Subject)
	m.Data = data
	m.Header.Set(schemas.HdrAuditSig, sig)
	if _, err := js.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteMsg(context.Background(), orig.Sequence); err != nil {
		t.Fatal(err)
	}
	tl = timeline(t, base, s.MsgID)
	missing := false
	for _, fd := range tl.Audit.Findings {
		missing = missing || (fd.Kind == audit.Missing && fd.N == 1)
	}
	if tl.Audit.State != "broken" || !missing || tl.Audit.Summary[:6] != "BROKEN" {
		t.Errorf("after removing record 1: %+v", tl.Audit)
	}
}
