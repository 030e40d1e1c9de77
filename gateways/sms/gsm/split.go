package gsm

import (
	"errors"
	"fmt"
)

// ErrTooManyParts: a text needs more parts than allowed (at most 255, the
// range of the concatenation IE's total field).
var ErrTooManyParts = errors.New("gsm: text needs too many parts")

// Size limits in septets (GSM 7-bit) or UTF-16 code units (UCS-2), from the
// 140-octet user data of TS 23.040 §9.2.3.16 minus the 6-octet
// concatenation UDH (7 septets with the fill bit).
const (
	MaxSingleSeptets = 160
	MaxPartSeptets   = 153
	MaxSingleUCS2    = 70
	MaxPartUCS2      = 67
	MaxParts         = 255
)

// Segment is one SMS of a possibly concatenated message.
type Segment struct {
	Seq     uint8  // 1-based part number
	Total   uint8  // number of parts; 1 for a single SMS
	UDH     []byte // nil for a single SMS, else 05 00 03 ref total seq
	Payload []byte // unpacked septets (GSM 7-bit) or UTF-16BE (UCS-2)
	Units   int    // septets or UTF-16 code units in Payload
}

// ShortMessage returns UDH followed by Payload: the SMPP short_message
// (send with esm_class UDHI when UDH is not nil).
func (s Segment) ShortMessage() []byte {
	out := make([]byte, 0, len(s.UDH)+len(s.Payload))
	return append(append(out, s.UDH...), s.Payload...)
}

// Split encodes text with the coding Choose picks and cuts it into SMS
// parts: one part without UDH when it fits 160 septets / 70 UCS-2 code
// units, else parts of at most 153 septets / 67 code units, each with the
// UDH 05 00 03 ref total seq (TS 23.040 §9.2.3.24.1). An escape sequence
// (extension character, 2 septets) and a UTF-16 surrogate pair are never
// split across parts. A text needing more than 255 parts yields nil
// segments; use SplitN to get the error.
func Split(text string, ref uint8) ([]Segment, Coding) {
	segs, c, err := SplitN(text, ref, MaxParts)
	if err != nil {
		return nil, c
	}
	return segs, c
}

// SplitN is Split with a limit on the number of parts (at most MaxParts).
// It fails with ErrTooManyParts when the text needs more.
func SplitN(text string, ref uint8, maxParts int) ([]Segment, Coding, error) {
	maxParts = min(maxParts, MaxParts)
	c, units := Choose(text)
	var enc []byte
	single, part, unit := MaxSingleSeptets, MaxPartSeptets, 1
	if c == CodingGSM7 {
		var err error
		if enc, err = EncodeSeptets(text); err != nil {
			return nil, c, err // unreachable: Choose checked
		}
	} else {
		enc = EncodeUCS2(text)
		single, part, unit = MaxSingleUCS2, MaxPartUCS2, 2
	}
	if units <= single {
		if maxParts < 1 {
			return nil, c, fmt.Errorf("%w: 1 needed, %d allowed", ErrTooManyParts, maxParts)
		}
		return []Segment{{Seq: 1, Total: 1, Payload: enc, Units: units}}, c, nil
	}

	// Cut points, in octets of enc. Part size in octets is part*unit; step
	// back one unit when the cut would separate ESC from its code or a high
	// surrogate from its low one.
	var cuts [MaxParts + 1]int
	n := 0
	for off := 0; off < len(enc); n++ {
		if n == maxParts {
			return nil, c, fmt.Errorf("%w: more than %d needed, %d units", ErrTooManyParts, maxParts, units)
		}
		end := min(off+part*unit, len(enc))
		if end < len(enc) && splitsPair(enc, end, c) {
			end -= unit
		}
		cuts[n] = off
		off = end
	}
	cuts[n] = len(enc)

	segs := make([]Segment, n)
	udh := make([]byte, 0, 6*n)
	for i := range segs {
		start := len(udh)
		udh = Concat{Ref: uint16(ref), Total: uint8(n), Seq: uint8(i + 1)}.AppendUDH(udh)
		p := enc[cuts[i]:cuts[i+1]:cuts[i+1]]
		segs[i] = Segment{
			Seq: uint8(i + 1), Total: uint8(n),
			UDH:     udh[start:len(udh):len(udh)],
			Payload: p,
			Units:   len(p) / unit,
		}
	}
	return segs, c, nil
}

// splitsPair reports whether cutting enc before octet end separates an
// escape sequence or a surrogate pair.
func splitsPair(enc []byte, end int, c Coding) bool {
	if c == CodingGSM7 {
		// No extension code is 0x1B, so an ESC octet always starts a pair.
		return enc[end-1] == esc
	}
	hi := uint16(enc[end-2])<<8 | uint16(enc[end-1])
	return hi >= 0xD800 && hi < 0xDC00
}
