package sms_test

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/gateways/sms"
	"github.com/uims/uims/gateways/sms/gsm"
	"github.com/uims/uims/gateways/sms/pdu"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/schemas"
)

// Clients of the tests: alice and carol are applications binding over
// SMPP; bob reads the web inbox; dave is a web user without a phone.
var profiles = []*schemas.Profile{
	{ID: "alice", Addresses: map[string]string{"sms": "+15550100", "test": "alice"}, Prefer: []string{"test"},
		SMPP: &schemas.SMPPCredentials{SystemID: "alice", Password: "alice-pw"}},
	{ID: "bob", Addresses: map[string]string{"web": "bob", "sms": "+15550101"}, Prefer: []string{"web"}},
	{ID: "carol", Addresses: map[string]string{"sms": "+15550102"}, Prefer: []string{"sms"},
		SMPP: &schemas.SMPPCredentials{SystemID: "carol", Password: "carol-pw"}},
	{ID: "dave", Addresses: map[string]string{"test": "dave"}, Prefer: []string{"test"}},
}

// env is a running fabric with the SMS gateway, a web inbox (gateway
// "web") and a test gateway ("test") for non-SMS senders.
type env struct {
	f       *fabrictest.Fabric
	gw      *sms.Gateway
	web     *inbox
	webKit  *kit.Kit
	test    *fabrictest.Inbox
	testKit *kit.Kit
	testRun *fabrictest.Running
	stop    func()
}

// newEnv starts the fabric and the SMS gateway; opts change the inboxes
// before their kits start.
func newEnv(t testing.TB, cfg sms.Config, opts ...func(*env)) *env {
	t.Helper()
	f := fabrictest.New(t)
	f.StartBroker(broker.Config{})
	f.PutProfiles(profiles...)
	e := &env{f: f, web: &inbox{Inbox: fabrictest.NewInbox()}, test: fabrictest.NewInbox()}
	for _, o := range opts {
		o(e)
	}
	e.webKit, _ = f.StartKit(e.web, kit.Config{Gateway: "web", Medium: "web", Accepts: []string{"text/*"}})
	e.testKit, e.testRun = f.StartKit(e.test, kit.Config{Gateway: "test", Medium: "test"})
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	gw, err := sms.New(cfg, f.Conn("sms"), f.Keyring("sms"), f.Log)
	if err != nil {
		t.Fatal(err)
	}
	e.gw = gw
	e.stop = fabrictest.Start(t, "sms gateway", gw.Run).Stop
	return e
}

func (e *env) addr() string { return e.gw.Addr().String() }

// webIDs returns the message ids in the web inbox, in arrival order.
func (e *env) webIDs() []string {
	e.web.mu.Lock()
	defer e.web.mu.Unlock()
	return slices.Clone(e.web.ids)
}

// inbox is a fabrictest.Inbox that remembers the order of arrival.
type inbox struct {
	*fabrictest.Inbox
	mu    sync.Mutex
	ids   []string
	count map[string]int
}

// deliveries returns how often a message id was delivered.
func (i *inbox) deliveries(id string) int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.count[id]
}

func (i *inbox) Deliver(ctx context.Context, d *kit.Delivery) (string, error) {
	st, err := i.Inbox.Deliver(ctx, d)
	if err == nil {
		i.mu.Lock()
		if i.count == nil {
			i.count = make(map[string]int)
		}
		i.count[d.Routed.IMI.MsgID]++
		if !slices.Contains(i.ids, d.Routed.IMI.MsgID) {
			i.ids = append(i.ids, d.Routed.IMI.MsgID)
		}
		i.mu.Unlock()
	}
	return st, err
}

