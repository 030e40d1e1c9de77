package sms

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/linxGnu/gosmpp"
	"github.com/linxGnu/gosmpp/data"
	gpdu "github.com/linxGnu/gosmpp/pdu"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/gateways/sms/dlr"
	"github.com/uims/uims/gateways/sms/gsm"
	"github.com/uims/uims/gateways/sms/pdu"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// smscLink is the ESME side of the gateway: one transceiver bind to the
// upstream SMS centre (SMPP 3.4 §4.1.5) with reconnect, a submit window
// and a token bucket on submit_sm.
type smscLink struct {
	g   *Gateway
	cfg SMSCConfig
	log zerolog.Logger
	lim *rate.Limiter
	win chan struct{}

	mu      sync.Mutex
	sess    *gosmpp.Session
	bound   bool
	pending map[int32]*submitWait

	locks [64]sync.Mutex // serialise deliveries of one message id

	srcMu    sync.Mutex
	srcCache map[string]cachedSource
}

type submitWait struct {
	msgID string
	part  int
	ch    chan submitResult
}

type submitResult struct {
	id     string
	status pdu.Status
}

type cachedSource struct {
	addr    address
	expires time.Time
}

// errNotBound: the link to the SMS centre is down.
var errNotBound = errors.New("sms: not bound to the SMS centre")

func newSMSCLink(g *Gateway, cfg SMSCConfig) *smscLink {
	return &smscLink{g: g, cfg: cfg, lim: rate.NewLimiter(rate.Limit(cfg.Rate), cfg.Burst), win: make(chan struct{}, cfg.Window),
		pending: make(map[int32]*submitWait), srcCache: make(map[string]cachedSource),
		log: g.log.With().Str("smsc", cfg.Addr).Str("smsc_system_id", cfg.SystemID).Logger()}
}

// dial connects and bounds the bind phase, which gosmpp does not time out.
func (l *smscLink) dial(addr string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, l.cfg.ResponseTimeout)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(l.cfg.ResponseTimeout))
	return c, nil
}

// run binds to the centre until ctx is done. gosmpp rebinds a session
// that breaks; the first bind is retried here.
func (l *smscLink) run(ctx context.Context) {
	auth := gosmpp.Auth{SMSC: l.cfg.Addr, SystemID: l.cfg.SystemID, Password: l.cfg.Password, SystemType: l.cfg.SystemType}
	settings := gosmpp.Settings{
		EnquireLink:      l.cfg.EnquireLink,
		ReadTimeout:      2*l.cfg.EnquireLink + l.cfg.ResponseTimeout,
		WriteTimeout:     l.cfg.ResponseTimeout,
		OnAllPDU:         l.onPDU,
		OnSubmitError:    l.onSubmitError,
		OnReceivingError: func(err error) { l.log.Debug().Err(err).Msg("SMS centre link read") },
		OnRebindingError: func(err error) { l.log.Warn().Err(err).Msg("cannot rebind to the SMS centre") },
		OnClosed:         l.onClosed,
		OnRebind: func() {
			l.setBound(true)
			l.log.Info().Msg("rebound to the SMS centre")
		},
	}
	for attempt := 0; ; attempt++ {
		sess, err := gosmpp.NewSession(gosmpp.TRXConnector(l.dial, auth), settings, l.cfg.ReconnectDelay)
		if err == nil {
			l.mu.Lock()
			l.sess, l.bound = sess, true
			l.mu.Unlock()
			l.log.Info().Msg("bound to the SMS centre as transceiver")
			<-ctx.Done()
			l.setBound(false)
			sess.Close()
			l.failPending()
			return
		}
		if attempt%10 == 0 {
			l.log.Warn().Err(err).Msg("cannot bind to the SMS centre; retrying")
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(l.cfg.ReconnectDelay):
		}
	}
}

func (l *smscLink) setBound(b bool) {
	l.mu.Lock()
	l.bound = b
	l.mu.Unlock()
}

func (l *smscLink) onClosed(state gosmpp.State) {
	l.setBound(false)
	l.failPending()
	l.log.Warn().Str("state", state.String()).Msg("SMS centre link closed; rebinding")
}

// failPending ends every submit waiting for a response: the link that
// carried them is gone.
func (l *smscLink) failPending() {
	l.mu.Lock()
	pending := l.pending
	l.pending = make(map[int32]*submitWait)
	l.mu.Unlock()
	for _, w := range pending {
		w.ch <- submitResult{status: pdu.ESME_RSYSERR}
	}
}

