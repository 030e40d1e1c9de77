package email

import (
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/uims/uims/gateways/kit/authlimit"
)

// Replies to a connection refused at connect (RFC 5321 §3.1: a server
// may answer 421 instead of the greeting and close).
const (
	replyTooManyFromAddr = "421 4.7.0 too many connections from your address\r\n"
	replyTooBusy         = "421 4.3.2 too many connections, try again later\r\n"
)

// maxRefusing bounds the goroutines writing refusals at the same time;
// beyond it a refused connection is closed without a reply.
const maxRefusing = 64

// limitListener enforces Config.MaxConnections and Config.MaxPerIP at
// accept, answering 421 at once instead of leaving the client in the
// listen queue, and gives every connection the pre-MAIL deadline
// (Config.PreMailTimeout).
type limitListener struct {
	net.Listener
	max, perIP int
	preMail    time.Duration
	log        zerolog.Logger

	mu     sync.Mutex
	total  int
	byAddr map[string]int

	refusing chan struct{}
	// refusedAddr and refusedBusy count refusals (tests, logs).
	refusedAddr, refusedBusy atomic.Int64
}

func newLimitListener(ln net.Listener, cfg *Config, log zerolog.Logger) *limitListener {
	return &limitListener{Listener: ln, max: cfg.MaxConnections, perIP: cfg.MaxPerIP, preMail: cfg.PreMailTimeout,
		log: log, byAddr: make(map[string]int), refusing: make(chan struct{}, maxRefusing)}
}

// Accept returns the next connection within the limits; connections over
// them are answered 421 and closed here.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := authlimit.AddrKey(c.RemoteAddr())
		reply := ""
		l.mu.Lock()
		switch {
		case l.byAddr[key] >= l.perIP:
			reply = replyTooManyFromAddr
			l.refusedAddr.Add(1)
		case l.total >= l.max:
			reply = replyTooBusy
			l.refusedBusy.Add(1)
		default:
			l.total++
			l.byAddr[key]++
		}
		l.mu.Unlock()
		if reply == "" {
			now := time.Now()
			return &limitConn{Conn: c, l: l, key: key, phaseEnd: now.Add(preMailPhase * l.preMail)}, nil
		}
		l.log.Warn().Str("remote", c.RemoteAddr().String()).Str("reply", reply[:len(reply)-2]).Bool("security", true).
			Msg("SMTP connection refused at connect")
		select {
		case l.refusing <- struct{}{}:
			go func() {
				defer func() { <-l.refusing }()
				c.SetWriteDeadline(time.Now().Add(time.Second))
				c.Write([]byte(reply))
				c.Close()
			}()
		default:
			c.Close()
		}
	}
}

func (l *limitListener) release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.byAddr[key]--; l.byAddr[key] <= 0 {
		delete(l.byAddr, key)
	}
}

// preMailPhase is how many PreMailTimeouts a connection has in all before
// it must have begun a transaction or authenticated: a client sending
// NOOP now and then cannot hold its slot for longer.
const preMailPhase = 4

// limitConn is an accepted connection: it gives its slot back when
// closed, and until the session engages (MAIL accepted or AUTH succeeded)
// shortens every read deadline to PreMailTimeout, and to the end of the
// pre-MAIL phase. go-smtp sets the deadline before each command line and
// answers "421 4.4.2 Idle timeout" when it passes.
type limitConn struct {
	net.Conn
	l        *limitListener
	key      string
	phaseEnd time.Time
	engaged  atomic.Bool
	once     sync.Once
}

func (c *limitConn) SetReadDeadline(t time.Time) error {
	if !c.engaged.Load() {
		lim := time.Now().Add(c.l.preMail)
		if c.phaseEnd.Before(lim) {
			lim = c.phaseEnd
		}
		if t.IsZero() || t.After(lim) {
			t = lim
		}
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *limitConn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.SetReadDeadline(t)
}

func (c *limitConn) Close() error {
	c.once.Do(func() { c.l.release(c.key) })
	return c.Conn.Close()
}

// engage lifts the pre-MAIL deadline of the connection under an SMTP
// session's net.Conn (after STARTTLS a *tls.Conn around it).
func engage(nc net.Conn) {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	if lc, ok := nc.(*limitConn); ok {
		lc.engaged.Store(true)
	}
}
