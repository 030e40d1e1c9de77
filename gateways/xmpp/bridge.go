package xmpp

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/uims/uims/gateways/bot"
	"github.com/uims/uims/gateways/xmpp/localpart"
	"github.com/uims/uims/schemas"
)

// Config configures a Bridge.
type Config struct {
	// Bundle is the folder of the bridge's party bundle (`uims party add
	// xmpp --role gateway --medium xmpp`); Bot configures the bot it
	// joins the fabric as (Medium: the bundle's first medium, which should
	// be xmpp; Reach default "*": any JID the XMPP server routes to).
	Bundle string
	Bot    bot.Config
	// Server is the XMPP server's component port, host:port (prosody's
	// component_ports, default 5347).
	Server string
	// Domain is the component's domain, the JIDs the bridge answers for
	// (uims.chat.example.test); Secret its component_secret. The secret
	// is never logged.
	Domain string
	Secret string
	// ServerDomain is the XMPP server's own domain, which the bridge
	// pings (XEP-0199); default Domain without its first label.
	ServerDomain string
	// MaxBody is the largest message body, in bytes, either way; default
	// 64 KiB.
	MaxBody int
	// SendTimeout bounds handing one chat message to UIMS, temporary
	// failures retried; default 30 s.
	SendTimeout time.Duration
	// Workers bounds the chat messages in hand at once; default 64.
	Workers int
	// KeepAlive is how often the bridge pings the server to find a dead
	// stream; default 30 s.
	KeepAlive time.Duration
}

func (c *Config) setDefaults() error {
	c.Domain = strings.ToLower(strings.TrimSpace(c.Domain))
	switch {
	case c.Domain == "" || strings.ContainsAny(c.Domain, "@/ "):
		return fmt.Errorf("xmpp: component domain %q: want a domain such as uims.chat.example.test", c.Domain)
	case c.Server == "":
		return errors.New("xmpp: no XMPP server component address (host:port)")
	case c.Secret == "":
		return errors.New("xmpp: no component secret")
	}
	if c.ServerDomain == "" {
		i := strings.IndexByte(c.Domain, '.')
		if i < 0 {
			return fmt.Errorf("xmpp: component domain %q has no parent domain: set the server domain", c.Domain)
		}
		c.ServerDomain = c.Domain[i+1:]
	}
	if len(c.Bot.Reach) == 0 {
		c.Bot.Reach = []string{"*"}
	}
	if c.MaxBody == 0 {
		c.MaxBody = 64 << 10
	}
	if c.SendTimeout == 0 {
		c.SendTimeout = 30 * time.Second
	}
	if c.Workers == 0 {
		c.Workers = 64
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = 30 * time.Second
	}
	return nil
}

// Meta keys the bridge puts on a chat user's message; the status
// notifications echo them, so that the receipts need no state.
const (
	MetaID       = "xmpp.id"       // the stanza id
	MetaJID      = "xmpp.jid"      // the sender's full JID
	MetaTo       = "xmpp.to"       // the bridge JID it was sent to
	MetaReceipt  = "xmpp.receipt"  // "1": the sender asked for a receipt (XEP-0184)
	MetaMarkable = "xmpp.markable" // "1": the sender asked for chat markers (XEP-0333)
)

// Bridge is the XMPP bridge: a component of an XMPP server and a bot of
// the UIMS fabric.
type Bridge struct {
	cfg  Config
	bot  *bot.Bot
	link *link
	log  zerolog.Logger

	base    context.Context // outlives Run's ctx, so that messages in hand finish
	sends   sync.WaitGroup
	slots   chan struct{}
	closing atomic.Bool

	caps receiptUsers
	told recent
}

// New dials the fabric with the party bundle and returns the bridge;
// Run serves it.
func New(cfg Config, log zerolog.Logger) (*Bridge, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	b, err := bot.Dial(cfg.Bundle, cfg.Bot, log)
	if err != nil {
		return nil, err
	}
	br := &Bridge{cfg: cfg, bot: b, log: log.With().Str("bridge", "xmpp").Str("domain", cfg.Domain).Logger(),
		slots: make(chan struct{}, cfg.Workers)}
	br.link = newLink(cfg.Server, cfg.Domain, cfg.Secret, cfg.ServerDomain, cfg.KeepAlive, br.inbound, br.log)
	b.Handle(br.deliver)
	b.OnStatus(br.status)
	return br, nil
}