// sendFrom sends a message from a test-gateway client, waiting for a route.
func (e *env) sendFrom(t testing.TB, client, to, text string) *kit.Result {
	t.Helper()
	var res *kit.Result
	var last error
	fabrictest.Eventually(t, 10*time.Second, "a route to "+to, func() bool {
		res, last = e.testKit.Send(context.Background(), &kit.Submission{
			From: schemas.Endpoint{Medium: "test", Address: client, Client: client}, To: to, Content: []byte(text)})
		return last == nil
	})
	return res
}

// esme is a small SMPP 3.4 application (ESME) on the pdu codec, for the
// tests: it sends requests and waits for their responses, answers
// deliver_sm (with Status) and enquire_link, and collects deliver_sm.
type esme struct {
	t    testing.TB
	conn net.Conn

	mu      sync.Mutex
	seq     uint32
	waiting map[uint32]chan pdu.PDU
	nacks   []*pdu.GenericNack
	status  pdu.Status // answers deliver_sm; default ESME_ROK
	refused int        // deliver_sm answered with another status

	Delivered chan *pdu.DeliverSM
	closed    chan struct{}
}

func dialESME(t testing.TB, addr string) *esme {
	t.Helper()
	return dialESMEFrom(t, addr, nil)
}

// dialESMEFrom is dialESME from the local address local (nil: any).
func dialESMEFrom(t testing.TB, addr string, local net.IP) *esme {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if local != nil {
		d.LocalAddr = &net.TCPAddr{IP: local}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	e := &esme{t: t, conn: c, waiting: make(map[uint32]chan pdu.PDU), Delivered: make(chan *pdu.DeliverSM, 100), closed: make(chan struct{})}
	t.Cleanup(func() { c.Close() })
	go e.read()
	return e
}

func (e *esme) read() {
	defer close(e.closed)
	r := pdu.NewReader(e.conn, 0)
	for {
		p, err := r.ReadPDU()
		if err != nil {
			var pe *pdu.Error
			if errors.As(err, &pe) && !pe.Fatal() {
				continue
			}
			return
		}
		h := p.Hdr()
		switch p := p.(type) {
		case *pdu.DeliverSM:
			e.mu.Lock()
			st := e.status
			if st != pdu.ESME_ROK {
				e.refused++
			}
			e.mu.Unlock()
			e.write(&pdu.DeliverSMResp{Header: pdu.Header{Status: st, Sequence: h.Sequence}})
			if st == pdu.ESME_ROK {
				e.Delivered <- p
			}
			continue
		case *pdu.EnquireLink:
			e.write(&pdu.EnquireLinkResp{Header: pdu.Header{Sequence: h.Sequence}})
			continue
		case *pdu.Unbind:
			e.write(&pdu.UnbindResp{Header: pdu.Header{Sequence: h.Sequence}})
			continue
		case *pdu.GenericNack:
			e.mu.Lock()
			e.nacks = append(e.nacks, p)
			e.mu.Unlock()
		}
		e.mu.Lock()
		ch := e.waiting[h.Sequence]
		delete(e.waiting, h.Sequence)
		e.mu.Unlock()
		if ch != nil {
			ch <- p
		}
	}
}

func (e *esme) write(p pdu.PDU) {
	b, err := pdu.Marshal(p)
	if err != nil {
		e.t.Errorf("marshal %s: %v", p.CommandID(), err)
		return
	}
	e.conn.Write(b)
}

// setStatus sets the status deliver_sm is answered with.
func (e *esme) setStatus(st pdu.Status) {
	e.mu.Lock()
	e.status = st
	e.mu.Unlock()
}

// refusals returns how many deliver_sm were answered with another status
// than ESME_ROK.
func (e *esme) refusals() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.refused
}

// writeRaw writes octets as they are (malformed PDUs).
func (e *esme) writeRaw(b []byte) { e.conn.Write(b) }

// call sends a request and returns its response.
func (e *esme) call(p pdu.PDU) pdu.PDU {
	e.t.Helper()
	ch := e.start(p)
	return e.wait(ch)
}

