package schemas

// Code is an error code that crosses the wire (PROTOCOL.md §9). The peer gets
// the code and a short fixed description; the detail goes to the sender's log.
//
// The list is append-only: never reorder, rename or remove a code, and give a
// new code the next number. Numbers travel in the Nats-Service-Error-Code
// header; names travel in the Miap-Error header and in JSON bodies.
type Code uint16

// The codes. Do not reorder; append at the end.
const (
	CodeOK               Code = iota // no error
	CodeMalformed                    // a frame or document could not be parsed
	CodeTooLarge                     // a size limit was exceeded
	CodeBadVersion                   // unknown protocol or schema version
	CodeUnknownKey                   // the key id is unknown, not yet valid or retired
	CodeBadMAC                       // the MAC does not verify
	CodeStale                        // the timestamp is older than the window
	CodeClockSkew                    // the timestamp is ahead of the server clock; Miap-Server-Time tells it
	CodeReplay                       // the nonce was seen before
	CodeBadSession                   // the session key is unknown, used or expired
	CodeIDMismatch                   // the returned ID is not the one the broker minted
	CodeBadTicket                    // the broker ticket does not verify or names another party
	CodeDigestMismatch               // the content does not match its SHA-256 or length
	CodeExpired                      // the transaction's deadline has passed
	CodeStoreUnavailable             // the nonce, session or profile store failed: retry later
	CodeQuarantine                   // the nonce store lost its state: retry after the window
	CodeUnknownRecipient             // no client or address matches the recipient
	CodeUnknownSender                // the sender is not a known client where one is required
	CodeNoRoute                      // no live gateway can take the message now
	CodeQuotaExceeded                // the sender's quota is used up
	CodeNotAllowed                   // the party may not do this
	CodeBusy                         // the fabric cannot take it now: retry later
	CodeInternal                     // an unexpected failure
	CodeUnknownTx                    // no such transaction
	CodeConversionFailed             // a processor could not convert the content
	CodeDuplicate                    // the message id was already used for another message
	CodeUnsupported                  // the destination cannot take this kind of content
	CodeUnauthorized                 // a client credential was missing or wrong
	CodeStrictRequired               // the broker runs in strict mode: log in first (a session-less frame is refused)
	CodeSettled                      // a retry of a message that has its outcome, or whose deadline passed: ask its status
	CodeRejected                     // the recipient's side refused the message or did not take it in time (a bot's answer)
	CodeUnreachable                  // no gateway is set up to reach the address at all (no SMS centre, no SMTP relay); NO_ROUTE is "none live now"
	CodeCancelled                    // the sender cancelled the message before it was sent (a held or scheduled message)
	CodeSealUnavailable              // sealed content (PROTOCOL.md §14) for a route with a hop that announced no encryption key
	CodeBadSeal                      // sealed content that does not open: no key of the receiver opens the wrap, the wrap binds another transfer, or the ciphertext was changed
	codeEnd                          // keep last; not a code
)

var codeNames = [...]string{
	CodeOK:               "OK",
	CodeMalformed:        "MALFORMED",
	CodeTooLarge:         "TOO_LARGE",
	CodeBadVersion:       "BAD_VERSION",
	CodeUnknownKey:       "UNKNOWN_KEY",
	CodeBadMAC:           "BAD_MAC",
	CodeStale:            "STALE",
	CodeClockSkew:        "CLOCK_SKEW",
	CodeReplay:           "REPLAY",
	CodeBadSession:       "BAD_SESSION",
	CodeIDMismatch:       "ID_MISMATCH",
	CodeBadTicket:        "BAD_TICKET",
	CodeDigestMismatch:   "DIGEST_MISMATCH",
	CodeExpired:          "EXPIRED",
	CodeStoreUnavailable: "STORE_UNAVAILABLE",
	CodeQuarantine:       "QUARANTINE",
	CodeUnknownRecipient: "UNKNOWN_RECIPIENT",
	CodeUnknownSender:    "UNKNOWN_SENDER",
	CodeNoRoute:          "NO_ROUTE",
	CodeQuotaExceeded:    "QUOTA_EXCEEDED",
	CodeNotAllowed:       "NOT_ALLOWED",
	CodeBusy:             "BUSY",
	CodeInternal:         "INTERNAL",
	CodeUnknownTx:        "UNKNOWN_TX",
	CodeConversionFailed: "CONVERSION_FAILED",
	CodeDuplicate:        "DUPLICATE",
	CodeUnsupported:      "UNSUPPORTED",
	CodeUnauthorized:     "UNAUTHORIZED",
	CodeStrictRequired:   "STRICT_REQUIRED",
	CodeSettled:          "SETTLED",
	CodeRejected:         "REJECTED",
	CodeUnreachable:      "UNREACHABLE",
	CodeCancelled:        "CANCELLED",
	CodeSealUnavailable:  "SEAL_UNAVAILABLE",
	CodeBadSeal:          "BAD_SEAL",
}

