package sms

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/uims/uims/gateways/kit/authlimit"
	"github.com/uims/uims/gateways/sms/pdu"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// bindMode is the state of an SMPP session (SMPP 3.4 §2.3).
type bindMode uint8

const (
	modeOpen bindMode = iota // connected, not bound
	modeTX                   // bound_tx
	modeRX                   // bound_rx
	modeTRX                  // bound_trx
)

func (m bindMode) String() string {
	return [...]string{"open", "bound_tx", "bound_rx", "bound_trx"}[m]
}

func (m bindMode) canSubmit() bool  { return m == modeTX || m == modeTRX }
func (m bindMode) canReceive() bool { return m == modeRX || m == modeTRX }

// maxBindFailures is how many failed binds a connection gets before it is
// closed; each failure is also delayed to slow down password guessing.
const maxBindFailures = 3

// errSessionClosed: the session ended while a request was outstanding.
var errSessionClosed = errors.New("sms: session closed")

// session is one ESME connection to the SMPP server.
type session struct {
	g    *Gateway
	conn net.Conn

	mu       sync.Mutex
	log      *zerolog.Logger // with the client once bound
	mode     bindMode
	client   *schemas.ClientInfo
	systemID string
	pending  map[uint32]chan pdu.PDU
	failures int

	wmu  sync.Mutex
	wbuf []byte

	seq  atomic.Uint32
	in   chan struct{} // window: incoming requests being handled
	out  chan struct{} // window: our requests awaiting a response
	done chan struct{}
	once sync.Once
	wg   sync.WaitGroup
}

func newSession(g *Gateway, conn net.Conn) *session {
	l := g.log.With().Str("remote", conn.RemoteAddr().String()).Logger()
	return &session{g: g, conn: conn, pending: make(map[uint32]chan pdu.PDU),
		in: make(chan struct{}, g.cfg.Window), out: make(chan struct{}, g.cfg.Window), done: make(chan struct{}), log: &l}
}

func (s *session) logger() *zerolog.Logger {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log
}

// countingReader counts the octets read, so that an idle timeout between
// frames can be told from one inside a frame.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// serve reads and handles PDUs until the session ends.
func (s *session) serve(ctx context.Context) {
	defer s.wg.Wait()
	defer s.close("")
	cr := &countingReader{r: s.conn}
	r := pdu.NewReader(cr, s.g.cfg.MaxPDU)
	for {
		start := cr.n
		s.conn.SetReadDeadline(time.Now().Add(s.g.cfg.EnquireLink))
		frame, err := r.ReadFrame()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && cr.n == start && ctx.Err() == nil {
				s.wg.Add(1)
				go func() { defer s.wg.Done(); s.ping(ctx) }()
				continue
			}
			var pe *pdu.Error
			if errors.As(err, &pe) {
				// The stream lost its framing (§3.2: command_length out of
				// range, or the stream ended inside a PDU): generic_nack
				// and close, nothing after it can be read reliably.
				s.logger().Warn().Err(err).Msg("SMPP framing error; session closed")
				s.send(&pdu.GenericNack{Header: pdu.Header{Status: pe.Status, Sequence: pe.Header.Sequence}})
			} else if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.logger().Debug().Err(err).Msg("read")
			}
			return
		}
		p, err := pdu.Decode(frame)
		if err != nil {
			// One frame consumed, the stream is in sync: answer and go on.
			var pe *pdu.Error
			if errors.As(err, &pe) {
				s.logger().Warn().Err(err).Msg("malformed PDU rejected")
				if resp := pe.Response(); resp != nil {
					s.send(resp)
				}
			}
			continue
		}
		if !s.handle(ctx, p) {
			return
		}
	}
}

