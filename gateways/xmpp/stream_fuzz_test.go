package xmpp

import (
	"bytes"
	"errors"
	"net"
	"strings"
	"testing"
)

const streamHead = "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' id='x' from='uims.chat.example.test'>"

// FuzzRead feeds the component stream reader what a server could send:
// it must end with an error or the stream's end, never panic, and hand on
// only whole stanzas.
func FuzzRead(f *testing.F) {
	for _, s := range []string{
		"<message from='carol@chat.example.test/phone' to='bob@uims.chat.example.test' id='m1' type='chat'><body>hi</body><request xmlns='urn:xmpp:receipts'/><markable xmlns='urn:xmpp:chat-markers:0'/></message>",
		"<message from='carol@chat.example.test' to='x@uims.chat.example.test'><received xmlns='urn:xmpp:receipts' id='abc'/></message>",
		"<message type='error' id='r1'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>gone</text></error></message>",
		"<iq type='get' id='i1' from='carol@chat.example.test/a'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
		"<presence type='subscribe' from='carol@chat.example.test'/>",
		"<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
		"</stream:stream>",
		"<message><body>" + strings.Repeat("a", 100) + "</body>",
		"<a:b xmlns:a='x'><<<",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		a, b := net.Pipe()
		defer b.Close()
		c := newConn(a, bytes.NewReader(append([]byte(streamHead), data...)), "uims.chat.example.test")
		if _, err := c.next(); err != nil {
			t.Fatalf("the stream head: %v", err)
		}
		err := c.read(func(st *stanza) {
			if st.XMLName.Local == "" {
				t.Fatal("a stanza without a name")
			}
		})
		if err == nil {
			t.Fatal("read returned without a reason")
		}
	})
}

// A stanza over MaxStanza ends the stream instead of growing the bridge.
func TestReadRefusesAHugeStanza(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	huge := "<message><body>" + strings.Repeat("a", MaxStanza+64<<10) + "</body></message>"
	c := newConn(a, strings.NewReader(streamHead+"<message><body>small</body></message>"+huge), "d")
	if _, err := c.next(); err != nil {
		t.Fatal(err)
	}
	var got int
	err := c.read(func(*stanza) { got++ })
	if !errors.Is(err, errStanzaTooLarge) || got != 1 {
		t.Fatalf("read: %v after %d stanzas, want the limit after 1", err, got)
	}
}