var codeText = [...]string{
	CodeOK:               "ok",
	CodeMalformed:        "malformed frame or document",
	CodeTooLarge:         "size limit exceeded",
	CodeBadVersion:       "unsupported version",
	CodeUnknownKey:       "unknown or retired key id",
	CodeBadMAC:           "authentication failed",
	CodeStale:            "timestamp outside the window",
	CodeClockSkew:        "timestamp ahead of server time",
	CodeReplay:           "replayed frame",
	CodeBadSession:       "invalid session key",
	CodeIDMismatch:       "transaction id mismatch",
	CodeBadTicket:        "invalid broker ticket",
	CodeDigestMismatch:   "content digest mismatch",
	CodeExpired:          "transaction expired",
	CodeStoreUnavailable: "store unavailable, retry later",
	CodeQuarantine:       "replay protection recovering, retry later",
	CodeUnknownRecipient: "unknown recipient",
	CodeUnknownSender:    "unknown sender",
	CodeNoRoute:          "no gateway available for the recipient",
	CodeQuotaExceeded:    "quota exceeded",
	CodeNotAllowed:       "not allowed",
	CodeBusy:             "busy, retry later",
	CodeInternal:         "internal error",
	CodeUnknownTx:        "unknown transaction",
	CodeConversionFailed: "content conversion failed",
	CodeDuplicate:        "message id already used",
	CodeUnsupported:      "content not supported by the destination",
	CodeUnauthorized:     "missing or wrong credentials",
	CodeStrictRequired:   "strict MIAP mode required",
	CodeSettled:          "the message is settled: see its status",
	CodeRejected:         "refused by the recipient's side",
	CodeUnreachable:      "no gateway is set up to reach this address",
	CodeCancelled:        "cancelled by the sender",
	CodeSealUnavailable:  "a hop of the route cannot take sealed content",
	CodeBadSeal:          "sealed content does not open",
}

// String returns the code's wire name, such as "BAD_MAC".
func (c Code) String() string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return "UNKNOWN_CODE"
}

// Text returns the fixed description sent to peers with the code.
func (c Code) Text() string {
	if int(c) < len(codeText) {
		return codeText[c]
	}
	return "unknown error"
}

// Class is what a failure means for the sender of a message: worth
// sending the same message again later, or not (PROTOCOL.md §9, the
// "retry" column). Every gateway maps a code to its medium's answer by its
// class, so that a permanent condition is never presented as a temporary
// one (which invites endless retries) nor the reverse (which loses
// messages):
//
//	class      HTTP                        SMTP  SMPP
//	temporary  503 with Retry-After        4xx   ESME_RTHROTTLED, ESME_RMSGQFUL
//	permanent  4xx (404, 422, 403...), 502  5xx   ESME_RINVDSTADR, ESME_RSUBMITFAIL...
//
// docs/WEB.md, docs/EMAIL.md and docs/SMS.md give each medium's table.
type Class uint8

const (
	// ClassNone is the class of CodeOK: no failure.
	ClassNone Class = iota
	// ClassTemporary: the same message may go through later; retry it,
	// with the same message id, after a while.
	ClassTemporary
	// ClassPermanent: it fails the same way whenever it is sent again; do
	// not retry it as it is.
	ClassPermanent
)

