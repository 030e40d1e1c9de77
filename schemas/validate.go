package schemas

import (
	"fmt"
	"mime"
	"unicode/utf8"
)

// ValidMsgID reports whether s is a message id: 32 lowercase hex digits.
func ValidMsgID(s string) bool {
	if len(s) != 32 {
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

func validSHA(s string) bool {
	if len(s) != 64 {
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

// cleanText rejects text with control characters that could break a
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
	case m.Content.Length < 0 || !validSHA(m.Content.SHA256):
		return Errorf(CodeMalformed, nil, "content length or sha256")
	case m.InReplyTo != "" && !ValidMsgID(m.InReplyTo):
		return Errorf(CodeMalformed, nil, "in_reply_to")
	}
	if _, _, err := mime.ParseMediaType(m.Content.Type); err != nil {
		return Errorf(CodeMalformed, err, "content type")
	}
	if len(m.Meta) > 32 {
		return Errorf(CodeMalformed, nil, "too many meta entries")
	}
	for k, v := range m.Meta {
		if !cleanLine(k, 64) || !cleanLine(v, 1024) {
			return Errorf(CodeMalformed, nil, "meta entry")
		}
	}
	return nil
}

// ValidStatus reports whether s is a status a destination may acknowledge.
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
