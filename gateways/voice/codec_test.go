package voice

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
)

func TestRTPRoundTrip(t *testing.T) {
	p := &Packet{Marker: true, PayloadType: PTPCMA, Seq: 65535, Timestamp: 0xdeadbeef, SSRC: 42, Payload: []byte{1, 2, 3}}
	q, err := ParsePacket(p.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if !q.Marker || q.PayloadType != PTPCMA || q.Seq != 65535 || q.Timestamp != 0xdeadbeef || q.SSRC != 42 || !bytes.Equal(q.Payload, p.Payload) {
		t.Fatalf("round trip: %+v", q)
	}
	// one CSRC, an extension of one word and 2 bytes of padding
	b := []byte{0xb1, 0x00, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 9, 9, 9, 9, 0xbe, 0xde, 0, 1, 7, 7, 7, 7, 0xaa, 0xbb, 0, 2}
	q, err = ParsePacket(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(q.Payload, []byte{0xaa, 0xbb}) {
		t.Fatalf("payload %x", q.Payload)
	}
	for name, b := range map[string][]byte{
		"short":         {0x80, 0},
		"version 1":     append([]byte{0x40}, make([]byte, 11)...),
		"csrc overflow": append([]byte{0x8f}, make([]byte, 11)...),
		"padding 0":     append([]byte{0xa0}, make([]byte, 12)...),
		"padding big":   append(append([]byte{0xa0}, make([]byte, 11)...), 200),
		"ext overflow":  append(append([]byte{0x90}, make([]byte, 11)...), 0, 0, 0, 9),
	} {
		if _, err := ParsePacket(b); !errors.Is(err, ErrRTP) {
			t.Errorf("%s: %v, want ErrRTP", name, err)
		}
	}
}

func TestEvent(t *testing.T) {
	e, err := ParseEvent([]byte{11, 0x8a, 0x03, 0x20})
	if err != nil {
		t.Fatal(err)
	}
	if e.Digit() != "#" || !e.End || e.Volume != 10 || e.Duration != 800 {
		t.Fatalf("%+v", e)
	}
	if f, _ := ParseEvent(e.Marshal()); f != e {
		t.Fatalf("round trip %+v", f)
	}
	if _, err := ParseEvent([]byte{1, 2}); !errors.Is(err, ErrRTP) {
		t.Fatalf("short event: %v", err)
	}
	if (Event{Event: 16}).Digit() != "" {
		t.Fatal("event 16 is no digit")
	}
}

// baresip 1.0.0's offer, as it sends it.
const baresipOffer = "v=0\r\no=- 1 2 IN IP4 192.0.2.2\r\ns=-\r\nc=IN IP4 192.0.2.2\r\nt=0 0\r\n" +
	"m=audio 10002 RTP/AVP 0 8 101\r\nb=AS:64\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n" +
	"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\na=label:1\r\n" +
	"m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=sendonly\r\n"

func TestSDP(t *testing.T) {
	m, err := ParseSDP([]byte(baresipOffer))
	if err != nil {
		t.Fatal(err)
	}
	if m.Addr != netip.MustParseAddrPort("192.0.2.2:10002") || m.Dir != "sendrecv" || len(m.Formats) != 3 {
		t.Fatalf("%+v", m)
	}
	c, err := m.Negotiate()
	if err != nil || c.PT != PTPCMU || c.Event != 101 {
		t.Fatalf("%+v %v", c, err)
	}
	// our answer parses back to the same choice
	ans := BuildSDP(netip.MustParseAddrPort("127.0.0.1:20000"), c, false, 7)
	m2, err := ParseSDP(ans)
	if err != nil {
		t.Fatal(err)
	}
	if c2, _ := m2.Negotiate(); c2 != c || m2.Addr.Port() != 20000 {
		t.Fatalf("answer %s → %+v", ans, c2)
	}
	// PCMA first, media-level address wins
	m, err = ParseSDP([]byte("v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 8 0\r\nc=IN IP4 10.0.0.2\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := m.Negotiate(); c.PT != PTPCMA || c.Event != -1 || m.Addr.Addr().String() != "10.0.0.2" {
		t.Fatalf("%+v %+v", c, m)
	}
	for name, s := range map[string]string{
		"no audio":   "v=0\r\nc=IN IP4 10.0.0.1\r\nm=video 4000 RTP/AVP 96\r\n",
		"no address": "v=0\r\nm=audio 4000 RTP/AVP 0\r\n",
		"srtp":       "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/SAVP 0\r\n",
		"bad port":   "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 99999 RTP/AVP 0\r\n",
		"bad pt":     "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 0 300\r\n",
	} {
		if _, err := ParseSDP([]byte(s)); !errors.Is(err, ErrSDP) {
			t.Errorf("%s: %v, want ErrSDP", name, err)
		}
	}
	m, _ = ParseSDP([]byte("v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 9 18\r\n"))
	if _, err := m.Negotiate(); !errors.Is(err, ErrSDP) {
		t.Fatalf("G.722 and G.729 only: %v", err)
	}
}

func TestWAV(t *testing.T) {
	in := []int16{0, 1000, -1000, 32767, -32768}
	out, err := DecodeWAV(EncodeWAV(in, Rate), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) || out[3] != 32767 || out[4] != -32768 {
		t.Fatalf("%v", out)
	}
	// 22050 Hz (espeak-ng) → 8000 Hz: one second stays one second
	sec := make([]int16, 22050)
	for i := range sec {
		sec[i] = 1000
	}
	out, err = DecodeWAV(EncodeWAV(sec, 22050), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != Rate || out[Rate/2] != 1000 {
		t.Fatalf("%d samples, middle %d", len(out), out[Rate/2])
	}
	if out, _ := DecodeWAV(EncodeWAV(sec, 22050), 800); len(out) != 800 {
		t.Fatalf("bounded to %d", len(out))
	}
	for name, b := range map[string][]byte{
		"empty":   nil,
		"no data": EncodeWAV(nil, Rate)[:36],
		"24 bits": func() []byte { b := EncodeWAV(in, Rate); b[34] = 24; return b }(),
		"rate 0":  func() []byte { b := EncodeWAV(in, Rate); b[24], b[25] = 0, 0; return b }(),
	} {
		if _, err := DecodeWAV(b, 0); !errors.Is(err, ErrWAV) {
			t.Errorf("%s: %v, want ErrWAV", name, err)
		}
	}
}
