package sms_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/gateways/sms"
	"github.com/uims/uims/gateways/sms/dlr"
	"github.com/uims/uims/gateways/sms/gsm"
	"github.com/uims/uims/gateways/sms/pdu"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/schemas"
)

// Clients of the classification tests, besides profiles: erin takes SMS
// and is no SMPP application; frank is one (sms.via: smpp) that has not
// bound yet; gina takes fax only, for which no gateway runs. (SMS only:
// what the brokers do on a failure with a next medium is theirs.)
var classifyProfiles = []*schemas.Profile{
	{ID: "erin", Addresses: map[string]string{"sms": "+15550199", "test": "erin"}, Prefer: []string{"sms"}},
	{ID: "frank", Addresses: map[string]string{"sms": "+15550198", "test": "frank"}, Prefer: []string{"sms"},
		SMPP: &schemas.SMPPCredentials{SystemID: "frank", Password: "frank-pw"}, Options: map[string]string{"sms.via": "smpp"}},
	{ID: "gina", Addresses: map[string]string{"fax": "+15550197"}, Prefer: []string{"fax"}},
}

// noDeliverSM fails if c gets any deliver_sm within d.
func noDeliverSM(t *testing.T, c *esme, d time.Duration, what string) {
	t.Helper()
	select {
	case x := <-c.Delivered:
		id, _ := x.TLVs.ReceiptedMessageID()
		t.Fatalf("%s: unexpected deliver_sm esm_class 0x%02X id %q %q", what, x.ESMClass, id, x.ShortMessage)
	case <-time.After(d):
	}
}

// receiptOf waits for the next deliver_sm, which must be a receipt, and
// returns its message id and stat.
func receiptOf(t *testing.T, c *esme) (string, dlr.Stat) {
	t.Helper()
	rc := c.next(10 * time.Second)
	id, _ := rc.TLVs.ReceiptedMessageID()
	r, err := dlr.Parse(string(rc.ShortMessage))
	if rc.ESMClass != pdu.ESMClassDeliveryReceipt || err != nil || r.ID != id {
		t.Fatalf("not a receipt: esm_class 0x%02X %q %q (%v)", rc.ESMClass, id, rc.ShortMessage, err)
	}
	return id, r.Stat
}

// Temporary and permanent told apart over SMPP (issue 15), for an
// application that asks for every receipt: without an SMS centre a number
// no client owns and a client that is no application are
// ESME_RSUBMITFAIL (UNREACHABLE: it was ESME_RTHROTTLED, and
// ESME_RINVDSTADR plus an UNDELIV receipt for an id the application never
// got); an unknown client id is ESME_RINVDSTADR; a client whose medium has
// no live gateway is ESME_RTHROTTLED (NO_ROUTE). None of the refused
// submissions gets a receipt; the next accepted one gets its own.
func TestSubmitStatusByClass(t *testing.T) {
	e := newEnv(t, sms.Config{})
	e.f.PutProfiles(classifyProfiles...)
	c := dialESME(t, e.addr())
	c.mustBind(pdu.CmdBindTransceiver, "alice", "alice-pw")
	fabrictest.Eventually(t, 10*time.Second, "the fabric serving", func() bool {
		return c.submit(textMsg("15550100", "bob", "warm up", 0)).Status == pdu.ESME_ROK
	})
	const every = pdu.RegisteredDeliveryFinal | pdu.RegisteredDeliveryIntermediate
	for _, tc := range []struct {
		name string
		m    pdu.MessageFields
		want pdu.Status
	}{
		{"a number no client owns, no SMS centre", textMsg("15550100", "15550123", "to nobody's phone", every), pdu.ESME_RSUBMITFAIL},
		{"erin, no application, no SMS centre", textMsg("15550100", "15550199", "to erin", every), pdu.ESME_RSUBMITFAIL},
		{"an unknown client id", pdu.MessageFields{SourceAddr: "15550100", DestAddrTON: 5, DestinationAddr: "nobody", RegisteredDelivery: every, ShortMessage: []byte("x")}, pdu.ESME_RINVDSTADR},
		{"gina, no live fax gateway", pdu.MessageFields{SourceAddr: "15550100", DestAddrTON: 5, DestinationAddr: "gina", RegisteredDelivery: every, ShortMessage: []byte("x")}, pdu.ESME_RTHROTTLED},
	} {
		if r := c.submit(tc.m); r.Status != tc.want || r.MessageID != "" {
			t.Errorf("%s: %s %q, want %s without a message id", tc.name, r.Status, r.MessageID, tc.want)
		}
	}
	// The refused ones failed at the brokers (UNREACHABLE is acknowledged
	// failed): their receipts would be due after ReceiptDelay (1 s).
	noDeliverSM(t, c, 2500*time.Millisecond, "after refused submissions")
	r := c.submit(textMsg("15550100", "15550101", "to bob", pdu.RegisteredDeliveryFinal))
	if r.Status != pdu.ESME_ROK {
		t.Fatalf("to bob: %s", r.Status)
	}
	if id, stat := receiptOf(t, c); id != r.MessageID || stat != dlr.StatDelivered {
		t.Fatalf("receipt %s %s, want %s DELIVRD", id, stat, r.MessageID)
	}
	noDeliverSM(t, c, 1500*time.Millisecond, "after bob's receipt")
}

