package email

import (
	"context"
	"net/mail"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/uims/uims/gateways/email/mailmsg"
)

// A report whose Message-ID the gateway cannot look up now (its store
// fails) is answered 451, so the reporting MTA sends it again, instead of
// being accepted and dropped as a report about a mail that is not ours
// (issue 13 item 4).
func TestReportLookupStoreFailureIsTemporary(t *testing.T) {
	s := startSystem(t, Config{})
	bounce, err := mailmsg.ComposeDSN(mailmsg.DSN{ReportingMTA: "mx.outside.test", To: mail.Address{Address: "postmaster@example.test"},
		OriginalMessageID: "0123456789abcdef0123456789abcdef@example.test",
		OriginalHeaders:   []byte("Message-ID: <0123456789abcdef0123456789abcdef@example.test>\r\nSubject: hello\r\n\r\n"),
		Recipients: []mailmsg.DSNRecipient{{FinalRecipient: "dave@outside.test", Action: mailmsg.ActionFailed, Status: "5.1.1",
			DiagnosticCode: "smtp; 550 5.1.1 no such user"}}})
	if err != nil {
		t.Fatal(err)
	}
	// Not about a mail of ours: accepted and discarded.
	if code, msg := dialSMTP(t, s.smtp).send("", "postmaster@example.test", string(bounce)); code != 250 {
		t.Fatalf("report about an unknown mail: %d %s", code, msg)
	}

	js, err := jetstream.New(s.f.Conn("admin"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := js.DeleteKeyValue(ctx, Bucket); err != nil {
		t.Fatal(err)
	}
	code, msg := dialSMTP(t, s.smtp).send("", "postmaster@example.test", string(bounce))
	if code/100 != 4 {
		t.Fatalf("report while the store fails: %d %s, want 4xx", code, msg)
	}
}
