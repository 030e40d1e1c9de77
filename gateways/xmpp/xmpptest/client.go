package xmpptest

import (
	"context"
	"encoding/xml"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/sasl"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

// Message is a message stanza a chat user received, with the parts the
// tests look at.
type Message struct {
	XMLName   xml.Name
	From      string     `xml:"from,attr"`
	To        string     `xml:"to,attr"`
	ID        string     `xml:"id,attr"`
	Type      string     `xml:"type,attr"`
	Body      string     `xml:"body"`
	Subject   string     `xml:"subject"`
	Request   *struct{}  `xml:"urn:xmpp:receipts request"`
	Received  *idElement `xml:"urn:xmpp:receipts received"`
	Markable  *struct{}  `xml:"urn:xmpp:chat-markers:0 markable"`
	Displayed *idElement `xml:"urn:xmpp:chat-markers:0 displayed"`
	Error     *struct {
		Type  string `xml:"type,attr"`
		Inner []struct {
			XMLName xml.Name
			Text    string `xml:",chardata"`
		} `xml:",any"`
	} `xml:"error"`
}

type idElement struct {
	ID string `xml:"id,attr"`
}

// ReceivedID and DisplayedID are the ids a receipt (XEP-0184) or a
// displayed marker (XEP-0333) names, or "".
func (m *Message) ReceivedID() string {
	if m.Received == nil {
		return ""
	}
	return m.Received.ID
}

func (m *Message) DisplayedID() string {
	if m.Displayed == nil {
		return ""
	}
	return m.Displayed.ID
}

// Condition and ErrorText are the defined condition and the text of an
// error stanza (RFC 6120 §8.3), or "".
func (m *Message) Condition() string {
	if m.Error != nil {
		for _, e := range m.Error.Inner {
			if e.XMLName.Space == "urn:ietf:params:xml:ns:xmpp-stanzas" && e.XMLName.Local != "text" {
				return e.XMLName.Local
			}
		}
	}
	return ""
}

func (m *Message) ErrorText() string {
	if m.Error != nil {
		for _, e := range m.Error.Inner {
			if e.XMLName.Local == "text" {
				return e.Text
			}
		}
	}
	return ""
}

func (m *Message) String() string {
	b, _ := xml.Marshal(m)
	return string(b)
}

// Client is a chat user logged in to a Server with mellium.im/xmpp.
type Client struct {
	JID jid.JID
	s   *xmpp.Session

	mu   sync.Mutex
	got  []*Message
	more chan struct{}
	done chan struct{}

	online     chan struct{} // closed when the server echoed our presence
	onlineOnce sync.Once
}

// Dial logs user in (SASL PLAIN over plain TCP, as the test server
// allows), binds a resource (the server chooses it: Client.JID) and sends
// initial presence, so that messages to the bare JID reach it. The session
// ends with the test.
func Dial(t testing.TB, srv *Server, user, pw string) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	j, err := jid.New(user, srv.Domain, "")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", srv.C2S, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// xmpp.Secure: mellium offers SASL only on a secure stream; the test
	// server listens on 127.0.0.1 without TLS.
	s, err := xmpp.NewSession(ctx, j.Domain(), j, conn, xmpp.Secure, xmpp.NewNegotiator(func(*xmpp.Session, *xmpp.StreamConfig) xmpp.StreamConfig {
		return xmpp.StreamConfig{Features: []xmpp.StreamFeature{xmpp.SASL("", pw, sasl.Plain), xmpp.BindResource()}}
	}))
	if err != nil {
		conn.Close()
		t.Fatalf("xmpp login %s: %v", j, err)
	}
	c := &Client{JID: s.LocalAddr(), s: s, more: make(chan struct{}, 1), done: make(chan struct{}), online: make(chan struct{})}
	go func() {
		defer close(c.done)
		s.Serve(xmpp.HandlerFunc(c.handle))
	}()
	t.Cleanup(c.Close)
	if err := s.Send(ctx, stanza.Presence{}.Wrap(nil)); err != nil {
		t.Fatal(err)
	}
	// Online once the server echoes the presence: messages to the bare
	// JID reach this session from then on (RFC 6121 §4.2.2, §8.5.2).
	select {
	case <-c.online:
	case <-ctx.Done():
		t.Fatalf("%s: no presence echo", c.JID)
	}
	return c
}

func (c *Client) handle(r xmlstream.TokenReadEncoder, start *xml.StartElement) error {
	if start.Name.Local == "presence" {
		for _, a := range start.Attr {
			if a.Name.Local == "from" && a.Value == c.JID.String() {
				c.onlineOnce.Do(func() { close(c.online) })
			}
		}
		return nil
	}
	if start.Name.Local != "message" {
		return nil
	}
	var m Message
	// The handler's reader starts after the start element.
	if err := xml.NewTokenDecoder(xmlstream.MultiReader(xmlstream.Token(*start), r)).Decode(&m); err != nil {
		return nil
	}
	c.mu.Lock()
	c.got = append(c.got, &m)
	c.mu.Unlock()
	select {
	case c.more <- struct{}{}:
	default:
	}
	return nil
}

// Send sends one stanza written as XML, e.g.
// <message to='bob@uims.chat.example.test' type='chat' id='m1'><body>hi</body></message>.
func (c *Client) Send(t testing.TB, raw string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.s.Send(ctx, xml.NewDecoder(strings.NewReader(raw))); err != nil {
		t.Fatalf("%s sends %s: %v", c.JID, raw, err)
	}
}

// Wait returns the first message received (since the session began) that
// ok accepts, or fails the test after timeout.
func (c *Client) Wait(t testing.TB, timeout time.Duration, what string, ok func(*Message) bool) *Message {
	t.Helper()
	deadline := time.After(timeout)
	for {
		c.mu.Lock()
		for _, m := range c.got {
			if ok(m) {
				c.mu.Unlock()
				return m
			}
		}
		c.mu.Unlock()
		select {
		case <-c.more:
		case <-c.done:
			t.Fatalf("%s: session ended while waiting for %s; got:\n%s", c.JID, what, c.dump())
		case <-deadline:
			t.Fatalf("%s: no %s within %v; got:\n%s", c.JID, what, timeout, c.dump())
		}
	}
}

// Received returns every message received so far.
func (c *Client) Received() []*Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Message(nil), c.got...)
}

func (c *Client) dump() string {
	var b strings.Builder
	for _, m := range c.Received() {
		fmt.Fprintln(&b, " ", m)
	}
	return b.String()
}

// Done is closed when the session ended (the server went away, or Close).
func (c *Client) Done() <-chan struct{} { return c.done }

// Close ends the session.
func (c *Client) Close() {
	c.s.Close()
	c.s.Conn().Close()
	<-c.done
}
