package sms_test

import (
	"context"
	"errors"
	"fmt"
	"net"
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

func TestBindWithWrongPassword(t *testing.T) {
	e := newEnv(t, sms.Config{})
	c := dialESME(t, e.addr())
	if st := c.bind(pdu.CmdBindTransceiver, "alice", "wrong"); st != pdu.ESME_RBINDFAIL {
		t.Fatalf("wrong password: %s, want ESME_RBINDFAIL", st)
	}
	if st := c.bind(pdu.CmdBindTransceiver, "nobody", "x"); st != pdu.ESME_RBINDFAIL {
		t.Fatalf("unknown system_id: %s, want ESME_RBINDFAIL", st)
	}
	// The session stays open for another attempt (§4.1), and binds.
	c.mustBind(pdu.CmdBindTransceiver, "alice", "alice-pw")
	if st := c.bind(pdu.CmdBindTransceiver, "alice", "alice-pw"); st != pdu.ESME_RALYBND {
		t.Fatalf("second bind: %s, want ESME_RALYBND", st)
	}
	// Three failures close the connection.
	c2 := dialESME(t, e.addr())
	for range 3 {
		c2.bind(pdu.CmdBindTransmitter, "alice", "guess")
	}
	select {
	case <-c2.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("connection still open after three failed binds")
	}
}

// An application submits to bob, who reads the web inbox: submit_sm_resp
// carries the UIMS message id once the inbox took the message, and the
// delivery receipt comes back as deliver_sm with the receipt TLVs.
func TestSubmitToWebInboxWithReceipt(t *testing.T) {
	e := newEnv(t, sms.Config{})
	c := dialESME(t, e.addr())
	c.mustBind(pdu.CmdBindTransceiver, "alice", "alice-pw")
	var r *pdu.SubmitSMResp
	fabrictest.Eventually(t, 10*time.Second, "a route to bob", func() bool {
		r = c.submit(textMsg("15550100", "+1 555 0101", "Hello Bob {SMS}", 1))
		return r.Status == pdu.ESME_ROK
	})
	if !schemas.ValidMsgID(r.MessageID) {
		t.Fatalf("message id %q is not a UIMS message id", r.MessageID)
	}
	d := e.web.Get(r.MessageID)
	if d == nil {
		t.Fatal("not in bob's inbox")
	}
	if string(d.Content) != "Hello Bob {SMS}" || d.Routed.Recipient != "bob" || d.Routed.IMI.From.Address != "+15550100" ||
		d.Routed.IMI.From.Client != "alice" || d.Routed.IMI.From.Medium != "sms" {
		t.Fatalf("delivery %q from %+v to %s", d.Content, d.Routed.IMI.From, d.Routed.Recipient)
	}
	rc := c.next(10 * time.Second)
	if rc.ESMClass != pdu.ESMClassDeliveryReceipt {
		t.Fatalf("esm_class 0x%02X, want a receipt", rc.ESMClass)
	}
	id, _ := rc.TLVs.ReceiptedMessageID()
	st, _ := rc.TLVs.MessageState()
	text, err := dlr.Parse(string(rc.ShortMessage))
	if err != nil || id != r.MessageID || text.ID != r.MessageID || st != pdu.StateDelivered || text.Stat != dlr.StatDelivered {
		t.Fatalf("receipt %q id %q state %d (%v)", rc.ShortMessage, id, st, err)
	}
	if rc.SourceAddr != "+1 555 0101" || rc.DestinationAddr != "15550100" {
		t.Fatalf("receipt addressed from %q to %q", rc.SourceAddr, rc.DestinationAddr)
	}
	// No receipt when registered_delivery does not ask for one.
	r2 := c.submit(textMsg("15550100", "15550101", "no receipt please", 0))
	if r2.Status != pdu.ESME_ROK {
		t.Fatal(r2.Status)
	}
	select {
	case x := <-c.Delivered:
		t.Fatalf("unexpected deliver_sm %q", x.ShortMessage)
	case <-time.After(500 * time.Millisecond):
	}
	// query_sm answers from the brokers' transaction.
	q := c.call(&pdu.QuerySM{MessageID: r.MessageID, SourceAddrTON: 1, SourceAddrNPI: 1, SourceAddr: "15550100"}).(*pdu.QuerySMResp)
	if q.Status != pdu.ESME_ROK || q.MessageState != pdu.StateDelivered || q.FinalDate == "" {
		t.Fatalf("query_sm_resp %+v", q)
	}
}

func TestSubmitErrors(t *testing.T) {
	e := newEnv(t, sms.Config{})
	c := dialESME(t, e.addr())
	// Before bind: §2.3.
	if r := c.submit(textMsg("15550100", "15550101", "x", 0)); r.Status != pdu.ESME_RINVBNDSTS {
		t.Fatalf("submit before bind: %s", r.Status)
	}
	c.mustBind(pdu.CmdBindTransmitter, "alice", "alice-pw")
	fabrictest.Eventually(t, 10*time.Second, "the fabric serving", func() bool {
		return c.submit(textMsg("15550100", "bob", "warm up", 0)).Status == pdu.ESME_ROK
	})
	cases := []struct {
		name string
		m    pdu.MessageFields
		want pdu.Status
	}{
		{"unknown client id", pdu.MessageFields{DestAddrTON: 5, DestinationAddr: "nobody", ShortMessage: []byte("x")}, pdu.ESME_RINVDSTADR},
		{"empty destination", pdu.MessageFields{ShortMessage: []byte("x")}, pdu.ESME_RINVDSTADR},
		{"binary data_coding", pdu.MessageFields{DestinationAddr: "15550101", DataCoding: 4, ShortMessage: []byte{1, 2}}, pdu.ESME_RINVDCS},
		{"odd UCS-2", pdu.MessageFields{DestinationAddr: "15550101", DataCoding: 8, ShortMessage: []byte{0, 'a', 0}}, pdu.ESME_RINVMSGLEN},
		{"bad UDH", pdu.MessageFields{DestinationAddr: "15550101", ESMClass: pdu.ESMClassUDHI, ShortMessage: []byte{9, 0, 3, 1}}, pdu.ESME_RINVESMCLASS},
		{"receipt type", pdu.MessageFields{DestinationAddr: "15550101", ESMClass: pdu.ESMClassDeliveryReceipt, ShortMessage: []byte("x")}, pdu.ESME_RINVESMCLASS},
		{"bad schedule", pdu.MessageFields{DestinationAddr: "15550101", ScheduleDeliveryTime: "000000010000000X", ShortMessage: []byte("x")}, pdu.ESME_RINVSCHED},
		{"schedule in 8 days", pdu.MessageFields{DestinationAddr: "15550101", ScheduleDeliveryTime: "000008000000000R", ShortMessage: []byte("x")}, pdu.ESME_RINVSCHED},
		{"bad validity", pdu.MessageFields{DestinationAddr: "15550101", ValidityPeriod: "0000000100000001", ShortMessage: []byte("x")}, pdu.ESME_RINVEXPIRY},
		{"valid before scheduled", pdu.MessageFields{DestinationAddr: "15550101", ScheduleDeliveryTime: "000000020000000R", ValidityPeriod: "000000010000000R", ShortMessage: []byte("x")}, pdu.ESME_RINVEXPIRY},
		{"bad SAR", func() pdu.MessageFields {
			m := pdu.MessageFields{DestinationAddr: "15550101", ShortMessage: []byte("x")}
			m.TLVs.SetSAR(pdu.SAR{Ref: 1, Total: 2, Seq: 3})
			return m
		}(), pdu.ESME_RINVOPTPARAMVAL},
	}
	for _, tc := range cases {
		if r := c.submit(tc.m); r.Status != tc.want || r.MessageID != "" {
			t.Errorf("%s: %s %q, want %s", tc.name, r.Status, r.MessageID, tc.want)
		}
	}
	// A transmitter cannot query others' messages.
	q := c.call(&pdu.QuerySM{MessageID: strings.Repeat("ab", 16)}).(*pdu.QuerySMResp)
	if q.Status != pdu.ESME_RQUERYFAIL {
		t.Fatalf("query of an unknown message: %s", q.Status)
	}
	if st := c.enquire(); st != pdu.ESME_ROK {
		t.Fatal("session broken after rejections")
	}
}

// Bad input (SMPP 3.4 §3.2, §4.3): each is answered with generic_nack or
// a clear status; the session goes on where the framing allows, and
// other sessions are never affected.
func TestMalformedInput(t *testing.T) {
	e := newEnv(t, sms.Config{})
	other := dialESME(t, e.addr())
	other.mustBind(pdu.CmdBindTransceiver, "carol", "carol-pw")

	c := dialESME(t, e.addr())
	c.mustBind(pdu.CmdBindTransceiver, "alice", "alice-pw")

	// Unknown command: generic_nack ESME_RINVCMDID with the same sequence.
	ch := c.expect(900)
	c.writeRaw(header(16, 0x00000099, 0, 900))
	if r := c.wait(ch); r.CommandID() != pdu.CmdGenericNack || r.Hdr().Status != pdu.ESME_RINVCMDID {
		t.Fatalf("unknown command: %s %s", r.CommandID(), r.Hdr().Status)
	}
	// replace_sm is not supported: generic_nack too.
	ch = c.expect(901)
	c.writeRaw(append(header(20, uint32(pdu.CmdReplaceSM), 0, 901), 0, 0, 0, 0))
	if r := c.wait(ch); r.CommandID() != pdu.CmdGenericNack {
		t.Fatalf("replace_sm: %s", r.CommandID())
	}
	// A body cut short (command_length matches, mandatory fields missing).
	ch = c.expect(902)
	c.writeRaw(append(header(16+3, uint32(pdu.CmdSubmitSM), 0, 902), 0, 1, 1))
	if r := c.wait(ch); r.CommandID() != pdu.CmdSubmitSMResp || r.Hdr().Status == pdu.ESME_ROK {
		t.Fatalf("truncated submit_sm: %s %s", r.CommandID(), r.Hdr().Status)
	}
	// command_length larger than the body: trailing octets.
	good, _ := pdu.Marshal(&pdu.EnquireLink{Header: pdu.Header{Sequence: 903}})
	bad := append(header(uint32(len(good)+4), uint32(pdu.CmdEnquireLink), 0, 903), 1, 2, 3, 4)
	ch = c.expect(903)
	c.writeRaw(bad)
	if r := c.wait(ch); r.Hdr().Status != pdu.ESME_RINVCMDLEN {
		t.Fatalf("trailing octets: %s %s", r.CommandID(), r.Hdr().Status)
	}
	// sm_length beyond the body.
	m, _ := pdu.Marshal(&pdu.SubmitSM{Header: pdu.Header{Sequence: 904}, MessageFields: textMsg("1", "15550101", "abc", 0)})
	m[len(m)-4] = 200 // sm_length
	ch = c.expect(904)
	c.writeRaw(m)
	if r := c.wait(ch); r.CommandID() != pdu.CmdSubmitSMResp || r.Hdr().Status != pdu.ESME_RINVMSGLEN {
		t.Fatalf("bad sm_length: %s %s", r.CommandID(), r.Hdr().Status)
	}
	if st := c.enquire(); st != pdu.ESME_ROK {
		t.Fatal("session broken after malformed PDUs")
	}
	if r := c.submit(textMsg("15550100", "15550101", "still here", 0)); r.Status != pdu.ESME_ROK {
		t.Fatalf("submit after malformed PDUs: %s", r.Status)
	}

	// command_length below the header: the framing is lost; generic_nack
	// and the connection closes.
	c.writeRaw(header(8, uint32(pdu.CmdSubmitSM), 0, 905))
	select {
	case <-c.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("connection not closed after command_length 8")
	}
	if len(c.nacks) == 0 || c.nacks[len(c.nacks)-1].Status != pdu.ESME_RINVCMDLEN {
		t.Fatalf("no generic_nack ESME_RINVCMDLEN before closing: %v", c.nacks)
	}
	// command_length above the limit, then a PDU truncated by the peer
	// closing its side.
	c3 := dialESME(t, e.addr())
	c3.writeRaw(header(1<<30, uint32(pdu.CmdSubmitSM), 0, 1))
	select {
	case <-c3.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("connection not closed after a huge command_length")
	}
	c4 := dialESME(t, e.addr())
	c4.writeRaw(header(100, uint32(pdu.CmdSubmitSM), 0, 1)[:10])
	c4.conn.(interface{ CloseWrite() error }).CloseWrite()
	<-c4.closed

	// The other session never noticed.
	if st := other.enquire(); st != pdu.ESME_ROK {
		t.Fatal("other session broken")
	}
	c5 := dialESME(t, e.addr())
	c5.mustBind(pdu.CmdBindTransmitter, "alice", "alice-pw")
	if r := c5.submit(textMsg("15550100", "15550101", "new session", 0)); r.Status != pdu.ESME_ROK {
		t.Fatalf("new session: %s", r.Status)
	}
}

// More requests than the window allows are throttled, not queued without
// bound.
func TestWindowThrottles(t *testing.T) {
	e := newEnv(t, sms.Config{Window: 1})
	c := dialESME(t, e.addr())
	c.mustBind(pdu.CmdBindTransmitter, "alice", "alice-pw")
	fabrictest.Eventually(t, 10*time.Second, "the fabric serving", func() bool {
		return c.submit(textMsg("15550100", "bob", "warm up", 0)).Status == pdu.ESME_ROK
	})
	var chans []chan pdu.PDU
	for i := range 8 {
		chans = append(chans, c.start(&pdu.SubmitSM{MessageFields: textMsg("15550100", "bob", fmt.Sprint("burst ", i), 0)}))
	}
	ok, throttled := 0, 0
	for _, ch := range chans {
		switch st := c.wait(ch).Hdr().Status; st {
		case pdu.ESME_ROK:
			ok++
		case pdu.ESME_RTHROTTLED:
			throttled++
		default:
			t.Fatalf("status %s", st)
		}
	}
	if ok == 0 || throttled == 0 {
		t.Fatalf("ok %d throttled %d: want both", ok, throttled)
	}
}

// Concatenated submissions (UDH and SAR) are reassembled and sent once; a
// repeated part changes nothing; missing parts are awaited until the
// timeout, then the partial message is delivered marked as partial, once.
func TestConcatenatedSubmissions(t *testing.T) {
	e := newEnv(t, sms.Config{ReassemblyTimeout: 2 * time.Second})
	c := dialESME(t, e.addr())
	c.mustBind(pdu.CmdBindTransceiver, "alice", "alice-pw")
	fabrictest.Eventually(t, 10*time.Second, "the fabric serving", func() bool {
		return c.submit(textMsg("15550100", "bob", "warm up", 0)).Status == pdu.ESME_ROK
	})
	base := e.web.Len()

	text := strings.Repeat("Concatenated GSM text with € and [brackets]. ", 8)
	segs, coding := gsm.Split(text, 42)
	if len(segs) < 3 || coding != gsm.CodingGSM7 {
		t.Fatalf("%d segments", len(segs))
	}
	var ids []string
	for i, s := range segs {
		m := textMsg("15550100", "15550101", "", 1)
		m.ESMClass, m.ShortMessage = pdu.ESMClassUDHI, s.ShortMessage()
		r := c.submit(m)
		if r.Status != pdu.ESME_ROK {
			t.Fatalf("part %d: %s", i+1, r.Status)
		}
		ids = append(ids, r.MessageID)
		if i == 0 { // a repeated part
			if r2 := c.submit(m); r2.Status != pdu.ESME_ROK || r2.MessageID != r.MessageID {
				t.Fatalf("repeated part: %s %q", r2.Status, r2.MessageID)
			}
		}
	}
	msgID := strings.Split(ids[0], "-")[0]
	for i, id := range ids {
		if id != fmt.Sprintf("%s-%d", msgID, i+1) {
			t.Fatalf("part ids %v", ids)
		}
	}
	d := e.web.Get(msgID)
	if d == nil || string(d.Content) != text {
		t.Fatalf("reassembled %v", d)
	}
	// One receipt per part id.
	got := map[string]bool{}
	for range segs {
		rc := c.next(10 * time.Second)
		id, _ := rc.TLVs.ReceiptedMessageID()
		got[id] = true
	}
	for _, id := range ids {
		if !got[id] {
			t.Fatalf("receipts for %v, want %v", got, ids)
		}
	}
	// A part repeated after completion is answered, not sent again.
	m := textMsg("15550100", "15550101", "", 1)
	m.ESMClass, m.ShortMessage = pdu.ESMClassUDHI, segs[1].ShortMessage()
	if r := c.submit(m); r.Status != pdu.ESME_ROK || r.MessageID != ids[1] {
		t.Fatalf("late repeat: %s %q", r.Status, r.MessageID)
	}

	// SAR TLVs instead of a UDH, UCS-2, part 2 of 3 never comes.
	ucs := []string{"Часть один ", "часть два ", "часть три 🎉"}
	var sarID string
	for i, p := range ucs {
		if i == 1 {
			continue
		}
		m := textMsg("15550100", "15550101", "", 0)
		m.DataCoding, m.ShortMessage = 8, gsm.EncodeUCS2(p)
		m.TLVs.SetSAR(pdu.SAR{Ref: 777, Total: 3, Seq: uint8(i + 1)})
		r := c.submit(m)
		if r.Status != pdu.ESME_ROK {
			t.Fatalf("sar part %d: %s", i+1, r.Status)
		}
		sarID = strings.Split(r.MessageID, "-")[0]
	}
	fabrictest.Eventually(t, 15*time.Second, "the partial message", func() bool { return e.web.Get(sarID) != nil })
	p := e.web.Get(sarID)
	if string(p.Content) != "Часть один часть три 🎉" || p.Routed.IMI.Meta["sms.partial"] != "missing 2 of 3" ||
		!strings.Contains(p.Routed.IMI.Subject, "partial") {
		t.Fatalf("partial %q meta %v subject %q", p.Content, p.Routed.IMI.Meta, p.Routed.IMI.Subject)
	}
	time.Sleep(3 * time.Second) // more expiry rounds: never twice
	if n := e.web.deliveries(sarID); n != 1 {
		t.Fatalf("partial delivered %d times", n)
	}
	// A bad concatenation IE (part 3 of 2) is ignored: a single message.
	m = textMsg("15550100", "15550101", "", 0)
	m.ESMClass, m.ShortMessage = pdu.ESMClassUDHI, append([]byte{5, 0, 3, 9, 2, 3}, "odd part"...)
	r := c.submit(m)
	if r.Status != pdu.ESME_ROK || e.web.Get(r.MessageID) == nil || string(e.web.Get(r.MessageID).Content) != "odd part" {
		t.Fatalf("bad concat IE: %s", r.Status)
	}
	if e.web.Len() != base+3 {
		t.Fatalf("%d messages in the inbox, want %d", e.web.Len(), base+3)
	}
}

// A receipt that arrives while the application is not bound waits in
// JetStream and is delivered when it binds again, also after the gateway
// restarted.
func TestReceiptForUnboundApplication(t *testing.T) {
	e := newEnv(t, sms.Config{}, func(e *env) { e.web.Status = schemas.StatusTransferred }) // bob's inbox reports later
	c := dialESME(t, e.addr())
	c.mustBind(pdu.CmdBindTransmitter, "alice", "alice-pw")
	var r *pdu.SubmitSMResp
	fabrictest.Eventually(t, 10*time.Second, "a route to bob", func() bool {
		r = c.submit(textMsg("15550100", "15550101", "tell me when", 1))
		return r.Status == pdu.ESME_ROK
	})
	c.unbind()
	d := e.web.Get(r.MessageID)
	if err := e.webKit.Ack(context.Background(), d.Ref, schemas.StatusDelivered, "", ""); err != nil {
		t.Fatal(err)
	}
	// The notification reaches the gateway and waits in the queue stream.
	js := e.gw.Kit().JetStream()
	fabrictest.Eventually(t, 10*time.Second, "the receipt queued", func() bool {
		s, err := js.Stream(context.Background(), sms.QueueStream)
		if err != nil {
			return false
		}
		info, err := s.Info(context.Background())
		return err == nil && info.State.Msgs == 1
	})
	rx := dialESME(t, e.addr())
	rx.mustBind(pdu.CmdBindReceiver, "alice", "alice-pw")
	rc := rx.next(10 * time.Second)
	if id, _ := rc.TLVs.ReceiptedMessageID(); id != r.MessageID || rc.ESMClass != pdu.ESMClassDeliveryReceipt {
		t.Fatalf("receipt %q", rc.ShortMessage)
	}
	select {
	case x := <-rx.Delivered:
		t.Fatalf("receipt delivered twice: %q", x.ShortMessage)
	case <-time.After(time.Second):
	}
}

// Messages for an application: delivered as deliver_sm when it is bound
// (receiver), kept while it is not; the deliver_sm_resp is the delivery
// acknowledgement. Long texts arrive in UDH parts.
func TestDeliverToApplication(t *testing.T) {
	e := newEnv(t, sms.Config{})
	// carol binds once, so the gateway knows her as an application.
	c := dialESME(t, e.addr())
	c.mustBind(pdu.CmdBindReceiver, "carol", "carol-pw")
	res := e.sendFrom(t, "dave", "carol", "Hello Carol")
	if res.Status != schemas.StatusTransferred {
		t.Fatalf("status %s", res.Status)
	}
	d := c.next(10 * time.Second)
	if string(d.ShortMessage) != "Hello Carol" || d.DestinationAddr != "15550102" || d.SourceAddr != "dave" || d.SourceAddrTON != 5 {
		t.Fatalf("deliver_sm %q from %q to %q", d.ShortMessage, d.SourceAddr, d.DestinationAddr)
	}
	fabrictest.Eventually(t, 10*time.Second, "delivered at dave", func() bool {
		return slices.Contains(e.test.Statuses(res.MsgID), schemas.StatusDelivered)
	})

	// Not bound: the message waits; an application that defers
	// (ESME_RX_T_APPN) gets it again later.
	c.unbind()
	long := strings.Repeat("Ünïcödé ✓ ", 12) // UCS-2, 120 units: 2 parts
	res2 := e.sendFrom(t, "dave", "+1-555-0102", long)
	time.Sleep(300 * time.Millisecond)
	c2 := dialESME(t, e.addr())
	c2.setStatus(pdu.ESME_RX_T_APPN)
	c2.mustBind(pdu.CmdBindTransceiver, "carol", "carol-pw")
	time.Sleep(500 * time.Millisecond)
	c2.setStatus(pdu.ESME_ROK)
	var parts []*pdu.DeliverSM
	for range 2 {
		parts = append(parts, c2.next(15*time.Second))
	}
	var payload []byte
	for i, p := range parts {
		u, rest, err := gsm.ParseUDH(p.ShortMessage)
		if err != nil || p.ESMClass&pdu.ESMClassUDHI == 0 || p.DataCoding != 8 || u.Concat.Total != 2 || int(u.Concat.Seq) != i+1 {
			t.Fatalf("part %d: esm 0x%02X dcs %d %+v %v", i+1, p.ESMClass, p.DataCoding, u.Concat, err)
		}
		payload = append(payload, rest...)
	}
	if s, _ := gsm.DecodeUCS2(payload); s != long {
		t.Fatalf("reassembled %q", s)
	}
	fabrictest.Eventually(t, 10*time.Second, "delivered at dave", func() bool {
		return slices.Contains(e.test.Statuses(res2.MsgID), schemas.StatusDelivered)
	})

	// A permanent rejection by the application is a non-delivery report.
	c2.setStatus(pdu.ESME_RX_P_APPN)
	res3 := e.sendFrom(t, "dave", "carol", "refuse me")
	fabrictest.Eventually(t, 10*time.Second, "failed at dave", func() bool {
		return slices.Contains(e.test.Statuses(res3.MsgID), schemas.StatusFailed)
	})
}

// Without an SMS centre, a message for a phone number whose client has no
// application gets a clear non-delivery report: UNREACHABLE, permanent.
func TestNoCentreNoApplication(t *testing.T) {
	e := newEnv(t, sms.Config{})
	f := e.f
	f.PutProfiles(&schemas.Profile{ID: "erin", Addresses: map[string]string{"sms": "+15550199"}})
	var err error
	fabrictest.Eventually(t, 10*time.Second, "a decision", func() bool {
		_, err = e.testKit.Send(context.Background(), &kit.Submission{
			From: schemas.Endpoint{Medium: "test", Address: "dave", Client: "dave"}, To: "erin", Content: []byte("hi")})
		return err != nil && !strings.Contains(err.Error(), "NO_ROUTE")
	})
	if !kit.IsCode(err, schemas.CodeUnreachable) || !strings.Contains(err.Error(), "no SMS centre configured") {
		t.Fatalf("error %v", err)
	}
}

// A silent session gets enquire_link (§4.11) and is closed when it does
// not answer; one that answers stays.
func TestEnquireLinkOnSilence(t *testing.T) {
	e := newEnv(t, sms.Config{EnquireLink: 300 * time.Millisecond, ResponseTimeout: 500 * time.Millisecond})
	live := dialESME(t, e.addr()) // answers enquire_link
	live.mustBind(pdu.CmdBindTransceiver, "carol", "carol-pw")
	conn, err := net.Dial("tcp", e.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	b, _ := pdu.Marshal(&pdu.BindTransmitter{Header: pdu.Header{Sequence: 1}, BindFields: pdu.BindFields{SystemID: "alice", Password: "alice-pw", InterfaceVersion: 0x34}})
	conn.Write(b)
	r := pdu.NewReader(conn, 0)
	var sawEnquire bool
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		p, err := r.ReadPDU()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("the silent session was not closed")
			}
			break // closed by the server
		}
		if p.CommandID() == pdu.CmdEnquireLink {
			sawEnquire = true // and no answer
		}
	}
	if !sawEnquire {
		t.Fatal("no enquire_link on a silent session")
	}
	time.Sleep(time.Second)
	if st := live.enquire(); st != pdu.ESME_ROK {
		t.Fatal("the answering session was closed")
	}
}