func (l *smscLink) take(seq int32) *submitWait {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.pending[seq]
	delete(l.pending, seq)
	return w
}

func (l *smscLink) onSubmitError(p gpdu.PDU, err error) {
	if w := l.take(p.GetSequenceNumber()); w != nil {
		l.log.Warn().Err(err).Str("msg_id", w.msgID).Msg("submit_sm not sent")
		w.ch <- submitResult{status: pdu.ESME_RSYSERR}
	}
}

// onPDU handles every PDU from the centre on gosmpp's reader goroutine;
// the returned PDU is the response to send.
func (l *smscLink) onPDU(p gpdu.PDU) (gpdu.PDU, bool) {
	switch p := p.(type) {
	case *gpdu.SubmitSMResp:
		l.onSubmitResp(p.GetSequenceNumber(), pdu.Status(p.CommandStatus), p.MessageID)
	case *gpdu.GenericNack:
		l.onSubmitResp(p.GetSequenceNumber(), pdu.Status(p.CommandStatus), "")
	case *gpdu.DeliverSM:
		r := p.GetResponse()
		if st := l.onDeliver(p); st != pdu.ESME_ROK {
			setStatus(r, data.CommandStatusType(st))
		}
		return r, false
	case *gpdu.EnquireLink:
		return p.GetResponse(), false
	case *gpdu.Unbind:
		return p.GetResponse(), true
	case *gpdu.DataSM:
		r := p.GetResponse()
		setStatus(r, data.ESME_RINVCMDID)
		return r, false
	}
	return nil, false
}

func setStatus(p gpdu.PDU, st data.CommandStatusType) {
	switch r := p.(type) {
	case *gpdu.DeliverSMResp:
		r.CommandStatus = st
	case *gpdu.DataSMResp:
		r.CommandStatus = st
	}
}

// onSubmitResp records the centre's message id before the reader reads
// on, so that a receipt right behind the response finds it.
func (l *smscLink) onSubmitResp(seq int32, status pdu.Status, id string) {
	w := l.take(seq)
	if w == nil {
		l.log.Warn().Int32("seq", seq).Msg("submit_sm_resp for no pending submit")
		return
	}
	if status == pdu.ESME_ROK {
		ctx, cancel := context.WithTimeout(context.Background(), l.cfg.ResponseTimeout)
		for _, k := range dlr.NormalizeID(id) {
			if err := l.g.store.putID(ctx, k, idRef{MsgID: w.msgID, Part: w.part}); err != nil {
				l.log.Error().Err(err).Str("msg_id", w.msgID).Str("smsc_id", id).Msg("cannot store the SMS centre's message id")
			}
		}
		if _, err := l.g.store.updateRecord(ctx, w.msgID, func(r *smscRecord) error {
			if w.part < len(r.IDs) {
				r.IDs[w.part] = id
			}
			return nil
		}); err != nil {
			l.log.Error().Err(err).Str("msg_id", w.msgID).Msg("cannot record the SMS centre's message id")
		}
		cancel()
	}
	w.ch <- submitResult{id: id, status: status}
}