func (e *esme) start(p pdu.PDU) chan pdu.PDU {
	e.mu.Lock()
	e.seq++
	p.Hdr().Sequence = e.seq
	ch := make(chan pdu.PDU, 1)
	e.waiting[e.seq] = ch
	e.mu.Unlock()
	e.write(p)
	return ch
}

// expect registers a wait for the response to a raw request with seq.
func (e *esme) expect(seq uint32) chan pdu.PDU {
	ch := make(chan pdu.PDU, 1)
	e.mu.Lock()
	e.waiting[seq] = ch
	e.mu.Unlock()
	return ch
}

func (e *esme) wait(ch chan pdu.PDU) pdu.PDU {
	e.t.Helper()
	select {
	case r := <-ch:
		return r
	case <-e.closed:
		select {
		case r := <-ch: // answered just before the connection closed
			return r
		default:
		}
		e.t.Fatal("connection closed while waiting for a response")
	case <-time.After(15 * time.Second):
		e.t.Fatal("no response")
	}
	return nil
}

func (e *esme) bind(mode pdu.CommandID, user, pass string) pdu.Status {
	e.t.Helper()
	f := pdu.BindFields{SystemID: user, Password: pass, InterfaceVersion: pdu.InterfaceVersion34}
	var p pdu.PDU
	switch mode {
	case pdu.CmdBindTransmitter:
		p = &pdu.BindTransmitter{BindFields: f}
	case pdu.CmdBindReceiver:
		p = &pdu.BindReceiver{BindFields: f}
	default:
		p = &pdu.BindTransceiver{BindFields: f}
	}
	return e.call(p).Hdr().Status
}

func (e *esme) mustBind(mode pdu.CommandID, user, pass string) {
	e.t.Helper()
	if st := e.bind(mode, user, pass); st != pdu.ESME_ROK {
		e.t.Fatalf("bind %s: %s", user, st)
	}
}

func (e *esme) submit(m pdu.MessageFields) *pdu.SubmitSMResp {
	e.t.Helper()
	r, ok := e.call(&pdu.SubmitSM{MessageFields: m}).(*pdu.SubmitSMResp)
	if !ok {
		e.t.Fatalf("submit_sm answered with something else")
	}
	return r
}

func (e *esme) enquire() pdu.Status {
	e.t.Helper()
	return e.call(&pdu.EnquireLink{}).Hdr().Status
}

func (e *esme) unbind() {
	e.t.Helper()
	e.call(&pdu.Unbind{})
	e.conn.Close()
}

// next returns the next deliver_sm received.
func (e *esme) next(timeout time.Duration) *pdu.DeliverSM {
	e.t.Helper()
	select {
	case d := <-e.Delivered:
		return d
	case <-time.After(timeout):
		e.t.Fatal("no deliver_sm")
	}
	return nil
}

// textMsg returns submit_sm fields for a GSM 7-bit text (unpacked septets).
func textMsg(src, dst, text string, rd uint8) pdu.MessageFields {
	sm, err := gsm.EncodeSeptets(text)
	if err != nil {
		panic(err)
	}
	return pdu.MessageFields{SourceAddrTON: 1, SourceAddrNPI: 1, SourceAddr: src, DestAddrTON: 1, DestAddrNPI: 1,
		DestinationAddr: dst, RegisteredDelivery: rd, ShortMessage: sm}
}

// header builds a raw PDU header.
func header(length, id, status, seq uint32) []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint32(b[0:], length)
	binary.BigEndian.PutUint32(b[4:], id)
	binary.BigEndian.PutUint32(b[8:], status)
	binary.BigEndian.PutUint32(b[12:], seq)
	return b
}

// needPeer skips a test whose peer program is missing, or fails it in CI.
func needPeer(t *testing.T, what string, ok bool) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is missing (CI is set: .ci/deps.d/sms.sh installs it)", what)
	}
	t.Skipf("SKIPPED LOUDLY: %s is missing; run .ci/deps.d/sms.sh (tests fail instead when CI is set)", what)
}
