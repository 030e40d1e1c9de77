package sms_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/uims/uims/gateways/sms"
	"github.com/uims/uims/gateways/sms/pdu"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/schemas"
)

// An SMPP bind never puts the password on NATS (PROTOCOL.md §6.11): a
// wiretap on every subject sees only schemas.CredentialHash on
// uims.broker.client, for a wrong password (ESME_RBINDFAIL) and the right one.
func TestBindPasswordNeverCrossesNATSInClear(t *testing.T) {
	e := newEnv(t, sms.Config{})
	const password = "Qz7tap8x" // SMPP passwords are at most 8 octets
	e.f.PutProfiles(&schemas.Profile{ID: "tapper", Addresses: map[string]string{"sms": "+15550199"},
		SMPP: &schemas.SMPPCredentials{SystemID: "tapper", Password: password}})

	var mu sync.Mutex
	var msgs []*nats.Msg
	nc := e.f.Conn("wiretap")
	if _, err := nc.Subscribe(">", func(m *nats.Msg) { mu.Lock(); msgs = append(msgs, m); mu.Unlock() }); err != nil {
		t.Fatal(err)
	}
	nc.Flush()

	c := dialESME(t, e.addr())
	if st := c.bind(pdu.CmdBindTransceiver, "tapper", password[:7]); st != pdu.ESME_RBINDFAIL {
		t.Fatalf("wrong password: %s, want ESME_RBINDFAIL", st)
	}
	c.mustBind(pdu.CmdBindTransceiver, "tapper", password)

	hash := schemas.CredentialHash(schemas.CredentialSMPP, "tapper", password)
	fabrictest.Eventually(t, 5*time.Second, "two client queries", func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, m := range msgs {
			if m.Subject == schemas.SubjectBrokerClient {
				n++
			}
		}
		return n >= 2
	})
	mu.Lock()
	defer mu.Unlock()
	sawHash := false
	for _, m := range msgs {
		all := string(m.Data)
		for k, vs := range m.Header {
			all += "\n" + k + ": " + strings.Join(vs, ", ")
		}
		if strings.Contains(all, password[:7]) {
			t.Errorf("the clear SMPP password crossed NATS on %s", m.Subject)
		}
		sawHash = sawHash || (m.Subject == schemas.SubjectBrokerClient && strings.Contains(all, hash))
	}
	if !sawHash {
		t.Errorf("no client query carried the password's hash %s", hash)
	}
}
