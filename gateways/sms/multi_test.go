package sms_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/linxGnu/gosmpp"
	"github.com/linxGnu/gosmpp/data"
	gpdu "github.com/linxGnu/gosmpp/pdu"

	"github.com/uims/uims/gateways/sms"
	"github.com/uims/uims/gateways/sms/pdu"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/schemas"
)

// gosmppESME is an application bound with gosmpp, an SMPP library nobody
// here wrote: it collects submit_multi responses and delivery receipts.
type gosmppESME struct {
	sess     *gosmpp.Session
	resps    chan *gpdu.SubmitMultiResp
	receipts chan *gpdu.DeliverSM
}

func bindGosmpp(t *testing.T, addr, user, pass string) *gosmppESME {
	t.Helper()
	e := &gosmppESME{resps: make(chan *gpdu.SubmitMultiResp, 8), receipts: make(chan *gpdu.DeliverSM, 16)}
	settings := gosmpp.Settings{
		ReadTimeout: 10 * time.Second, WriteTimeout: 5 * time.Second, EnquireLink: 5 * time.Second,
		OnAllPDU: func(p gpdu.PDU) (gpdu.PDU, bool) {
			switch p := p.(type) {
			case *gpdu.SubmitMultiResp:
				e.resps <- p
			case *gpdu.DeliverSM:
				e.receipts <- p
				return p.GetResponse(), false
			case *gpdu.EnquireLink:
				return p.GetResponse(), false
			}
			return nil, false
		},
	}
	sess, err := gosmpp.NewSession(gosmpp.TRXConnector(gosmpp.NonTLSDialer, gosmpp.Auth{SMSC: addr, SystemID: user, Password: pass}), settings, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	e.sess = sess
	return e
}

// dest is an SME address or, with dl, a distribution list name.
type dest struct {
	ton, npi byte
	addr     string
	dl       bool
}

// submitMulti sends one submit_multi and waits for its response.
func (e *gosmppESME) submitMulti(t *testing.T, text string, dests ...dest) *gpdu.SubmitMultiResp {
	t.Helper()
	sm := gpdu.NewSubmitMulti().(*gpdu.SubmitMulti)
	sm.SourceAddr, _ = gpdu.NewAddressWithTonNpiAddr(1, 1, "15550100")
	for _, d := range dests {
		da := gpdu.NewDestinationAddress()
		if d.dl {
			l, _ := gpdu.NewDistributionList(d.addr)
			da.SetDistributionList(l)
		} else {
			a, _ := gpdu.NewAddressWithTonNpiAddr(d.ton, d.npi, d.addr)
			da.SetAddress(a)
		}
		sm.DestAddrs.Add(da)
	}
	sm.RegisteredDelivery = 1
	sm.Message, _ = gpdu.NewShortMessageWithEncoding(text, data.GSM7BIT)
	if err := e.sess.Transceiver().Submit(sm); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-e.resps:
		return r
	case <-time.After(15 * time.Second):
		t.Fatal("no submit_multi_resp")
	}
	return nil
}

// receipts waits for n delivery receipts and returns them by source
// address.
func (e *gosmppESME) receiptsBySource(t *testing.T, n int) map[string]string {
	t.Helper()
	got := map[string]string{}
	timeout := time.After(15 * time.Second)
	for len(got) < n {
		select {
		case d := <-e.receipts:
			if d.EsmClass&pdu.ESMClassDeliveryReceipt == 0 {
				continue
			}
			b, _ := d.Message.GetMessageData()
			got[d.SourceAddr.Address()] = string(b)
		case <-timeout:
			t.Fatalf("%d receipts, want %d: %v", len(got), n, got)
		}
	}
	return got
}

