package sms_test

import (
	"strings"
	"testing"
	"time"

	"github.com/uims/uims/gateways/sms"
	"github.com/uims/uims/gateways/sms/dlr"
	"github.com/uims/uims/gateways/sms/pdu"
	"github.com/uims/uims/internal/fabrictest"
)

// Scheduled short messages (docs/SMS.md, "Scheduled messages"; PROTOCOL.md
// §6.16): schedule_delivery_time in the relative and the absolute form
// holds the message until then; cancel_sm cancels it while it is held,
// and its receipt says DELETED.
func TestScheduledDeliveryAndCancel(t *testing.T) {
	e := newEnv(t, sms.Config{})
	c := dialESME(t, e.addr())
	c.mustBind(pdu.CmdBindTransceiver, "alice", "alice-pw")
	fabrictest.Eventually(t, 10*time.Second, "the fabric serving", func() bool {
		return c.submit(textMsg("15550100", "bob", "warm up", 0)).Status == pdu.ESME_ROK
	})

	// relative: in 2 seconds
	m := textMsg("15550100", "15550101", "in two seconds", pdu.RegisteredDeliveryFinal)
	m.ScheduleDeliveryTime = "000000000002000R"
	sent := time.Now()
	r := c.submit(m)
	if r.Status != pdu.ESME_ROK {
		t.Fatalf("scheduled submit: %s", r.Status)
	}
	time.Sleep(time.Second)
	if e.web.deliveries(r.MessageID) != 0 {
		t.Fatal("delivered before its schedule_delivery_time")
	}
	if id, stat := receiptOf(t, c); id != r.MessageID || stat != dlr.StatDelivered {
		t.Fatalf("receipt %s %s, want %s DELIVRD", id, stat, r.MessageID)
	}
	if d := time.Since(sent); d < 2*time.Second || e.web.deliveries(r.MessageID) != 1 {
		t.Fatalf("delivered %d times after %v", e.web.deliveries(r.MessageID), d)
	}

	// absolute, in an hour, with the zone of the application (+02:00)
	m = textMsg("15550100", "15550101", "in an hour", pdu.RegisteredDeliveryFinal)
	m.ScheduleDeliveryTime = time.Now().Add(time.Hour).In(time.FixedZone("", 2*3600)).Format("060102150405") + "008+"
	m.ValidityPeriod = "000000020000000R"
	r = c.submit(m)
	if r.Status != pdu.ESME_ROK {
		t.Fatalf("scheduled submit: %s", r.Status)
	}
	if q := c.call(&pdu.QuerySM{MessageID: r.MessageID}).(*pdu.QuerySMResp); q.Status != pdu.ESME_ROK || q.MessageState != pdu.StateEnroute {
		t.Fatalf("query_sm while held: %s state %d", q.Status, q.MessageState)
	}
	// another application may not cancel it
	other := dialESME(t, e.addr())
	other.mustBind(pdu.CmdBindTransmitter, "carol", "carol-pw")
	if st := other.call(&pdu.CancelSM{MessageID: r.MessageID}).Hdr().Status; st != pdu.ESME_RCANCELFAIL {
		t.Fatalf("cancel_sm by another application: %s", st)
	}
	if st := c.call(&pdu.CancelSM{MessageID: r.MessageID}).Hdr().Status; st != pdu.ESME_ROK {
		t.Fatalf("cancel_sm: %s", st)
	}
	if id, stat := receiptOf(t, c); id != r.MessageID || stat != dlr.StatDeleted {
		t.Fatalf("receipt %s %s, want %s DELETED", id, stat, r.MessageID)
	}
	if q := c.call(&pdu.QuerySM{MessageID: r.MessageID}).(*pdu.QuerySMResp); q.MessageState != pdu.StateDeleted {
		t.Fatalf("query_sm after cancel: state %d, want DELETED", q.MessageState)
	}
	for what, id := range map[string]string{"again": r.MessageID, "a delivered message": e.webIDs()[1], "no id": ""} {
		if st := c.call(&pdu.CancelSM{MessageID: id}).Hdr().Status; st != pdu.ESME_RCANCELFAIL {
			t.Errorf("cancel_sm %s: %s, want ESME_RCANCELFAIL", what, st)
		}
	}
	if st := c.call(&pdu.CancelSM{MessageID: strings.Repeat("z", 32)}).Hdr().Status; st != pdu.ESME_RINVMSGID {
		t.Errorf("cancel_sm of a malformed id: %s", st)
	}
	noDeliverSM(t, c, 1500*time.Millisecond, "after the cancel")
}
