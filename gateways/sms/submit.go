package sms

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/gateways/sms/gsm"
	"github.com/uims/uims/gateways/sms/pdu"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// incoming is a short message received from an application (submit_sm,
// data_sm) or from the SMS centre (deliver_sm).
type incoming struct {
	// origin is the bound client id, or "" for the SMS centre.
	origin   string
	src, dst address
	esm      uint8 // esm_class §5.2.12
	dcs      uint8 // data_coding §5.2.19
	rd       uint8 // registered_delivery §5.2.17
	data     []byte
	tlvs     pdu.TLVs
	// schedule_delivery_time, validity_period (Unix ms, 0: none) and a
	// priority_flag of 2 or more (PROTOCOL.md §6.16)
	sendAt, expires int64
	urgent          bool
}

// rejectError is a refusal of a short message with the command_status to
// answer it with.
type rejectError struct {
	status pdu.Status
	msg    string
}

func (e *rejectError) Error() string { return fmt.Sprintf("%s: %s", e.status, e.msg) }

func reject(status pdu.Status, format string, args ...any) error {
	return &rejectError{status: status, msg: fmt.Sprintf(format, args...)}
}

// codingOf interprets data_coding (SMPP 3.4 §5.2.19; values 0x10 to 0x3F
// and 0xF0 to 0xFF per the GSM 03.38 data coding groups).
func codingOf(dcs uint8) (gsm.Coding, error) {
	switch {
	case dcs == 0x00:
		return gsm.CodingGSM7, nil
	case dcs == 0x01:
		return gsm.CodingASCII, nil
	case dcs == 0x03:
		return gsm.CodingLatin1, nil
	case dcs == 0x08:
		return gsm.CodingUCS2, nil
	case dcs >= 0x10 && dcs <= 0x3F: // general data coding, uncompressed: alphabet in bits 3..2
		if dcs&0x20 == 0 {
			switch (dcs >> 2) & 3 {
			case 0:
				return gsm.CodingGSM7, nil
			case 2:
				return gsm.CodingUCS2, nil
			}
		}
	case dcs >= 0xF0: // data coding / message class: bit 2 selects 8-bit data
		if dcs&0x04 == 0 {
			return gsm.CodingGSM7, nil
		}
	}
	return 0, fmt.Errorf("data_coding 0x%02X is not text this gateway decodes", dcs)
}

// decodeText decodes a short message. IA5 text (data_coding 1) that
// carries GSM escape sequences or other control octets is GSM 7-bit
// labelled IA5, as some SMS centres send it (node-smpp does for every
// GSM text): it is decoded as GSM 7-bit.
func decodeText(c gsm.Coding, b []byte) (string, error) {
	if c == gsm.CodingASCII && slices.ContainsFunc(b, func(x byte) bool { return x < 0x20 && x != '\n' && x != '\r' }) {
		if s, err := gsm.DecodeSeptets(b); err == nil {
			return s, nil
		}
	}
	return gsm.Decode(c, b)
}

// submitFromApp handles submit_sm and data_sm of a bound application
// (SMPP 3.4 §4.4, §4.7): it returns the message id for the response and
// the command_status, only once the fabric took the message
// (docs/RELIABILITY.md, Hand-over).
func (g *Gateway) submitFromApp(ctx context.Context, s *session, m *pdu.MessageFields) (string, pdu.Status) {
	ci := s.clientInfo()
	in := &incoming{origin: ci.ID,
		src: address{TON: m.SourceAddrTON, NPI: m.SourceAddrNPI, Addr: m.SourceAddr},
		dst: address{TON: m.DestAddrTON, NPI: m.DestAddrNPI, Addr: m.DestinationAddr},
		esm: m.ESMClass, dcs: m.DataCoding, rd: m.RegisteredDelivery, data: m.Message(), tlvs: m.TLVs}
	if strings.TrimSpace(in.src.Addr) == "" {
		// No source address: the client's own number, else its id.
		if a := ci.Addresses[schemas.MediumSMS]; a != "" {
			in.src = smppAddress(a, 20)
		} else {
			in.src = address{TON: tonAlphanumeric, Addr: ci.ID}
		}
	}
	var err error
	switch {
	case strings.TrimSpace(in.dst.Addr) == "":
		err = reject(pdu.ESME_RINVDSTADR, "empty destination_addr")
	case m.ESMClass&0x3C != 0: // §5.2.12 message type bits: only a normal message can be submitted
		err = reject(pdu.ESME_RINVESMCLASS, "esm_class 0x%02X is not a normal message", m.ESMClass)
	case len(m.ShortMessage) > 0 && len(m.TLVs) > 0 && hasPayload(m.TLVs):
		err = reject(pdu.ESME_RINVMSGLEN, "both short_message and message_payload") // §5.3.2.32
	}
	if err == nil {
		err = schedule(in, m, time.Now())
	}
	var id string
	if err == nil {
		sctx, cancel := context.WithTimeout(ctx, g.cfg.SendTimeout)
		id, err = g.accept(sctx, in)
		cancel()
	}
	status := appStatus(err)
	if err != nil {
		s.logger().Info().Err(err).Str("to", in.dst.Addr).Stringer("status", status).Msg("submit rejected")
		return "", status
	}
	return id, status
}