// deliver sends a message to a phone number through the centre: one
// submit_sm per part with registered delivery. It reports transferred;
// the centre's receipts become the acknowledgement. A retry of the same
// message sends only the parts not yet accepted.
func (l *smscLink) deliver(ctx context.Context, d *kit.Delivery, text string) (string, error) {
	if d.Routed.IMI.Gateway == l.g.cfg.Gateway && d.Routed.IMI.Meta["sms.via"] == "smsc" {
		// A mobile-originated message would go straight back to the
		// centre that delivered it to us: a loop.
		if d.Routed.Recipient != "" {
			return "", schemas.Errorf(schemas.CodeUnreachable, nil,
				"client "+d.Routed.Recipient+" takes SMS only through the SMS centre, where this message came from")
		}
		return "", schemas.Errorf(schemas.CodeUnknownRecipient, nil, "no client has the number "+d.Routed.Dest.Address)
	}
	msgID := d.Ref.MsgID
	h := fnv.New32a()
	h.Write([]byte(msgID))
	lock := &l.locks[h.Sum32()%uint32(len(l.locks))]
	lock.Lock()
	defer lock.Unlock()

	ref := udhRef(msgID)
	segs, coding := segments(text, d.Routed.Options["sms.long"], l.g.cfg.InboxURL, ref, l.g.cfg.MaxParts)
	rec, _, err := l.g.store.getRecord(ctx, msgID)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		rec = &smscRecord{Ref: d.Ref, UDHRef: ref, IDs: make([]string, len(segs)), Final: make([]string, len(segs)), Err: make([]string, len(segs))}
		if _, err = l.g.store.createRecord(ctx, msgID, rec); err == nil {
			rec, _, err = l.g.store.getRecord(ctx, msgID)
		}
	}
	if err != nil {
		return "", schemas.Errorf(schemas.CodeBusy, err, "SMS centre state")
	}
	if rec.Acked != "" {
		return schemas.StatusTransferred, nil
	}
	src, err := l.source(ctx, d)
	if err != nil {
		return "", schemas.Errorf(schemas.CodeBusy, err, "sender profile")
	}
	dst := smppAddress(d.Routed.Dest.Address, 20)
	for i, seg := range segs {
		if i < len(rec.IDs) && rec.IDs[i] != "" {
			continue // accepted by the centre on an earlier attempt
		}
		if err := l.submit(ctx, msgID, i, src, dst, seg, coding); err != nil {
			return "", err
		}
	}
	l.log.Info().Str("msg_id", msgID).Str("to", dst.Addr).Int("parts", len(segs)).Stringer("coding", coding).Msg("submitted to the SMS centre")
	return schemas.StatusTransferred, nil
}

// submit sends one part and waits for submit_sm_resp (SMPP 3.4 §4.4).
func (l *smscLink) submit(ctx context.Context, msgID string, part int, src, dst address, seg gsm.Segment, c gsm.Coding) error {
	if err := l.lim.Wait(ctx); err != nil {
		return schemas.Errorf(schemas.CodeBusy, err, "SMS centre rate limit")
	}
	select {
	case l.win <- struct{}{}:
	case <-ctx.Done():
		return schemas.Errorf(schemas.CodeBusy, ctx.Err(), "SMS centre window")
	}
	defer func() { <-l.win }()

	sm := gpdu.NewSubmitSM().(*gpdu.SubmitSM)
	sm.SourceAddr = gaddr(src)
	sm.DestAddr = gaddr(dst)
	sm.RegisteredDelivery = pdu.RegisteredDeliveryFinal
	if seg.UDH != nil {
		sm.EsmClass = pdu.ESMClassUDHI
	}
	enc := data.GSM7BIT // unpacked septets, data_coding 0
	if c == gsm.CodingUCS2 {
		enc = data.UCS2
	}
	if err := sm.Message.SetMessageDataWithEncoding(seg.ShortMessage(), enc); err != nil {
		return schemas.Errorf(schemas.CodeTooLarge, err, "SMS part")
	}
	w := &submitWait{msgID: msgID, part: part, ch: make(chan submitResult, 1)}
	seq := sm.GetSequenceNumber()
	l.mu.Lock()
	if !l.bound || l.sess == nil {
		l.mu.Unlock()
		return schemas.Errorf(schemas.CodeBusy, errNotBound, "")
	}
	l.pending[seq] = w
	trx := l.sess.Transceiver()
	l.mu.Unlock()
	if err := trx.Submit(sm); err != nil {
		l.take(seq)
		return schemas.Errorf(schemas.CodeBusy, err, "submit to the SMS centre")
	}
	t := time.NewTimer(l.cfg.ResponseTimeout)
	defer t.Stop()
	var r submitResult
	select {
	case r = <-w.ch:
	case <-t.C:
		l.take(seq)
		return schemas.Errorf(schemas.CodeBusy, nil, "no submit_sm_resp from the SMS centre")
	case <-ctx.Done():
		l.take(seq)
		return schemas.Errorf(schemas.CodeBusy, ctx.Err(), "submit to the SMS centre")
	}
	switch r.status {
	case pdu.ESME_ROK:
		return nil
	case pdu.ESME_RTHROTTLED, pdu.ESME_RMSGQFUL, pdu.ESME_RSYSERR, pdu.ESME_RX_T_APPN, pdu.ESME_RUNKNOWNERR:
		return schemas.Errorf(schemas.CodeBusy, nil, "SMS centre: "+r.status.String())
	case pdu.ESME_RINVDSTADR, pdu.ESME_RINVDSTTON, pdu.ESME_RINVDSTNPI:
		return schemas.Errorf(schemas.CodeUnknownRecipient, nil, "SMS centre: "+r.status.String())
	case pdu.ESME_RINVMSGLEN, pdu.ESME_RINVDCS, pdu.ESME_RINVESMCLASS:
		return schemas.Errorf(schemas.CodeUnsupported, nil, "SMS centre: "+r.status.String())
	}
	return schemas.Errorf(schemas.CodeNotAllowed, nil, "SMS centre refused submit_sm: "+r.status.String())
}

