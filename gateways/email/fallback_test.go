package email

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/uims/uims/gateways/web"
	"github.com/uims/uims/schemas"
)

// Fallback across media with the real gateways (PROTOCOL.md §6.15,
// docs/ROUTING.md): dana prefers e-mail, then the web; her mail goes out
// by the relay, which refuses it with 550 5.1.1. The brokers route the
// message again to the web, the originating web gateway sends it there
// from the content it kept, and it lands in dana's web inbox. Alice's page
// hears rerouted, then one delivered that says the e-mail failed first.
func TestFallbackFromEmailToWeb(t *testing.T) {
	s := startSystem(t, Config{Relay: startFakeRelay(t)})
	s.f.PutProfiles(&schemas.Profile{ID: "dana", Name: "Dana", Token: "dana-token", Prefer: []string{"email", "web"},
		Addresses: map[string]string{"email": "reject@outside.test", "web": "dana"}})
	events := make(chan *nats.Msg, 64)
	sub, err := s.f.Conn("watch").ChanSubscribe(web.EventsSubject("alice"), events)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	res := s.webSend("alice-token", "dana", "fallback", "by e-mail, else on the web")
	if res.Dest.Medium != schemas.MediumEmail {
		t.Fatalf("first route %+v, want e-mail", res.Dest)
	}
	m := s.waitInbox("dana-token", "the message in dana's web inbox", func(m web.Message) bool { return m.Subject == "fallback" })
	if m.Text != "by e-mail, else on the web" {
		t.Fatalf("inbox message %+v", m)
	}
	st := s.waitState("alice-token", res.ID, schemas.StatusDelivered)
	var failed, rerouted bool
	for _, h := range st.History {
		switch h.Status {
		case schemas.HistoryAttemptFailed:
			failed = h.Medium == "email" && h.Code == "UNKNOWN_RECIPIENT" && strings.Contains(h.Reason, "550 5.1.1")
		case schemas.StatusRerouted:
			rerouted = h.Medium == "web" && h.Attempt == 2
		case schemas.StatusFailed:
			t.Errorf("a failed entry in the history of a delivered message: %+v", h)
		}
	}
	if !failed || !rerouted || st.Dest.Medium != "web" {
		t.Fatalf("history %+v", st.History)
	}

	var statuses []string
	var final *schemas.StatusEvent
	deadline := time.After(10 * time.Second)
	for final == nil {
		select {
		case msg := <-events:
			var ev web.Event
			json.Unmarshal(msg.Data, &ev)
			if ev.Type != "status" || ev.Status == nil || ev.Status.MsgID != res.ID {
				continue
			}
			statuses = append(statuses, ev.Status.Status)
			if schemas.Terminal(ev.Status.Status) {
				final = ev.Status
			}
		case <-deadline:
			t.Fatalf("alice's page heard %v, and no outcome", statuses)
		}
	}
	if final.Status != schemas.StatusDelivered || final.Dest.Medium != "web" ||
		!strings.Contains(final.Reason, "delivered (web, after email failed: UNKNOWN_RECIPIENT") || !strings.Contains(final.Reason, "550 5.1.1") {
		t.Fatalf("alice's page heard %v, the outcome %+v", statuses, final)
	}
	time.Sleep(time.Second)
	for len(events) > 0 {
		var ev web.Event
		json.Unmarshal((<-events).Data, &ev)
		if ev.Status != nil && ev.Status.MsgID == res.ID && schemas.Terminal(ev.Status.Status) && ev.Status.Status != schemas.StatusRead {
			t.Fatalf("a second outcome: %+v", ev.Status)
		}
	}
	t.Logf("alice's page heard %v; %q", statuses, final.Reason)
}
