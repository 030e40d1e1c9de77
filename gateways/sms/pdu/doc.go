// Package pdu is the SMPP 3.4 protocol data unit codec of the UIMS SMS
// gateway: it frames, decodes, validates and encodes the PDUs exchanged
// between an ESME and an SMSC over TCP. It does no I/O beyond reading frames
// from an io.Reader and holds no connection state.
//
// References are to the SMPP v3.4 specification (issue 1.2, 1999):
//
//   - §3.2 PDU format: a 16-octet header (command_length, command_id,
//     command_status, sequence_number, all 4-octet big-endian integers)
//     followed by the body; command_length counts the header.
//   - §3.1 field types: Integer (big-endian), C-Octet String (NUL
//     terminated, maximum sizes in §4 include the NUL), Octet String.
//   - §4 PDU bodies, §5.1.2 command_id values, §5.1.3 command_status
//     values, §5.2 field values, §5.3 optional parameters (TLVs).
//
// Every typed PDU embeds a [Header]. [Marshal] and [Append] encode any PDU,
// computing command_length and command_id from the value and its type (the
// Length and ID fields of the embedded Header are ignored when encoding);
// [Decode] turns one complete frame into a typed PDU and [Unmarshal] decodes
// a frame into a caller-chosen PDU. [Reader] cuts frames out of a byte
// stream with a configurable command_length limit.
//
// Decoding is strict about structure (lengths, NUL terminators, maximum
// field sizes, trailing bytes, TLV framing) but does not interpret values
// (TON/NPI, data_coding, time formats); such checks belong to the caller.
// Every decoding failure is an [*Error] carrying the decoded header (as far
// as it could be read) and the command_status to answer with, wrapping one
// of the package's sentinel errors.
//
// Decoded byte slices (short_message, TLV values) alias the frame passed to
// Decode; frames returned by Reader are freshly allocated per PDU, so PDUs
// from Reader.ReadPDU are safe to keep.
package pdu
