package xmpp

import (
	"encoding/xml"
	"strings"
	"unicode/utf8"

	"github.com/uims/uims/schemas"
)

// message is a message stanza the bridge writes.
type message struct {
	XMLName   xml.Name  `xml:"message"`
	From      string    `xml:"from,attr"`
	To        string    `xml:"to,attr"`
	ID        string    `xml:"id,attr,omitempty"`
	Type      string    `xml:"type,attr,omitempty"`
	Subject   string    `xml:"subject,omitempty"`
	Body      string    `xml:"body,omitempty"`
	Request   *empty    `xml:"urn:xmpp:receipts request"`
	Markable  *empty    `xml:"urn:xmpp:chat-markers:0 markable"`
	Received  *idAttr   `xml:"urn:xmpp:receipts received"`
	Displayed *idAttr   `xml:"urn:xmpp:chat-markers:0 displayed"`
	Error     *outError `xml:"error"`
}

type empty struct{}

// outError is a stanza error (RFC 6120 §8.3.2).
type outError struct {
	Type string   `xml:"type,attr"`
	By   string   `xml:"by,attr,omitempty"`
	Cond xmlEmpty // the defined condition, in nsStanzas
	Text *struct {
		Text string `xml:",chardata"`
	} `xml:"urn:ietf:params:xml:ns:xmpp-stanzas text"`
}

type xmlEmpty struct {
	XMLName xml.Name
}

// stanzaError returns an error element of type typ with condition cond
// and text.
func stanzaError(by, typ, cond, text string) *outError {
	e := &outError{Type: typ, By: by, Cond: xmlEmpty{XMLName: xml.Name{Space: nsStanzas, Local: cond}}}
	if text != "" {
		e.Text = &struct {
			Text string `xml:",chardata"`
		}{text}
	}
	return e
}

type iqPing struct {
	XMLName xml.Name `xml:"iq"`
	ID      string   `xml:"id,attr"`
	From    string   `xml:"from,attr"`
	To      string   `xml:"to,attr"`
	Type    string   `xml:"type,attr"`
	Ping    empty    `xml:"urn:xmpp:ping ping"`
}

// iqReply answers an iq: a result with an optional payload, or an error.
type iqReply struct {
	XMLName xml.Name   `xml:"iq"`
	ID      string     `xml:"id,attr"`
	From    string     `xml:"from,attr"`
	To      string     `xml:"to,attr"`
	Type    string     `xml:"type,attr"`
	Disco   *discoInfo `xml:"http://jabber.org/protocol/disco#info query"`
	Error   *outError  `xml:"error"`
}

// discoInfo is what a JID at the bridge answers to service discovery
// (XEP-0030): an identity and the features the bridge speaks.
type discoInfo struct {
	Identity struct {
		Category string `xml:"category,attr"`
		Type     string `xml:"type,attr"`
		Name     string `xml:"name,attr"`
	} `xml:"identity"`
	Features []struct {
		Var string `xml:"var,attr"`
	} `xml:"feature"`
}

func newDiscoInfo(category, typ, name string) *discoInfo {
	d := &discoInfo{}
	d.Identity.Category, d.Identity.Type, d.Identity.Name = category, typ, name
	for _, f := range []string{nsDisco, nsReceipt, nsMarkers, nsPing} {
		d.Features = append(d.Features, struct {
			Var string `xml:"var,attr"`
		}{f})
	}
	return d
}

type presence struct {
	XMLName xml.Name `xml:"presence"`
	From    string   `xml:"from,attr"`
	To      string   `xml:"to,attr"`
	Type    string   `xml:"type,attr,omitempty"`
}

// condition maps a UIMS error code (PROTOCOL.md §9) to the stanza error
// a chat user gets (RFC 6120 §8.3.3): the error type says what the user's
// client may do — wait means send the same message again later, modify
// means change it first, cancel means it will not go through, auth means
// the sender may not do this. Every retryable code is of type wait. This
// is the one mapping of the bridge; docs/XMPP.md lists it.
func condition(code string) (typ, cond string) {
	c, ok := schemas.ParseCode(code)
	if !ok {
		return "cancel", "undefined-condition"
	}
	switch c {
	case schemas.CodeUnknownRecipient:
		return "cancel", "item-not-found"
	case schemas.CodeNoRoute:
		return "wait", "recipient-unavailable"
	case schemas.CodeUnreachable:
		return "cancel", "remote-server-not-found"
	case schemas.CodeTooLarge:
		return "modify", "policy-violation"
	case schemas.CodeQuotaExceeded:
		return "wait", "policy-violation"
	case schemas.CodeNotAllowed, schemas.CodeUnknownSender, schemas.CodeUnauthorized:
		return "auth", "forbidden"
	case schemas.CodeUnsupported, schemas.CodeConversionFailed:
		return "modify", "not-acceptable"
	case schemas.CodeMalformed:
		return "modify", "bad-request"
	case schemas.CodeRejected:
		return "cancel", "not-acceptable"
	case schemas.CodeExpired:
		return "cancel", "remote-server-timeout"
	case schemas.CodeDuplicate:
		return "cancel", "conflict"
	}
	if c.Retryable() {
		return "wait", "resource-constraint"
	}
	return "cancel", "internal-server-error"
}

// oneLine turns a chat subject into one line of at most n bytes, as the
// IMI wants it (PROTOCOL.md §6.2), cut at a character boundary.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n]
		for len(s) > 0 && !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
	}
	return s
}
