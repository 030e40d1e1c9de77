package xmpp

import (
	"context"
	"crypto/rand"
	"crypto/sha1" // #nosec: XEP-0114 §3 specifies SHA-1 for the handshake
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Namespaces.
const (
	nsAccept  = "jabber:component:accept"          // XEP-0114 §3
	nsStream  = "http://etherx.jabber.org/streams" // RFC 6120 §4.8.1
	nsStanzas = "urn:ietf:params:xml:ns:xmpp-stanzas"
	nsStreams = "urn:ietf:params:xml:ns:xmpp-streams"
	nsReceipt = "urn:xmpp:receipts"       // XEP-0184
	nsMarkers = "urn:xmpp:chat-markers:0" // XEP-0333
	nsPing    = "urn:xmpp:ping"           // XEP-0199
	nsDisco   = "http://jabber.org/protocol/disco#info"
	nsReply   = "urn:xmpp:reply:0" // XEP-0461
	nsSID     = "urn:xmpp:sid:0"   // XEP-0359
)

// ErrNotConnected is the error of a stanza the bridge cannot hand to the
// XMPP server because the component stream is down.
var ErrNotConnected = errors.New("xmpp: the component stream to the XMPP server is down")

// stanza is a stanza read from the server, with the parts the bridge uses.
type stanza struct {
	XMLName xml.Name
	From    string `xml:"from,attr"`
	To      string `xml:"to,attr"`
	ID      string `xml:"id,attr"`
	Type    string `xml:"type,attr"`

	Body      *string   `xml:"body"`
	Subject   string    `xml:"subject"`
	Request   *struct{} `xml:"urn:xmpp:receipts request"`
	Received  *idAttr   `xml:"urn:xmpp:receipts received"`
	Markable  *struct{} `xml:"urn:xmpp:chat-markers:0 markable"`
	Displayed *idAttr   `xml:"urn:xmpp:chat-markers:0 displayed"`
	Reply     *idAttr   `xml:"urn:xmpp:reply:0 reply"`
	OriginID  *idAttr   `xml:"urn:xmpp:sid:0 origin-id"`
	Error     *errorElt `xml:"error"`
	// Payload are the other children, such as an iq's query.
	Payload []struct {
		XMLName xml.Name
	} `xml:",any"`
}

type idAttr struct {
	ID string `xml:"id,attr"`
}

// errorElt is a stanza error (RFC 6120 §8.3.2): a type, a defined
// condition and an optional text.
type errorElt struct {
	Type  string `xml:"type,attr"`
	Inner []struct {
		XMLName xml.Name
		Text    string `xml:",chardata"`
	} `xml:",any"`
}

// condition returns the defined condition and the text of a stanza error.
func (e *errorElt) condition() (cond, text string) {
	if e == nil {
		return "", ""
	}
	for _, in := range e.Inner {
		switch {
		case in.XMLName.Local == "text":
			text = strings.TrimSpace(in.Text)
		case cond == "" && in.XMLName.Space == nsStanzas:
			cond = in.XMLName.Local
		}
	}
	if cond == "" {
		cond = "undefined-condition"
	}
	return cond, text
}

// conn is one component stream (XEP-0114) to the XMPP server: the
// handshake, then stanzas both ways. Writes are serialised; iq results
// and message bounces reach the goroutine that waits for them.
type conn struct {
	nc     net.Conn
	dec    *xml.Decoder
	lim    *stanzaLimit
	domain string

	wmu sync.Mutex

	mu      sync.Mutex
	iqs     map[string]chan *stanza // iq id → its result or error
	bounces map[string]chan *stanza // message id → its error bounce
	closed  chan struct{}
	once    sync.Once
}

// errRefused is a handshake the server refused (a wrong secret or
// domain): retrying soon will not help.
type errRefused struct{ cond string }

func (e errRefused) Error() string {
	return "xmpp: the server refused the component handshake (" + e.cond + "): check the domain and the secret"
}

// dial opens a component stream to addr for domain and authenticates with
// secret (XEP-0114 §3: SHA-1 of the stream id and the secret, in hex).
func dial(ctx context.Context, addr, domain, secret string) (*conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := newConn(nc, nc, domain)
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := c.handshake(domain, secret); err != nil {
		nc.Close()
		return nil, err
	}
	nc.SetDeadline(time.Time{})
	return c, nil
}

// newConn reads stanzas from r (nc itself, or a test's bytes) and writes
// to nc.
func newConn(nc net.Conn, r io.Reader, domain string) *conn {
	lim := &stanzaLimit{r: r, max: MaxStanza}
	return &conn{nc: nc, dec: xml.NewDecoder(lim), lim: lim, domain: domain, iqs: map[string]chan *stanza{},
		bounces: map[string]chan *stanza{}, closed: make(chan struct{})}
}

// MaxStanza bounds what the bridge reads for one stanza from the server,
// in bytes (the decoder's read-ahead included): a larger one ends the
// stream instead of growing the bridge's memory. Prosody's own limit for
// a client's stanza is 256 KiB (c2s_stanza_size_limit) and the bridge
// refuses bodies over 64 KiB.
const MaxStanza = 1 << 20

// errStanzaTooLarge ends a stream whose stanza exceeds MaxStanza.
var errStanzaTooLarge = errors.New("xmpp: a stanza from the server exceeds MaxStanza")

// stanzaLimit counts the bytes read since the last stanza.
type stanzaLimit struct {
	r      io.Reader
	n, max int
}

func (l *stanzaLimit) Read(p []byte) (int, error) {
	if l.n >= l.max {
		return 0, errStanzaTooLarge
	}
	if len(p) > l.max-l.n {
		p = p[:l.max-l.n]
	}
	n, err := l.r.Read(p)
	l.n += n
	return n, err
}

func (c *conn) handshake(domain, secret string) error {
	var header strings.Builder
	header.WriteString("<?xml version='1.0'?><stream:stream xmlns='" + nsAccept + "' xmlns:stream='" + nsStream + "' to='")
	xml.EscapeText(&header, []byte(domain))
	header.WriteString("'>")
	if _, err := io.WriteString(c.nc, header.String()); err != nil {
		return err
	}
	start, err := c.next()
	if err != nil {
		return err
	}
	if start.Name.Space != nsStream || start.Name.Local != "stream" {
		return fmt.Errorf("xmpp: the server answered <%s> instead of a stream", start.Name.Local)
	}
	var id string
	for _, a := range start.Attr {
		if a.Name.Local == "id" {
			id = a.Value
		}
	}
	sum := sha1.Sum([]byte(id + secret)) // #nosec: XEP-0114 §3
	if _, err := io.WriteString(c.nc, "<handshake>"+hex.EncodeToString(sum[:])+"</handshake>"); err != nil {
		return err
	}
	start, err = c.next()
	if err != nil {
		return err
	}
	switch {
	case start.Name.Local == "handshake":
		return c.dec.Skip()
	case start.Name.Space == nsStream && start.Name.Local == "error":
		return errRefused{cond: c.streamError(start)}
	}
	return fmt.Errorf("xmpp: unexpected <%s> after the handshake", start.Name.Local)
}

// next returns the next start element, skipping whitespace and the XML
// declaration; the end of the stream is io.EOF.
func (c *conn) next() (xml.StartElement, error) {
	for {
		tok, err := c.dec.Token()
		if err != nil {
			return xml.StartElement{}, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			return t, nil
		case xml.EndElement: // </stream:stream>
			return xml.StartElement{}, io.EOF
		}
	}
}

// streamError reads a stream error (RFC 6120 §4.9) and returns its
// condition.
func (c *conn) streamError(start xml.StartElement) string {
	var e errorElt
	if c.dec.DecodeElement(&e, &start) != nil {
		return "unreadable stream error"
	}
	for _, in := range e.Inner {
		if in.XMLName.Space == nsStreams && in.XMLName.Local != "text" {
			return in.XMLName.Local
		}
	}
	return "undefined-condition"
}

// read reads stanzas until the stream ends, handing each to handle (iq
// results and awaited bounces go to their waiters instead). It returns why
// the stream ended.
func (c *conn) read(handle func(*stanza)) error {
	defer c.close()
	for {
		start, err := c.next()
		if err != nil {
			return err
		}
		if start.Name.Space == nsStream && start.Name.Local == "error" {
			return fmt.Errorf("xmpp: stream error %s", c.streamError(start))
		}
		var st stanza
		if err := c.dec.DecodeElement(&st, &start); err != nil {
			return err
		}
		c.lim.n = 0
		if c.route(&st) {
			continue
		}
		handle(&st)
	}
}

// route hands an iq result or an awaited bounce to its waiter.
func (c *conn) route(st *stanza) bool {
	var waiters map[string]chan *stanza
	switch {
	case st.XMLName.Local == "iq" && (st.Type == "result" || st.Type == "error"):
		waiters = c.iqs
	case st.XMLName.Local == "message" && st.Type == "error":
		waiters = c.bounces
	default:
		return false
	}
	c.mu.Lock()
	ch, ok := waiters[st.ID]
	c.mu.Unlock()
	if ok {
		select {
		case ch <- st:
		default:
		}
	}
	return ok
}

// send writes one stanza.
func (c *conn) send(v any) error {
	b, err := xml.Marshal(v)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	select {
	case <-c.closed:
		return ErrNotConnected
	default:
	}
	c.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.nc.Write(b); err != nil {
		c.closeLocked()
		return fmt.Errorf("%w: %v", ErrNotConnected, err)
	}
	return nil
}

// expect registers a waiter for the error bounce of the message id;
// forget removes it.
func (c *conn) expect(id string) chan *stanza {
	ch := make(chan *stanza, 1)
	c.mu.Lock()
	c.bounces[id] = ch
	c.mu.Unlock()
	return ch
}

func (c *conn) forget(id string) {
	c.mu.Lock()
	delete(c.bounces, id)
	c.mu.Unlock()
}

// ping sends an XMPP ping (XEP-0199) to the server and waits for its
// answer, a result or an error: the server handles a stream's stanzas in
// order, so once it answers it has routed every stanza written before,
// and bounced those it could not deliver.
func (c *conn) ping(ctx context.Context, server string) error {
	id := "ping-" + randomID()
	ch := make(chan *stanza, 1)
	c.mu.Lock()
	c.iqs[id] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.iqs, id)
		c.mu.Unlock()
	}()
	if err := c.send(&iqPing{ID: id, From: c.domain, To: server, Type: "get"}); err != nil {
		return err
	}
	select {
	case <-ch:
		return nil
	case <-c.closed:
		return ErrNotConnected
	case <-ctx.Done():
		return fmt.Errorf("xmpp: no answer to a ping from %s: %w", server, ctx.Err())
	}
}

