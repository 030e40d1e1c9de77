package voice

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// SDP offer/answer (RFC 4566, RFC 3264) for one audio stream: only what a
// G.711 call with RFC 4733 events needs is read.

// ErrSDP is wrapped by every SDP error; an INVITE with such an offer is
// answered 488 Not Acceptable Here.
var ErrSDP = errors.New("voice: unusable SDP")

// Media is one side's audio stream.
type Media struct {
	Addr netip.AddrPort
	// Formats are the payload types of the m= line, in preference order.
	Formats []uint8
	// Codecs maps payload types to rtpmap encoding names, lower case
	// ("pcmu", "pcma", "telephone-event").
	Codecs map[uint8]string
	// Dir is sendrecv, sendonly, recvonly or inactive.
	Dir string
}

// ParseSDP reads the connection address, the first audio m= line and its
// rtpmap attributes. Static types 0 and 8 need no rtpmap (RFC 3551).
func ParseSDP(b []byte) (*Media, error) {
	if len(b) > 64<<10 {
		return nil, fmt.Errorf("%w: %d bytes", ErrSDP, len(b))
	}
	m := &Media{Codecs: map[uint8]string{PTPCMU: "pcmu", PTPCMA: "pcma"}, Dir: "sendrecv"}
	var sessAddr, mediaAddr netip.Addr
	inAudio, seenAudio := false, false
	port := 0
	for line := range strings.Lines(string(b)) {
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 2 || line[1] != '=' {
			continue
		}
		k, v := line[0], line[2:]
		switch k {
		case 'm':
			if inAudio {
				inAudio = false
				break
			}
			f := strings.Fields(v)
			if seenAudio || len(f) < 4 || f[0] != "audio" {
				break
			}
			if f[2] != "RTP/AVP" && f[2] != "RTP/AVPF" {
				return nil, fmt.Errorf("%w: transport %q (RTP/AVP only)", ErrSDP, f[2])
			}
			p, err := strconv.Atoi(strings.Split(f[1], "/")[0])
			if err != nil || p < 0 || p > 65535 {
				return nil, fmt.Errorf("%w: port %q", ErrSDP, f[1])
			}
			port = p
			for _, s := range f[3:] {
				pt, err := strconv.Atoi(s)
				if err != nil || pt < 0 || pt > 127 {
					return nil, fmt.Errorf("%w: payload type %q", ErrSDP, s)
				}
				m.Formats = append(m.Formats, uint8(pt))
			}
			inAudio, seenAudio = true, true
		case 'c':
			f := strings.Fields(v)
			if len(f) < 3 || f[0] != "IN" || (f[1] != "IP4" && f[1] != "IP6") {
				return nil, fmt.Errorf("%w: connection %q", ErrSDP, v)
			}
			a, err := netip.ParseAddr(strings.Split(f[2], "/")[0])
			if err != nil {
				return nil, fmt.Errorf("%w: connection address %q", ErrSDP, f[2])
			}
			if inAudio {
				mediaAddr = a
			} else if !seenAudio {
				sessAddr = a
			}
		case 'a':
			if !inAudio && seenAudio {
				break
			}
			name, val, _ := strings.Cut(v, ":")
			switch name {
			case "sendrecv", "sendonly", "recvonly", "inactive":
				m.Dir = name
			case "rtpmap":
				pts, enc, ok := strings.Cut(val, " ")
				pt, err := strconv.Atoi(pts)
				if !ok || err != nil || pt < 0 || pt > 127 {
					return nil, fmt.Errorf("%w: rtpmap %q", ErrSDP, val)
				}
				codec, _, _ := strings.Cut(strings.TrimSpace(enc), "/")
				m.Codecs[uint8(pt)] = strings.ToLower(codec)
			}
		}
	}
	if !seenAudio {
		return nil, fmt.Errorf("%w: no audio stream", ErrSDP)
	}
	addr := mediaAddr
	if !addr.IsValid() {
		addr = sessAddr
	}
	if !addr.IsValid() {
		return nil, fmt.Errorf("%w: no connection address", ErrSDP)
	}
	m.Addr = netip.AddrPortFrom(addr.Unmap(), uint16(port))
	return m, nil
}

// Choice is the negotiated stream: the audio codec and the telephone-event
// payload type (-1 when the peer offered none).
type Choice struct {
	PT    uint8
	Codec string // "pcmu" or "pcma"
	Event int
}

// Negotiate picks the first G.711 format of the offer (RFC 3264 §6.1: the
// offerer's order) and its telephone-event type.
func (m *Media) Negotiate() (Choice, error) {
	c := Choice{Event: -1}
	found := false
	for _, pt := range m.Formats {
		switch codec := m.Codecs[pt]; codec {
		case "pcmu", "pcma":
			if !found {
				c.PT, c.Codec, found = pt, codec, true
			}
		case "telephone-event":
			if c.Event < 0 {
				c.Event = int(pt)
			}
		}
	}
	if !found {
		return c, fmt.Errorf("%w: no G.711 (PCMU or PCMA) among the offered formats", ErrSDP)
	}
	return c, nil
}

// BuildSDP writes an offer or answer for one audio stream at addr with the
// chosen codecs (codec first, then the other G.711 law when offer is set,
// then telephone-event 0-15).
func BuildSDP(addr netip.AddrPort, c Choice, offer bool, sessID int64) []byte {
	ip := "IP4"
	if addr.Addr().Is6() {
		ip = "IP6"
	}
	fmts := []string{strconv.Itoa(int(c.PT))}
	attrs := []string{fmt.Sprintf("a=rtpmap:%d %s/8000", c.PT, strings.ToUpper(c.Codec))}
	if offer {
		other, name := PTPCMA, "PCMA"
		if c.PT == PTPCMA {
			other, name = PTPCMU, "PCMU"
		}
		fmts = append(fmts, strconv.Itoa(other))
		attrs = append(attrs, fmt.Sprintf("a=rtpmap:%d %s/8000", other, name))
	}
	if c.Event >= 0 {
		fmts = append(fmts, strconv.Itoa(c.Event))
		attrs = append(attrs, fmt.Sprintf("a=rtpmap:%d telephone-event/8000", c.Event), fmt.Sprintf("a=fmtp:%d 0-15", c.Event))
	}
	var s strings.Builder
	fmt.Fprintf(&s, "v=0\r\no=uims %d %d IN %s %s\r\ns=uims voice\r\nc=IN %s %s\r\nt=0 0\r\n", sessID, sessID, ip, addr.Addr(), ip, addr.Addr())
	fmt.Fprintf(&s, "m=audio %d RTP/AVP %s\r\n", addr.Port(), strings.Join(fmts, " "))
	for _, a := range attrs {
		s.WriteString(a + "\r\n")
	}
	s.WriteString("a=ptime:20\r\na=sendrecv\r\n")
	return []byte(s.String())
}
