package schemas

import (
	"strconv"
	"unicode/utf8"
)

// AppendJSON appends the event as JSON, the same document encoding/json
// makes of it (field order, omitempty; strings escaped as JSON requires),
// without reflection: every component writes several per message, and
// reflection's deep encoder was a tenth of the broker's CPU, mostly in
// growing goroutine stacks (issue 7).
func (e *TraceEvent) AppendJSON(b []byte) []byte {
	b = append(b, `{"step":`...)
	b = AppendJSONString(b, e.Step)
	b = appendOpt(b, `,"msg_id":`, e.MsgID)
	b = appendOpt(b, `,"tx":`, e.Tx)
	b = append(b, `,"party":`...)
	b = AppendJSONString(b, e.Party)
	b = append(b, `,"by":`...)
	b = AppendJSONString(b, e.By)
	b = append(b, `,"result":`...)
	b = AppendJSONString(b, e.Result)
	b = append(b, `,"at":`...)
	b = strconv.AppendInt(b, e.At, 10)
	b = appendOpt(b, `,"dest":`, e.Dest)
	b = appendOpt(b, `,"status":`, e.Status)
	if e.IDMatch {
		b = append(b, `,"id_match":true`...)
	}
	b = appendOpt(b, `,"id":`, e.ID)
	b = appendOpt(b, `,"conversion":`, e.Conversion)
	b = appendOpt(b, `,"next":`, e.Next)
	b = appendOpt(b, `,"sender":`, e.Sender)
	b = appendOpt(b, `,"recipient":`, e.Recipient)
	b = appendOpt(b, `,"to":`, e.To)
	b = appendOpt(b, `,"code":`, e.Code)
	return append(b, '}')
}

func appendOpt(b []byte, key, v string) []byte {
	if v == "" {
		return b
	}
	return AppendJSONString(append(b, key...), v)
}

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s as a JSON string as encoding/json writes it:
// ", \ and control characters escaped, <, > and & as \u00XX, invalid UTF-8
// as U+FFFD, U+2028 and U+2029 escaped.
func AppendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
