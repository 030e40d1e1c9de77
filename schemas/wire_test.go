package schemas_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	json "github.com/goccy/go-json"
	"github.com/nats-io/nats.go"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/internal/tracing"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/processor"
	"github.com/uims/uims/schemas"
)

// TestWireBodies runs a fabric (a broker, a processor, an originator in
// fast and one in strict mode, two destinations) through every step of
// PROTOCOL.md §6, records every message on NATS, and checks each body, and
// each receipt inside a header, against its JSON Schema: the bodies the
// components really send, not ones written for the test. Every schema but
// the administrator's profile must have been met.
func TestWireBodies(t *testing.T) {
	f := fabrictest.New(t)
	var mu sync.Mutex
	var seen []*nats.Msg
	sniffer := f.Conn("sniffer")
	sub, err := sniffer.Subscribe(">", func(m *nats.Msg) {
		mu.Lock()
		seen = append(seen, m)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	sub.SetPendingLimits(-1, -1)
	sniffer.Flush()

	f.StartBroker(broker.Config{Deadline: 3 * time.Second, Grace: 300 * time.Millisecond, SweepInterval: 50 * time.Millisecond})
	f.PutProfiles(&schemas.Profile{ID: "alice", Token: "alice-token", Quota: 1000, Addresses: map[string]string{"test": "alice"}},
		&schemas.Profile{ID: "bob", Name: "Bob", Addresses: map[string]string{"web": "bob"}, Prefer: []string{"web"}},
		&schemas.Profile{ID: "carol", Addresses: map[string]string{"sms": "+15550199"}, Prefer: []string{"sms"}})
	p, err := processor.New(processor.Config{Conversions: []processor.Conversion{processor.HTMLToText(1 << 16)}}, f.Conn("proc"), f.Keyring("proc"), f.Log)
	if err != nil {
		t.Fatal(err)
	}
	fabrictest.Start(t, "processor", p.Run)
	fast, _ := f.StartKit(fabrictest.NewInbox(), kit.Config{Gateway: "test", Medium: "test"})
	strict, _ := f.StartKit(fabrictest.NewInbox(), kit.Config{Gateway: "email", Medium: "email", Strict: true})
	bobs := fabrictest.NewInbox()
	dg, _ := f.StartKit(bobs, kit.Config{Gateway: "peer", Medium: "web", Accepts: []string{"text/plain"}})
	down := fabrictest.NewInbox()
	down.Fail = schemas.Errorf(schemas.CodeBusy, nil, "the centre does not answer")
	f.StartKit(down, kit.Config{Gateway: "sms", Medium: "sms"})
	ctx := context.Background()

	send := func(k *kit.Kit, s *kit.Submission) *kit.Result {
		var res *kit.Result
		fabrictest.Eventually(t, 10*time.Second, "a route for "+s.To, func() bool {
			var err error
			res, err = k.Send(ctx, s)
			return err == nil
		})
		return res
	}
	// fast: a relayed receipt; then a read receipt as a notification
	plain := send(fast, &kit.Submission{From: schemas.Endpoint{Medium: "test", Address: "alice", Client: "alice"}, To: "bob",
		Subject: "hello", Content: []byte("hello bob"), Meta: map[string]string{"test.note": "x"}})
	// strict, through the processor: logins, route-ack, conversion report
	send(strict, &kit.Submission{From: schemas.Endpoint{Medium: "email", Address: "someone@outside.test"}, To: "bob",
		Type: "text/html; charset=utf-8", Content: []byte("<p>Hi <b>Bob</b></p>")})
	if err := dg.Ack(ctx, bobs.Get(plain.MsgID).Ref, schemas.StatusRead, "", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := fast.Query(ctx, plain.MsgID); err != nil {
		t.Fatal(err)
	}
	if _, err := fast.Client(ctx, schemas.ClientQuery{Kind: schemas.ClientByAddress, Medium: "web", User: "bob"}); err != nil {
		t.Fatal(err)
	}
	if _, err := fast.Usage(ctx, schemas.UsageQuery{Kind: schemas.CredentialToken, Hash: schemas.TokenSHA256("alice-token"), Days: 3}); err != nil {
		t.Fatal(err)
	}
	// a destination that cannot take it: the deadline check and the failure notification
	var failed string
	fabrictest.Eventually(t, 10*time.Second, "a transfer refused by the SMS destination", func() bool {
		s := &kit.Submission{From: schemas.Endpoint{Medium: "test", Address: "alice", Client: "alice"}, To: "carol", Content: []byte("hi")}
		_, err := fast.Send(ctx, s)
		failed = s.MsgID
		return kit.IsCode(err, schemas.CodeBusy)
	})
	fabrictest.Eventually(t, 15*time.Second, "the deadline's failure", func() bool {
		st, err := fast.Query(ctx, failed)
		return err == nil && st.State == schemas.StatusFailed
	})
	time.Sleep(200 * time.Millisecond) // the notification and the last trace batches
	sniffer.Flush()

	mu.Lock()
	msgs := append([]*nats.Msg(nil), seen...)
	mu.Unlock()
	checked := check(t, msgs)
	for name := range documents {
		if checked[name] == 0 && name != "profile" {
			t.Errorf("no %s body met on the wire", name)
		}
	}
	t.Logf("bodies checked per schema: %v", checked)
}

// check validates the bodies of msgs; it returns how many it checked per schema.
func check(t *testing.T, msgs []*nats.Msg) map[string]int {
	compiled := map[string]func([]byte) error{}
	for name := range documents {
		s := compile(t, name)
		compiled[name] = func(b []byte) error { return validate(s, b) }
	}
	checked := map[string]int{}
	ok := func(name string, m *nats.Msg, b []byte) {
		checked[name]++
		if err := compiled[name](b); err != nil {
			t.Errorf("%s body on %s: %v\n%s", name, m.Subject, err, b)
		}
	}
	requests := map[string]string{} // reply subject → request subject
	for _, m := range msgs {
		if m.Reply != "" {
			requests[m.Reply] = m.Subject
		}
	}
	for _, m := range msgs {
		h := map[string][]string(m.Header)
		get := func(k string) string {
			if v := h[k]; len(v) > 0 {
				return v[0]
			}
			return ""
		}
		if r := get(miap.HdrReceipt); r != "" {
			raw, err := miap.DecodeB64(r)
			fr, perr := miap.ParseCompact(raw)
			if err != nil || perr != nil {
				t.Errorf("receipt on %s does not parse: %v %v", m.Subject, err, perr)
			} else {
				ok("status-event", m, fr.Body)
			}
		}
		req := requests[m.Subject]
		switch purpose := get(miap.HdrPurpose); purpose {
		case "login", "login-ack":
			if len(m.Data) != 0 {
				t.Errorf("%s frame with a body: %q", purpose, m.Data)
			}
		case "imi":
			ok("imi", m, m.Data)
		case "route", "conv-reply":
			ok("routed-imi", m, m.Data)
		case "ticket":
			routed := m.Data
			if v := get(miap.HdrIMILen); v != "" {
				n, _ := strconv.Atoi(v)
				routed = m.Data[:n]
			}
			ok("routed-imi", m, routed)
		case "route-ack":
			ok("route-ack", m, m.Data)
		case "ack":
			ok("ack", m, m.Data)
		case "ack-reply":
			ok("ack-reply", m, m.Data)
		case "notify", "receipt":
			ok("status-event", m, m.Data)
		case "conv":
			ok("conv-report", m, m.Data)
		case "announce":
			ok("announce", m, m.Data)
		case "query":
			switch m.Subject {
			case schemas.SubjectBrokerStatus:
				ok("status-query", m, m.Data)
			case schemas.SubjectBrokerClient:
				ok("client-query", m, m.Data)
			case schemas.SubjectBrokerUsage:
				ok("usage-query", m, m.Data)
			default:
				t.Errorf("query frame on %s", m.Subject)
			}
		case "query-reply":
			switch req {
			case schemas.SubjectBrokerStatus:
				ok("tx-status", m, m.Data)
			case schemas.SubjectBrokerClient:
				ok("client-info", m, m.Data)
			case schemas.SubjectBrokerUsage:
				ok("usage-reply", m, m.Data)
			case schemas.SubjectBrokerRouteAck:
				ok("route-ack-reply", m, m.Data)
			default:
				t.Errorf("query-reply to a request on %q", req)
			}
		case "":
			switch {
			case strings.HasPrefix(m.Subject, "uims.gw.") && strings.HasSuffix(m.Subject, ".held"):
				ok("held-query", m, m.Data)
			case strings.HasPrefix(req, "uims.gw.") && strings.HasSuffix(req, ".held"):
				ok("held-reply", m, m.Data)
			case strings.HasPrefix(m.Subject, "uims.accounting."):
				ok("accounting-record", m, m.Data)
			case strings.HasPrefix(m.Subject, schemas.SubjectTrace+"."):
				var evs []json.RawMessage
				if _, err := tracing.Decode(m.Data, &evs); err != nil {
					t.Errorf("trace batch on %s: %v", m.Subject, err)
				}
				for _, ev := range evs {
					ok("trace-event", m, ev)
				}
			}
		default:
			t.Errorf("frame of purpose %q on %s", purpose, m.Subject)
		}
	}
	return checked
}
