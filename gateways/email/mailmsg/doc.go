// Package mailmsg converts e-mail messages to and from the UIMS content
// representation for the e-mail gateway. It is pure: no network, no state.
//
// # Content convention
//
// The UIMS fabric carries a message's content as bytes plus a MIME content
// type with parameters:
//
//   - a simple text mail becomes "text/plain; charset=utf-8" (other text
//     subtypes keep their subtype) and the bytes are the decoded UTF-8 text;
//   - a mail with alternatives or attachments keeps its top-level
//     "multipart/...; boundary=..." type and the bytes are the multipart
//     body: parts keep their own headers and Content-Transfer-Encoding, and
//     the body is guaranteed to parse with Go's mime/multipart and the
//     boundary;
//   - any other single-part mail (a TIFF fax, a WAV recording, a PDF) keeps
//     its content type and the bytes are the decoded body.
//
// The top-level Content-Transfer-Encoding is always decoded.
//
// # Functions
//
// Extract parses an incoming RFC 5322 message (RFC 5322; MIME, RFC 2045 to
// 2049; encoded words, RFC 2047; parameter encoding, RFC 2231) into a
// Message: addresses, subject, identifiers, date, the content as above and a
// summary (text body, HTML body, attachments with sanitised file names,
// sizes and SHA-256 digests). Every input is bounded by Limits, checked
// before anything unbounded is buffered, and failures are reported with the
// sentinel errors below.
//
// Compose builds an outgoing RFC 5322 message from structured fields.
// ComposeDSN builds a delivery status notification (RFC 3464, carried in a
// multipart/report, RFC 6522 which obsoletes RFC 3462) and ComposeMDN a
// message disposition notification (RFC 8098). ParseDSN reads an incoming
// bounce so that a late failure can be turned into a non-delivery report.
//
// # Header safety
//
// Decoded header values returned by Extract and ParseDSN are cleaned: an
// encoded word (RFC 2047) or a parameter (RFC 2231) that decodes to CR, LF,
// NUL or another control character has each such character replaced by a
// space (TAB is kept), and invalid UTF-8 is replaced by U+FFFD, so no value
// can inject a header when copied into an outgoing message. Addresses whose
// addr-spec would contain a control character make Extract fail with
// ErrMalformed. Message.RawHeader is the only raw, uncleaned data.
//
// Compose, ComposeDSN and ComposeMDN refuse any value containing CR, LF or
// NUL with ErrHeaderInjection, and other control characters or invalid
// UTF-8 with ErrInvalidHeader.
//
// # Envelope
//
// DSNs and MDNs must be sent with an empty envelope sender, MAIL FROM:<>
// (the null reverse-path, NullReversePath; RFC 5321 section 4.5.5, RFC 3464
// section 2 and RFC 8098 section 2.1), so that they can never trigger
// another notification. Both carry "Auto-Submitted: auto-replied" (RFC
// 3834); the gateway must not answer mail that carries an Auto-Submitted
// value other than "no" (see Message.AutoSubmitted).
package mailmsg

import "errors"

// Errors returned by this package. They are wrapped with %w, test them with
// errors.Is.
var (
	// ErrTooLarge reports a message larger than Limits.MaxBytes or a header
	// block larger than Limits.MaxHeaderBytes.
	ErrTooLarge = errors.New("mailmsg: message too large")
	// ErrTooDeep reports multipart nesting deeper than Limits.MaxDepth.
	ErrTooDeep = errors.New("mailmsg: MIME nesting too deep")
	// ErrTooManyParts reports more MIME parts than Limits.MaxParts.
	ErrTooManyParts = errors.New("mailmsg: too many MIME parts")
	// ErrTooManyHeaders reports a header block with more fields than
	// Limits.MaxHeaders.
	ErrTooManyHeaders = errors.New("mailmsg: too many header fields")
	// ErrMalformed reports a message that cannot be parsed safely; it
	// wraps the cause.
	ErrMalformed = errors.New("mailmsg: malformed message")
	// ErrHeaderInjection reports a header value containing CR, LF or NUL
	// passed to Compose, ComposeDSN or ComposeMDN.
	ErrHeaderInjection = errors.New("mailmsg: header value contains CR, LF or NUL")
	// ErrInvalidHeader reports another invalid header value (control
	// character, invalid UTF-8, bad address or message identifier).
	ErrInvalidHeader = errors.New("mailmsg: invalid header value")
	// ErrInvalidContent reports content that cannot be sent as given (bad
	// content type, broken multipart body, over-long lines, NUL bytes).
	ErrInvalidContent = errors.New("mailmsg: invalid content")
	// ErrNotDSN is returned by ParseDSN for a message that is not a
	// multipart/report delivery status notification.
	ErrNotDSN = errors.New("mailmsg: not a delivery status notification")
)

// NullReversePath is the envelope sender (MAIL FROM:<>) that DSNs and MDNs
// must be submitted with.
const NullReversePath = ""
