// Package dlr parses and formats the text of SMPP delivery receipts and
// matches the message ids they carry against the ids SMSCs return in
// submit_sm_resp. It is pure: no I/O, no globals besides constant tables.
//
// A delivery receipt is a deliver_sm (or data_sm) with esm_class bit 2 set
// (SMPP 3.4 §5.2.12) whose short_message holds the text described,
// informatively, in SMPP 3.4 Appendix B:
//
//	id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:DDDDDDD err:E text: . . . . . . . . .
//
// SMSCs deviate freely from it, so [Parse] is tolerant; [Format] writes the
// canonical layout. The receipted_message_id and message_state TLVs (SMPP
// 3.4 §5.3.2.12, §5.3.2.35), when present, are more reliable than the text;
// see package pdu.
package dlr

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrNotReceipt: the text has no non-empty id field.
var ErrNotReceipt = errors.New("dlr: not a delivery receipt")

// Stat is the stat field of a receipt, upper case.
type Stat string

// Receipt states, SMPP 3.4 Appendix B.
const (
	StatDelivered     Stat = "DELIVRD"
	StatExpired       Stat = "EXPIRED"
	StatDeleted       Stat = "DELETED"
	StatUndeliverable Stat = "UNDELIV"
	StatAccepted      Stat = "ACCEPTD"
	StatUnknown       Stat = "UNKNOWN"
	StatRejected      Stat = "REJECTD"
	// StatEnroute is not in Appendix B but is sent by some SMSCs for
	// intermediate notifications (message_state ENROUTE, §5.2.28).
	StatEnroute Stat = "ENROUTE"
)

// Final reports whether s is a final state: everything except ENROUTE,
// ACCEPTD (intermediate acknowledgement by the SMSC) and unrecognised
// values.
func (s Stat) Final() bool {
	switch s {
	case StatDelivered, StatExpired, StatDeleted, StatUndeliverable, StatUnknown, StatRejected:
		return true
	}
	return false
}

// MessageState returns the SMPP 3.4 §5.2.28 message_state value for s
// (ENROUTE 1 ... REJECTED 8), or 0 for an unrecognised stat.
func (s Stat) MessageState() uint8 {
	switch s {
	case StatEnroute:
		return 1
	case StatDelivered:
		return 2
	case StatExpired:
		return 3
	case StatDeleted:
		return 4
	case StatUndeliverable:
		return 5
	case StatAccepted:
		return 6
	case StatUnknown:
		return 7
	case StatRejected:
		return 8
	}
	return 0
}

// Receipt is a parsed delivery receipt.
type Receipt struct {
	ID         string    // message id as written by the SMSC; compare with SameID
	Sub        int       // messages submitted (usually 1)
	Dlvrd      int       // messages delivered
	SubmitDate time.Time // zero when absent or unparsable
	DoneDate   time.Time // zero when absent or unparsable
	Stat       Stat      // upper case; long forms (DELIVERED, ...) mapped to the 7-letter codes
	Err        string    // network specific error code, verbatim (often 3 digits)
	Text       string    // first characters of the original message
}

// field identifies a receipt field.
type field uint8

const (
	fID field = iota
	fSub
	fDlvrd
	fSubmitDate
	fDoneDate
	fStat
	fErr
	fText
	nFields
)

