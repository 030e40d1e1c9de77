package pdu

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
)

// PDU is implemented by the typed PDUs of this package (pointers to
// BindTransmitter, SubmitSM, ...). The set is closed: decoding and encoding
// of bodies are internal.
type PDU interface {
	// Hdr returns the embedded header.
	Hdr() *Header
	// CommandID returns the command_id of the PDU type.
	CommandID() CommandID

	appendBody(e *encoder, status Status)
	decodeBody(d *decoder, status Status)
}

// New returns a zero PDU of the type for id, or nil if this package does
// not decode that command.
func New(id CommandID) PDU {
	switch id {
	case CmdGenericNack:
		return &GenericNack{}
	case CmdBindReceiver:
		return &BindReceiver{}
	case CmdBindReceiverResp:
		return &BindReceiverResp{}
	case CmdBindTransmitter:
		return &BindTransmitter{}
	case CmdBindTransmitterResp:
		return &BindTransmitterResp{}
	case CmdBindTransceiver:
		return &BindTransceiver{}
	case CmdBindTransceiverResp:
		return &BindTransceiverResp{}
	case CmdOutbind:
		return &Outbind{}
	case CmdUnbind:
		return &Unbind{}
	case CmdUnbindResp:
		return &UnbindResp{}
	case CmdEnquireLink:
		return &EnquireLink{}
	case CmdEnquireLinkResp:
		return &EnquireLinkResp{}
	case CmdSubmitSM:
		return &SubmitSM{}
	case CmdSubmitSMResp:
		return &SubmitSMResp{}
	case CmdDeliverSM:
		return &DeliverSM{}
	case CmdDeliverSMResp:
		return &DeliverSMResp{}
	case CmdSubmitMulti:
		return &SubmitMulti{}
	case CmdSubmitMultiResp:
		return &SubmitMultiResp{}
	case CmdDataSM:
		return &DataSM{}
	case CmdDataSMResp:
		return &DataSMResp{}
	case CmdQuerySM:
		return &QuerySM{}
	case CmdQuerySMResp:
		return &QuerySMResp{}
	case CmdCancelSM:
		return &CancelSM{}
	case CmdCancelSMResp:
		return &CancelSMResp{}
	}
	return nil
}

// Marshal encodes p as a complete PDU frame. command_length and command_id
// are computed; Status and Sequence come from p's header.
func Marshal(p PDU) ([]byte, error) {
	return Append(nil, p)
}

// Append appends the encoding of p to dst. On error dst is returned
// unchanged (its spare capacity may have been written).
func Append(dst []byte, p PDU) ([]byte, error) {
	h := p.Hdr()
	start := len(dst)
	e := encoder{b: append(dst, make([]byte, HeaderLen)...)}
	p.appendBody(&e, h.Status)
	if e.err != nil {
		return dst, fmt.Errorf("pdu: encode %s: %w", p.CommandID(), e.err)
	}
	n := len(e.b) - start
	if uint64(n) > 0xFFFFFFFF {
		return dst, fmt.Errorf("pdu: encode %s: %w: %d octets", p.CommandID(), ErrFieldTooLong, n)
	}
	hdr := e.b[start:]
	binary.BigEndian.PutUint32(hdr[0:4], uint32(n))
	binary.BigEndian.PutUint32(hdr[4:8], uint32(p.CommandID()))
	binary.BigEndian.PutUint32(hdr[8:12], uint32(h.Status))
	binary.BigEndian.PutUint32(hdr[12:16], h.Sequence)
	return e.b, nil
}

// Decode decodes one complete frame (exactly command_length octets) into
// its typed PDU. Errors are *Error. Byte slices in the result alias frame.
func Decode(frame []byte) (PDU, error) {
	h, body, err := splitFrame(frame)
	if err != nil {
		return nil, err
	}
	p := New(h.ID)
	if p == nil {
		return nil, unknownCommand(h)
	}
	if err := decodeInto(p, h, body); err != nil {
		return nil, err
	}
	return p, nil
}

// Unmarshal decodes one complete frame into p, whose type must match the
// frame's command_id. Errors are *Error. Byte slices in p alias frame.
func Unmarshal(frame []byte, p PDU) error {
	h, body, err := splitFrame(frame)
	if err != nil {
		return err
	}
	if h.ID != p.CommandID() {
		e := failure(ESME_RINVCMDID, ErrCommandMismatch, "frame is %s, target is %s", h.ID, p.CommandID())
		e.Header = h
		return e
	}
	return decodeInto(p, h, body)
}

func unknownCommand(h Header) *Error {
	e := failure(ESME_RINVCMDID, ErrUnknownCommand, "0x%08X", uint32(h.ID))
	e.Header = h
	return e
}

// splitFrame validates the header of a complete frame.
func splitFrame(frame []byte) (Header, []byte, error) {
	if len(frame) < HeaderLen {
		var h Header
		if len(frame) >= 4 {
			h.Length = binary.BigEndian.Uint32(frame)
		}
		e := failure(ESME_RINVCMDLEN, ErrTruncated, "%d octets, header needs %d", len(frame), HeaderLen)
		e.Header = h
		return h, nil, e
	}
	h := parseHeader(frame)
	switch {
	case h.Length < HeaderLen:
		e := failure(ESME_RINVCMDLEN, ErrCommandLengthTooSmall, "%d < %d", h.Length, HeaderLen)
		e.Header = h
		return h, nil, e
	case uint64(h.Length) > uint64(len(frame)):
		e := failure(ESME_RINVCMDLEN, ErrTruncated, "command_length %d, got %d octets", h.Length, len(frame))
		e.Header = h
		return h, nil, e
	case uint64(h.Length) < uint64(len(frame)):
		e := failure(ESME_RINVCMDLEN, ErrLengthMismatch, "command_length %d, got %d octets", h.Length, len(frame))
		e.Header = h
		return h, nil, e
	}
	return h, frame[HeaderLen:], nil
}