// handle dispatches one PDU; false ends the session.
func (s *session) handle(ctx context.Context, p pdu.PDU) bool {
	h := p.Hdr()
	switch p := p.(type) {
	case *pdu.BindTransmitter:
		return s.bind(ctx, h, &p.BindFields, modeTX, &pdu.BindTransmitterResp{})
	case *pdu.BindReceiver:
		return s.bind(ctx, h, &p.BindFields, modeRX, &pdu.BindReceiverResp{})
	case *pdu.BindTransceiver:
		return s.bind(ctx, h, &p.BindFields, modeTRX, &pdu.BindTransceiverResp{})
	case *pdu.EnquireLink: // §4.11: allowed in every state
		s.send(&pdu.EnquireLinkResp{Header: pdu.Header{Sequence: h.Sequence}})
	case *pdu.Unbind: // §4.2
		s.send(&pdu.UnbindResp{Header: pdu.Header{Sequence: h.Sequence}})
		s.logger().Info().Str("system_id", s.getSystemID()).Msg("unbound")
		return false
	case *pdu.SubmitSM:
		s.request(ctx, p, func(ctx context.Context) pdu.PDU {
			id, status := s.g.submitFromApp(ctx, s, &p.MessageFields)
			return &pdu.SubmitSMResp{Header: pdu.Header{Status: status, Sequence: h.Sequence}, RespFields: pdu.RespFields{MessageID: id}}
		})
	case *pdu.DataSM:
		s.request(ctx, p, func(ctx context.Context) pdu.PDU {
			m := pdu.MessageFields{SourceAddrTON: p.SourceAddrTON, SourceAddrNPI: p.SourceAddrNPI, SourceAddr: p.SourceAddr,
				DestAddrTON: p.DestAddrTON, DestAddrNPI: p.DestAddrNPI, DestinationAddr: p.DestinationAddr,
				ESMClass: p.ESMClass, RegisteredDelivery: p.RegisteredDelivery, DataCoding: p.DataCoding, TLVs: p.TLVs}
			id, status := s.g.submitFromApp(ctx, s, &m)
			return &pdu.DataSMResp{Header: pdu.Header{Status: status, Sequence: h.Sequence}, MessageID: id}
		})
	case *pdu.SubmitMulti:
		s.request(ctx, p, func(ctx context.Context) pdu.PDU { return s.g.submitMultiFromApp(ctx, s, p) }) // multi.go
	case *pdu.QuerySM:
		s.request(ctx, p, func(ctx context.Context) pdu.PDU { return s.g.query(ctx, s, p) })
	case *pdu.CancelSM:
		s.request(ctx, p, func(ctx context.Context) pdu.PDU { return s.g.cancel(ctx, s, p) })
	case *pdu.DeliverSMResp, *pdu.GenericNack, *pdu.EnquireLinkResp, *pdu.UnbindResp:
		s.response(p)
	default:
		// A PDU an ESME does not send to an SMSC (outbind, deliver_sm,
		// bind or submit responses): reject it (§5.1.3 ESME_RINVCMDID).
		if h.ID.IsResponse() {
			s.logger().Warn().Stringer("command", h.ID).Uint32("seq", h.Sequence).Msg("unexpected response ignored")
			return true
		}
		s.reject(h, pdu.ESME_RINVCMDID)
	}
	return true
}

// reject answers request h with status: its typed response, or
// generic_nack for commands without one.
func (s *session) reject(h *pdu.Header, status pdu.Status) {
	r := pdu.New(h.ID.Response())
	if r == nil {
		r = &pdu.GenericNack{}
	}
	*r.Hdr() = pdu.Header{Status: status, Sequence: h.Sequence}
	s.send(r)
}

// request handles a submit, data or query request in the background,
// within the session's window.
func (s *session) request(ctx context.Context, p pdu.PDU, fn func(context.Context) pdu.PDU) {
	h := p.Hdr()
	mode := s.getMode()
	if mode == modeOpen || (h.ID != pdu.CmdQuerySM && !mode.canSubmit()) {
		s.reject(h, pdu.ESME_RINVBNDSTS) // §2.3: not allowed in this bind state
		return
	}
	select {
	case s.in <- struct{}{}:
	default:
		// More requests outstanding than the window allows.
		s.reject(h, pdu.ESME_RTHROTTLED)
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		resp := fn(ctx)
		<-s.in // free the slot before the application can see the response
		s.send(resp)
	}()
}