// Parse reads a delivery receipt text. It is tolerant:
//
//   - keys are case-insensitive and may come in any order;
//   - spaces may surround keys, colons and values; "submit date" and
//     "done date" may be written with an underscore, several spaces or
//     nothing between the words;
//   - a key is recognised only at the start of the text or after white
//     space, and only its first occurrence counts: later occurrences are
//     part of a value, so a text: field (normally last) runs to the end
//     even if the message text contains "stat:" or "id:";
//   - every field is optional except a non-empty id (ErrNotReceipt);
//     dates are YYMMDDhhmm, YYMMDDhhmmss or YYYYMMDDhhmmss, read as UTC
//     wall clock because receipts carry no zone (two-digit years follow
//     time.Parse: 69-99 are 19xx, and four-digit years outside 1969-2068
//     are rejected); unparsable numbers and dates are left zero.
//
// Each value runs from its key to the next recognised key, trimmed of
// white space.
func Parse(text string) (Receipt, error) {
	var (
		seen   [nFields]bool
		starts [nFields]int // key start
		vals   [nFields]int // value start
		order  [nFields]field
		n      int
	)
	for i := 0; i < len(text); i++ {
		if i > 0 && !isSpace(text[i-1]) {
			continue
		}
		f, end, ok := matchKey(text, i)
		if !ok || seen[f] {
			continue
		}
		seen[f], starts[f], vals[f] = true, i, end
		order[n] = f
		n++
		i = end - 1
	}
	if !seen[fID] {
		return Receipt{}, fmt.Errorf("%w: no id field", ErrNotReceipt)
	}
	var r Receipt
	for k := range n {
		f := order[k]
		end := len(text)
		if k+1 < n {
			end = starts[order[k+1]]
		}
		v := trimSpace(text[vals[f]:end])
		switch f {
		case fID:
			r.ID = v
		case fSub:
			r.Sub = atoi(v)
		case fDlvrd:
			r.Dlvrd = atoi(v)
		case fSubmitDate:
			r.SubmitDate = parseDate(v)
		case fDoneDate:
			r.DoneDate = parseDate(v)
		case fStat:
			r.Stat = normalizeStat(v)
		case fErr:
			r.Err = v
		case fText:
			r.Text = v
		}
	}
	if r.ID == "" {
		return Receipt{}, fmt.Errorf("%w: empty id", ErrNotReceipt)
	}
	return r, nil
}

// matchKey matches a field key followed by optional spaces and ':' at
// text[i:], returning the field and the offset after the colon.
func matchKey(text string, i int) (field, int, bool) {
	if i >= len(text) {
		return 0, 0, false
	}
	var f field
	j := -1
	switch lower(text[i]) {
	case 'i':
		f, j = fID, word(text, i, "id")
	case 's':
		if f, j = fStat, word(text, i, "stat"); j < 0 {
			if f, j = fSubmitDate, dateKey(text, i, "submit"); j < 0 {
				f, j = fSub, word(text, i, "sub")
			}
		}
	case 'd':
		if f, j = fDlvrd, word(text, i, "dlvrd"); j < 0 {
			f, j = fDoneDate, dateKey(text, i, "done")
		}
	case 'e':
		f, j = fErr, word(text, i, "err")
	case 't':
		f, j = fText, word(text, i, "text")
	}
	if j < 0 {
		return 0, 0, false
	}
	for j < len(text) && isSpace(text[j]) {
		j++
	}
	if j < len(text) && text[j] == ':' {
		return f, j + 1, true
	}
	return 0, 0, false
}

// dateKey matches "<first> date" with '_' or spaces (or nothing) between.
func dateKey(text string, i int, first string) int {
	j := word(text, i, first)
	if j < 0 {
		return -1
	}
	for j < len(text) && (text[j] == '_' || text[j] == ' ') {
		j++
	}
	return word(text, j, "date")
}

