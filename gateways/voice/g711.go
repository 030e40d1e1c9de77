package voice

// G.711 (ITU-T G.711, 11/1988) µ-law and A-law companding, 8 bits per
// sample from 16-bit linear PCM. The integrator dedupes this with
// processor/wav once both branches are merged.

const (
	ulawBias = 0x84 // G.711 µ-law: 33 in the 14-bit domain, shifted by 2
	ulawClip = 32635
)

// ULawEncode compands one 16-bit sample to µ-law (G.711 §3, table 2a/2b).
func ULawEncode(s int16) byte {
	v := int(s)
	sign := 0
	if v < 0 {
		v, sign = -v, 0x80
	}
	if v > ulawClip {
		v = ulawClip
	}
	v += ulawBias
	exp := 7
	for mask := 0x4000; v&mask == 0 && exp > 0; mask >>= 1 {
		exp--
	}
	mant := (v >> (exp + 3)) & 0x0f
	return ^byte(sign | exp<<4 | mant)
}

// ULawDecode expands one µ-law byte to a 16-bit sample.
func ULawDecode(u byte) int16 {
	u = ^u
	exp := int(u>>4) & 7
	mant := int(u & 0x0f)
	v := ((mant << 3) + ulawBias) << exp
	v -= ulawBias
	if u&0x80 != 0 {
		return int16(-v)
	}
	return int16(v)
}

// ALawEncode compands one 16-bit sample to A-law (G.711 §3, table 1a/1b;
// even bits inverted, 0x55).
func ALawEncode(s int16) byte {
	v := int(s) >> 3 // 13-bit
	sign := byte(0x80)
	if v < 0 {
		v, sign = -v-1, 0
	}
	if v > 0xfff {
		v = 0xfff
	}
	var b byte
	if v < 32 {
		b = byte(v >> 1)
	} else {
		exp := 1
		for t := v >> 5; t > 1; t >>= 1 {
			exp++
		}
		b = byte(exp<<4) | byte((v>>exp)&0x0f)
	}
	return (b | sign) ^ 0x55
}

// ALawDecode expands one A-law byte to a 16-bit sample.
func ALawDecode(a byte) int16 {
	a ^= 0x55
	exp := int(a>>4) & 7
	mant := int(a & 0x0f)
	var v int
	if exp == 0 {
		v = mant<<4 + 8
	} else {
		v = (mant<<4 + 0x108) << (exp - 1)
	}
	if a&0x80 == 0 {
		return int16(-v)
	}
	return int16(v)
}