// Two instances of the gateway share the queue: a message for an
// application reaches it whichever instance the fabric hands it to.
func TestTwoInstancesShareTheQueue(t *testing.T) {
	e := newEnv(t, sms.Config{})
	gw2, err := sms.New(sms.Config{Addr: "127.0.0.1:0"}, e.f.Conn("sms2"), e.f.Keyring("sms"), e.f.Log)
	if err != nil {
		t.Fatal(err)
	}
	fabrictest.Start(t, "second sms gateway", gw2.Run)
	// carol binds to the second instance only.
	c := dialESME(t, gw2.Addr().String())
	c.mustBind(pdu.CmdBindReceiver, "carol", "carol-pw")
	const n = 12
	want := map[string]bool{}
	for i := range n {
		text := fmt.Sprint("message ", i)
		e.sendFrom(t, "dave", "carol", text)
		want[text] = true
	}
	for range n {
		d := c.next(10 * time.Second)
		if !want[string(d.ShortMessage)] {
			t.Fatalf("unexpected or repeated %q", d.ShortMessage)
		}
		delete(want, string(d.ShortMessage))
	}
}

// A recipient whose profile says "sms.long": "shorten" gets one SMS with a
// pointer to the web inbox instead of many parts.
func TestShortenLongMessage(t *testing.T) {
	e := newEnv(t, sms.Config{InboxURL: "https://uims.example/"})
	e.f.PutProfiles(&schemas.Profile{ID: "gina", Addresses: map[string]string{"sms": "+15550103"}, Prefer: []string{"sms"},
		SMPP: &schemas.SMPPCredentials{SystemID: "gina", Password: "gina-pw"}, Options: map[string]string{"sms.long": "shorten"}})
	c := dialESME(t, e.addr())
	c.mustBind(pdu.CmdBindReceiver, "gina", "gina-pw")
	e.sendFrom(t, "dave", "gina", strings.Repeat("A very long e-mail body. ", 40))
	d := c.next(10 * time.Second)
	text, _ := gsm.DecodeSeptets(d.ShortMessage)
	if d.ESMClass&pdu.ESMClassUDHI != 0 || len(d.ShortMessage) > 160 || !strings.HasPrefix(text, "A very long e-mail body.") ||
		!strings.HasSuffix(text, "... [more: https://uims.example/]") {
		t.Fatalf("shortened to %q (esm 0x%02X)", text, d.ESMClass)
	}
	select {
	case x := <-c.Delivered:
		t.Fatalf("a second SMS %q", x.ShortMessage)
	case <-time.After(500 * time.Millisecond):
	}
	// A text of 300 kB (an e-mail) is kept in the queue only as far as it
	// can be used: one SMS again.
	e.sendFrom(t, "dave", "gina", strings.Repeat("0123456789", 30000))
	if d := c.next(10 * time.Second); len(d.ShortMessage) > 160 || !strings.HasPrefix(string(d.ShortMessage), "0123456789") {
		t.Fatalf("huge text as %q", d.ShortMessage)
	}
}