func gaddr(a address) gpdu.Address {
	g := gpdu.NewAddressWithTonNpi(a.TON, a.NPI)
	g.SetAddress(a.Addr)
	return g
}

// source is the source_addr of a message to a phone number: the sender's
// phone number when it has one, else the configured source address. An
// error means the sender's profile could not be looked up now (a
// retryable code): the message waits rather than go out under the
// gateway's number.
func (l *smscLink) source(ctx context.Context, d *kit.Delivery) (address, error) {
	from := d.Routed.IMI.From
	if from.Medium == schemas.MediumSMS {
		if _, ok := phoneDigits(from.Address); ok {
			return smppAddress(from.Address, 20), nil
		}
	}
	if sender := d.Routed.Sender; sender != "" {
		l.srcMu.Lock()
		c, ok := l.srcCache[sender]
		l.srcMu.Unlock()
		if ok && time.Now().Before(c.expires) {
			return c.addr, nil
		}
		qctx, cancel := context.WithTimeout(ctx, l.cfg.ResponseTimeout)
		ci, err := l.g.kit.Client(qctx, schemas.ClientQuery{Kind: "id", User: sender})
		cancel()
		if err != nil && miap.CodeOf(err).Retryable() {
			return address{}, err
		}
		if err == nil {
			a := smppAddress(l.cfg.SourceAddr, 11)
			if n, ok := phoneDigits(ci.Addresses[schemas.MediumSMS]); ok {
				a = smppAddress(n, 20)
			}
			l.srcMu.Lock()
			if len(l.srcCache) > 10000 {
				clear(l.srcCache)
			}
			l.srcCache[sender] = cachedSource{addr: a, expires: time.Now().Add(5 * time.Minute)}
			l.srcMu.Unlock()
			return a, nil
		}
	}
	return smppAddress(l.cfg.SourceAddr, 11), nil
}

// onDeliver handles deliver_sm from the centre: a delivery receipt for a
// message we submitted, or a mobile-originated message. It returns the
// command_status of deliver_sm_resp (SMPP 3.4 §4.6.2).
func (l *smscLink) onDeliver(p *gpdu.DeliverSM) pdu.Status {
	raw, _ := p.Message.GetMessageData()
	if udh := p.Message.UDH(); len(udh) > 0 {
		if b, err := udh.MarshalBinary(); err == nil {
			raw = append(append([]byte{}, b...), raw...)
		}
	}
	var tlvs pdu.TLVs
	for tag, f := range p.OptionalParameters {
		tlvs = append(tlvs, pdu.TLV{Tag: pdu.Tag(tag), Value: f.Data})
	}
	if len(raw) == 0 {
		if v, ok := tlvs.MessagePayload(); ok {
			raw = v
		}
	}
	// §5.2.12: message type bits 5..2; 0x04 SMSC delivery receipt, 0x20
	// intermediate notification.
	if t := p.EsmClass & 0x3C; t == 0x04 || t == 0x20 {
		return l.onReceipt(raw, tlvs)
	}
	dcs := uint8(0xFF) // unknown to gosmpp: refused as undecodable
	if enc := p.Message.Encoding(); enc != nil {
		dcs = enc.DataCoding()
	}
	in := &incoming{src: address{TON: p.SourceAddr.Ton(), NPI: p.SourceAddr.Npi(), Addr: p.SourceAddr.Address()},
		dst: address{TON: p.DestAddr.Ton(), NPI: p.DestAddr.Npi(), Addr: p.DestAddr.Address()},
		esm: p.EsmClass, dcs: dcs, data: raw, tlvs: tlvs}
	ctx, cancel := context.WithTimeout(context.Background(), l.g.cfg.SendTimeout)
	defer cancel()
	_, err := l.g.accept(ctx, in)
	if err == nil {
		return pdu.ESME_ROK
	}
	l.log.Info().Err(err).Str("from", in.src.Addr).Str("to", in.dst.Addr).Msg("mobile-originated message refused")
	var re *rejectError
	switch {
	case errors.As(err, &re):
		return re.status
	case miap.CodeOf(err).Retryable(), errors.Is(err, context.DeadlineExceeded):
		return pdu.ESME_RX_T_APPN // the centre retries later
	}
	return pdu.ESME_RX_P_APPN
}