// A number no client owns, with no SMS centre: UNREACHABLE (permanent) at
// a gateway that announces every number, as by default; NO_ROUTE
// (temporary: ESME_RTHROTTLED) from the brokers at one that announces
// none (NoOutsideReach), as when another gateway party has the centre.
func TestOutsideNumberWithoutCentre(t *testing.T) {
	e := newEnv(t, sms.Config{NoOutsideReach: true})
	c := dialESME(t, e.addr())
	c.mustBind(pdu.CmdBindTransmitter, "alice", "alice-pw")
	fabrictest.Eventually(t, 10*time.Second, "the fabric serving", func() bool {
		return c.submit(textMsg("15550100", "bob", "warm up", 0)).Status == pdu.ESME_ROK
	})
	if r := c.submit(textMsg("15550100", "15550123", "to nobody's phone", 1)); r.Status != pdu.ESME_RTHROTTLED {
		t.Fatalf("with NoOutsideReach: %s, want ESME_RTHROTTLED (NO_ROUTE)", r.Status)
	}
	_, err := e.testKit.Send(t.Context(), &kit.Submission{From: schemas.Endpoint{Medium: "test", Address: "dave", Client: "dave"},
		To: "+15550123", Content: []byte("hi")})
	if !kit.IsCode(err, schemas.CodeNoRoute) {
		t.Fatalf("from the test gateway: %v, want NO_ROUTE", err)
	}
}

// An SMPP application that has never bound (sms.via: smpp; issue 15
// item 3): a message for it is accepted and held (transferred), its sender
// gets the id and an ENROUTE receipt for it; when the application binds it
// gets the message, and the sender the DELIVRD receipt for the same id.
func TestApplicationNotBoundYetIsHeld(t *testing.T) {
	e := newEnv(t, sms.Config{})
	e.f.PutProfiles(classifyProfiles...)
	c := dialESME(t, e.addr())
	c.mustBind(pdu.CmdBindTransceiver, "alice", "alice-pw")
	var r *pdu.SubmitSMResp
	fabrictest.Eventually(t, 10*time.Second, "a route to frank", func() bool {
		r = c.submit(textMsg("15550100", "15550198", "for frank's application", pdu.RegisteredDeliveryFinal|pdu.RegisteredDeliveryIntermediate))
		return r.Status == pdu.ESME_ROK
	})
	if id, stat := receiptOf(t, c); id != r.MessageID || stat != dlr.StatEnroute {
		t.Fatalf("intermediate receipt %s %s, want %s ENROUTE", id, stat, r.MessageID)
	}
	res := e.sendFrom(t, "dave", "frank", "from dave")
	if res.Status != schemas.StatusTransferred {
		t.Fatalf("dave to frank: %s, want transferred", res.Status)
	}

	f := dialESME(t, e.addr())
	f.mustBind(pdu.CmdBindReceiver, "frank", "frank-pw")
	var texts []string
	for range 2 {
		texts = append(texts, string(f.next(10*time.Second).ShortMessage))
	}
	slices.Sort(texts)
	if texts[0] != "for frank's application" || texts[1] != "from dave" {
		t.Fatalf("frank's application got %q", texts)
	}
	if id, stat := receiptOf(t, c); id != r.MessageID || stat != dlr.StatDelivered {
		t.Fatalf("receipt %s %s, want %s DELIVRD", id, stat, r.MessageID)
	}
	fabrictest.Eventually(t, 10*time.Second, "delivered at dave", func() bool {
		return slices.Contains(e.test.Statuses(res.MsgID), schemas.StatusDelivered)
	})
}

// A concatenated message whose last part the fabric refuses for good: the
// application got the ids of the parts before it, not of the last one,
// so the failure receipts name those and never the refused part's id.
func TestRefusedPartGetsNoReceipt(t *testing.T) {
	e := newEnv(t, sms.Config{})
	e.f.PutProfiles(classifyProfiles...)
	c := dialESME(t, e.addr())
	c.mustBind(pdu.CmdBindTransceiver, "alice", "alice-pw")
	fabrictest.Eventually(t, 10*time.Second, "the fabric serving", func() bool {
		return c.submit(textMsg("15550100", "bob", "warm up", 0)).Status == pdu.ESME_ROK
	})
	segs, _ := gsm.Split(strings.Repeat("A long text for erin, who cannot get it. ", 6), 77)
	if len(segs) < 2 {
		t.Fatalf("%d segments", len(segs))
	}
	var given []string
	for i, s := range segs {
		m := textMsg("15550100", "15550199", "", pdu.RegisteredDeliveryFinal)
		m.ESMClass, m.ShortMessage = pdu.ESMClassUDHI, s.ShortMessage()
		r := c.submit(m)
		last := i == len(segs)-1
		switch {
		case !last && r.Status == pdu.ESME_ROK:
			given = append(given, r.MessageID)
		case last && r.Status == pdu.ESME_RSUBMITFAIL && r.MessageID == "":
		default:
			t.Fatalf("part %d of %d: %s %q", i+1, len(segs), r.Status, r.MessageID)
		}
	}
	got := map[string]dlr.Stat{}
	for range given {
		id, stat := receiptOf(t, c)
		got[id] = stat
	}
	for _, id := range given {
		if got[id] != dlr.StatUndeliverable {
			t.Fatalf("receipts %v, want UNDELIV for %v", got, given)
		}
	}
	noDeliverSM(t, c, 2*time.Second, "after the receipts for the parts given")
}
