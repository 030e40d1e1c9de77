package email

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/uims/uims/gateways/sms"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/schemas"
)

// Temporary and permanent told apart over SMTP (issue 15), with swaks, a
// real SMS gateway that has no SMS centre, and mailpit as the relay:
//   - erin@example.test (erin takes SMS and is no SMPP application) is
//     550 5.4.4 UNREACHABLE with the reason, so the MTA bounces at once;
//   - gina@example.test (gina takes fax, no fax gateway runs) is
//     451 4.4.4 NO_ROUTE, so the MTA keeps it and retries;
//   - a number no client owns, submitted by alice, is 550 5.4.4;
//   - bob and erin in one message: 250 for bob, and a DSN to the outside
//     sender (through the relay) with Status 5.4.4 for erin;
//   - with the SMS gateway stopped, the number is 451 4.4.4 NO_ROUTE.
func TestSMTPRepliesByClass(t *testing.T) {
	mp := startMailpit(t)
	s := startSystem(t, Config{Relay: mp.SMTP})
	s.f.PutProfiles(
		&schemas.Profile{ID: "erin", Addresses: map[string]string{"sms": "+15550199"}, Prefer: []string{"sms"}},
		&schemas.Profile{ID: "gina", Addresses: map[string]string{"fax": "+15550197"}, Prefer: []string{"fax"}},
	)
	sg, err := sms.New(sms.Config{Addr: "127.0.0.1:0"}, s.f.Conn("sms"), s.f.Keyring("sms"), s.f.Log)
	if err != nil {
		t.Fatal(err)
	}
	smsRun := fabrictest.Start(t, "sms gateway", sg.Run)
	outside := []string{"--server", s.smtp, "--from", "dave@outside.test", "--header", "Subject: classes"}
	auth := []string{"--server", s.smtp, "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "alice-pw", "--from", "alice@example.test"}

	var out string
	var code int
	fabrictest.Eventually(t, 10*time.Second, "the SMS gateway known to the brokers", func() bool {
		out, code = swaks(t, append(outside, "--to", "erin@example.test")...)
		return !strings.Contains(out, "<** 451")
	})
	if code == 0 || !strings.Contains(out, "<** 550 5.4.4") || !strings.Contains(out, "(UNREACHABLE)") ||
		!strings.Contains(out, "no SMS centre configured") {
		t.Fatalf("to erin without an SMS centre: want 550 5.4.4 UNREACHABLE (%d):\n%s", code, out)
	}
	out, code = swaks(t, append(outside, "--to", "gina@example.test")...)
	if code == 0 || !strings.Contains(out, "<** 451 4.4.4") || !strings.Contains(out, "(NO_ROUTE), try again later") {
		t.Fatalf("to gina, no fax gateway: want 451 4.4.4 NO_ROUTE (%d):\n%s", code, out)
	}
	out, code = swaks(t, append(auth, "--to", "15550123@example.test")...)
	if code == 0 || !strings.Contains(out, "<** 550 5.4.4") || !strings.Contains(out, "(UNREACHABLE)") {
		t.Fatalf("to a number no client owns: want 550 5.4.4 UNREACHABLE (%d):\n%s", code, out)
	}

	out, code = swaks(t, append(outside, "--to", "bob@example.test,erin@example.test", "--header", "Subject: to bob and erin")...)
	if code != 0 || !strings.Contains(out, "<-  250") {
		t.Fatalf("to bob and erin: want 250 (%d):\n%s", code, out)
	}
	dsn := mp.raw(mp.waitFor("to:dave@outside.test", 20*time.Second).ID)
	for _, want := range []string{"Final-Recipient: rfc822; erin@example.test", "Action: failed", "Status: 5.4.4", "UNREACHABLE"} {
		if !strings.Contains(dsn, want) {
			t.Fatalf("the DSN to dave has no %q:\n%s", want, dsn)
		}
	}

	smsRun.Stop()
	fabrictest.Eventually(t, 10*time.Second, "451 once the SMS gateway is gone", func() bool {
		out, code = swaks(t, append(auth, "--to", "15550123@example.test")...)
		return strings.Contains(out, "<** 451 4.4.4") && strings.Contains(out, "(NO_ROUTE)")
	})
}

// Every code answers by its class: a temporary one 451 4.x.x, a permanent
// one 5xx 5.x.x; a DSN's status is always 5.x.x with the same detail.
func TestSMTPStatusByClass(t *testing.T) {
	for _, c := range schemas.Codes() {
		if c == schemas.CodeOK {
			continue
		}
		n, e := smtpStatus(c)
		r := sendReply("x@example.test", schemas.Errorf(c, nil, "detail"))
		switch {
		case r.Code != n || r.EnhancedCode != e:
			t.Errorf("%s: sendReply %d %v, smtpStatus %d %v", c, r.Code, r.EnhancedCode, n, e)
		case c.Retryable() && (n != 451 || e[0] != 4):
			t.Errorf("%s (temporary): %d %v, want 451 4.x.x", c, n, e)
		case c.Permanent() && (n/100 != 5 || e[0] != 5):
			t.Errorf("%s (permanent): %d %v, want 5xx 5.x.x", c, n, e)
		}
		if d := dsnStatus(c.String()); !strings.HasPrefix(d, "5.") || d[1:] != enhanced(e)[1:] {
			t.Errorf("%s: DSN status %s, reply %s", c, d, enhanced(e))
		}
	}
	for c, want := range map[schemas.Code]string{schemas.CodeUnreachable: "550 5.4.4", schemas.CodeNoRoute: "451 4.4.4",
		schemas.CodeUnknownRecipient: "550 5.1.1", schemas.CodeBusy: "451 4.3.0", schemas.CodeTooLarge: "552 5.3.4"} {
		if n, e := smtpStatus(c); fmt.Sprintf("%d %s", n, enhanced(e)) != want {
			t.Errorf("%s: %d %s, want %s", c, n, enhanced(e), want)
		}
	}
}
