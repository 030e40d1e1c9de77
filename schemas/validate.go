package schemas

import (
	"fmt"
	"mime"
	"unicode/utf8"
)

// ValidMsgID reports whether s is a message id: 32 lowercase hex digits.
func ValidMsgID(s string) bool { return LowerHex(s, 32) }

// validSHA reports whether s is a SHA-256 in lowercase hex.
func validSHA(s string) bool { return LowerHex(s, 64) }

// LowerHex reports whether s is n lowercase hex digits (a message id, a
// SHA-256 in hex).
func LowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Limits of document fields (PROTOCOL.md §6.2), in bytes of UTF-8.
const (
	// MaxContentType bounds a content type: it travels in the ticket's
	// Miap-Ctype header, which has the same limit (§4.2).
	MaxContentType = 256
	// MaxMeta is the most entries of an IMI's meta.
	MaxMeta = 32
	// MaxAnnounceTTL is the longest announcement TTL, in milliseconds (§6.12).
	MaxAnnounceTTL = 600_000
	// MaxConversionCost is the highest cost of an announced conversion (§6.12).
	MaxConversionCost = 1000
)

// cleanLine rejects text with control characters that could break a
// medium's framing (CR, LF, NUL) where a single line is expected.
func cleanLine(s string, max int) bool {
	if len(s) > max || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r == '\r' || r == '\n' || r == 0 {
			return false
		}
	}
	return true
}

// Validate checks an IMI's fields (PROTOCOL.md §6.2).
func (m *IMI) Validate() error {
	switch {
	case m.V != Version:
		return Errorf(CodeBadVersion, nil, fmt.Sprintf("imi version %d", m.V))
	case !ValidMsgID(m.MsgID):
		return Errorf(CodeMalformed, nil, "msg_id must be 32 lowercase hex digits")
	case m.Gateway == "":
		return Errorf(CodeMalformed, nil, "no gateway")
	case m.From.Medium == "" || !cleanLine(m.From.Address, 320) || !cleanLine(m.From.Name, 256):
		return Errorf(CodeMalformed, nil, "bad from")
	case m.To == "" || !cleanLine(m.To, 320):
		return Errorf(CodeMalformed, nil, "bad to")
	case !cleanLine(m.Subject, 998):
		return Errorf(CodeMalformed, nil, "subject must be one line of at most 998 bytes")
	case m.InReplyTo != "" && !ValidMsgID(m.InReplyTo):
		return Errorf(CodeMalformed, nil, "in_reply_to")
	case m.SendAt < 0 || m.Expires < 0:
		return Errorf(CodeMalformed, nil, "send_at and expires are Unix ms")
	case m.SendAt > 0 && m.SendAt > m.Created+MaxHold.Milliseconds():
		return Errorf(CodeMalformed, nil, "send_at is more than 7 days ahead")
	case m.Expires > 0 && m.Expires <= max(m.SendAt, m.Created):
		return Errorf(CodeMalformed, nil, "expires before the message could be sent")
	}
	if err := m.Content.Validate(); err != nil {
		return err
	}
	for _, a := range m.Content.Attachments {
		if a.Length < 0 {
			return Errorf(CodeMalformed, nil, "attachment length")
		}
	}
	if len(m.Meta) > MaxMeta {
		return Errorf(CodeMalformed, nil, "too many meta entries")
	}
	for k, v := range m.Meta {
		if !cleanLine(k, 64) || !cleanLine(v, 1024) {
			return Errorf(CodeMalformed, nil, "meta entry")
		}
	}
	return nil
}

// Validate checks a content description (PROTOCOL.md §6.2): a MIME type
// with parameters of at most MaxContentType bytes, a length of at least 0
// and a SHA-256 of 64 lowercase hex digits.
func (c *Content) Validate() error {
	if c.Length < 0 || !validSHA(c.SHA256) {
		return Errorf(CodeMalformed, nil, "content length or sha256")
	}
	if len(c.Type) > MaxContentType {
		return Errorf(CodeMalformed, nil, "content type longer than 256 bytes")
	}
	if _, _, err := mime.ParseMediaType(c.Type); err != nil {
		return Errorf(CodeMalformed, err, "content type")
	}
	if c.Sealed != "" && c.Sealed != SealScheme {
		return Errorf(CodeUnsupported, nil, "content sealed as "+c.Sealed)
	}
	if c.Sealed != "" && c.Length < SealOverhead {
		return Errorf(CodeMalformed, nil, "sealed content shorter than its overhead")
	}
	return nil
}

