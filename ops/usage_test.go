package ops_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/ops"
	"github.com/uims/uims/schemas"
)

// usageView asks GET /ops/api/usage.
func usageView(t *testing.T, base, query string) (int, ops.UsageView) {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/ops/api/usage"+query, nil)
	req.Header.Set("Authorization", "Bearer "+opsToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v ops.UsageView
	json.NewDecoder(resp.Body).Decode(&v)
	return resp.StatusCode, v
}

// The usage panel (docs/OPS.md, "Usage"): per client and medium, from the
// accounting stream, followed live; an operator view started later reads
// the day's records from the stream.
func TestUsagePanelFromTheAccountingStream(t *testing.T) {
	f := fabrictest.New(t)
	f.StartBroker(broker.Config{SweepInterval: 50 * time.Millisecond})
	f.PutProfiles(&schemas.Profile{ID: "alice", Addresses: map[string]string{"test": "alice"}},
		&schemas.Profile{ID: "bob", Addresses: map[string]string{"web": "bob"}})
	start := func() string {
		srv, err := ops.New(ops.Config{Addr: "127.0.0.1:0", Token: opsToken, Observer: ops.ObserverConfig{NoStore: true}}, f.Conn("ops"), f.Log)
		if err != nil {
			t.Fatal(err)
		}
		fabrictest.Start(t, "operator view", srv.Run)
		return "http://" + srv.Addr()
	}
	first := start()
	sender, _ := f.StartKit(fabrictest.NewInbox(), kit.Config{Gateway: "test", Medium: "test"})
	f.StartKit(fabrictest.NewInbox(), kit.Config{Gateway: "peer", Medium: "web"})
	for i := range 3 {
		s := &kit.Submission{MsgID: kit.NewMsgID(), From: schemas.Endpoint{Medium: "test", Address: "alice", Client: "alice"}, To: "bob", Content: []byte("hello")}
		fabrictest.Eventually(t, 10*time.Second, "message "+string(rune('1'+i)), func() bool {
			_, err := sender.Send(context.Background(), s)
			return err == nil
		})
	}
	check := func(base string) {
		t.Helper()
		var v ops.UsageView
		fabrictest.Eventually(t, 15*time.Second, "three messages in the usage panel", func() bool {
			_, v = usageView(t, base, "")
			return v.Total.Sent == 3 && v.Total.Received == 3
		})
		today := time.Now().UTC().Format(time.DateOnly)
		if v.Day != today || len(v.Days) != ops.UsageDays || v.Records != 3 || v.Outcomes["delivered"] != 3 || v.Error != "" ||
			v.Media["test"].Sent != 3 || v.Media["web"].Received != 3 || v.Media["web"].ReceivedBytes != 15 || len(v.Clients) != 2 {
			t.Fatalf("usage %+v", v)
		}
		for _, c := range v.Clients {
			switch c.Client {
			case "alice":
				if c.Media["test"] != (schemas.MediumUsage{Sent: 3, SentBytes: 15}) {
					t.Errorf("alice %+v", c)
				}
			case "bob":
				if c.Media["web"] != (schemas.MediumUsage{Received: 3, ReceivedBytes: 15}) {
					t.Errorf("bob %+v", c)
				}
			default:
				t.Errorf("client %+v", c)
			}
		}
		if _, v := usageView(t, base, "?q=BO"); len(v.Clients) != 1 || v.Clients[0].Client != "bob" || v.Matched != 1 {
			t.Errorf("q=BO: %+v", v.Clients)
		}
		if _, v := usageView(t, base, "?day="+time.Now().UTC().AddDate(0, 0, -1).Format(time.DateOnly)); len(v.Clients) != 0 || v.Total.Sent != 0 {
			t.Errorf("yesterday: %+v", v)
		}
		if code, _ := usageView(t, base, "?day=yesterday"); code != http.StatusBadRequest {
			t.Errorf("day=yesterday: %d", code)
		}
	}
	check(first)
	check(start()) // from the stream's history
}
