package sms_test

import (
	"strings"
	"sync"
	"testing"

	"github.com/uims/uims/gateways/kit/kittest"
	"github.com/uims/uims/gateways/sms"
	"github.com/uims/uims/gateways/sms/gsm"
	"github.com/uims/uims/gateways/sms/pdu"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/schemas"
)

// appProbe is the SMS recipient side of the conformance suite: an SMPP
// application (the test ESME of helpers_test.go) bound as receiver to the
// gateway's SMPP server with the recipient's credentials. It reassembles
// concatenated deliver_sm (UDH, SMPP 3.4 §5.2.12 esm_class UDHI) and
// decodes them by data_coding.
//
// A deliver_sm carries no UIMS message id, so the probe is a
// kittest.Expecter: it counts the arrivals of the text sent under an id.
type appProbe struct {
	c *esme

	mu       sync.Mutex
	expected map[string]string // message id -> text
	arrived  map[string]int    // text -> arrivals
	parts    map[uint16][][]byte
}

func (p *appProbe) collect() {
	for {
		select {
		case d := <-p.c.Delivered:
			p.add(d)
		case <-p.c.closed:
			return
		}
	}
}

func (p *appProbe) add(d *pdu.DeliverSM) {
	p.mu.Lock()
	defer p.mu.Unlock()
	payload := d.ShortMessage
	if d.ESMClass&pdu.ESMClassUDHI != 0 {
		u, rest, err := gsm.ParseUDH(d.ShortMessage)
		if err != nil {
			p.c.t.Errorf("deliver_sm with a bad UDH: %v", err)
			return
		}
		if u.Concat.Total > 1 {
			ref := u.Concat.Ref
			if p.parts[ref] == nil {
				p.parts[ref] = make([][]byte, u.Concat.Total)
			}
			p.parts[ref][u.Concat.Seq-1] = rest
			var all []byte
			for _, part := range p.parts[ref] {
				if part == nil {
					return // more parts to come
				}
				all = append(all, part...)
			}
			delete(p.parts, ref)
			payload = all
		} else {
			payload = rest
		}
	}
	text, err := gsm.Decode(gsm.Coding(d.DataCoding), payload)
	if err != nil {
		p.c.t.Errorf("deliver_sm (data_coding %d) does not decode: %v", d.DataCoding, err)
		return
	}
	// An SMS has no subject field: the gateway puts it on the first line.
	text, ok := strings.CutPrefix(text, kittest.Subject+"\n")
	if !ok {
		p.c.t.Errorf("deliver_sm without the subject line: %q", text)
	}
	p.arrived[text]++
}

// Expect implements kittest.Expecter.
func (p *appProbe) Expect(id, text string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expected[id] = text
}

// Received implements kittest.Probe.
func (p *appProbe) Received(t testing.TB, id string) (int, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	text, ok := p.expected[id]
	if !ok || p.arrived[text] == 0 {
		return 0, ""
	}
	return p.arrived[text], text
}

// Refuse, Accept and Refused implement kittest.Refuser: the application
// answers deliver_sm with ESME_RX_T_APPN (temporary) or ESME_RX_P_APPN
// (permanent, SMPP 3.4 §5.1.3).
func (p *appProbe) Refuse(t testing.TB, temporary bool) {
	if temporary {
		p.c.setStatus(pdu.ESME_RX_T_APPN)
	} else {
		p.c.setStatus(pdu.ESME_RX_P_APPN)
	}
}

func (p *appProbe) Accept(t testing.TB) { p.c.setStatus(pdu.ESME_ROK) }

func (p *appProbe) Refused(t testing.TB) int { return p.c.refusals() }

// The SMS gateway passes the kit's conformance suite, delivering to an
// SMPP application bound to its SMPP server.
func TestSMSConformance(t *testing.T) {
	kittest.Run(t, kittest.Adapter{Gateway: "sms", Medium: "sms", Address: "+15550199",
		Features: kittest.Features{
			// Not Immediate: a message for an application waits in its
			// JetStream queue and is reported transferred; the
			// deliver_sm_resp makes it delivered.
			//
			// MaxText: Config.MaxParts (default 10) concatenated parts of
			// 153 GSM 7-bit characters, less the subject on the first line
			// (kittest.Subject and a line feed); a longer text is shortened
			// to one SMS pointing to the web inbox, so LargeContent is off.
			MaxText: 10*153 - len(kittest.Subject) - 1,
			// Not ASCIIOnly: what GSM 03.38 cannot carry goes as UCS-2.
			//
			// Refusal: ESME_RX_P_APPN fails the message with the status
			// as the reason (queue.go handle).
			Refusal: true,
			// Retry: ESME_RX_T_APPN is retried from the queue 5 s later.
			Retry: true,
		},
		Profile: func(p *schemas.Profile) {
			p.SMPP = &schemas.SMPPCredentials{SystemID: "suite", Password: "suite-pw"}
		},
		Start: func(t *testing.T, f *fabrictest.Fabric) kittest.Probe {
			gw, err := sms.New(sms.Config{Addr: "127.0.0.1:0"}, f.Conn("sms"), f.Keyring("sms"), f.Log)
			if err != nil {
				t.Fatal(err)
			}
			fabrictest.Start(t, "sms gateway", gw.Run)
			c := dialESME(t, gw.Addr().String())
			c.mustBind(pdu.CmdBindReceiver, "suite", "suite-pw")
			p := &appProbe{c: c, expected: map[string]string{}, arrived: map[string]int{}, parts: map[uint16][][]byte{}}
			go p.collect()
			return p
		}})
}
