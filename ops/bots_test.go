package ops_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/ops"
	"github.com/uims/uims/schemas"
)

// TestBotInTheOperatorView: a bot built on the SDK shows in the fabric
// picture as a gateway with its medium, its instance and version, and its
// rates and refusals, all from its micro service uims-gw-mybot; /metrics
// counts its outcomes. A gateway's micro service that answers without a
// heartbeat shows, not routable.
func TestBotInTheOperatorView(t *testing.T) {
	s := startScene(t)
	for _, text := range []string{"one", "two", "three"} {
		res, err := s.send(t, "echo", "text/plain", text)
		if err != nil || res.Dest.Gateway != "mybot" || res.Status != schemas.StatusDelivered {
			t.Fatalf("to the bot: %+v %v", res, err)
		}
	}
	if _, err := s.send(t, "echo", "text/plain", "no"); !kit.IsCode(err, schemas.CodeRejected) {
		t.Fatalf("the bot's refusal: %v", err)
	}
	// a gateway that serves its micro service but never announces itself
	ghost, err := micro.AddService(s.f.Conn("ghost"), micro.Config{Name: schemas.GatewayService("ghost"), Version: "0.0.1",
		QueueGroup: schemas.GatewayQueue("ghost"),
		Metadata:   map[string]string{"party": "ghost", "medium": "fax", "instance": "ghost-1", "miap_mode": "strict", "kind": "gateway"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ghost.Stop()
	if err := ghost.AddEndpoint("im", micro.HandlerFunc(func(micro.Request) {}), micro.WithEndpointSubject(schemas.GatewayIM("ghost"))); err != nil {
		t.Fatal(err)
	}

	var f ops.Fabric
	var bot, gh *ops.FabricNode
	fabrictest.Eventually(t, 10*time.Second, "the bot's traffic and the ghost in the fabric picture", func() bool {
		_, body := s.get(t, "/ops/api/fabric", opsToken)
		f = ops.Fabric{}
		if json.Unmarshal([]byte(body), &f) != nil {
			return false
		}
		bot, gh = nil, nil
		for i := range f.Nodes {
			switch f.Nodes[i].ID {
			case "gw:mybot":
				bot = &f.Nodes[i]
			case "gw:ghost":
				gh = &f.Nodes[i]
			}
		}
		return bot != nil && bot.Traffic != nil && bot.Traffic.Minute.Received >= 4 && bot.Traffic.Minute.Failed >= 1 && gh != nil
	})
	if bot.Kind != "gateway" || bot.Medium != schemas.MediumBot || bot.Service != "uims-gw-mybot" || bot.NotRoutable {
		t.Errorf("bot node %+v", bot)
	}
	if len(bot.Instances) != 1 || bot.Instances[0].ID != "mybot-1" || bot.Instances[0].Version != "1.2.3" ||
		bot.Instances[0].MIAPMode != "fast" || bot.Instances[0].Unannounced || bot.Instances[0].Rate == nil {
		t.Errorf("bot instances %+v", bot.Instances)
	}
	tr := bot.Traffic
	if want := (ops.GatewayCounts{Received: 4, Delivered: 3, Failed: 1}); tr.Minute != want || tr.Total != want {
		t.Errorf("bot's last minute %+v, total %+v, want %+v", tr.Minute, tr.Total, want)
	}
	if tr.Rate.Received <= 0 || tr.Rate.Delivered <= 0 || tr.Rate.Failed <= 0 || bot.Instances[0].Rate.Received <= 0 {
		t.Errorf("bot's rates %+v, instance %+v", tr.Rate, bot.Instances[0].Rate)
	}
	if tr.Codes["REJECTED"] != 1 || tr.TotalCodes["REJECTED"] != 1 {
		t.Errorf("bot's refusals by code %v, total %v", tr.Codes, tr.TotalCodes)
	}
	if !gh.NotRoutable || gh.Kind != "gateway" || gh.Medium != "fax" || len(gh.Instances) != 1 || !gh.Instances[0].Unannounced ||
		gh.Instances[0].Version != "0.0.1" || gh.Instances[0].MIAPMode != "strict" {
		t.Errorf("a gateway without a heartbeat: %+v", gh)
	}
	// alice's gateway counted what it sent to the bot
	for _, n := range f.Nodes {
		if n.ID == "gw:test" && (n.Traffic == nil || n.Traffic.Minute.Sent < 3) {
			t.Errorf("alice's gateway: %+v", n.Traffic)
		}
	}
	metrics := waitContains(t, func() string { _, m := s.get(t, "/metrics", ""); return m }, "metrics",
		`uims_gateway_messages_total{gateway="mybot",medium="bot",outcome="received"} 4`,
		`uims_gateway_messages_total{gateway="mybot",medium="bot",outcome="delivered"} 3`,
		`uims_gateway_messages_total{gateway="mybot",medium="bot",outcome="failed"} 1`,
		`uims_gateway_messages_total{gateway="mybot",medium="bot",outcome="refused"} 0`,
		`uims_gateway_codes_total{code="REJECTED",gateway="mybot",medium="bot"} 1`,
		`uims_fabric_instances{kind="gateway",medium="bot",name="mybot"} 1`,
		`uims_fabric_instances{kind="gateway",medium="fax",name="ghost"} 1`,
	)
	if t.Failed() {
		t.Log(metrics)
		if !strings.Contains(metrics, "uims_gateway_") {
			t.Log("no uims_gateway_ series at all")
		}
	}
}