// Run serves until ctx is done: it keeps the component stream up
// (reconnecting with a backoff when the server goes away) and the bot on
// the fabric. ready, if not nil, is called once both are up. On shutdown
// it refuses new chat messages (type wait), hands those in hand to UIMS,
// lets the bot finish the UIMS messages in hand, and then closes the
// stream.
func (br *Bridge) Run(ctx context.Context, ready func()) error {
	br.base = context.WithoutCancel(ctx)
	botCtx, stopBot := context.WithCancel(br.base)
	defer stopBot()
	linkCtx, stopLink := context.WithCancel(br.base)
	defer stopLink()

	botUp := make(chan struct{})
	botDone := make(chan error, 1)
	go func() { botDone <- br.bot.Run(botCtx, func() { close(botUp) }) }()
	linkDone := make(chan struct{})
	go func() { br.link.run(linkCtx); close(linkDone) }()
	readyDone := make(chan struct{})
	go func() {
		defer close(readyDone)
		for _, c := range []<-chan struct{}{botUp, br.link.upChan()} {
			select {
			case <-c:
			case <-ctx.Done():
				return
			case <-linkDone:
				return
			}
		}
		br.log.Info().Str("server", br.cfg.Server).Msg("XMPP bridge ready")
		if ready != nil {
			ready()
		}
	}()

	var err error
	select {
	case <-ctx.Done():
	case err = <-botDone: // the bot could not start
		stopLink()
		<-linkDone
		<-readyDone
		return err
	}
	br.closing.Store(true)
	br.sends.Wait()
	stopBot()
	err = <-botDone
	stopLink()
	<-linkDone
	<-readyDone
	return err
}

// inbound handles a stanza from the server (the stream's reader: it must
// not block).
func (br *Bridge) inbound(st *stanza) {
	switch st.XMLName.Local {
	case "iq":
		br.iq(st)
	case "presence":
		br.presence(st)
	case "message":
		br.message(st)
	}
}

// message handles a message to a bridge JID: a bounce of one the bridge
// sent, a receipt or marker for one, or a chat user's message for UIMS.
func (br *Bridge) message(st *stanza) {
	if st.Type == "error" {
		br.later(func(ctx context.Context) { br.bounced(ctx, st) })
		return
	}
	if st.Request != nil || st.Markable != nil || st.Received != nil || st.Displayed != nil {
		br.caps.saw(bareJID(st.From))
	}
	if st.Received != nil {
		br.later(func(ctx context.Context) { br.ack(ctx, st.From, st.Received.ID, schemas.StatusDelivered) })
	}
	if st.Displayed != nil {
		br.later(func(ctx context.Context) { br.ack(ctx, st.From, st.Displayed.ID, schemas.StatusRead) })
	}
	if st.Body == nil || st.Type == "headline" {
		return // a receipt, a marker, a chat state: no message
	}
	if st.Type == "groupchat" {
		br.refuse(st, "cancel", "not-acceptable", "the UIMS bridge takes one-to-one messages, not group chat")
		return
	}
	if br.closing.Load() {
		br.refuse(st, "wait", "resource-constraint", "the UIMS bridge is shutting down: send the message again later")
		return
	}
	select {
	case br.slots <- struct{}{}:
	default:
		br.refuse(st, "wait", "resource-constraint", "the UIMS bridge has too many messages in hand: send the message again later")
		return
	}
	br.sends.Add(1)
	go func() {
		defer func() { <-br.slots; br.sends.Done() }()
		ctx, cancel := context.WithTimeout(br.base, br.cfg.SendTimeout)
		defer cancel()
		br.fromChat(ctx, st)
	}()
}

// later runs f off the stream's reader, within a bound.
func (br *Bridge) later(f func(ctx context.Context)) {
	go func() {
		ctx, cancel := context.WithTimeout(br.base, 30*time.Second)
		defer cancel()
		f(ctx)
	}()
}