// shut closes the stream politely (RFC 6120 §4.4): the closing tag, then
// the socket once the server closed its side or after a second.
func (c *conn) shut(readDone <-chan struct{}) {
	c.wmu.Lock()
	c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	io.WriteString(c.nc, "</stream:stream>")
	c.wmu.Unlock()
	select {
	case <-readDone:
	case <-time.After(time.Second):
	}
	c.close()
}

func (c *conn) close() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.closeLocked()
}

func (c *conn) closeLocked() {
	c.once.Do(func() {
		close(c.closed)
		c.nc.Close()
	})
}

func randomID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// link keeps a component stream up: it dials, reads until the stream
// breaks, and dials again with a backoff from 250 ms to 15 s (reset after
// a stream that lived a minute), and pings the server every
// KeepAlive to find a dead stream.
type link struct {
	addr, domain, secret, server string
	keepAlive                    time.Duration
	handle                       func(*stanza)
	log                          zerolog.Logger

	mu  sync.Mutex
	cur *conn
	up  chan struct{} // closed while a stream is up
}

func newLink(addr, domain, secret, server string, keepAlive time.Duration, handle func(*stanza), log zerolog.Logger) *link {
	return &link{addr: addr, domain: domain, secret: secret, server: server, keepAlive: keepAlive, handle: handle, log: log,
		up: make(chan struct{})}
}

