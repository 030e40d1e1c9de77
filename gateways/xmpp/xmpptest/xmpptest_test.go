package xmpptest

import (
	"testing"
	"time"
)

// The harness itself: two chat users of a fresh prosody exchange a message
// and its receipt, also after a restart of the server.
func TestServerAndClients(t *testing.T) {
	srv := Start(t, Options{})
	srv.Register(t, "carol", "carol-pw")
	srv.Register(t, "dave", "dave-pw")
	for round := 0; round < 2; round++ {
		carol := Dial(t, srv, "carol", "carol-pw")
		dave := Dial(t, srv, "dave", "dave-pw")
		carol.Send(t, `<message to='dave@chat.example.test' type='chat' id='m1'><body>hi dave</body><request xmlns='urn:xmpp:receipts'/></message>`)
		m := dave.Wait(t, 5*time.Second, "carol's message", func(m *Message) bool { return m.Body == "hi dave" })
		if m.Request == nil || m.From != carol.JID.String() || m.ID != "m1" {
			t.Fatalf("dave got %s", m)
		}
		dave.Send(t, `<message to='`+m.From+`' id='r1'><received xmlns='urn:xmpp:receipts' id='m1'/></message>`)
		carol.Wait(t, 5*time.Second, "dave's receipt", func(m *Message) bool { return m.ReceivedID() == "m1" })
		carol.Send(t, `<message to='nobody@chat.example.test' type='chat' id='m2'><body>anyone?</body></message>`)
		e := carol.Wait(t, 5*time.Second, "the bounce", func(m *Message) bool { return m.ID == "m2" && m.Type == "error" })
		if e.Condition() != "service-unavailable" {
			t.Fatalf("bounce %s", e)
		}
		srv.Stop(t)
		<-carol.Done()
		srv.Start(t)
	}
}
