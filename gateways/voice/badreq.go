package voice

import (
	"bytes"
	"net"
	"strings"

	"github.com/emiago/sipgo/sip"
	"github.com/rs/zerolog"
)

// badRequestConn is the SIP UDP socket as sipgo reads it. sipgo drops a
// datagram it cannot parse without an answer; RFC 3261 §8.2.2 and §21.4.1
// want 400 Bad Request, so the datagrams are parsed here first and a
// request sipgo would drop is answered 400 here, when its Via, From, To,
// Call-ID and CSeq can be read; anything else is dropped and counted.
type badRequestConn struct {
	net.PacketConn
	log   zerolog.Logger
	stats *Stats
}

func (c *badRequestConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(b)
		if err != nil || n <= 4 && len(bytes.Trim(b[:n], "\r\n\x00")) == 0 {
			return n, addr, err // keep-alives sipgo handles
		}
		if _, perr := sip.ParseMessage(b[:n]); perr == nil {
			return n, addr, nil
		} else {
			c.stats.add(&c.stats.Malformed)
			res, ok := BadRequest(b[:n], perr.Error())
			if ok {
				c.PacketConn.WriteTo(res, addr)
			}
			c.log.Warn().Str("from", addr.String()).Bool("answered", ok).Err(perr).Msg("malformed SIP message")
		}
	}
}

// BadRequest builds a 400 response to a request that cannot be parsed
// as a whole (RFC 3261 §8.2.2: the response copies Via, From, To, Call-ID
// and CSeq, §8.2.6.2, and adds a To tag). ok is false when msg is not a
// request, is an ACK (never answered, §17.1.1.1), or lacks one of those
// headers.
func BadRequest(msg []byte, why string) (res []byte, ok bool) {
	text := string(msg)
	if head, _, found := strings.Cut(text, "\r\n\r\n"); found {
		text = head
	} else if head, _, found := strings.Cut(text, "\n\n"); found {
		text = head
	}
	lines := strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n")
	first := strings.Fields(lines[0])
	if len(first) != 3 || first[2] != "SIP/2.0" || first[0] == "ACK" || strings.HasPrefix(first[0], "SIP/") {
		return nil, false
	}
	compact := map[string]string{"v": "Via", "f": "From", "t": "To", "i": "Call-ID"}
	var via []string
	one := map[string]string{}
	for _, l := range lines[1:] {
		name, val, found := strings.Cut(l, ":")
		if !found {
			continue
		}
		name = strings.TrimSpace(name)
		if c, isCompact := compact[strings.ToLower(name)]; isCompact {
			name = c
		}
		val = strings.TrimSpace(val)
		if val == "" || strings.ContainsAny(val, "\r\n") {
			continue
		}
		switch strings.ToLower(name) {
		case "via":
			via = append(via, val)
		case "from", "to", "call-id", "cseq":
			if _, dup := one[strings.ToLower(name)]; !dup {
				one[strings.ToLower(name)] = val
			}
		}
	}
	if len(via) == 0 || len(one) != 4 {
		return nil, false
	}
	to := one["to"]
	if !strings.Contains(strings.ToLower(to), ";tag=") {
		to += ";tag=uims400"
	}
	why = strings.Map(func(r rune) rune {
		if r < 0x20 || r == '"' || r == '\\' || r == 0x7f {
			return ' '
		}
		return r
	}, why)
	if len(why) > 200 {
		why = why[:200]
	}
	var b strings.Builder
	b.WriteString("SIP/2.0 400 Bad Request\r\n")
	for _, v := range via {
		b.WriteString("Via: " + v + "\r\n")
	}
	b.WriteString("From: " + one["from"] + "\r\nTo: " + to + "\r\nCall-ID: " + one["call-id"] + "\r\nCSeq: " + one["cseq"] + "\r\n")
	b.WriteString("Warning: 399 uims \"" + why + "\"\r\nContent-Length: 0\r\n\r\n")
	return []byte(b.String()), true
}