// word matches the lower-case ASCII w at text[i:], ignoring case, and
// returns the offset after it or -1.
func word(text string, i int, w string) int {
	if len(text)-i < len(w) {
		return -1
	}
	for k := 0; k < len(w); k++ {
		if lower(text[i+k]) != w[k] {
			return -1
		}
	}
	return i + len(w)
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

func trimSpace(s string) string {
	for len(s) > 0 && isSpace(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && isSpace(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// Date layouts accepted by Parse; Format writes the first (Appendix B).
const (
	dateMinute = "0601021504"
	dateSecond = "060102150405"
	dateLong   = "20060102150405"
)

func parseDate(s string) time.Time {
	layout := ""
	switch len(s) {
	case len(dateMinute):
		layout = dateMinute
	case len(dateSecond):
		layout = dateSecond
	case len(dateLong):
		layout = dateLong
	default:
		return time.Time{}
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return time.Time{}
		}
	}
	t, err := time.Parse(layout, s)
	if err != nil {
		return time.Time{}
	}
	if y := t.Year(); y < 1969 || y > 2068 {
		// Outside the two-digit window Format can write back.
		return time.Time{}
	}
	return t
}

// normalizeStat upper-cases s (ASCII only) and maps the long spellings some
// SMSCs use to the Appendix B codes.
func normalizeStat(s string) Stat {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - ('a' - 'A')
		}
	}
	switch u := Stat(b); u {
	case "DELIVERED":
		return StatDelivered
	case "UNDELIVERABLE", "UNDELIVERED":
		return StatUndeliverable
	case "ACCEPTED":
		return StatAccepted
	case "REJECTED":
		return StatRejected
	default:
		return u
	}
}

// MaxText is the number of characters of the message Format puts in the
// text field (SMPP 3.4 Appendix B).
const MaxText = 20

// Format writes r in the SMPP 3.4 Appendix B layout. Sub and Dlvrd are
// zero-padded to three digits, dates are written as YYMMDDhhmm (zero dates
// as 0000000000), an empty Err as 000, and Text is cut to its first
// MaxText characters.
func Format(r Receipt) string {
	text := r.Text
	n := 0
	for i := range text {
		if n == MaxText {
			text = text[:i]
			break
		}
		n++
	}
	errCode := r.Err
	if errCode == "" {
		errCode = "000"
	}
	var b strings.Builder
	b.Grow(100 + len(r.ID) + len(text))
	fmt.Fprintf(&b, "id:%s sub:%03d dlvrd:%03d submit date:%s done date:%s stat:%s err:%s text:%s",
		r.ID, r.Sub, r.Dlvrd, formatDate(r.SubmitDate), formatDate(r.DoneDate), r.Stat, errCode, text)
	return b.String()
}

func formatDate(t time.Time) string {
	if t.IsZero() {
		return "0000000000"
	}
	return t.Format(dateMinute)
}

// NormalizeID returns the lookup keys of a message id, most specific
// first, so that the forms one message id takes at different SMSCs (or in
// the submit_sm_resp and the receipt of the same SMSC) share a key. The
// rule, applied to s:
//
//  1. Trim white space and NUL; lower-case ASCII letters; drop leading
//     zeros (keeping one "0" for an all-zero id). This is the first key.
//     It makes "0E999F21-81EF" and "e999f21-81ef" equal (Jasmin #643,
//     #1129: leading zeros and case).
//  2. If that key consists only of hex digits and is at most 16 digits
//     long, its value read as hexadecimal, written in decimal, is the
//     second key (unless equal to the first). It makes hex "1A2B" equal to
//     decimal "6699" (Jasmin #535, #1034: hex in submit_sm_resp, decimal
//     in the receipt, or the reverse).
//
// An all-decimal id is its own decimal key, so the decimal form of a
// number always meets the hex form's second key. Other ids (UUIDs, ids
// with dashes, longer than 64 bits) only have the first key. An empty id
// has no keys. "0x" prefixes are not interpreted.
//
// Store a submitted message under all its keys and look a receipt up by
// its keys in order; the first hit is the best match. Note the inherent
// ambiguity: an id made only of decimal digits is also valid hex, so "10"
// (decimal ten, or hex sixteen) shares a key with "16". Prefer a match on
// the first key when several messages hit.
func NormalizeID(s string) []string {
	s = strings.Trim(s, " \t\r\n\v\f\x00")
	if s == "" {
		return nil
	}
	s = strings.TrimLeft(s, "0")
	if s == "" {
		s = "0"
	}
	lit := asciiLower(s)
	if len(lit) > 16 || !isHex(lit) {
		return []string{lit}
	}
	v, err := strconv.ParseUint(lit, 16, 64)
	if err != nil {
		return []string{lit}
	}
	dec := strconv.FormatUint(v, 10)
	if dec == lit {
		return []string{lit}
	}
	return []string{lit, dec}
}

// SameID reports whether two message ids denote the same message under the
// NormalizeID rule: some key of a equals some key of b.
func SameID(a, b string) bool {
	ka, kb := NormalizeID(a), NormalizeID(b)
	for _, x := range ka {
		for _, y := range kb {
			if x == y {
				return true
			}
		}
	}
	return false
}

func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				b[j] = lower(b[j])
			}
			return string(b)
		}
	}
	return s
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
