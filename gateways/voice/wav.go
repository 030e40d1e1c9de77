package voice

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/uims/uims/internal/wav"
)

// Rate is the sample rate of telephone audio (G.711: 8 kHz).
const Rate = 8000

// ErrWAV is wrapped by every WAV decoding error.
var ErrWAV = errors.New("voice: not a WAV file the gateway reads")

// EncodeWAV writes 16-bit PCM samples as a mono WAV file at rate Hz
// (RIFF/WAVE, WAVE_FORMAT_PCM), with internal/wav, the codec the voice
// processors use.
func EncodeWAV(samples []int16, rate int) []byte {
	var b bytes.Buffer
	if err := wav.Write(&b, wav.Format{Encoding: wav.PCM, Rate: rate, Channels: 1}, samples); err != nil {
		return nil
	}
	return b.Bytes()
}

// DecodeWAV reads a WAV file (internal/wav: PCM 16 bits, µ-law or A-law,
// any rate and channels, mixed down) and returns its samples resampled to
// Rate. maxSamples bounds the output (0: no bound).
func DecodeWAV(b []byte, maxSamples int) ([]int16, error) {
	f, s, err := wav.Read(b, wav.Limits{MaxBytes: 64 << 20})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrWAV, err)
	}
	s = wav.Resample(wav.Mono(s, f.Channels), f.Rate, Rate)
	if maxSamples > 0 && len(s) > maxSamples {
		s = s[:maxSamples]
	}
	return s, nil
}
