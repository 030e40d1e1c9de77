package mailmsg

import (
	"bytes"
	"errors"
	"net/mail"
	"strings"
	"testing"
	"time"
)

const origHeaders = "Return-Path: <alice@example.org>\r\nFrom: Alice <alice@example.org>\r\nTo: nobody@example.net\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nMessage-ID: <orig-42@example.org>\r\n\r\nbody that must not be returned\r\n"

func TestComposeDSNParseDSN(t *testing.T) {
	arrival := time.Date(2024, 5, 1, 8, 0, 0, 0, time.UTC)
	d := DSN{
		ReportingMTA:       "gw.uims.example",
		To:                 alice,
		OriginalMessageID:  "orig-42@example.org",
		OriginalEnvelopeID: "env+42=x",
		ArrivalDate:        arrival,
		Recipients: []DSNRecipient{
			{FinalRecipient: "nobody@example.net", OriginalRecipient: "Nobody@example.net", Action: ActionFailed,
				Status: "5.1.1", DiagnosticCode: "550 5.1.1 <nobody@example.net>: Recipient address rejected",
				RemoteMTA: "mx.example.net", LastAttemptDate: arrival.Add(time.Minute)},
			{FinalRecipient: "slow@example.net", Action: ActionDelayed, DiagnosticCode: "smtp; 451 4.4.1 try later"},
			{FinalRecipient: "ok@example.net", Action: ActionDelivered},
		},
		OriginalHeaders: []byte(origHeaders),
	}
	out, err := ComposeDSN(d)
	if err != nil {
		t.Fatal(err)
	}
	checkWire(t, out)
	for _, want := range []string{
		"Auto-Submitted: auto-replied\r\n",
		"Content-Type: multipart/report;",
		"report-type=delivery-status",
		"Content-Type: message/delivery-status\r\n",
		"Content-Type: text/rfc822-headers\r\n",
		"Reporting-MTA: dns; gw.uims.example\r\n",
		"Original-Envelope-Id: env+2B42+3Dx\r\n",
		"Final-Recipient: rfc822; nobody@example.net\r\n",
		"Action: failed\r\nStatus: 5.1.1\r\n",
		"Diagnostic-Code: smtp; 550 5.1.1",
		"Status: 4.0.0\r\n",
		"Status: 2.0.0\r\n",
		"In-Reply-To: <orig-42@example.org>\r\n",
		"From: \"Mail Delivery System\" <MAILER-DAEMON@gw.uims.example>\r\n",
		"Subject: Delivery Status Notification (Failure)\r\n",
	} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("DSN lacks %q", want)
		}
	}
	if bytes.Contains(out, []byte("body that must not be returned")) {
		t.Errorf("DSN returned the original body")
	}

	m, err := Extract(bytes.NewReader(out), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(m.ContentType, "multipart/report;") || m.AutoSubmitted != "auto-replied" || m.TextType != "text/plain" {
		t.Errorf("extracted DSN: %q %q %q", m.ContentType, m.AutoSubmitted, m.TextType)
	}
	checkStdlibMultipart(t, m)

	r, err := ParseDSN(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if r.OriginalMessageID != "orig-42@example.org" || r.OriginalEnvelopeID != "env+42=x" || r.ReportingMTA != "gw.uims.example" {
		t.Errorf("report = %+v", r)
	}
	if r.OriginalSubject != "Grüße" || !r.ArrivalDate.Equal(arrival) || !strings.Contains(r.Text, "could not be delivered") {
		t.Errorf("report = %+v", r)
	}
	if len(r.Recipients) != 3 {
		t.Fatalf("recipients = %+v", r.Recipients)
	}
	r0 := r.Recipients[0]
	if r0.FinalRecipient != "nobody@example.net" || r0.OriginalRecipient != "Nobody@example.net" || r0.Action != ActionFailed ||
		r0.Status != "5.1.1" || !strings.HasPrefix(r0.DiagnosticCode, "smtp; 550 5.1.1") || r0.RemoteMTA != "mx.example.net" ||
		!r0.LastAttempt.Equal(arrival.Add(time.Minute)) {
		t.Errorf("recipient 0 = %+v", r0)
	}
	if r.Recipients[1].Action != ActionDelayed || r.Recipients[1].Status != "4.0.0" || r.Recipients[2].Status != "2.0.0" {
		t.Errorf("recipients = %+v", r.Recipients)
	}
}

func TestComposeDSNGlobalAndValidation(t *testing.T) {
	out, err := ComposeDSN(DSN{ReportingMTA: "gw.example", To: alice,
		Recipients: []DSNRecipient{{FinalRecipient: "jürgen@example.net", Action: ActionFailed, Status: "5.1.1"}}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, []byte("message/global-delivery-status")) || !bytes.Contains(out, []byte("Final-Recipient: utf-8; jürgen@example.net")) {
		t.Errorf("global DSN:\n%s", out)
	}
	r, err := ParseDSN(bytes.NewReader(out))
	if err != nil || r.Recipients[0].FinalRecipient != "jürgen@example.net" {
		t.Fatalf("ParseDSN global: %v %+v", err, r)
	}
	good := DSNRecipient{FinalRecipient: "a@example.net", Action: ActionFailed}
	tests := []struct {
		name string
		d    DSN
		want error
	}{
		{"no recipients", DSN{ReportingMTA: "gw.example", To: alice}, ErrInvalidHeader},
		{"bad mta", DSN{ReportingMTA: "gw.example\r\nBcc: x", To: alice, Recipients: []DSNRecipient{good}}, ErrHeaderInjection},
		{"diagnostic injection", DSN{ReportingMTA: "gw.example", To: alice, Recipients: []DSNRecipient{
			{FinalRecipient: "a@example.net", Action: ActionFailed, DiagnosticCode: "550 no\r\nX: y"}}}, ErrHeaderInjection},
		{"status class", DSN{ReportingMTA: "gw.example", To: alice, Recipients: []DSNRecipient{
			{FinalRecipient: "a@example.net", Action: ActionDelivered, Status: "5.0.0"}}}, ErrInvalidHeader},
		{"bad action", DSN{ReportingMTA: "gw.example", To: alice, Recipients: []DSNRecipient{
			{FinalRecipient: "a@example.net", Action: "exploded"}}}, ErrInvalidHeader},
		{"no to", DSN{ReportingMTA: "gw.example", Recipients: []DSNRecipient{good}}, ErrInvalidHeader},
		{"subject injection", DSN{ReportingMTA: "gw.example", To: alice, Subject: "x\ny", Recipients: []DSNRecipient{good}}, ErrHeaderInjection},
	}
	for _, tc := range tests {
		if _, err := ComposeDSN(tc.d); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
}

// A bounce as produced by Postfix, with LF line endings and the original
// message returned as message/rfc822.
const postfixBounce = `Return-Path: <>
From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: alice@example.org
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
	boundary="8F4C73E0A8.1714550400/mx.example.net"
Message-Id: <20240501080000.8F4C73E0A8@mx.example.net>

This is a MIME-encapsulated message.

--8F4C73E0A8.1714550400/mx.example.net
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.net.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

--8F4C73E0A8.1714550400/mx.example.net
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net
X-Postfix-Queue-ID: 8F4C73E0A8
X-Postfix-Sender: rfc822; alice@example.org
Arrival-Date: Wed,  1 May 2024 07:59:58 +0000 (UTC)

Final-Recipient: rfc822; nobody@example.net
Original-Recipient: rfc822;nobody@example.net
Action: failed
Status: 5.1.1
Remote-MTA: dns; mail.example.net
Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.net>: Recipient address
    rejected: User unknown in virtual mailbox table

--8F4C73E0A8.1714550400/mx.example.net
Content-Description: Undelivered Message
Content-Type: message/rfc822

From: Alice <alice@example.org>
To: nobody@example.net
Subject: hello
Message-ID: <orig-7@example.org>

hello
--8F4C73E0A8.1714550400/mx.example.net--
`

func TestParseDSNPostfix(t *testing.T) {
	r, err := ParseDSN(strings.NewReader(postfixBounce))
	if err != nil {
		t.Fatal(err)
	}
	if r.OriginalMessageID != "orig-7@example.org" || r.OriginalSubject != "hello" || r.ReportingMTA != "mx.example.net" {
		t.Errorf("report = %+v", r)
	}
	if r.MessageID != "20240501080000.8F4C73E0A8@mx.example.net" || r.ArrivalDate.IsZero() {
		t.Errorf("report = %+v", r)
	}
	if len(r.Recipients) != 1 {
		t.Fatalf("recipients = %+v", r.Recipients)
	}
	rc := r.Recipients[0]
	if rc.FinalRecipient != "nobody@example.net" || rc.Action != ActionFailed || rc.Status != "5.1.1" ||
		rc.DiagnosticCode != "smtp; 550 5.1.1 <nobody@example.net>: Recipient address rejected: User unknown in virtual mailbox table" {
		t.Errorf("recipient = %+v", rc)
	}
}

func TestParseDSNFallbacks(t *testing.T) {
	// No returned headers: the ENVID stands in for the Message-ID.
	noHeaders := strings.Replace(postfixBounce, "Arrival-Date:", "Original-Envelope-Id: uims+2Dmsg-9@example.org\nArrival-Date:", 1)
	noHeaders = noHeaders[:strings.Index(noHeaders, "--8F4C73E0A8.1714550400/mx.example.net\nContent-Description: Undelivered")] +
		"--8F4C73E0A8.1714550400/mx.example.net--\n"
	r, err := ParseDSN(strings.NewReader(noHeaders))
	if err != nil {
		t.Fatal(err)
	}
	if r.OriginalEnvelopeID != "uims-msg-9@example.org" || r.OriginalMessageID != "uims-msg-9@example.org" {
		t.Errorf("report = %+v", r)
	}
	// Not a DSN.
	if _, err := ParseDSN(strings.NewReader(crlf(stdHeader + "\nhello\n"))); !errors.Is(err, ErrNotDSN) {
		t.Errorf("plain mail: %v", err)
	}
	mdn, err := ComposeMDN(MDN{From: bob, To: alice, OriginalMessageID: "x@example.org"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseDSN(bytes.NewReader(mdn)); !errors.Is(err, ErrNotDSN) {
		t.Errorf("MDN: %v", err)
	}
	// A report without the status part is malformed.
	broken := strings.Replace(postfixBounce, "Content-Type: message/delivery-status", "Content-Type: text/plain", 1)
	if _, err := ParseDSN(strings.NewReader(broken)); !errors.Is(err, ErrMalformed) {
		t.Errorf("no status part: %v", err)
	}
}

func TestComposeMDN(t *testing.T) {
	out, err := ComposeMDN(MDN{
		ReportingUA:       "gw.uims.example; UIMS",
		From:              bob,
		To:                alice,
		OriginalMessageID: "orig-42@example.org",
		OriginalSubject:   "Grüße",
		OriginalHeaders:   []byte(origHeaders),
	})
	if err != nil {
		t.Fatal(err)
	}
	checkWire(t, out)
	for _, want := range []string{
		"Auto-Submitted: auto-replied\r\n",
		"report-type=disposition-notification",
		"Content-Type: message/disposition-notification\r\n",
		"Reporting-UA: gw.uims.example; UIMS\r\n",
		"Final-Recipient: rfc822; bob@example.net\r\n",
		"Original-Message-ID: <orig-42@example.org>\r\n",
		"Disposition: manual-action/MDN-sent-manually; displayed\r\n",
		"In-Reply-To: <orig-42@example.org>\r\n",
		"Content-Type: text/rfc822-headers\r\n",
	} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("MDN lacks %q", want)
		}
	}
	m, err := Extract(bytes.NewReader(out), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "Read: Grüße" || !strings.Contains(m.Text, "displayed") || len(m.Attachments) != 2 {
		t.Errorf("extracted MDN: %q %q %+v", m.Subject, m.Text, m.Attachments)
	}
	checkStdlibMultipart(t, m)
	for _, bad := range []MDN{
		{From: bob, To: alice, OriginalSubject: "x\r\nBcc: y"},
		{From: bob, To: alice, ReportingUA: "ua\n"},
		{From: bob, To: alice, OriginalMessageID: "a@b\r\n"},
	} {
		if _, err := ComposeMDN(bad); !errors.Is(err, ErrHeaderInjection) {
			t.Errorf("MDN %+v: %v", bad, err)
		}
	}
	if _, err := ComposeMDN(MDN{From: bob}); !errors.Is(err, ErrInvalidHeader) {
		t.Errorf("MDN without To: %v", err)
	}
}

func TestDSNFromExtractedHeaders(t *testing.T) {
	// The raw header of an extracted message can be returned in a DSN and
	// correlated again.
	m, err := Extract(strings.NewReader(crlf(stdHeader+"\nbody\n")), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	out, err := ComposeDSN(DSN{ReportingMTA: "gw.example", To: m.From, OriginalMessageID: m.MessageID,
		OriginalHeaders: m.RawHeader, Recipients: []DSNRecipient{{FinalRecipient: m.To[0].Address, Action: ActionFailed}}})
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseDSN(bytes.NewReader(out))
	if err != nil || r.OriginalMessageID != m.MessageID || r.OriginalSubject != m.Subject {
		t.Fatalf("%v %+v", err, r)
	}
	_ = mail.Address{}
}
