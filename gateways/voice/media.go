package voice

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/uims/uims/internal/wav"
)

// portPool hands out even RTP ports (RFC 3550 §11) from a range.
type portPool struct {
	mu       sync.Mutex
	min, max int
	next     int
	used     map[int]bool
}

func newPortPool(min, max int) *portPool {
	min += min & 1
	return &portPool{min: min, max: max, next: min, used: map[int]bool{}}
}

// open binds a UDP socket on ip and a free even port of the range.
func (p *portPool) open(ip netip.Addr) (*net.UDPConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := (p.max-p.min)/2 + 1
	for range n {
		port := p.next
		p.next += 2
		if p.next > p.max {
			p.next = p.min
		}
		if p.used[port] {
			continue
		}
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port))))
		if err == nil {
			p.used[port] = true
			return c, nil
		}
	}
	return nil, fmt.Errorf("voice: no free RTP port in %d-%d", p.min, p.max)
}

func (p *portPool) release(c *net.UDPConn) {
	port := c.LocalAddr().(*net.UDPAddr).Port
	c.Close()
	p.mu.Lock()
	delete(p.used, port)
	p.mu.Unlock()
}

// frame is 20 ms of audio at 8 kHz (RFC 3551 §4.5: the default packet
// time of G.711).
const frame = Rate / 50

// stream is one call's RTP: it sends 20 ms G.711 packets paced by a
// ticker and receives the peer's, refusing other payload types.
type stream struct {
	conn   *net.UDPConn
	remote netip.AddrPort
	choice Choice
	stats  *Stats

	ssrc uint32
	seq  uint16
	ts   uint32
}

func newStream(conn *net.UDPConn, remote netip.AddrPort, c Choice, stats *Stats) *stream {
	return &stream{conn: conn, remote: remote, choice: c, stats: stats, ssrc: rand.Uint32(), seq: uint16(rand.Uint32()), ts: rand.Uint32()}
}

func (s *stream) encode(samples []int16) []byte {
	b := make([]byte, len(samples))
	for i, v := range samples {
		if s.choice.PT == PTPCMA {
			b[i] = wav.ALawEncode(v)
		} else {
			b[i] = wav.ULawEncode(v)
		}
	}
	return b
}

func (s *stream) decode(b []byte) []int16 {
	out := make([]int16, len(b))
	for i, v := range b {
		if s.choice.PT == PTPCMA {
			out[i] = wav.ALawDecode(v)
		} else {
			out[i] = wav.ULawDecode(v)
		}
	}
	return out
}

// play sends samples in 20 ms packets until they end or ctx is done.
func (s *stream) play(ctx context.Context, samples []int16) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	first := true
	for off := 0; off < len(samples); off += frame {
		end := min(off+frame, len(samples))
		chunk := samples[off:end]
		if len(chunk) < frame {
			chunk = append(chunk[:len(chunk):len(chunk)], make([]int16, frame-len(chunk))...)
		}
		p := &Packet{Marker: first, PayloadType: s.choice.PT, Seq: s.seq, Timestamp: s.ts, SSRC: s.ssrc, Payload: s.encode(chunk)}
		first = false
		s.seq++
		s.ts += frame
		if s.remote.Port() != 0 {
			if _, err := s.conn.WriteToUDPAddrPort(p.Marshal(), s.remote); err != nil {
				return fmt.Errorf("voice: RTP send: %w", err)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// receive reads RTP until ctx is done or the socket closes: audio of the
// negotiated type goes to audio, the end of each telephone event to
// digit; other payload types are counted and dropped.
func (s *stream) receive(ctx context.Context, audio func([]int16), digit func(string)) {
	buf := make([]byte, 1500)
	lastEvent := int64(-1)
	for ctx.Err() == nil {
		s.conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, _, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		p, err := ParsePacket(buf[:n])
		if err != nil {
			s.stats.add(&s.stats.WrongPT)
			continue
		}
		switch {
		case p.PayloadType == s.choice.PT:
			audio(s.decode(p.Payload))
		case s.choice.Event >= 0 && int(p.PayloadType) == s.choice.Event:
			e, err := ParseEvent(p.Payload)
			// an event ends with 3 packets with E set and one timestamp (RFC 4733 §2.5.1.4)
			if err == nil && e.End && int64(p.Timestamp) != lastEvent {
				lastEvent = int64(p.Timestamp)
				if d := e.Digit(); d != "" && digit != nil {
					digit(d)
				}
			}
		case p.PayloadType == 13: // comfort noise (RFC 3389): silence
			audio(make([]int16, frame))
		default:
			s.stats.add(&s.stats.WrongPT)
		}
	}
}

// tone is a sine of hz for d at amplitude amp.
func tone(hz float64, d time.Duration, amp float64) []int16 {
	n := int(d.Seconds() * Rate)
	out := make([]int16, n)
	for i := range out {
		out[i] = int16(amp * math.Sin(2*3.141592653589793*hz*float64(i)/Rate))
	}
	return out
}

func udpAddrPort(c *net.UDPConn) netip.AddrPort {
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}