func decodeInto(p PDU, h Header, body []byte) error {
	*p.Hdr() = h
	d := decoder{b: body}
	p.decodeBody(&d, h.Status)
	if d.err != nil {
		d.err.Header = h
		return d.err
	}
	return nil
}

// decoder reads body fields; the first failure sticks and later reads
// return zero values.
type decoder struct {
	b   []byte
	err *Error
}

func (d *decoder) fail(status Status, sentinel error, format string, args ...any) {
	if d.err == nil {
		d.err = failure(status, sentinel, format, args...)
	}
}

func (d *decoder) u8(field string) uint8 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 1 {
		d.fail(ESME_RINVCMDLEN, ErrShortBody, "%s", field)
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

// cstring reads a C-Octet String of at most size octets including the NUL
// (the "Var. max" sizes of §4). status is the answer for an oversize value.
func (d *decoder) cstring(field string, size int, status Status) string {
	if d.err != nil {
		return ""
	}
	window := d.b
	if len(window) > size {
		window = window[:size]
	}
	i := bytes.IndexByte(window, 0)
	if i < 0 {
		if len(d.b) >= size {
			d.fail(status, ErrFieldTooLong, "%s longer than %d octets", field, size-1)
		} else {
			d.fail(ESME_RINVCMDLEN, ErrMissingNUL, "%s", field)
		}
		return ""
	}
	s := string(d.b[:i])
	d.b = d.b[i+1:]
	return s
}

// shortMessage reads sm_length and short_message (§4.4.1).
func (d *decoder) shortMessage() []byte {
	n := int(d.u8("sm_length"))
	if d.err != nil {
		return nil
	}
	if n > MaxShortMessage {
		d.fail(ESME_RINVMSGLEN, ErrSMLength, "sm_length %d above %d", n, MaxShortMessage)
		return nil
	}
	if n > len(d.b) {
		d.fail(ESME_RINVMSGLEN, ErrSMLength, "sm_length %d, %d octets left in body", n, len(d.b))
		return nil
	}
	sm := d.b[:n:n]
	d.b = d.b[n:]
	return sm
}

// tlvs reads optional parameters up to the end of the body (§3.2.1).
func (d *decoder) tlvs() TLVs {
	if d.err != nil || len(d.b) == 0 {
		return nil
	}
	n := 0
	for b := d.b; len(b) >= 4; n++ {
		l := int(binary.BigEndian.Uint16(b[2:4]))
		if l > len(b)-4 {
			break
		}
		b = b[4+l:]
	}
	out := make(TLVs, 0, n)
	for len(d.b) > 0 {
		if len(d.b) < 4 {
			d.fail(ESME_RINVOPTPARSTREAM, ErrTLVOverflow, "%d octets left, TLV header needs 4", len(d.b))
			return nil
		}
		tag := Tag(binary.BigEndian.Uint16(d.b[0:2]))
		l := int(binary.BigEndian.Uint16(d.b[2:4]))
		if l > len(d.b)-4 {
			d.fail(ESME_RINVOPTPARSTREAM, ErrTLVOverflow, "tag 0x%04X length %d, %d octets left", uint16(tag), l, len(d.b)-4)
			return nil
		}
		out = append(out, TLV{Tag: tag, Value: d.b[4 : 4+l : 4+l]})
		d.b = d.b[4+l:]
	}
	return out
}

// end checks that the body was consumed completely.
func (d *decoder) end() {
	if d.err == nil && len(d.b) > 0 {
		d.fail(ESME_RINVCMDLEN, ErrTrailingBytes, "%d octets", len(d.b))
	}
}

// encoder appends body fields; the first failure sticks.
type encoder struct {
	b   []byte
	err error
}

func (e *encoder) u8(v uint8) {
	e.b = append(e.b, v)
}

func (e *encoder) cstring(field string, s string, size int) {
	if e.err != nil {
		return
	}
	if len(s) > size-1 {
		e.err = fmt.Errorf("%w: %s is %d octets, max %d", ErrFieldTooLong, field, len(s), size-1)
		return
	}
	if i := strings.IndexByte(s, 0); i >= 0 {
		e.err = fmt.Errorf("%w: %s at offset %d", ErrEmbeddedNUL, field, i)
		return
	}
	e.b = append(e.b, s...)
	e.b = append(e.b, 0)
}

func (e *encoder) shortMessage(sm []byte) {
	if e.err != nil {
		return
	}
	if len(sm) > MaxShortMessage {
		e.err = fmt.Errorf("%w: short_message is %d octets, max %d", ErrFieldTooLong, len(sm), MaxShortMessage)
		return
	}
	e.b = append(e.b, byte(len(sm)))
	e.b = append(e.b, sm...)
}

func (e *encoder) tlvs(t TLVs) {
	if e.err != nil {
		return
	}
	for _, v := range t {
		if len(v.Value) > 0xFFFF {
			e.err = fmt.Errorf("%w: TLV 0x%04X value is %d octets, max 65535", ErrFieldTooLong, uint16(v.Tag), len(v.Value))
			return
		}
		e.b = binary.BigEndian.AppendUint16(e.b, uint16(v.Tag))
		e.b = binary.BigEndian.AppendUint16(e.b, uint16(len(v.Value)))
		e.b = append(e.b, v.Value...)
	}
}