// String returns "temporary", "permanent" or "none".
func (c Class) String() string {
	switch c {
	case ClassTemporary:
		return "temporary"
	case ClassPermanent:
		return "permanent"
	}
	return "none"
}

// codeClass is the one classification of the codes (PROTOCOL.md §9,
// "retry": yes is temporary). TestCodeClassesMatchProtocol checks the two
// agree. A code added to the list needs its class here.
var codeClass = [codeEnd]Class{
	CodeOK:               ClassNone,
	CodeMalformed:        ClassPermanent,
	CodeTooLarge:         ClassPermanent,
	CodeBadVersion:       ClassPermanent,
	CodeUnknownKey:       ClassPermanent, // a key the sender's party does not have: configuration
	CodeBadMAC:           ClassPermanent,
	CodeStale:            ClassPermanent,
	CodeClockSkew:        ClassTemporary, // the receiver's clock catches up; Miap-Server-Time tells by how much
	CodeReplay:           ClassPermanent,
	CodeBadSession:       ClassPermanent,
	CodeIDMismatch:       ClassPermanent,
	CodeBadTicket:        ClassPermanent,
	CodeDigestMismatch:   ClassPermanent,
	CodeExpired:          ClassPermanent,
	CodeStoreUnavailable: ClassTemporary,
	CodeQuarantine:       ClassTemporary, // over after the freshness window (§7.4)
	CodeUnknownRecipient: ClassPermanent,
	CodeUnknownSender:    ClassPermanent,
	CodeNoRoute:          ClassTemporary, // no live gateway now; UNREACHABLE when none is set up to reach it
	CodeQuotaExceeded:    ClassPermanent, // a daily quota: not before the next UTC day, so no automatic retry
	CodeNotAllowed:       ClassPermanent,
	CodeBusy:             ClassTemporary,
	CodeInternal:         ClassTemporary, // unexpected, so not known to be permanent
	CodeUnknownTx:        ClassPermanent,
	CodeConversionFailed: ClassPermanent,
	CodeDuplicate:        ClassPermanent,
	CodeUnsupported:      ClassPermanent,
	CodeUnauthorized:     ClassPermanent,
	CodeStrictRequired:   ClassPermanent, // the gateway's mode is configuration
	CodeSettled:          ClassPermanent, // ask the status instead
	CodeRejected:         ClassPermanent,
	CodeUnreachable:      ClassPermanent,
	CodeCancelled:        ClassPermanent,
	CodeSealUnavailable:  ClassPermanent,
	CodeBadSeal:          ClassPermanent,
}

// Class returns the code's class. A code this version does not know (a
// newer peer's) is temporary, as ParseCode reads an unknown name as
// CodeInternal: the brokers' deadline still ends the retries.
func (c Code) Class() Class {
	if int(c) < len(codeClass) {
		return codeClass[c]
	}
	return ClassTemporary
}

// Retryable reports whether a sender should retry the same message later:
// the code is of ClassTemporary (4xx in SMTP, ESME_RTHROTTLED in SMPP,
// 503 with Retry-After in HTTP).
func (c Code) Retryable() bool { return c.Class() == ClassTemporary }

// Permanent reports whether the failure is for good: the code is of
// ClassPermanent (5xx in SMTP, a permanent command_status in SMPP, a 4xx
// in HTTP). CodeOK is neither temporary nor permanent.
func (c Code) Permanent() bool { return c.Class() == ClassPermanent }

// ParseCode maps a wire name back to its code; unknown names give CodeInternal, false.
func ParseCode(name string) (Code, bool) {
	for i, n := range codeNames {
		if n == name {
			return Code(i), true
		}
	}
	return CodeInternal, false
}

// Codes returns every defined code in order.
func Codes() []Code {
	out := make([]Code, codeEnd)
	for i := range out {
		out[i] = Code(i)
	}
	return out
}

// Error is an error carrying a wire code; Detail stays local (logs), only
// Code crosses the wire.
type Error struct {
	Code   Code
	Detail string
	Err    error
}

func (e *Error) Error() string {
	s := e.Code.String()
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the given code and detail.
func Errorf(code Code, err error, detail string) *Error {
	return &Error{Code: code, Detail: detail, Err: err}
}