// bind authenticates a bind request with the client profile's SMPP
// credentials (SMPP 3.4 §4.1).
func (s *session) bind(ctx context.Context, h *pdu.Header, f *pdu.BindFields, mode bindMode, resp pdu.PDU) bool {
	rh := resp.Hdr()
	rh.Sequence = h.Sequence
	if s.getMode() != modeOpen {
		rh.Status = pdu.ESME_RALYBND
		s.send(resp)
		return true
	}
	// Failed passwords lock out the system_id and the address
	// (Config.BindPerID, BindPerAddr). A locked-out bind is refused
	// without asking the brokers, whose every query costs a nonce in the
	// store, and after a delay that grows with each refusal.
	remote := s.conn.RemoteAddr().String()
	v, end := authlimit.BeginAll(authlimit.Key{L: s.g.bindAddr, Key: authlimit.HostKey(remote)},
		authlimit.Key{L: s.g.bindID, Key: f.SystemID})
	if !v.OK {
		s.g.bindStats.lockedOut.Add(1)
		s.logger().Warn().Str("system_id", f.SystemID).Str("address", remote).Dur("retry", v.Retry).Bool("security", true).
			Msg("bind refused: locked out after failed binds")
		select {
		case <-time.After(authlimit.Delay(v.Refused, s.g.cfg.BindDelay, 10*s.g.cfg.BindDelay)):
		case <-ctx.Done():
		}
		rh.Status = pdu.ESME_RBINDFAIL
		s.send(resp)
		return s.bindFailed() < maxBindFailures
	}
	qctx, cancel := context.WithTimeout(ctx, s.g.cfg.ResponseTimeout)
	ci, err := s.g.kit.Client(qctx, schemas.ClientQuery{Kind: schemas.CredentialSMPP, User: f.SystemID,
		Hash: schemas.CredentialHash(schemas.CredentialSMPP, f.SystemID, f.Password)})
	cancel()
	if err != nil {
		code := miap.CodeOf(err)
		rh.Status = pdu.ESME_RBINDFAIL
		if code.Retryable() {
			rh.Status = pdu.ESME_RSYSERR
		}
		n := s.bindFailed()
		s.logger().Warn().Str("system_id", f.SystemID).Str("address", remote).Str("code", code.String()).
			Bool("security", code == schemas.CodeUnauthorized).Msg("bind refused")
		if code == schemas.CodeUnauthorized {
			s.g.bindStats.failed.Add(1)
			for _, k := range end(true) {
				s.g.bindStats.lockouts.Add(1)
				what := "system_id"
				if k.L == s.g.bindAddr {
					what = "address"
				}
				s.logger().Warn().Str("system_id", f.SystemID).Str("address", remote).Str("locked_out", what).
					Dur("for", k.L.Policy().Lockout).Bool("security", true).Msg("bind locked out after failed binds")
			}
		} else {
			end(false)
		}
		if code == schemas.CodeUnauthorized {
			select { // slow down password guessing
			case <-time.After(200 * time.Millisecond):
			case <-ctx.Done():
			}
		}
		s.send(resp)
		return n < maxBindFailures
	}
	end(false)
	s.g.bindID.Reset(f.SystemID)
	s.mu.Lock()
	s.mode, s.client, s.systemID = mode, ci, f.SystemID
	s.mu.Unlock()
	l := s.logger().With().Str("system_id", f.SystemID).Str("client", ci.ID).Logger()
	s.mu.Lock()
	s.log = &l
	s.mu.Unlock()
	switch r := resp.(type) {
	case *pdu.BindTransmitterResp:
		r.BindRespFields = s.bindResp()
	case *pdu.BindReceiverResp:
		r.BindRespFields = s.bindResp()
	case *pdu.BindTransceiverResp:
		r.BindRespFields = s.bindResp()
	}
	if !s.send(resp) {
		return false
	}
	s.logger().Info().Stringer("mode", mode).Msg("bound")
	if mode.canReceive() {
		if err := s.g.store.markApp(ctx, ci.ID); err != nil {
			s.logger().Warn().Err(err).Msg("cannot record the application")
		}
		s.g.queue.attach(s)
	}
	return true
}

// bindFailed counts a failed bind of the connection and returns the count.
func (s *session) bindFailed() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures++
	return s.failures
}

func (s *session) bindResp() pdu.BindRespFields {
	var t pdu.TLVs
	t.Set(pdu.TagSCInterfaceVersion, []byte{pdu.InterfaceVersion34}) // §5.3.2.25
	return pdu.BindRespFields{SystemID: s.g.cfg.SystemID, TLVs: t}
}