// fromChat hands a chat user's message to UIMS (chat → UIMS).
func (br *Bridge) fromChat(ctx context.Context, st *stanza) {
	local, domain, _ := splitJID(st.To)
	switch {
	case !strings.EqualFold(domain, br.cfg.Domain):
		br.refuse(st, "cancel", "item-not-found", "not a JID of this bridge")
		return
	case local == "":
		br.refuse(st, "cancel", "item-not-found", "write to RECIPIENT@"+br.cfg.Domain+": a UIMS client id, or an address escaped as XEP-0106 says (alice\\40example.com)")
		return
	case len(*st.Body) > br.cfg.MaxBody:
		br.refuse(st, "modify", "policy-violation", fmt.Sprintf("TOO_LARGE: the message is %d bytes; this bridge takes at most %d", len(*st.Body), br.cfg.MaxBody))
		return
	case len(st.ID) > 256 || len(st.From) > 1024:
		br.refuse(st, "modify", "bad-request", "the stanza id or the sender's JID is too long")
		return
	}
	to := localpart.Unescape(local)
	from := bareJID(st.From)
	meta := map[string]string{MetaJID: st.From, MetaTo: bareJID(st.To)}
	if st.ID != "" {
		meta[MetaID] = st.ID
	}
	if st.Request != nil {
		meta[MetaReceipt] = "1"
	}
	if st.Markable != nil {
		meta[MetaMarkable] = "1"
	}
	o := bot.Outgoing{ID: msgID(st), From: from, To: to, Subject: oneLine(st.Subject, 998), Text: *st.Body, Meta: meta}
	if st.Reply != nil { // XEP-0461: an answer to a message the bridge delivered
		if ref, err := bot.ParseRef(st.Reply.ID); err == nil {
			o.InReplyTo = ref.MsgID
		}
	}
	sent, err := br.bot.Send(ctx, o)
	if err != nil {
		code := bot.Code(err)
		typ, cond := condition(code)
		br.log.Info().Str("msg_id", o.ID).Str("code", code).Err(err).Msg("chat message refused")
		br.refuse(st, typ, cond, fmt.Sprintf("%s (to %s)", reasonOf(err), to))
		return
	}
	br.log.Debug().Str("msg_id", sent.ID).Str("status", sent.Status).Str("dest", sent.Dest.Gateway).Msg("chat message sent")
}

// reasonOf is an SDK error as a chat user reads it: its code and reason.
func reasonOf(err error) string {
	code, s := bot.Code(err), err.Error()
	for strings.HasPrefix(s, code+": ") {
		s = strings.TrimPrefix(s, code+": ")
	}
	return code + ": " + s
}

// msgID derives the UIMS message id from the stanza, so that a client
// that sends the same stanza again (stream management's resend) sends the
// same message: from the origin-id (XEP-0359), which a client keeps
// unique, else from the sender's full JID, the stanza id and the body
// (clients that count ids from 1 in each session reuse them). Without an
// id, a fresh one.
func msgID(st *stanza) string {
	var key string
	switch {
	case st.OriginID != nil && st.OriginID.ID != "":
		key = "origin\x00" + bareJID(st.From) + "\x00" + st.OriginID.ID
	case st.ID != "":
		key = "stanza\x00" + st.From + "\x00" + st.To + "\x00" + st.ID + "\x00" + *st.Body
	default:
		return ""
	}
	sum := sha256.Sum256([]byte("uims-xmpp-msgid\x00" + key))
	return hex.EncodeToString(sum[:16])
}

// refuse answers a chat user's message with a stanza error (RFC 6120
// §8.3): from the JID it was sent to, with its id, so that the user's
// client marks that message failed.
func (br *Bridge) refuse(st *stanza, typ, cond, text string) {
	c := br.link.current()
	if c == nil {
		return // the stream is down: the server bounced the message already
	}
	err := c.send(&message{From: st.To, To: st.From, ID: st.ID, Type: "error",
		Error: stanzaError(br.cfg.Domain, typ, cond, text)})
	if err != nil {
		br.log.Warn().Err(err).Msg("error stanza not sent")
	}
}

// status tells a chat user what became of their message (UIMS → chat):
// delivered as a receipt (XEP-0184), read as a displayed marker
// (XEP-0333), each only if the message asked for it, and a failure as a
// stanza error with the message's id, or as a chat message from the
// recipient's JID when the message had no id. An error returned has the
// SDK tell the status again a second later (the stream is down).
func (br *Bridge) status(ctx context.Context, s *bot.Status) error {
	user, local := s.Meta[MetaJID], s.Meta[MetaTo]
	if user == "" || local == "" {
		return nil // not a chat user's message
	}
	id := s.Meta[MetaID]
	var m *message
	switch s.Status {
	case schemas.StatusDelivered:
		if s.Meta[MetaReceipt] == "1" && id != "" {
			m = &message{From: local, To: user, ID: randomID(), Received: &idAttr{ID: id}}
		}
	case schemas.StatusRead:
		if s.Meta[MetaMarkable] == "1" && id != "" {
			m = &message{From: local, To: user, ID: randomID(), Type: "chat", Displayed: &idAttr{ID: id}}
		}
	case schemas.StatusFailed:
		reason := strings.TrimSpace(s.Code + ": " + s.Reason)
		if id != "" {
			typ, cond := condition(s.Code)
			m = &message{From: local, To: user, ID: id, Type: "error", Error: stanzaError(br.cfg.Domain, typ, cond, "not delivered: "+reason)}
		} else {
			m = &message{From: local, To: user, ID: randomID(), Type: "chat", Body: "Your message was not delivered: " + reason}
		}
	}
	if m == nil || br.told.seen(s.ID+"/"+s.Status) {
		return nil
	}
	c := br.link.current()
	if c == nil {
		return ErrNotConnected
	}
	if err := c.send(m); err != nil {
		return err
	}
	br.told.add(s.ID + "/" + s.Status)
	return nil
}

