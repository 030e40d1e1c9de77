package voice

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// RTP (RFC 3550 §5.1) and telephone events (RFC 4733 §2.3).

// Static payload types of RFC 3551 §6.
const (
	PTPCMU = 0
	PTPCMA = 8
)

// ErrRTP is wrapped by every RTP and event parsing error.
var ErrRTP = errors.New("voice: malformed RTP")

// Packet is one RTP packet. CSRCs and a header extension are skipped on
// parsing and never written.
type Packet struct {
	Marker      bool
	PayloadType uint8
	Seq         uint16
	Timestamp   uint32
	SSRC        uint32
	Payload     []byte
}

// ParsePacket parses an RTP packet (RFC 3550 §5.1: version 2, CSRC list,
// §5.3.1 extension, padding). Payload aliases b.
func ParsePacket(b []byte) (*Packet, error) {
	if len(b) < 12 {
		return nil, fmt.Errorf("%w: %d bytes, less than the 12-byte header", ErrRTP, len(b))
	}
	if b[0]>>6 != 2 {
		return nil, fmt.Errorf("%w: version %d", ErrRTP, b[0]>>6)
	}
	p := &Packet{Marker: b[1]&0x80 != 0, PayloadType: b[1] & 0x7f, Seq: binary.BigEndian.Uint16(b[2:]),
		Timestamp: binary.BigEndian.Uint32(b[4:]), SSRC: binary.BigEndian.Uint32(b[8:])}
	off := 12 + 4*int(b[0]&0x0f)
	if off > len(b) {
		return nil, fmt.Errorf("%w: CSRC list beyond the packet", ErrRTP)
	}
	if b[0]&0x10 != 0 { // extension: 16-bit profile, 16-bit length in words
		if off+4 > len(b) {
			return nil, fmt.Errorf("%w: extension header beyond the packet", ErrRTP)
		}
		off += 4 + 4*int(binary.BigEndian.Uint16(b[off+2:]))
		if off > len(b) {
			return nil, fmt.Errorf("%w: extension beyond the packet", ErrRTP)
		}
	}
	end := len(b)
	if b[0]&0x20 != 0 { // padding: the last byte counts the padding bytes
		pad := int(b[len(b)-1])
		if pad == 0 || end-pad < off {
			return nil, fmt.Errorf("%w: padding of %d bytes", ErrRTP, pad)
		}
		end -= pad
	}
	p.Payload = b[off:end]
	return p, nil
}

// Marshal writes the packet (no CSRC, extension or padding).
func (p *Packet) Marshal() []byte {
	b := make([]byte, 12+len(p.Payload))
	b[0] = 2 << 6
	b[1] = p.PayloadType & 0x7f
	if p.Marker {
		b[1] |= 0x80
	}
	binary.BigEndian.PutUint16(b[2:], p.Seq)
	binary.BigEndian.PutUint32(b[4:], p.Timestamp)
	binary.BigEndian.PutUint32(b[8:], p.SSRC)
	copy(b[12:], p.Payload)
	return b
}

// Event is an RFC 4733 §2.3 named telephone event.
type Event struct {
	Event    uint8 // 0-9, 10 '*', 11 '#', 12-15 A-D (§3.2)
	End      bool
	Volume   uint8
	Duration uint16
}

// ParseEvent parses a telephone-event payload (RFC 4733 §2.3: 4 bytes;
// several events may be stacked, the first counts).
func ParseEvent(b []byte) (Event, error) {
	if len(b) < 4 {
		return Event{}, fmt.Errorf("%w: telephone-event of %d bytes", ErrRTP, len(b))
	}
	return Event{Event: b[0], End: b[1]&0x80 != 0, Volume: b[1] & 0x3f, Duration: binary.BigEndian.Uint16(b[2:])}, nil
}

// Marshal writes the 4-byte event payload.
func (e Event) Marshal() []byte {
	b := []byte{e.Event, e.Volume & 0x3f, 0, 0}
	if e.End {
		b[1] |= 0x80
	}
	binary.BigEndian.PutUint16(b[2:], e.Duration)
	return b
}

// Digit is the event's DTMF digit ("0"-"9", "*", "#", "A"-"D"), or "" for
// another event.
func (e Event) Digit() string {
	const digits = "0123456789*#ABCD"
	if int(e.Event) < len(digits) {
		return digits[e.Event : e.Event+1]
	}
	return ""
}
