package voice

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzRTP: parsing never panics, and a parsed packet marshals to one that
// parses to the same fields.
func FuzzRTP(f *testing.F) {
	f.Add((&Packet{PayloadType: PTPCMU, Seq: 1, Timestamp: 160, SSRC: 7, Payload: make([]byte, 160)}).Marshal())
	f.Add((&Packet{Marker: true, PayloadType: 101, Payload: Event{Event: 2, End: true, Duration: 800}.Marshal()}).Marshal())
	f.Add([]byte{0xb1, 0x00, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 9, 9, 9, 9, 0xbe, 0xde, 0, 1, 7, 7, 7, 7, 0xaa, 0xbb, 0, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePacket(b)
		if err != nil {
			return
		}
		q, err := ParsePacket(p.Marshal())
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if q.Marker != p.Marker || q.PayloadType != p.PayloadType || q.Seq != p.Seq || q.Timestamp != p.Timestamp || q.SSRC != p.SSRC || !bytes.Equal(q.Payload, p.Payload) {
			t.Fatalf("%+v != %+v", q, p)
		}
		if e, err := ParseEvent(p.Payload); err == nil {
			if f, _ := ParseEvent(e.Marshal()); f != e {
				t.Fatalf("event %+v != %+v", f, e)
			}
		}
	})
}

// FuzzSDP: parsing never panics; an offer we can negotiate gives an
// answer that parses to the same choice.
func FuzzSDP(f *testing.F) {
	f.Add([]byte(baresipOffer))
	f.Add([]byte("v=0\r\nc=IN IP6 ::1\r\nm=audio 4000 RTP/AVP 8 0 96\r\na=rtpmap:96 telephone-event/8000\r\n"))
	f.Add([]byte("v=0\nc=IN IP4 10.0.0.1/127\nm=audio 4000/2 RTP/AVP 0\na=recvonly\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseSDP(b)
		if err != nil {
			return
		}
		c, err := m.Negotiate()
		if err != nil {
			return
		}
		m2, err := ParseSDP(BuildSDP(m.Addr, c, true, 1))
		if err != nil {
			t.Fatalf("our offer: %v", err)
		}
		if c2, err := m2.Negotiate(); err != nil || c2 != c {
			t.Fatalf("%+v != %+v (%v)", c2, c, err)
		}
	})
}

// FuzzWAV: decoding never panics and honours the bound.
func FuzzWAV(f *testing.F) {
	f.Add(EncodeWAV([]int16{0, 100, -100}, Rate))
	f.Add(EncodeWAV(make([]int16, 300), 22050))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeWAV(b, 4000)
		if err == nil && len(s) > 4001 {
			t.Fatalf("%d samples beyond the bound", len(s))
		}
	})
}

// FuzzBadRequest: never panics; a 400 it builds is one response whose
// header lines carry no bare CR or LF.
func FuzzBadRequest(f *testing.F) {
	f.Add([]byte("OPTIONS sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5998;branch=z9hG4bK1\r\nFrom: <sip:x@h>;tag=1\r\nTo: <sip:bob@h>\r\nCall-ID: c1\r\nCSeq: OPTIONS\r\n\r\n"), "bad cseq")
	f.Add([]byte("INVITE sip:bob@h SIP/2.0\nv: SIP/2.0/TCP h\nf: <sip:a@h>;tag=2\nt: <sip:b@h>;tag=3\ni: x\nCSeq: 1 INVITE\n\nv=0\n"), "compact")
	f.Add([]byte("ACK sip:bob@h SIP/2.0\r\n\r\n"), "")
	f.Fuzz(func(t *testing.T, msg []byte, why string) {
		res, ok := BadRequest(msg, why)
		if !ok {
			return
		}
		s := string(res)
		if !strings.HasPrefix(s, "SIP/2.0 400 Bad Request\r\n") || !strings.HasSuffix(s, "\r\n\r\n") {
			t.Fatalf("%q", s)
		}
		head := strings.TrimSuffix(s, "\r\n\r\n")
		for _, l := range strings.Split(head, "\r\n") {
			if strings.ContainsAny(l, "\r\n") || l == "" {
				t.Fatalf("bad line %q in %q", l, s)
			}
		}
	})
}
