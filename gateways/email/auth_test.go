package email

import (
	"encoding/base64"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/schemas"
)

// SMTP AUTH PLAIN never puts the password on NATS (PROTOCOL.md §6.11): a
// wiretap on every subject sees only schemas.CredentialHash on
// uims.broker.client, for the right password (235) and a wrong one (535).
func TestAuthPasswordNeverCrossesNATSInClear(t *testing.T) {
	s := startSystem(t, Config{})
	const password = "smtp-Kx7-tapped-pw"
	s.f.PutProfiles(&schemas.Profile{ID: "tapped", Addresses: map[string]string{"web": "tapped"},
		SMTP: &schemas.SMTPCredentials{Username: "Tapped", Password: password}})

	var mu sync.Mutex
	var msgs []*nats.Msg
	nc := s.f.Conn("wiretap")
	if _, err := nc.Subscribe(">", func(m *nats.Msg) { mu.Lock(); msgs = append(msgs, m); mu.Unlock() }); err != nil {
		t.Fatal(err)
	}
	nc.Flush()

	plain := func(user, pass string) string {
		return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
	}
	c := dialSMTP(t, s.smtp)
	c.cmd(535, "AUTH PLAIN %s", plain("tapped", password+"-wrong"))
	c.cmd(235, "AUTH PLAIN %s", plain("TAPPED", password)) // usernames without case

	hash := schemas.CredentialHash(schemas.CredentialSMTP, "tapped", password)
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
		if strings.Contains(all, password) {
			t.Errorf("the clear SMTP password crossed NATS on %s", m.Subject)
		}
		sawHash = sawHash || (m.Subject == schemas.SubjectBrokerClient && strings.Contains(all, hash))
	}
	if !sawHash {
		t.Errorf("no client query carried the password's hash %s", hash)
	}
}
