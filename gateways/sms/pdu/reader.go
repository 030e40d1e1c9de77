package pdu

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// DefaultMaxLength is the default command_length limit of a Reader: a
// 64 KiB body plus the header. SMPP 3.4 sets no limit of its own; the
// largest legitimate PDU is a data_sm or submit_sm carrying a 64 KiB
// message_payload.
const DefaultMaxLength = 64*1024 + HeaderLen

// Reader cuts SMPP PDU frames out of a byte stream (§3.2: each PDU starts
// with its 4-octet command_length). It is not safe for concurrent use.
type Reader struct {
	r   io.Reader
	max uint32
	hdr [HeaderLen]byte
}

// NewReader returns a Reader on r that rejects frames whose command_length
// exceeds maxLength. maxLength 0 means DefaultMaxLength; values below
// HeaderLen are raised to HeaderLen.
func NewReader(r io.Reader, maxLength uint32) *Reader {
	switch {
	case maxLength == 0:
		maxLength = DefaultMaxLength
	case maxLength < HeaderLen:
		maxLength = HeaderLen
	}
	return &Reader{r: r, max: maxLength}
}

// ReadFrame reads the next complete frame. The returned slice is freshly
// allocated and owned by the caller.
//
// Errors:
//   - io.EOF, unwrapped, when the stream ends cleanly between frames;
//   - *Error wrapping ErrCommandLengthTooSmall or ErrCommandLengthTooLarge
//     (Status ESME_RINVCMDLEN) or ErrTruncated (also wrapping
//     io.ErrUnexpectedEOF); Fatal reports true: the stream is out of sync;
//   - any other error from the underlying reader, wrapped with a "pdu:"
//     prefix; the stream position is then undefined.
func (r *Reader) ReadFrame() ([]byte, error) {
	n, err := io.ReadFull(r.r, r.hdr[:4])
	if err != nil {
		if err == io.EOF {
			return nil, io.EOF
		}
		return nil, r.readErr(Header{}, n, 4, err)
	}
	h := Header{Length: binary.BigEndian.Uint32(r.hdr[:4])}
	if h.Length < HeaderLen {
		e := failure(ESME_RINVCMDLEN, ErrCommandLengthTooSmall, "%d < %d", h.Length, HeaderLen)
		e.Header = h
		return nil, e
	}
	n, err = io.ReadFull(r.r, r.hdr[4:])
	if err != nil {
		return nil, r.readErr(h, 4+n, HeaderLen, err)
	}
	h = parseHeader(r.hdr[:])
	if h.Length > r.max {
		e := failure(ESME_RINVCMDLEN, ErrCommandLengthTooLarge, "%d > %d", h.Length, r.max)
		e.Header = h
		return nil, e
	}
	frame := make([]byte, h.Length)
	copy(frame, r.hdr[:])
	n, err = io.ReadFull(r.r, frame[HeaderLen:])
	if err != nil {
		return nil, r.readErr(h, HeaderLen+n, int(h.Length), err)
	}
	return frame, nil
}

// readErr maps a short read of want octets (got so far) to an error.
func (r *Reader) readErr(h Header, got, want int, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		e := &Error{Header: h, Status: ESME_RINVCMDLEN,
			Err: fmt.Errorf("%w: stream ended after %d of %d octets: %w", ErrTruncated, got, want, io.ErrUnexpectedEOF)}
		return e
	}
	return fmt.Errorf("pdu: read: %w", err)
}

// ReadPDU reads and decodes the next PDU. Besides the errors of ReadFrame
// it returns the *Error of Decode, after which the stream is still in sync
// (Fatal is false) and e.Response() is the answer to send.
func (r *Reader) ReadPDU() (PDU, error) {
	frame, err := r.ReadFrame()
	if err != nil {
		return nil, err
	}
	return Decode(frame)
}