// deliver hands a UIMS message to its chat recipient (UIMS → chat). The
// stanza's id is the SDK reference, so that the recipient's receipt,
// marker or bounce names the message without state here. It returns once
// the server routed the stanza (a ping answered after it): nil
// (delivered) when the recipient's client is not known to send receipts,
// bot.ErrLater when it is (the receipt says delivered), a rejection when
// the server bounced it, and Busy when the stream is down (the originator
// sends it again).
func (br *Bridge) deliver(ctx context.Context, m *bot.Message) error {
	to := strings.TrimSpace(m.To)
	if _, d, res := splitJID(to); d == "" || res != "" || strings.ContainsAny(to, " \t\r\n") {
		return bot.Reject(fmt.Sprintf("%q is not a bare JID", m.To))
	}
	if !strings.HasPrefix(m.Type, "text/plain") && m.Type != "" {
		return bot.Reject("a chat message carries text/plain only, not " + m.Type)
	}
	text := m.Text()
	if len(text) > br.cfg.MaxBody {
		return bot.Reject(fmt.Sprintf("TOO_LARGE: %d bytes of text; a chat message takes at most %d", len(text), br.cfg.MaxBody))
	}
	id := m.Ref.String()
	st := &message{From: br.senderJID(m.From), To: to, ID: id, Type: "chat", Subject: oneLine(m.Subject, 998),
		Body: text, Request: &empty{}, Markable: &empty{}}

	// Leave a second of the handler's time to answer: a handler that
	// overruns fails the message for good.
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl.Add(-time.Second))
		defer cancel()
	}
	c, err := br.link.get(ctx)
	if err != nil {
		return bot.Busy("the XMPP server is not connected: try again")
	}
	bounce := c.expect(id)
	defer c.forget(id)
	if err := c.send(st); err != nil {
		return bot.Busy("the XMPP server is not connected: try again")
	}
	if err := c.ping(ctx, br.cfg.ServerDomain); err != nil {
		return bot.Busy("the XMPP server did not confirm the message: try again")
	}
	select {
	case b := <-bounce:
		cond, text := b.Error.condition()
		return bot.Reject(strings.TrimSpace("the XMPP server bounced the message: " + cond + " " + text))
	default:
	}
	if br.caps.known(strings.ToLower(to)) {
		br.log.Debug().Str("msg_id", m.ID).Msg("sent; the recipient sends receipts")
		return bot.ErrLater
	}
	br.log.Debug().Str("msg_id", m.ID).Msg("sent; the recipient is not known to send receipts: delivered")
	return nil
}

// senderJID is the JID a UIMS sender writes from: its client id at the
// bridge's domain, else its address escaped (XEP-0106), with its medium
// named unless it is e-mail or SMS (PROTOCOL.md §6.3), so that the chat
// user's answer goes back to it.
func (br *Bridge) senderJID(from bot.Endpoint) string {
	if from.Client != "" {
		return from.Client + "@" + br.cfg.Domain
	}
	addr := from.Address
	switch from.Medium {
	case schemas.MediumEmail, schemas.MediumSMS, "":
	default:
		addr = from.Medium + ":" + addr
	}
	return localpart.Escape(addr) + "@" + br.cfg.Domain
}

// ack reports a receipt or marker for a message the bridge delivered.
func (br *Bridge) ack(ctx context.Context, from, id, status string) {
	ref, err := bot.ParseRef(id)
	if err != nil {
		return // a receipt for something else (a stanza error, a presence...)
	}
	if status == schemas.StatusRead {
		err = br.bot.Read(ctx, ref)
	} else {
		err = br.bot.Delivered(ctx, ref)
	}
	if err != nil {
		// delivered after read, or the same receipt twice: nothing changes
		br.log.Debug().Err(err).Str("msg_id", ref.MsgID).Str("status", status).Msg("receipt not applied")
		return
	}
	br.log.Debug().Str("msg_id", ref.MsgID).Str("status", status).Msg("receipt")
}