// schedule reads schedule_delivery_time, validity_period (SMPP 3.4
// §7.1.1, absolute or relative to now) and priority_flag (§5.2.14: 2 and 3
// are urgent in the ANSI-136 and IS-95 tables; GSM's "priority" 1 is
// not) into in. Errors are *rejectError: ESME_RINVSCHED, ESME_RINVEXPIRY.
func schedule(in *incoming, m *pdu.MessageFields, now time.Time) error {
	at, err := pdu.ParseTime(m.ScheduleDeliveryTime, now)
	if err != nil {
		return reject(pdu.ESME_RINVSCHED, "%v", err)
	}
	if !at.IsZero() {
		if at.After(now.Add(schemas.MaxHold)) {
			return reject(pdu.ESME_RINVSCHED, "schedule_delivery_time more than 7 days ahead")
		}
		in.sendAt = at.UnixMilli()
	}
	exp, err := pdu.ParseTime(m.ValidityPeriod, now)
	if err != nil {
		return reject(pdu.ESME_RINVEXPIRY, "%v", err)
	}
	if !exp.IsZero() {
		if !exp.After(now) || (in.sendAt > 0 && exp.UnixMilli() <= in.sendAt) {
			return reject(pdu.ESME_RINVEXPIRY, "validity_period ends before the message could be sent")
		}
		in.expires = exp.UnixMilli()
	}
	in.urgent = m.PriorityFlag >= 2
	return nil
}

func hasPayload(t pdu.TLVs) bool {
	_, ok := t.MessagePayload()
	return ok
}

// appStatus is the one mapping of the outcome of a submission to the
// command_status for the application (SMPP 3.4 §5.1.3; docs/SMS.md,
// "Status codes for applications"). The code's class decides first
// (schemas.Code.Class): every temporary failure is ESME_RTHROTTLED ("submit
// the same message again later"; a full reassembly store is
// ESME_RMSGQFUL, a rejectError); a permanent one is a status that
// applications, Kannel among them, take as final: ESME_RINVDSTADR for an
// unknown recipient, ESME_RINVMSGLEN, ESME_RINVSRCADR, and
// ESME_RSUBMITFAIL for the rest. ESME_RSYSERR is not used for a permanent
// failure: applications (and this gateway, in deliver_sm_resp) read it as
// temporary.
func appStatus(err error) pdu.Status {
	if err == nil {
		return pdu.ESME_ROK
	}
	var re *rejectError
	if errors.As(err, &re) {
		return re.status
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return pdu.ESME_RTHROTTLED
	}
	code := miap.CodeOf(err)
	if code.Retryable() {
		return pdu.ESME_RTHROTTLED // "ESME exceeded allowed message limits": submit again later
	}
	switch code {
	case schemas.CodeUnknownRecipient:
		return pdu.ESME_RINVDSTADR
	case schemas.CodeTooLarge:
		return pdu.ESME_RINVMSGLEN
	case schemas.CodeUnknownSender, schemas.CodeNotAllowed:
		// NOT_ALLOWED: the source address is not the client's own number
		// (the sender binding, PROTOCOL.md §6.2).
		return pdu.ESME_RINVSRCADR
	}
	// UNREACHABLE (no SMS centre, no gateway set up for the number),
	// QUOTA_EXCEEDED (the daily quota), UNSUPPORTED, REJECTED,
	// STRICT_REQUIRED (the gateway in fast mode, the brokers in strict
	// mode) and the rest.
	return pdu.ESME_RSUBMITFAIL
}

// accept decodes a short message, reassembles concatenated ones and
// sends the message into the fabric. It returns the message id for the
// response: the UIMS message id, with "-<part>" for a part of a
// concatenated message.
func (g *Gateway) accept(ctx context.Context, in *incoming) (string, error) {
	m, err := parseIncoming(in.esm, in.dcs, in.data, in.tlvs)
	if err != nil {
		return "", err
	}
	if m.ignoredUDH != nil {
		g.log.Info().Err(m.ignoredUDH).Msg("concatenation IE ignored")
	}
	if m.concat.Total > 1 {
		return g.acceptPart(ctx, in, m.concat, m.coding, m.payload)
	}
	msgID := kit.NewMsgID()
	track := in.origin != "" && wantsReceipts(in.rd)
	if track {
		g.deciding.begin(msgID)
		defer g.deciding.end(msgID)
	}
	err = g.send(ctx, in, msgID, m.text, nil)
	if err != nil && track {
		// The application gets an error status, not msgID; a retry is a
		// new submission with a new id.
		g.refuse(ctx, msgID, msgID)
	}
	return msgID, err
}

// parsedSM is a decoded short message: a whole text, or one part of a
// concatenated message (concat.Total > 1) whose payload waits for the
// others.
type parsedSM struct {
	concat  gsm.Concat
	coding  gsm.Coding
	payload []byte // user data after the UDH
	text    string // decoded text of a whole message
	// ignoredUDH is set when a bad concatenation IE was ignored.
	ignoredUDH error
}

