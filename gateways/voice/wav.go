package voice

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Rate is the sample rate of telephone audio (G.711: 8 kHz).
const Rate = 8000

// ErrWAV is wrapped by every WAV decoding error.
var ErrWAV = errors.New("voice: not a WAV file the gateway reads")

// EncodeWAV writes 16-bit PCM samples as a mono WAV file at rate Hz
// (RIFF/WAVE, WAVE_FORMAT_PCM).
func EncodeWAV(samples []int16, rate int) []byte {
	n := len(samples) * 2
	b := make([]byte, 44+n)
	copy(b, "RIFF")
	binary.LittleEndian.PutUint32(b[4:], uint32(36+n))
	copy(b[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(b[16:], 16)
	binary.LittleEndian.PutUint16(b[20:], 1) // PCM
	binary.LittleEndian.PutUint16(b[22:], 1) // mono
	binary.LittleEndian.PutUint32(b[24:], uint32(rate))
	binary.LittleEndian.PutUint32(b[28:], uint32(rate*2))
	binary.LittleEndian.PutUint16(b[32:], 2)
	binary.LittleEndian.PutUint16(b[34:], 16)
	copy(b[36:], "data")
	binary.LittleEndian.PutUint32(b[40:], uint32(n))
	for i, s := range samples {
		binary.LittleEndian.PutUint16(b[44+2*i:], uint16(s))
	}
	return b
}

// DecodeWAV reads a WAV file: PCM 8 or 16 bits, µ-law or A-law, one or
// more channels (the first is kept), at any rate. It returns the samples
// resampled to Rate. maxSamples bounds the output (0: no bound).
func DecodeWAV(b []byte, maxSamples int) ([]int16, error) {
	if len(b) < 12 || string(b[:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		return nil, fmt.Errorf("%w: no RIFF/WAVE header", ErrWAV)
	}
	var format, channels, bits int
	var rate int
	var data []byte
	haveFmt := false
	for p := 12; p+8 <= len(b); {
		id := string(b[p : p+4])
		size := int(binary.LittleEndian.Uint32(b[p+4:]))
		p += 8
		if size < 0 || size > len(b)-p {
			size = len(b) - p // a truncated last chunk (streamed WAVs say 0 or too much)
		}
		body := b[p : p+size]
		switch id {
		case "fmt ":
			if size < 16 {
				return nil, fmt.Errorf("%w: fmt chunk of %d bytes", ErrWAV, size)
			}
			format = int(binary.LittleEndian.Uint16(body))
			channels = int(binary.LittleEndian.Uint16(body[2:]))
			rate = int(binary.LittleEndian.Uint32(body[4:]))
			bits = int(binary.LittleEndian.Uint16(body[14:]))
			if format == 0xfffe && size >= 26 { // WAVE_FORMAT_EXTENSIBLE: the sub-format's first 2 bytes
				format = int(binary.LittleEndian.Uint16(body[24:]))
			}
			haveFmt = true
		case "data":
			data = body
		}
		p += size + size&1
		if data != nil && haveFmt {
			break
		}
	}
	if !haveFmt || data == nil {
		return nil, fmt.Errorf("%w: no fmt or data chunk", ErrWAV)
	}
	if channels < 1 || channels > 8 || rate < 1000 || rate > 192000 {
		return nil, fmt.Errorf("%w: %d channels at %d Hz", ErrWAV, channels, rate)
	}
	var frame int
	var sample func([]byte) int16
	switch {
	case format == 1 && bits == 16:
		frame, sample = 2, func(x []byte) int16 { return int16(binary.LittleEndian.Uint16(x)) }
	case format == 1 && bits == 8:
		frame, sample = 1, func(x []byte) int16 { return int16(int(x[0])-128) << 8 }
	case format == 7 && bits == 8:
		frame, sample = 1, func(x []byte) int16 { return ULawDecode(x[0]) }
	case format == 6 && bits == 8:
		frame, sample = 1, func(x []byte) int16 { return ALawDecode(x[0]) }
	default:
		return nil, fmt.Errorf("%w: format %d with %d bits", ErrWAV, format, bits)
	}
	step := frame * channels
	n := len(data) / step
	if maxSamples > 0 && int64(n)*Rate/int64(rate) > int64(maxSamples) {
		n = int(int64(maxSamples) * int64(rate) / Rate)
	}
	in := make([]int16, n)
	for i := range in {
		in[i] = sample(data[i*step:])
	}
	return resample(in, rate, Rate), nil
}

// resample converts by linear interpolation, after a moving average over
// the decimation ratio as a crude low-pass (speech from espeak-ng at
// 22050 Hz to 8 kHz).
func resample(in []int16, from, to int) []int16 {
	if from == to || len(in) == 0 {
		return in
	}
	if from > to {
		w := (from + to - 1) / to
		lp := make([]int16, len(in))
		sum := 0
		for i := range in {
			sum += int(in[i])
			if i >= w {
				sum -= int(in[i-w])
			}
			lp[i] = int16(sum / min(i+1, w))
		}
		in = lp
	}
	n := int(int64(len(in)) * int64(to) / int64(from))
	out := make([]int16, n)
	for i := range out {
		pos := float64(i) * float64(from) / float64(to)
		j := int(pos)
		f := pos - float64(j)
		a := float64(in[j])
		b := a
		if j+1 < len(in) {
			b = float64(in[j+1])
		}
		out[i] = int16(a + (b-a)*f)
	}
	return out
}