// Sealed content (PROTOCOL.md §14): the one scheme, and what it adds to
// the content (a version byte and the AES-GCM tag). miap has the same.
const (
	SealScheme   = "x25519-a256gcm"
	SealOverhead = 17
)

// ValidAckStatus reports whether s is a status a destination may acknowledge.
func ValidAckStatus(s string) bool {
	return s == StatusTransferred || s == StatusDelivered || s == StatusRead || s == StatusFailed
}

// Validate checks an Ack.
func (a *Ack) Validate() error {
	switch {
	case a.V != Version:
		return Errorf(CodeBadVersion, nil, "ack version")
	case !ValidMsgID(a.MsgID) || a.Tx == "":
		return Errorf(CodeMalformed, nil, "ack ids")
	case !ValidAckStatus(a.Status):
		return Errorf(CodeMalformed, nil, "ack status "+a.Status)
	case !cleanLine(a.Reason, 1024):
		return Errorf(CodeMalformed, nil, "ack reason")
	}
	return nil
}

// Validate checks a route acknowledgement's body (PROTOCOL.md §6.4).
func (r *RouteAck) Validate() error {
	switch {
	case r.V != Version:
		return Errorf(CodeBadVersion, nil, "route-ack version")
	case !ValidMsgID(r.Tx):
		return Errorf(CodeMalformed, nil, "route-ack tx must be 32 lowercase hex digits")
	}
	return nil
}

// Validate checks a conversion report (PROTOCOL.md §6.7). Whether its
// step and conversion are on the route is the broker's check.
func (r *ConvReport) Validate() error {
	switch {
	case r.V != Version:
		return Errorf(CodeBadVersion, nil, "conv version")
	case !ValidMsgID(r.MsgID) || r.Tx == "":
		return Errorf(CodeMalformed, nil, "conv ids")
	}
	return r.Content.Validate()
}

// Validate checks a status query (PROTOCOL.md §6.10).
func (q *StatusQuery) Validate() error {
	switch {
	case q.V != Version:
		return Errorf(CodeBadVersion, nil, "status query version")
	case !ValidMsgID(q.MsgID):
		return Errorf(CodeMalformed, nil, "msg_id")
	}
	return nil
}

// Validate checks a client query (PROTOCOL.md §6.11).
func (q *ClientQuery) Validate() error {
	if q.V != Version {
		return Errorf(CodeBadVersion, nil, "client query version")
	}
	switch q.Kind {
	case CredentialToken, CredentialSMPP, CredentialSMTP, ClientByAddress, ClientByID:
		return nil
	}
	return Errorf(CodeMalformed, nil, "query kind "+q.Kind)
}

// Validate checks an announcement (PROTOCOL.md §6.12); that gateway is
// the signer and the medium in its grant are the broker's checks.
func (a *Announce) Validate() error {
	switch {
	case a.V != Version:
		return Errorf(CodeBadVersion, nil, "announce version")
	case a.Gateway == "" || a.Instance == "" || a.Medium == "":
		return Errorf(CodeMalformed, nil, "announce without gateway, medium or instance")
	case a.TTL < 0 || a.TTL > MaxAnnounceTTL:
		return Errorf(CodeMalformed, nil, fmt.Sprintf("announce ttl %d ms outside 0..%d", a.TTL, MaxAnnounceTTL))
	case a.XKey != "" && !validXKey(a.XKey):
		return Errorf(CodeMalformed, nil, "announce xkey is no public curve key")
	}
	for _, c := range a.Conversions {
		if c.Cost < 0 || c.Cost > MaxConversionCost {
			return Errorf(CodeMalformed, nil, fmt.Sprintf("conversion %q costs %d, outside 0..%d", c.Name, c.Cost, MaxConversionCost))
		}
	}
	return nil
}

// validXKey reports whether s looks like an nkeys public curve key: 56
// characters of base32 starting with X (miap checks the checksum).
func validXKey(s string) bool {
	if len(s) != 56 || s[0] != 'X' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'A' && c <= 'Z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}
