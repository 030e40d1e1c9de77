package bot

import "testing"

// An answer goes to the sending client, or to an outside sender's address
// with its medium named, so that a JID is not routed as an e-mail address.
func TestReplyTo(t *testing.T) {
	for _, c := range []struct {
		from    Endpoint
		subject string
		to      string
		re      string
	}{
		{Endpoint{Medium: "web", Address: "alice", Client: "alice"}, "", "alice", ""},
		{Endpoint{Medium: "xmpp", Address: "dave@chat.example.test"}, "plans", "xmpp:dave@chat.example.test", "Re: plans"},
		{Endpoint{Medium: "email", Address: "carol@outside.test"}, "Re: x", "email:carol@outside.test", "Re: x"},
		{Endpoint{Medium: "xmpp", Address: "carol@chat.example.test", Client: "carol"}, "", "carol", ""},
	} {
		m := &Message{ID: "0123456789abcdef0123456789abcdef", From: c.from, To: "echo", Subject: c.subject}
		o := ReplyTo(m, "ok")
		if o.To != c.to || o.From != "echo" || o.Subject != c.re || o.InReplyTo != m.ID || o.Text != "ok" {
			t.Errorf("ReplyTo from %+v: %+v", c.from, o)
		}
	}
}