// submit_multi to two good destinations and one unknown: the group id as
// the message_id, no_unsuccess 1 naming the unknown one with
// ESME_RINVDSTADR, each good one delivered once, and one receipt per
// recipient, each with the group id and the recipient as its source.
func TestSubmitMulti(t *testing.T) {
	e := newEnv(t, sms.Config{})
	// Wait for routes: the web and test gateways announce themselves.
	e.sendFrom(t, "dave", "bob", "warm-up")
	c := bindGosmpp(t, e.addr(), "alice", "alice-pw")
	r := c.submitMulti(t, "meet at 5", dest{1, 1, "15550101", false}, dest{5, 0, "dave", false}, dest{5, 0, "nobody", false})
	if r.CommandStatus != data.ESME_ROK || !schemas.ValidMsgID(r.MessageID) {
		t.Fatalf("submit_multi_resp %v %q", r.CommandStatus, r.MessageID)
	}
	gid := r.MessageID
	us := r.UnsuccessSMEs.Get()
	if len(us) != 1 || us[0].Address.Address() != "nobody" || us[0].Ton() != 5 || us[0].ErrorStatusCode() != data.ESME_RINVDSTADR {
		t.Fatalf("unsuccess %+v", us)
	}
	bobID, daveID := schemas.GroupMemberID(gid, "+15550101"), schemas.GroupMemberID(gid, "dave")
	fabrictest.Eventually(t, 10*time.Second, "both delivered", func() bool {
		return e.web.deliveries(bobID) == 1 && e.test.Deliveries(daveID) == 1
	})
	if d := e.web.Get(bobID); string(d.Content) != "meet at 5" || d.Routed.IMI.Meta[schemas.MetaGroup] != gid {
		t.Fatalf("bob's delivery %+v", d)
	}
	rs := c.receiptsBySource(t, 2)
	for src, text := range map[string]string{"15550101": rs["15550101"], "dave": rs["dave"]} {
		if !strings.Contains(text, "id:"+gid+" ") || !strings.Contains(text, "stat:DELIVRD") {
			t.Errorf("receipt from %s: %q", src, text)
		}
	}
	// No receipt for the refused destination.
	select {
	case d := <-c.receipts:
		t.Fatalf("another receipt from %s", d.SourceAddr.Address())
	case <-time.After(500 * time.Millisecond):
	}
	if e.web.deliveries(bobID) != 1 {
		t.Fatal("delivered twice")
	}
}

// A distribution list name is a named group of the bound client's
// profile; one it does not have, and a wrong number of destinations, are
// refused whole.
func TestSubmitMultiDistributionList(t *testing.T) {
	e := newEnv(t, sms.Config{})
	alice := *profiles[0]
	alice.Groups = map[string][]string{"team": {"+15550101", "dave"}}
	e.f.PutProfiles(&alice)
	e.sendFrom(t, "dave", "bob", "warm-up")
	c := bindGosmpp(t, e.addr(), "alice", "alice-pw")
	r := c.submitMulti(t, "team news", dest{addr: "team", dl: true}, dest{1, 1, "15550101", false})
	if r.CommandStatus != data.ESME_ROK || len(r.UnsuccessSMEs.Get()) != 0 {
		t.Fatalf("submit_multi_resp %v %+v", r.CommandStatus, r.UnsuccessSMEs.Get())
	}
	gid := r.MessageID
	fabrictest.Eventually(t, 10*time.Second, "the list delivered, bob once", func() bool {
		return e.web.deliveries(schemas.GroupMemberID(gid, "+15550101")) == 1 && e.test.Deliveries(schemas.GroupMemberID(gid, "dave")) == 1
	})
	if rs := c.receiptsBySource(t, 2); !strings.Contains(rs["dave"], "id:"+gid) {
		t.Fatalf("receipts %v", rs)
	}

	if r := c.submitMulti(t, "x", dest{addr: "nope", dl: true}); r.CommandStatus != data.ESME_RINVDLNAME {
		t.Errorf("unknown list: %v", r.CommandStatus)
	}
	many := make([]dest, 101)
	for i := range many {
		many[i] = dest{1, 1, fmt.Sprintf("1555%04d", i), false}
	}
	if r := c.submitMulti(t, "x", many...); r.CommandStatus != data.CommandStatusType(pdu.ESME_RINVNUMDESTS) {
		t.Errorf("101 destinations: %v", r.CommandStatus)
	}
	if r := c.submitMulti(t, "x"); r.CommandStatus != data.CommandStatusType(pdu.ESME_RINVNUMDESTS) {
		t.Errorf("no destination: %v", r.CommandStatus)
	}
	// Every destination refused: the refusal as command_status, the list.
	r = c.submitMulti(t, "x", dest{5, 0, "nobody", false}, dest{5, 0, "nobody2", false})
	if r.CommandStatus != data.ESME_RINVDSTADR || len(r.UnsuccessSMEs.Get()) != 2 {
		t.Errorf("all unknown: %v %+v", r.CommandStatus, r.UnsuccessSMEs.Get())
	}
}