// bounced reports a bounce that came after deliver returned (the
// recipient's server, or a client, refused the message later).
func (br *Bridge) bounced(ctx context.Context, st *stanza) {
	ref, err := bot.ParseRef(st.ID)
	if err != nil {
		return
	}
	cond, text := st.Error.condition()
	if err := br.bot.Failed(ctx, ref, strings.TrimSpace("the XMPP server bounced the message: "+cond+" "+text)); err != nil {
		br.log.Debug().Err(err).Str("msg_id", ref.MsgID).Msg("late bounce not applied (already delivered)")
	}
}

// iq answers pings and service discovery; other requests get
// service-unavailable (RFC 6120 §8.4).
func (br *Bridge) iq(st *stanza) {
	if st.Type != "get" && st.Type != "set" {
		return
	}
	c := br.link.current()
	if c == nil {
		return
	}
	r := &iqReply{ID: st.ID, From: st.To, To: st.From, Type: "result"}
	var payload string
	if len(st.Payload) > 0 {
		payload = st.Payload[0].XMLName.Space
	}
	switch {
	case st.Type == "get" && payload == nsPing:
	case st.Type == "get" && payload == nsDisco:
		if local, _, _ := splitJID(st.To); local == "" {
			r.Disco = newDiscoInfo("gateway", "uims", "UIMS bridge")
		} else {
			r.Disco = newDiscoInfo("client", "bot", "UIMS recipient")
		}
	default:
		r.Type, r.Error = "error", stanzaError(br.cfg.Domain, "cancel", "service-unavailable", "")
	}
	c.send(r)
}

// presence answers subscription requests, so that a chat user may keep a
// UIMS recipient in the roster (RFC 6121 §3): a request is approved and
// the JID shows as available; probes are answered likewise.
func (br *Bridge) presence(st *stanza) {
	c := br.link.current()
	if c == nil || bareJID(st.To) == "" {
		return
	}
	from, to := bareJID(st.To), bareJID(st.From)
	switch st.Type {
	case "subscribe":
		c.send(&presence{From: from, To: to, Type: "subscribed"})
		c.send(&presence{From: from, To: to})
	case "probe":
		c.send(&presence{From: from, To: to})
	case "unsubscribe":
		c.send(&presence{From: from, To: to, Type: "unsubscribed"})
	}
}

// splitJID splits a JID (RFC 7622 §3.1) into localpart, domainpart and
// resourcepart; the resource may hold '@' and '/'.
func splitJID(j string) (local, domain, resource string) {
	if i := strings.IndexByte(j, '/'); i >= 0 {
		j, resource = j[:i], j[i+1:]
	}
	if i := strings.IndexByte(j, '@'); i >= 0 {
		local, j = j[:i], j[i+1:]
	}
	return local, j, resource
}

// bareJID returns the bare JID, in lower case (the server sends JIDs
// prepared; the case-folding only guards the comparisons).
func bareJID(j string) string {
	local, domain, _ := splitJID(j)
	if local == "" {
		return strings.ToLower(domain)
	}
	return strings.ToLower(local + "@" + domain)
}

// receiptUsers remembers the chat users whose clients speak receipts or
// markers (they asked for them, or sent them) for a day.
type receiptUsers struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

const receiptMemory = 24 * time.Hour

func (r *receiptUsers) saw(bare string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = map[string]time.Time{}
	}
	now := time.Now()
	if len(r.seen) > 100_000 {
		for k, t := range r.seen {
			if now.Sub(t) > receiptMemory {
				delete(r.seen, k)
			}
		}
	}
	r.seen[bare] = now
}

func (r *receiptUsers) known(bare string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.seen[bare]
	return ok && time.Since(t) < receiptMemory
}

// recent is a bounded set of the statuses the bridge told, so that a
// notification told again is not sent twice.
type recent struct {
	mu    sync.Mutex
	set   map[string]struct{}
	order []string
}

func (r *recent) seen(k string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.set[k]
	return ok
}

func (r *recent) add(k string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.set == nil {
		r.set = map[string]struct{}{}
	}
	if _, ok := r.set[k]; ok {
		return
	}
	r.set[k] = struct{}{}
	r.order = append(r.order, k)
	if len(r.order) > 8192 {
		delete(r.set, r.order[0])
		r.order = r.order[1:]
	}
}