func (s *session) getMode() bindMode {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mode
}

func (s *session) getSystemID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.systemID
}

func (s *session) clientInfo() *schemas.ClientInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.client
}

// send writes one PDU; false when the connection failed (it is then closed).
func (s *session) send(p pdu.PDU) bool {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	b, err := pdu.Append(s.wbuf[:0], p)
	if err != nil {
		s.logger().Error().Err(err).Stringer("command", p.CommandID()).Msg("cannot encode PDU")
		return true
	}
	s.wbuf = b
	s.conn.SetWriteDeadline(time.Now().Add(s.g.cfg.ResponseTimeout))
	if _, err := s.conn.Write(b); err != nil {
		s.conn.Close() // the reader ends the session
		return false
	}
	return true
}

// call sends a request of ours (deliver_sm, enquire_link) within the
// window and waits for its response.
func (s *session) call(ctx context.Context, p pdu.PDU) (pdu.PDU, error) {
	select {
	case s.out <- struct{}{}:
	case <-s.done:
		return nil, errSessionClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-s.out }()
	seq := s.seq.Add(1) & 0x7FFFFFFF // §3.2: 0x00000001 to 0x7FFFFFFF
	if seq == 0 {
		seq = s.seq.Add(1) & 0x7FFFFFFF
	}
	p.Hdr().Sequence = seq
	ch := make(chan pdu.PDU, 1)
	s.mu.Lock()
	s.pending[seq] = ch
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.pending, seq)
		s.mu.Unlock()
	}()
	if !s.send(p) {
		return nil, errSessionClosed
	}
	t := time.NewTimer(s.g.cfg.ResponseTimeout)
	defer t.Stop()
	select {
	case r := <-ch:
		return r, nil
	case <-t.C:
		return nil, fmt.Errorf("sms: no response to %s within %v", p.CommandID(), s.g.cfg.ResponseTimeout)
	case <-s.done:
		return nil, errSessionClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// response hands a response to the call waiting for it.
func (s *session) response(p pdu.PDU) {
	h := p.Hdr()
	s.mu.Lock()
	ch, ok := s.pending[h.Sequence]
	s.mu.Unlock()
	if !ok {
		if h.ID != pdu.CmdEnquireLinkResp {
			s.logger().Warn().Stringer("command", h.ID).Uint32("seq", h.Sequence).Msg("response to no request of ours")
		}
		return
	}
	select {
	case ch <- p:
	default:
	}
}

// ping checks a silent session with enquire_link and closes it if the
// application does not answer (§4.11).
func (s *session) ping(ctx context.Context) {
	r, err := s.call(ctx, &pdu.EnquireLink{})
	if err != nil || r.Hdr().ID != pdu.CmdEnquireLinkResp {
		s.close("no answer to enquire_link")
	}
}

// deliver sends deliver_sm PDUs in order and returns the first non-OK
// command_status, or an error when the session failed.
func (s *session) deliver(ctx context.Context, pdus []*pdu.DeliverSM) (pdu.Status, error) {
	for _, p := range pdus {
		r, err := s.call(ctx, p)
		if err != nil {
			return 0, err
		}
		if st := r.Hdr().Status; st != pdu.ESME_ROK {
			return st, nil
		}
	}
	return pdu.ESME_ROK, nil
}

// shutdown unbinds the application because the gateway stops (§4.2.1:
// the SMSC may unbind) and closes the session.
func (s *session) shutdown() {
	if s.getMode() != modeOpen {
		s.send(&pdu.Unbind{Header: pdu.Header{Sequence: s.seq.Add(1) & 0x7FFFFFFF}})
	}
	s.close("gateway stopping")
}

// close ends the session once.
func (s *session) close(reason string) {
	s.once.Do(func() {
		if reason != "" {
			s.logger().Info().Str("reason", reason).Msg("session closed")
		}
		s.conn.Close()
		close(s.done)
		s.mu.Lock()
		mode := s.mode
		s.mu.Unlock()
		if mode.canReceive() {
			s.g.queue.detach(s)
		}
	})
}
