package gsm

import (
	"errors"
	"fmt"
)

// Errors of the UDH parser.
var (
	// ErrNoUDH: the user data is empty, so there is no UDHL octet.
	ErrNoUDH = errors.New("gsm: no UDH length octet")
	// ErrUDHLength: UDHL points beyond the end of the user data.
	ErrUDHLength = errors.New("gsm: UDHL beyond message")
	// ErrIEOverflow: an information element runs past the end of the UDH.
	ErrIEOverflow = errors.New("gsm: IE length overflows UDH")
	// ErrBadConcat: a concatenation IE with the wrong length or values
	// (total 0, seq 0, seq > total), or a Part with such values.
	ErrBadConcat = errors.New("gsm: bad concatenation values")
)

// Information element identifiers, TS 23.040 §9.2.3.24.
const (
	IEConcat8  = 0x00 // concatenated SMS, 8-bit reference (§9.2.3.24.1)
	IEConcat16 = 0x08 // concatenated SMS, 16-bit reference (§9.2.3.24.8)
)

// IE is one information element of a UDH.
type IE struct {
	ID   byte
	Data []byte // aliases the parsed input
}

// Concat is the content of a concatenation IE. Total == 0 means absent.
type Concat struct {
	Ref   uint16 // reference number, the same in every part
	Total uint8  // number of parts, 1..255
	Seq   uint8  // this part, 1..Total
	Wide  bool   // 16-bit reference (IEI 0x08)
}

// UDH is a parsed user data header.
type UDH struct {
	IEs    []IE   // every IE in order, including concatenation IEs
	Concat Concat // last valid concatenation IE; Total 0 if none
}

// ParseUDH splits user data that starts with a UDH (esm_class UDHI set /
// TP-UDHI, TS 23.040 §9.2.3.24) into the header and the payload after it.
// b[0] is UDHL, the header length excluding itself. The payload is in
// octets: unpacked septets or UCS-2 as carried over SMPP.
//
// A concatenation IE with the wrong length or impossible values yields an
// error wrapping ErrBadConcat, but the UDH (without Concat) and payload are
// still returned: §9.2.3.24.1 tells receivers to ignore such an IE, so a
// caller may deliver the payload as a single message. Other errors return
// zero values.
func ParseUDH(b []byte) (UDH, []byte, error) {
	if len(b) == 0 {
		return UDH{}, nil, ErrNoUDH
	}
	udhl := int(b[0])
	if udhl+1 > len(b) {
		return UDH{}, nil, fmt.Errorf("%w: UDHL %d, %d octets follow", ErrUDHLength, udhl, len(b)-1)
	}
	hdr, payload := b[1:1+udhl], b[1+udhl:]
	n := 0
	for rest := hdr; len(rest) >= 2 && int(rest[1]) <= len(rest)-2; n++ {
		rest = rest[2+int(rest[1]):]
	}
	u := UDH{IEs: make([]IE, 0, n)}
	var concatErr error
	for off := 0; off < len(hdr); {
		if len(hdr)-off < 2 {
			return UDH{}, nil, fmt.Errorf("%w: IE header at offset %d, %d octets left", ErrIEOverflow, off, len(hdr)-off)
		}
		id, l := hdr[off], int(hdr[off+1])
		if l > len(hdr)-off-2 {
			return UDH{}, nil, fmt.Errorf("%w: IE 0x%02X length %d at offset %d, %d octets left", ErrIEOverflow, id, l, off, len(hdr)-off-2)
		}
		data := hdr[off+2 : off+2+l : off+2+l]
		u.IEs = append(u.IEs, IE{ID: id, Data: data})
		off += 2 + l
		if id != IEConcat8 && id != IEConcat16 {
			continue
		}
		// Repeated concatenation IEs: the last one wins (§9.2.3.24).
		c, err := parseConcat(id, data)
		if err != nil {
			concatErr = err
			u.Concat = Concat{}
			continue
		}
		u.Concat, concatErr = c, nil
	}
	return u, payload, concatErr
}

func parseConcat(id byte, data []byte) (Concat, error) {
	var c Concat
	switch {
	case id == IEConcat8 && len(data) == 3:
		c = Concat{Ref: uint16(data[0]), Total: data[1], Seq: data[2]}
	case id == IEConcat16 && len(data) == 4:
		c = Concat{Ref: uint16(data[0])<<8 | uint16(data[1]), Total: data[2], Seq: data[3], Wide: true}
	default:
		return Concat{}, fmt.Errorf("%w: IE 0x%02X with %d octets", ErrBadConcat, id, len(data))
	}
	if err := c.check(); err != nil {
		return Concat{}, err
	}
	return c, nil
}

func (c Concat) check() error {
	if c.Total == 0 || c.Seq == 0 || c.Seq > c.Total {
		return fmt.Errorf("%w: part %d of %d", ErrBadConcat, c.Seq, c.Total)
	}
	return nil
}

// AppendUDH appends a complete UDH (UDHL and one concatenation IE) for c to
// dst: 05 00 03 ref total seq, or with Wide or a reference above 255
// 06 08 04 refhi reflo total seq.
func (c Concat) AppendUDH(dst []byte) []byte {
	if c.Wide || c.Ref > 0xFF {
		return append(dst, 6, IEConcat16, 4, byte(c.Ref>>8), byte(c.Ref), c.Total, c.Seq)
	}
	return append(dst, 5, IEConcat8, 3, byte(c.Ref), c.Total, c.Seq)
}