// Long texts in one PDU: submit_sm with message_payload (§5.3.2.32) and
// data_sm (§4.7).
func TestMessagePayloadAndDataSM(t *testing.T) {
	e := newEnv(t, sms.Config{})
	c := dialESME(t, e.addr())
	c.mustBind(pdu.CmdBindTransceiver, "alice", "alice-pw")
	fabrictest.Eventually(t, 10*time.Second, "the fabric serving", func() bool {
		return c.submit(textMsg("15550100", "bob", "warm up", 0)).Status == pdu.ESME_ROK
	})
	long := strings.Repeat("payload text ", 40)
	m := textMsg("15550100", "15550101", "", 0)
	m.ShortMessage = nil
	m.TLVs.SetMessagePayload([]byte(long)) // GSM 7-bit: the same octets for these letters
	r := c.submit(m)
	if r.Status != pdu.ESME_ROK || e.web.Get(r.MessageID) == nil || string(e.web.Get(r.MessageID).Content) != long {
		t.Fatalf("message_payload: %s", r.Status)
	}
	ds := &pdu.DataSM{SourceAddrTON: 1, SourceAddrNPI: 1, SourceAddr: "15550100", DestAddrTON: 1, DestAddrNPI: 1,
		DestinationAddr: "15550101", DataCoding: 8}
	ds.TLVs.SetMessagePayload(gsm.EncodeUCS2("data_sm ✓"))
	dr := c.call(ds).(*pdu.DataSMResp)
	if dr.Status != pdu.ESME_ROK || e.web.Get(dr.MessageID) == nil || string(e.web.Get(dr.MessageID).Content) != "data_sm ✓" {
		t.Fatalf("data_sm: %s %q", dr.Status, dr.MessageID)
	}
}

