package voice

import (
	"testing"

	"github.com/uims/uims/internal/wav"
)

// internal/wav's G.711, which the gateway uses, against reference
// values: ITU-T G.711 tables 1 and 2 (decoder outputs scaled to
// 16 bits, as the G.191 tools and Sun's g711.c give them).
func TestG711Reference(t *testing.T) {
	for _, c := range []struct {
		code byte
		want int16
	}{
		{0xff, 0}, {0x7f, 0}, {0x80, 32124}, {0x00, -32124}, {0xfe, 8}, {0x7e, -8}, {0xf0, 120}, {0xef, 132}, {0x8f, 16764}, {0x90, 15996},
	} {
		if got := wav.ULawDecode(c.code); got != c.want {
			t.Errorf("µ-law decode %#02x = %d, want %d", c.code, got, c.want)
		}
	}
	for _, c := range []struct {
		code byte
		want int16
	}{
		{0xd5, 8}, {0x55, -8}, {0xaa, 32256}, {0x2a, -32256}, {0xd4, 24}, {0xc5, 264}, {0xfa, 1008}, {0x80, 5504}, {0x00, -5504},
	} {
		if got := wav.ALawDecode(c.code); got != c.want {
			t.Errorf("A-law decode %#02x = %d, want %d", c.code, got, c.want)
		}
	}
	for _, c := range []struct {
		s    int16
		u, a byte
	}{
		// -1: Sun's g711.c (arithmetic shift, then negate) gives µ-law 0x7e,
		// as internal/wav does; ITU-T G.191's one's complement gives 0x7f
		// ("negative zero"). Both decode within one quantisation step.
		{0, 0xff, 0xd5}, {-1, 0x7e, 0x55}, {32767, 0x80, 0xaa}, {-32768, 0x00, 0x2a}, {1000, 0xce, 0xfa},
	} {
		if got := wav.ULawEncode(c.s); got != c.u {
			t.Errorf("µ-law encode %d = %#02x, want %#02x", c.s, got, c.u)
		}
		if got := wav.ALawEncode(c.s); got != c.a {
			t.Errorf("A-law encode %d = %#02x, want %#02x", c.s, got, c.a)
		}
	}
}

// Every code decodes to a value that encodes back to it (µ-law's negative
// zero 0x7f aside), and encoding is monotonic with bounded error.
func TestG711RoundTrip(t *testing.T) {
	for i := 0; i < 256; i++ {
		b := byte(i)
		if b != 0x7f {
			if got := wav.ULawEncode(wav.ULawDecode(b)); got != b {
				t.Errorf("µ-law %#02x → %d → %#02x", b, wav.ULawDecode(b), got)
			}
		}
		if got := wav.ALawEncode(wav.ALawDecode(b)); got != b {
			t.Errorf("A-law %#02x → %d → %#02x", b, wav.ALawDecode(b), got)
		}
	}
	for s := -32768; s < 32768; s += 7 {
		for name, f := range map[string]func(int16) int16{
			"µ-law": func(x int16) int16 { return wav.ULawDecode(wav.ULawEncode(x)) },
			"A-law": func(x int16) int16 { return wav.ALawDecode(wav.ALawEncode(x)) },
		} {
			got := int(f(int16(s)))
			tol := abs(s)/16 + 16
			if abs(got-s) > tol+512 {
				t.Fatalf("%s %d → %d", name, s, got)
			}
		}
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
