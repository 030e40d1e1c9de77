package gsm

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"
)

// FuzzGSM7 feeds the same octets to the 7-bit codec as text and as
// septets. Encodable text must round-trip and split into valid parts;
// decoding arbitrary octets must not panic, and whatever decodes must be
// encodable and decode again to the same text.
func FuzzGSM7(f *testing.F) {
	for _, s := range []string{"", "Hello", "@£$¥", "{[~]}|^€\\\f", "\x1b", "\x1b\x1b\x41", "\x1b\x65",
		strings.Repeat("a", 152) + "€b", "ça", "\x80\xff"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s := string(b)
		if n, ok := SeptetLen(s); ok {
			enc, err := EncodeSeptets(s)
			if err != nil || len(enc) != n {
				t.Fatalf("encodable %q: %v, %d septets, SeptetLen %d", s, err, len(enc), n)
			}
			dec, err := DecodeSeptets(enc)
			if err != nil || dec != s {
				t.Fatalf("round trip %q -> %x -> %q (%v)", s, enc, dec, err)
			}
			checkSplit(t, s, CodingGSM7)
		} else if _, err := EncodeSeptets(s); err == nil {
			t.Fatalf("EncodeSeptets accepted unencodable %q", s)
		}

		if dec, err := DecodeSeptets(b); err == nil {
			enc, err := EncodeSeptets(dec)
			if err != nil {
				t.Fatalf("decoded text %q not encodable: %v", dec, err)
			}
			if again, _ := DecodeSeptets(enc); again != dec {
				t.Fatalf("decode not stable: %q %q", dec, again)
			}
		}

		// Packing round trip with every fill.
		septets := make([]byte, len(b))
		for i, x := range b {
			septets[i] = x & 0x7F
		}
		fill := len(b) % 7
		out, err := Unpack(Pack(septets, fill), fill, len(septets))
		if err != nil || !bytes.Equal(out, septets) {
			t.Fatalf("pack/unpack fill %d: %x -> %x (%v)", fill, septets, out, err)
		}
		_, _ = Unpack(b, fill, -1)
	})
}

// FuzzUCS2 checks UTF-16BE decoding of arbitrary octets and the round trip
// of arbitrary text, including splitting with surrogate pairs intact.
func FuzzUCS2(f *testing.F) {
	for _, s := range []string{"", "\x00A", "\xd8\x3d\xde\x00", "\xd8\x3d", "\xde\x00\xd8\x3d", "\x00", "😀 мир",
		strings.Repeat("ж", 66) + "😀"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		dec, err := DecodeUCS2(b)
		if (err != nil) != (len(b)%2 == 1) {
			t.Fatalf("odd length %d, error %v", len(b), err)
		}
		if !utf8.ValidString(dec) {
			t.Fatalf("invalid UTF-8 from DecodeUCS2: %q", dec)
		}
		units := make([]uint16, len(b)/2)
		for i := range units {
			units[i] = uint16(b[2*i])<<8 | uint16(b[2*i+1])
		}
		if slices.Equal(utf16.Encode(utf16.Decode(units)), units) {
			// No unpaired surrogates: exact round trip.
			if enc := EncodeUCS2(dec); !bytes.Equal(enc, b[:len(b)&^1]) {
				t.Fatalf("%x -> %q -> %x", b, dec, enc)
			}
		}

		s := string(b)
		if utf8.ValidString(s) {
			enc := EncodeUCS2(s)
			if len(enc) != 2*UCS2Len(s) {
				t.Fatalf("UCS2Len %d, %d octets", UCS2Len(s), len(enc))
			}
			if back, err := DecodeUCS2(enc); err != nil || back != s {
				t.Fatalf("round trip %q -> %q (%v)", s, back, err)
			}
			c, _ := Choose(s)
			checkSplit(t, s, c)
		}
		_ = DecodeLatin1(b)
	})
}

// FuzzUDH checks that ParseUDH never panics and that what it returns
// describes the input exactly.
func FuzzUDH(f *testing.F) {
	for _, s := range []string{"050003420302hi", "\x06\x08\x04\xbe\xef\x05\x05", "\x00", "", "\x05\x00\x03\x01\x00\x01",
		"\x04\x00\x05\x01\x02", "\x0b\x05\x04\x15\x82\x00\x00\x00\x03\x01\x02\x01A", "\x01\x00"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		u, payload, err := ParseUDH(b)
		if err != nil && payload == nil {
			if len(u.IEs) != 0 || u.Concat != (Concat{}) {
				t.Fatalf("error %v with data %+v", err, u)
			}
			return
		}
		udhl := int(b[0])
		if !bytes.Equal(payload, b[1+udhl:]) {
			t.Fatalf("payload %x, input %x", payload, b)
		}
		var rebuilt []byte
		for _, ie := range u.IEs {
			rebuilt = append(rebuilt, ie.ID, byte(len(ie.Data)))
			rebuilt = append(rebuilt, ie.Data...)
		}
		if !bytes.Equal(rebuilt, b[1:1+udhl]) {
			t.Fatalf("IEs %x, header %x", rebuilt, b[1:1+udhl])
		}
		if c := u.Concat; c.Total != 0 {
			if c.Seq == 0 || c.Seq > c.Total {
				t.Fatalf("invalid concat accepted: %+v", c)
			}
			u2, _, err := ParseUDH(c.AppendUDH(nil))
			if err != nil || u2.Concat != c {
				t.Fatalf("concat %+v re-parses as %+v (%v)", c, u2.Concat, err)
			}
		}
	})
}

// checkSplit verifies the invariants of Split on text of coding c.
func checkSplit(t *testing.T, s string, c Coding) {
	t.Helper()
	segs, got, err := SplitN(s, 0xAB, MaxParts)
	if err != nil {
		return // too long for 255 parts
	}
	if got != c {
		t.Fatalf("Split chose %s, want %s", got, c)
	}
	single, part := MaxSingleSeptets, MaxPartSeptets
	if c == CodingUCS2 {
		single, part = MaxSingleUCS2, MaxPartUCS2
	}
	var all []byte
	for i, seg := range segs {
		limit := part
		if len(segs) == 1 {
			limit = single
		}
		if seg.Units > limit || int(seg.Seq) != i+1 || int(seg.Total) != len(segs) {
			t.Fatalf("segment %d: %+v", i, seg)
		}
		if p := seg.Payload; len(p) > 0 && len(segs) > 1 {
			if c == CodingGSM7 && p[len(p)-1] == esc {
				t.Fatalf("segment %d ends with ESC", i)
			}
			if c == CodingUCS2 {
				if u := uint16(p[len(p)-2])<<8 | uint16(p[len(p)-1]); u >= 0xD800 && u < 0xDC00 {
					t.Fatalf("segment %d ends with a high surrogate", i)
				}
			}
		}
		all = append(all, seg.Payload...)
	}
	txt, err := Decode(c, all)
	if err != nil || txt != s {
		t.Fatalf("split text %q joins to %q (%v)", s, txt, err)
	}
}