// Parts of one message meet whichever instance they arrive at, and parts
// already answered survive the instance that took them: the other
// instance delivers the partial message, once.
func TestReassemblyAcrossInstancesAndRestart(t *testing.T) {
	e := newEnv(t, sms.Config{ReassemblyTimeout: 2 * time.Second})
	gw2, err := sms.New(sms.Config{Addr: "127.0.0.1:0", ReassemblyTimeout: 2 * time.Second}, e.f.Conn("sms2"), e.f.Keyring("sms"), e.f.Log)
	if err != nil {
		t.Fatal(err)
	}
	fabrictest.Start(t, "second sms gateway", gw2.Run)
	c1, c2 := dialESME(t, e.addr()), dialESME(t, gw2.Addr().String())
	c1.mustBind(pdu.CmdBindTransmitter, "alice", "alice-pw")
	c2.mustBind(pdu.CmdBindTransmitter, "alice", "alice-pw")
	fabrictest.Eventually(t, 10*time.Second, "the fabric serving", func() bool {
		return c1.submit(textMsg("15550100", "bob", "warm up", 0)).Status == pdu.ESME_ROK
	})
	part := func(c *esme, ref uint8, seq uint8, text string) string {
		t.Helper()
		m := textMsg("15550100", "15550101", "", 0)
		sm, _ := gsm.EncodeSeptets(text)
		m.ESMClass, m.ShortMessage = pdu.ESMClassUDHI, append([]byte{5, 0, 3, ref, 3, seq}, sm...)
		r := c.submit(m)
		if r.Status != pdu.ESME_ROK {
			t.Fatalf("part %d: %s", seq, r.Status)
		}
		return strings.Split(r.MessageID, "-")[0]
	}
	a := part(c1, 1, 1, "one ")
	if b := part(c2, 1, 2, "two "); b != a {
		t.Fatalf("parts got ids %s and %s", a, b)
	}
	part(c1, 1, 3, "three")
	if d := e.web.Get(a); d == nil || string(d.Content) != "one two three" {
		t.Fatalf("across instances: %v", d)
	}

	b := part(c1, 2, 1, "first ")
	part(c1, 2, 3, "third")
	e.stop() // the instance that took both parts goes away
	fabrictest.Eventually(t, 15*time.Second, "the partial message from the other instance", func() bool { return e.web.Get(b) != nil })
	if d := e.web.Get(b); string(d.Content) != "first third" || d.Routed.IMI.Meta["sms.partial"] != "missing 2 of 3" {
		t.Fatalf("partial %q %v", d.Content, d.Routed.IMI.Meta)
	}
	time.Sleep(3 * time.Second)
	if n := e.web.deliveries(a) + e.web.deliveries(b); n != 2 {
		t.Fatalf("%d deliveries, want 2", n)
	}
}

// An application may send only from its own number: another client's
// number as source_addr gets ESME_RINVSRCADR (the brokers' sender binding,
// PROTOCOL.md §6.2), and nothing reaches bob.
func TestSubmitFromAnotherNumberRefused(t *testing.T) {
	e := newEnv(t, sms.Config{})
	c := dialESME(t, e.addr())
	c.mustBind(pdu.CmdBindTransmitter, "alice", "alice-pw")
	fabrictest.Eventually(t, 10*time.Second, "a route to bob", func() bool {
		return c.submit(textMsg("15550100", "bob", "warm up", 0)).Status == pdu.ESME_ROK
	})
	before := len(e.webIDs())
	if r := c.submit(textMsg("15550102", "bob", "as carol", 0)); r.Status != pdu.ESME_RINVSRCADR {
		t.Fatalf("alice sending from carol's number: %s", r.Status)
	}
	if n := len(e.webIDs()); n != before {
		t.Fatalf("%d messages delivered from a number alice does not own", n-before)
	}
}