// run keeps the stream up until ctx is done, then closes it.
func (l *link) run(ctx context.Context) {
	wait := 250 * time.Millisecond
	for ctx.Err() == nil {
		c, err := dial(ctx, l.addr, l.domain, l.secret)
		if err != nil {
			ev := l.log.Warn()
			if errors.As(err, new(errRefused)) {
				ev = l.log.Error()
			}
			ev.Err(err).Str("server", l.addr).Dur("retry_in", wait).Msg("component stream not up")
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, 15*time.Second)
			continue
		}
		began := time.Now()
		l.log.Info().Str("server", l.addr).Str("domain", l.domain).Msg("component stream up")
		readDone := make(chan struct{})
		var readErr error
		go func() {
			readErr = c.read(l.handle)
			close(readDone)
		}()
		l.mu.Lock()
		l.cur = c
		close(l.up)
		l.mu.Unlock()

		l.watch(ctx, c, readDone)

		l.mu.Lock()
		l.cur = nil
		l.up = make(chan struct{})
		l.mu.Unlock()
		if ctx.Err() != nil {
			c.shut(readDone)
			<-readDone
			l.log.Info().Msg("component stream closed")
			return
		}
		c.close()
		<-readDone
		if time.Since(began) > time.Minute {
			wait = 250 * time.Millisecond
		}
		l.log.Warn().AnErr("reason", readErr).Dur("retry_in", wait).Msg("component stream down; reconnecting")
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 15*time.Second)
	}
}

// watch returns when ctx is done or the stream ended; it pings the server
// every keepAlive and closes a stream that does not answer.
func (l *link) watch(ctx context.Context, c *conn, readDone <-chan struct{}) {
	t := time.NewTicker(l.keepAlive)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-readDone:
			return
		case <-t.C:
			pctx, cancel := context.WithTimeout(ctx, l.keepAlive)
			err := c.ping(pctx, l.server)
			cancel()
			if err != nil && ctx.Err() == nil {
				l.log.Warn().Err(err).Msg("the XMPP server does not answer pings; closing the stream")
				c.close()
			}
		}
	}
}

// get returns the stream once it is up, or ErrNotConnected when ctx ends
// first.
func (l *link) get(ctx context.Context) (*conn, error) {
	for {
		l.mu.Lock()
		c, up := l.cur, l.up
		l.mu.Unlock()
		if c != nil {
			return c, nil
		}
		select {
		case <-up:
		case <-ctx.Done():
			return nil, ErrNotConnected
		}
	}
}

// current returns the stream if it is up, else nil.
func (l *link) current() *conn {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cur
}

// upChan returns a channel closed while a stream is up.
func (l *link) upChan() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.up
}
