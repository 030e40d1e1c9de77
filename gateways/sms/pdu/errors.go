package pdu

import (
	"errors"
	"fmt"
)

// Sentinel errors. Decoding failures are returned as *Error wrapping one of
// these; test with errors.Is.
var (
	// ErrCommandLengthTooSmall: command_length is below the 16-octet header
	// (§3.2). The stream can no longer be framed.
	ErrCommandLengthTooSmall = errors.New("pdu: command_length below header size")
	// ErrCommandLengthTooLarge: command_length exceeds the configured
	// limit. The stream can no longer be framed.
	ErrCommandLengthTooLarge = errors.New("pdu: command_length above limit")
	// ErrTruncated: the input ended inside a PDU. From a Reader it also
	// wraps io.ErrUnexpectedEOF.
	ErrTruncated = errors.New("pdu: truncated PDU")
	// ErrLengthMismatch: Decode was given more octets than command_length.
	ErrLengthMismatch = errors.New("pdu: frame size differs from command_length")
	// ErrUnknownCommand: the command_id is not one this package decodes
	// (§5.1.2.1). The frame was consumed; answer generic_nack with
	// ESME_RINVCMDID and the same sequence_number.
	ErrUnknownCommand = errors.New("pdu: unknown command_id")
	// ErrCommandMismatch: Unmarshal was given a frame for another command.
	ErrCommandMismatch = errors.New("pdu: command_id does not match target PDU")
	// ErrMissingNUL: a C-Octet String runs to the end of the body without
	// its NUL terminator (§3.1).
	ErrMissingNUL = errors.New("pdu: C-Octet String without NUL terminator")
	// ErrShortBody: the body ends before a mandatory integer field.
	ErrShortBody = errors.New("pdu: body ends before mandatory field")
	// ErrSMLength: sm_length exceeds 254 or the octets left in the body
	// (§4.4.1).
	ErrSMLength = errors.New("pdu: sm_length does not match short_message")
	// ErrFieldTooLong: a field exceeds its maximum size (§4).
	ErrFieldTooLong = errors.New("pdu: field too long")
	// ErrTrailingBytes: octets remain after the last field of a PDU that
	// takes no optional parameters.
	ErrTrailingBytes = errors.New("pdu: trailing bytes after body")
	// ErrTLVOverflow: an optional parameter header or value runs past the
	// end of the body (§3.2.1, §5.3).
	ErrTLVOverflow = errors.New("pdu: TLV length overflows body")
	// ErrEmbeddedNUL: a string to encode as C-Octet String contains NUL.
	ErrEmbeddedNUL = errors.New("pdu: NUL inside C-Octet String")
	// ErrBadDestFlag: a submit_multi destination's dest_flag is neither
	// 1 (SME address) nor 2 (distribution list), §5.2.25.
	ErrBadDestFlag = errors.New("pdu: unknown dest_flag")
)

// Error is a decoding failure. Header holds what could be read of the
// offending PDU's header (at least Length when the stream delivered 4
// octets); Status is the command_status to answer with; Err wraps one of the
// sentinel errors.
type Error struct {
	Header Header
	Status Status
	Err    error
}

func (e *Error) Error() string {
	if e.Header.ID == 0 {
		// The header was not read far enough to know the command.
		return fmt.Sprintf("%v (status %s)", e.Err, e.Status)
	}
	return fmt.Sprintf("%v (%s seq %d, status %s)", e.Err, e.Header.ID, e.Header.Sequence, e.Status)
}

func (e *Error) Unwrap() error { return e.Err }

// Fatal reports whether the byte stream lost its framing: command_length
// out of range or input truncated. The connection must be closed (after an
// optional generic_nack). Other errors consumed exactly one frame and the
// next PDU can be read.
func (e *Error) Fatal() bool {
	return errors.Is(e.Err, ErrCommandLengthTooSmall) ||
		errors.Is(e.Err, ErrCommandLengthTooLarge) ||
		errors.Is(e.Err, ErrTruncated)
}

// Response returns the PDU to answer the failed one with, or nil when no
// answer is due. Framing errors and unknown command ids get generic_nack
// (§4.3); a malformed request this package decodes gets its typed response
// (e.g. submit_sm_resp) with e.Status; a malformed response gets nothing
// (log it). The sequence number is copied from e.Header.
func (e *Error) Response() PDU {
	h := Header{Status: e.Status, Sequence: e.Header.Sequence}
	if e.Fatal() || errors.Is(e.Err, ErrUnknownCommand) {
		return &GenericNack{Header: h}
	}
	if e.Header.ID.IsResponse() {
		return nil
	}
	if r := New(e.Header.ID.Response()); r != nil {
		*r.Hdr() = h
		return r
	}
	return &GenericNack{Header: h}
}

// failure builds an *Error whose Err wraps sentinel with a formatted detail.
func failure(status Status, sentinel error, format string, args ...any) *Error {
	return &Error{Status: status, Err: fmt.Errorf("%w: %s", sentinel, fmt.Sprintf(format, args...))}
}
