package wav

// G.711 (ITU-T Recommendation G.711, 1988): 8-bit logarithmic coding of
// 16-bit linear samples, µ-law (North America, Japan; RTP payload type 0,
// PCMU) and A-law (elsewhere; payload type 8, PCMA), as RFC 3551 §4.5.14
// puts them on RTP. The code follows G.711's tables 1a/1b and 2a/2b in the
// form of Sun Microsystems' public-domain g711.c: µ-law codes 14-bit
// magnitudes (the input shifted right 2) with a bias of 33, A-law 13-bit
// (shifted right 3); the code words are sent with their even bits inverted
// (A-law, XOR 0x55) or all bits inverted (µ-law), as G.711 specifies.

const (
	ulawBias = 0x84 // 33 << 2: G.711 table 2a's bias, on the 16-bit scale
	ulawClip = 8159 // the largest 14-bit magnitude µ-law codes (8191 - 33 + 1)
)

var ulawEnd = [8]int{0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF}
var alawEnd = [8]int{0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF}

// ulawTable and alawTable decode every code word.
var ulawTable, alawTable [256]int16

func init() {
	for i := range 256 {
		ulawTable[i] = ulawDecode(byte(i))
		alawTable[i] = alawDecode(byte(i))
	}
}

func segment(v int, ends *[8]int) int {
	for i, e := range ends {
		if v <= e {
			return i
		}
	}
	return 8
}

// ULawEncode returns the G.711 µ-law code word of a 16-bit linear sample.
func ULawEncode(s int16) byte {
	v, mask := int(s)>>2, 0xFF
	if v < 0 {
		v, mask = -v, 0x7F
	}
	v = min(v, ulawClip) + ulawBias>>2
	seg := segment(v, &ulawEnd)
	if seg >= 8 {
		return byte(0x7F ^ mask)
	}
	return byte((seg<<4 | (v>>(seg+1))&0xF) ^ mask)
}

// ULawDecode returns the 16-bit linear sample of a G.711 µ-law code word:
// from -32124 (0x00) to 32124 (0x80); 0xFF and 0x7F are 0.
func ULawDecode(u byte) int16 { return ulawTable[u] }

func ulawDecode(u byte) int16 {
	u = ^u
	t := (int(u&0xF) << 3) + ulawBias
	t <<= (u & 0x70) >> 4
	if u&0x80 != 0 {
		return int16(ulawBias - t)
	}
	return int16(t - ulawBias)
}

// ALawEncode returns the G.711 A-law code word of a 16-bit linear sample.
func ALawEncode(s int16) byte {
	v, mask := int(s)>>3, 0xD5
	if v < 0 {
		v, mask = -v-1, 0x55
	}
	seg := segment(v, &alawEnd)
	if seg >= 8 {
		return byte(0x7F ^ mask)
	}
	a := seg << 4
	if seg < 2 {
		a |= (v >> 1) & 0xF
	} else {
		a |= (v >> seg) & 0xF
	}
	return byte(a ^ mask)
}

// ALawDecode returns the 16-bit linear sample of a G.711 A-law code word:
// from -32256 (0x2A) to 32256 (0xAA); 0xD5 is 8 and 0x55 is -8.
func ALawDecode(a byte) int16 { return alawTable[a] }

func alawDecode(a byte) int16 {
	a ^= 0x55
	t := int(a&0xF) << 4
	switch seg := (a & 0x70) >> 4; seg {
	case 0:
		t += 8
	case 1:
		t += 0x108
	default:
		t += 0x108
		t <<= seg - 1
	}
	if a&0x80 != 0 {
		return int16(t)
	}
	return int16(-t)
}