// onReceipt matches a delivery receipt to our message, whatever form the
// centre writes its message id in (dlr.NormalizeID), and acknowledges the
// outcome to the brokers once every part has one.
func (l *smscLink) onReceipt(raw []byte, tlvs pdu.TLVs) pdu.Status {
	text := string(raw)
	r, perr := dlr.Parse(text)
	id, ok := tlvs.ReceiptedMessageID()
	if !ok || id == "" {
		if perr != nil {
			l.log.Warn().Err(perr).Str("text", text).Msg("receipt without a message id ignored")
			return pdu.ESME_ROK
		}
		id = r.ID
	}
	stat := r.Stat
	if st, ok := tlvs.MessageState(); ok {
		if s := statOf(st); s != "" {
			stat = s
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.ResponseTimeout)
	defer cancel()
	var ref idRef
	found := false
	for _, k := range dlr.NormalizeID(id) {
		var err error
		if ref, found, err = l.g.store.lookupID(ctx, k); err != nil {
			l.log.Warn().Err(err).Str("smsc_id", id).Msg("receipt lookup failed; the centre will retry")
			return pdu.ESME_RX_T_APPN
		}
		if found {
			break
		}
	}
	log := l.log.With().Str("smsc_id", id).Str("stat", string(stat)).Logger()
	if !found {
		log.Warn().Msg("receipt for a message id we do not know")
		return pdu.ESME_ROK
	}
	if !stat.Final() {
		log.Debug().Str("msg_id", ref.MsgID).Msg("intermediate receipt")
		return pdu.ESME_ROK
	}
	var ack string
	rec, err := l.g.store.updateRecord(ctx, ref.MsgID, func(rec *smscRecord) error {
		ack = ""
		if ref.Part >= len(rec.Final) {
			return nil
		}
		rec.Final[ref.Part] = string(stat)
		if len(rec.Err) == len(rec.Final) {
			rec.Err[ref.Part] = r.Err
		}
		if rec.Acked != "" {
			return nil
		}
		if stat != dlr.StatDelivered {
			ack = schemas.StatusFailed
		} else {
			ack = schemas.StatusDelivered
			for _, f := range rec.Final {
				if f != string(dlr.StatDelivered) {
					ack = ""
				}
			}
		}
		rec.Acked = ack
		return nil
	})
	if err != nil {
		log.Warn().Err(err).Msg("receipt not recorded; the centre will retry")
		return pdu.ESME_RX_T_APPN
	}
	log = log.With().Str("msg_id", ref.MsgID).Int("part", ref.Part+1).Logger()
	if ack == "" {
		log.Info().Msg("receipt for a part")
		return pdu.ESME_ROK
	}
	code, reason := "", ""
	if ack == schemas.StatusFailed {
		if stat == dlr.StatExpired {
			code = schemas.CodeExpired.String()
		}
		reason = fmt.Sprintf("SMS centre receipt: stat:%s err:%s", stat, strings.TrimSpace(r.Err))
	}
	if err := l.g.kit.Ack(ctx, rec.Ref, ack, code, reason); err != nil {
		log.Warn().Err(err).Msg("acknowledgement refused")
	}
	log.Info().Str("status", ack).Msg("receipt from the SMS centre")
	return pdu.ESME_ROK
}

// statOf maps message_state (§5.2.28) to the receipt stat.
func statOf(s pdu.MessageState) dlr.Stat {
	switch s {
	case pdu.StateEnroute:
		return dlr.StatEnroute
	case pdu.StateDelivered:
		return dlr.StatDelivered
	case pdu.StateExpired:
		return dlr.StatExpired
	case pdu.StateDeleted:
		return dlr.StatDeleted
	case pdu.StateUndeliverable:
		return dlr.StatUndeliverable
	case pdu.StateAccepted:
		return dlr.StatAccepted
	case pdu.StateUnknown:
		return dlr.StatUnknown
	case pdu.StateRejected:
		return dlr.StatRejected
	}
	return ""
}