// parseIncoming interprets esm_class (UDHI, §5.2.12), data_coding
// (§5.2.19), the UDH (TS 23.040 §9.2.3.24) or the sar_* TLVs
// (§5.3.2.22-24) of a short message. Errors are *rejectError.
func parseIncoming(esm, dcs uint8, data []byte, tlvs pdu.TLVs) (parsedSM, error) {
	var m parsedSM
	coding, err := codingOf(dcs)
	if err != nil {
		return m, reject(pdu.ESME_RINVDCS, "%v", err)
	}
	m.coding, m.payload = coding, data
	if esm&pdu.ESMClassUDHI != 0 {
		u, rest, err := gsm.ParseUDH(data)
		switch {
		case err == nil:
			m.concat, m.payload = u.Concat, rest
		case errors.Is(err, gsm.ErrBadConcat):
			// TS 23.040 §9.2.3.24.1: a receiver ignores a bad
			// concatenation IE; the text is taken as a single message.
			m.payload, m.ignoredUDH = rest, err
		default:
			return m, reject(pdu.ESME_RINVESMCLASS, "bad UDH: %v", err)
		}
	} else if sar, ok := tlvs.SAR(); ok {
		if sar.Total == 0 || sar.Seq == 0 || sar.Seq > sar.Total {
			return m, reject(pdu.ESME_RINVOPTPARAMVAL, "sar segment %d of %d", sar.Seq, sar.Total)
		}
		m.concat = gsm.Concat{Ref: sar.Ref, Total: sar.Total, Seq: sar.Seq}
	}
	if m.concat.Total > 1 {
		return m, nil
	}
	if m.text, err = decodeText(coding, m.payload); err != nil {
		return m, reject(pdu.ESME_RINVMSGLEN, "undecodable %s text: %v", coding, err)
	}
	return m, nil
}

// acceptPart adds one part of a concatenated message; the last missing
// part sends the whole message. The answer to each part is the message
// id with "-<part>".
func (g *Gateway) acceptPart(ctx context.Context, in *incoming, c gsm.Concat, coding gsm.Coding, payload []byte) (string, error) {
	d, key, claimed, err := g.parts.add(ctx, in, c, coding, payload)
	switch {
	case errors.Is(err, errPendingFull):
		return "", reject(pdu.ESME_RMSGQFUL, "%v", err)
	case err != nil:
		return "", schemas.Errorf(schemas.CodeBusy, err, "reassembly")
	}
	partID := fmt.Sprintf("%s-%d", d.MsgID, c.Seq)
	if !claimed {
		return partID, nil // more parts to come, or a repeated part
	}
	track := in.origin != "" && wantsReceipts(d.RD|in.rd)
	if track {
		g.deciding.begin(d.MsgID)
		defer g.deciding.end(d.MsgID)
	}
	err = g.sendDoc(ctx, d)
	retry := err != nil && (miap.CodeOf(err).Retryable() || errors.Is(err, context.DeadlineExceeded))
	g.parts.finish(context.WithoutCancel(ctx), key, !retry)
	if err != nil {
		if track && !retry {
			// The other parts' ids were given; this one is refused for
			// good. (Refused for now, it is sent again: its repeat gets
			// partID.)
			g.refuse(ctx, d.MsgID, partID)
		}
		return "", err
	}
	return partID, nil
}

// send hands one message to the fabric (kit.Send): it returns once the
// destination took it.
func (g *Gateway) send(ctx context.Context, in *incoming, msgID, text string, extra map[string]string) error {
	from := schemas.Endpoint{Medium: schemas.MediumSMS, Address: in.src.international(), Client: in.origin}
	to := in.dst.international()
	meta := map[string]string{
		"sms.message_id":          msgID,
		"sms.registered_delivery": strconv.Itoa(int(in.rd)),
		"sms.source_addr":         in.src.Addr,
		"sms.source_ton":          strconv.Itoa(int(in.src.TON)),
		"sms.source_npi":          strconv.Itoa(int(in.src.NPI)),
		"sms.dest_addr":           in.dst.Addr,
		"sms.dest_ton":            strconv.Itoa(int(in.dst.TON)),
		"sms.dest_npi":            strconv.Itoa(int(in.dst.NPI)),
		"sms.data_coding":         strconv.Itoa(int(in.dcs)),
		"sms.submit_date":         time.Now().UTC().Format("0601021504"),
	}
	if in.origin == "" {
		meta["sms.via"] = "smsc"
	}
	subject := ""
	for k, v := range extra {
		if k == "subject" {
			subject = v
			continue
		}
		meta[k] = v
	}
	res, err := g.kit.Send(ctx, &kit.Submission{MsgID: msgID, From: from, To: to, Subject: subject,
		Type: "text/plain; charset=utf-8", Content: []byte(text), Meta: meta,
		SendAt: in.sendAt, Expires: in.expires, Urgent: in.urgent})
	if err != nil {
		return err
	}
	g.log.Info().Str("msg_id", msgID).Str("from", from.Address).Str("client", in.origin).Str("to", to).
		Str("dest", res.Dest.Gateway).Str("status", res.Status).Msg("short message accepted")
	return nil
}
