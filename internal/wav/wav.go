// Package wav reads and writes WAV files (RIFF WAVE, as Microsoft's
// "Multimedia Programming Interface and Data Specifications 1.0" of 1991
// defines them) of 16-bit linear PCM (format tag 1) and G.711 A-law (6) and
// µ-law (7), decodes and encodes G.711 (g711.go), and resamples speech to
// the telephone rate (Resample). It is pure Go and knows nothing of UIMS:
// the voice conversions of package processor and the SIP gateway use it.
//
// Samples are 16-bit linear whatever the file holds: Read decodes G.711,
// Write encodes it. Channels are interleaved (left, right, left...).
package wav

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// Encoding is a WAV format tag (the fmt chunk's wFormatTag).
type Encoding uint16

// The encodings this package reads and writes.
const (
	PCM  Encoding = 1 // 16-bit signed linear, little-endian
	ALaw Encoding = 6 // G.711 A-law, 8 bits a sample
	ULaw Encoding = 7 // G.711 µ-law, 8 bits a sample
)

const formatExtensible = 0xFFFE // WAVE_FORMAT_EXTENSIBLE: the tag is in the first two bytes of the SubFormat GUID

func (e Encoding) String() string {
	switch e {
	case PCM:
		return "PCM"
	case ALaw:
		return "A-law"
	case ULaw:
		return "µ-law"
	}
	return fmt.Sprintf("format tag %d", uint16(e))
}

// bytesPerSample is 2 for PCM and 1 for G.711.
func (e Encoding) bytesPerSample() int {
	if e == PCM {
		return 2
	}
	return 1
}

// Format describes the samples of a file.
type Format struct {
	Encoding Encoding
	Rate     int // samples a second per channel: 8000 on the telephone
	Channels int // 1 or 2
}

// Telephone is the format the voice conversions write: 16-bit linear PCM,
// 8 kHz, mono.
var Telephone = Format{Encoding: PCM, Rate: 8000, Channels: 1}

// Duration returns how long n samples (all channels together) last.
func (f Format) Duration(n int) time.Duration {
	if f.Rate <= 0 || f.Channels <= 0 {
		return 0
	}
	return time.Duration(int64(n/f.Channels) * int64(time.Second) / int64(f.Rate))
}

func (f Format) check() error {
	switch {
	case f.Encoding != PCM && f.Encoding != ALaw && f.Encoding != ULaw:
		return fmt.Errorf("%w: %v (PCM, A-law or µ-law)", ErrUnsupported, f.Encoding)
	case f.Channels < 1 || f.Channels > MaxChannels:
		return fmt.Errorf("%w: %d channels (1 to %d)", ErrUnsupported, f.Channels, MaxChannels)
	case f.Rate < MinRate || f.Rate > MaxRate:
		return fmt.Errorf("%w: %d samples a second (%d to %d)", ErrUnsupported, f.Rate, MinRate, MaxRate)
	}
	return nil
}

// The formats this package takes.
const (
	MinRate     = 4000
	MaxRate     = 192000
	MaxChannels = 2
)

// Errors of Read and Write; an error wraps one of them.
var (
	// ErrMalformed: not a WAV file, or one that contradicts itself (a chunk
	// longer than the file, a fmt chunk that does not fit its encoding).
	ErrMalformed = errors.New("wav: malformed")
	// ErrUnsupported: a well-formed WAV of another encoding, more than two
	// channels, or a rate outside MinRate to MaxRate.
	ErrUnsupported = errors.New("wav: unsupported")
	// ErrTooLarge: over Limits.
	ErrTooLarge = errors.New("wav: too large")
)

// Limits bound what Read takes.
type Limits struct {
	MaxBytes    int // the file; 0: no limit
	MaxDuration time.Duration
}

// DefaultLimits: 10 minutes (9.6 MB of 8 kHz PCM; a 44.1 kHz stereo file
// of 10 minutes is 106 MB, which MaxBytes refuses).
var DefaultLimits = Limits{MaxBytes: 64 << 20, MaxDuration: 10 * time.Minute}

// unknownSize: a data chunk this long or longer is of unknown length, as
// streaming writers leave it (espeak-ng --stdout writes 0x7FFFF000, others
// 0xFFFFFFFF): the samples go to the end of the file.
const unknownSize = 0x7FFFF000

// Read decodes a WAV file: its format and its samples, 16-bit linear,
// channels interleaved. It skips chunks other than fmt and data (LIST,
// fact, ...), takes WAVE_FORMAT_EXTENSIBLE when its SubFormat is one of the
// three encodings, and ignores a RIFF size that disagrees with the file,
// as many writers get it wrong; a data chunk longer than the file is
// ErrMalformed, unless its size is the streaming marker (0x7FFFF000 or
// more), and an odd trailing byte of PCM is dropped. The duration the data
// chunk declares is checked against l before the samples are read.
func Read(data []byte, l Limits) (Format, []int16, error) {
	var f Format
	if l.MaxBytes > 0 && len(data) > l.MaxBytes {
		return f, nil, fmt.Errorf("%w: %d bytes (at most %d)", ErrTooLarge, len(data), l.MaxBytes)
	}
	if len(data) < 12 || string(data[:4]) != "RIFF" || string(data[8:12]) != "WAVE" {
		return f, nil, fmt.Errorf("%w: no RIFF WAVE header", ErrMalformed)
	}
	haveFmt := false
	for p := 12; ; {
		if len(data)-p < 8 {
			return f, nil, fmt.Errorf("%w: no data chunk", ErrMalformed)
		}
		id, size := string(data[p:p+4]), int64(binary.LittleEndian.Uint32(data[p+4:]))
		p += 8
		rest := int64(len(data) - p)
		switch {
		case id == "data" && size >= unknownSize:
			size = rest
		case size > rest:
			return f, nil, fmt.Errorf("%w: %q chunk of %d bytes, %d left in the file", ErrMalformed, id, size, rest)
		}
		body := data[p : p+int(size)]
		switch id {
		case "fmt ":
			var err error
			if f, err = readFmt(body); err != nil {
				return f, nil, err
			}
			haveFmt = true
		case "data":
			if !haveFmt {
				return f, nil, fmt.Errorf("%w: data before fmt", ErrMalformed)
			}
			s, err := decode(f, body, l)
			if err != nil {
				return f, nil, err
			}
			return f, s, nil
		}
		p += int(size) + int(size&1) // chunks are padded to even lengths
		if p > len(data) {
			return f, nil, fmt.Errorf("%w: no data chunk", ErrMalformed)
		}
	}
}

func readFmt(b []byte) (Format, error) {
	var f Format
	if len(b) < 16 {
		return f, fmt.Errorf("%w: fmt chunk of %d bytes", ErrMalformed, len(b))
	}
	tag := binary.LittleEndian.Uint16(b)
	f.Channels = int(binary.LittleEndian.Uint16(b[2:]))
	f.Rate = int(binary.LittleEndian.Uint32(b[4:]))
	blockAlign := int(binary.LittleEndian.Uint16(b[12:]))
	bits := int(binary.LittleEndian.Uint16(b[14:]))
	if tag == formatExtensible {
		if len(b) < 40 {
			return f, fmt.Errorf("%w: WAVE_FORMAT_EXTENSIBLE fmt chunk of %d bytes", ErrMalformed, len(b))
		}
		tag = binary.LittleEndian.Uint16(b[24:]) // SubFormat GUID's first field
	}
	f.Encoding = Encoding(tag)
	if err := f.check(); err != nil {
		return f, err
	}
	if bits != 8*f.Encoding.bytesPerSample() {
		return f, fmt.Errorf("%w: %v of %d bits a sample (16 for PCM, 8 for G.711)", ErrUnsupported, f.Encoding, bits)
	}
	if blockAlign != f.Channels*f.Encoding.bytesPerSample() {
		return f, fmt.Errorf("%w: block align %d for %d channels of %d bits", ErrMalformed, blockAlign, f.Channels, bits)
	}
	return f, nil
}

func decode(f Format, b []byte, l Limits) ([]int16, error) {
	n := len(b) / f.Encoding.bytesPerSample()
	n -= n % f.Channels
	if d := f.Duration(n); l.MaxDuration > 0 && d > l.MaxDuration {
		return nil, fmt.Errorf("%w: %s of sound (at most %s)", ErrTooLarge, d.Round(time.Second), l.MaxDuration)
	}
	s := make([]int16, n)
	switch f.Encoding {
	case PCM:
		for i := range s {
			s[i] = int16(binary.LittleEndian.Uint16(b[2*i:]))
		}
	case ULaw:
		for i := range s {
			s[i] = ulawTable[b[i]]
		}
	case ALaw:
		for i := range s {
			s[i] = alawTable[b[i]]
		}
	}
	return s, nil
}

// Write writes samples (16-bit linear, channels interleaved) as a WAV file
// of format f: a RIFF header, a fmt chunk of 16 bytes (18 with cbSize 0
// for G.711, whose fmt chunk is WAVEFORMATEX) and the data chunk (a fact
// chunk too for G.711, as the specification wants for compressed data).
func Write(w io.Writer, f Format, samples []int16) error {
	if err := f.check(); err != nil {
		return err
	}
	if len(samples)%f.Channels != 0 {
		return fmt.Errorf("wav: %d samples are not whole frames of %d channels", len(samples), f.Channels)
	}
	bps := f.Encoding.bytesPerSample()
	dataLen := len(samples) * bps
	if int64(dataLen) >= unknownSize {
		return fmt.Errorf("%w: %d bytes of samples", ErrTooLarge, dataLen)
	}
	fmtLen, fact := 16, 0
	if f.Encoding != PCM {
		fmtLen, fact = 18, 12
	}
	b := make([]byte, 0, 12+8+fmtLen+fact+8+dataLen+1)
	le := binary.LittleEndian
	b = append(b, "RIFF"...)
	b = le.AppendUint32(b, uint32(4+8+fmtLen+fact+8+dataLen+dataLen&1))
	b = append(b, "WAVEfmt "...)
	b = le.AppendUint32(b, uint32(fmtLen))
	b = le.AppendUint16(b, uint16(f.Encoding))
	b = le.AppendUint16(b, uint16(f.Channels))
	b = le.AppendUint32(b, uint32(f.Rate))
	b = le.AppendUint32(b, uint32(f.Rate*f.Channels*bps)) // bytes a second
	b = le.AppendUint16(b, uint16(f.Channels*bps))        // block align
	b = le.AppendUint16(b, uint16(8*bps))
	if f.Encoding != PCM {
		b = le.AppendUint16(b, 0) // cbSize
		b = append(b, "fact"...)
		b = le.AppendUint32(b, 4)
		b = le.AppendUint32(b, uint32(len(samples)/f.Channels))
	}
	b = append(b, "data"...)
	b = le.AppendUint32(b, uint32(dataLen))
	for _, s := range samples {
		switch f.Encoding {
		case PCM:
			b = le.AppendUint16(b, uint16(s))
		case ULaw:
			b = append(b, ULawEncode(s))
		case ALaw:
			b = append(b, ALawEncode(s))
		}
	}
	if dataLen&1 == 1 {
		b = append(b, 0)
	}
	_, err := w.Write(b)
	return err
}

// Mono mixes interleaved channels down to one (their mean).
func Mono(samples []int16, channels int) []int16 {
	if channels <= 1 {
		return samples
	}
	m := make([]int16, len(samples)/channels)
	for i := range m {
		sum := 0
		for c := range channels {
			sum += int(samples[i*channels+c])
		}
		m[i] = int16(sum / channels)
	}
	return m
}

// ReadBasic decodes audio/basic (RFC 2046 §4.3): single-channel G.711
// µ-law at 8000 samples a second, headerless, or behind the Sun/NeXT
// ".snd" header that .au files carry (big-endian: magic, data offset, data
// size, encoding, rate, channels), which must then say exactly that
// (encoding 1, 8000, 1). A data size of 0xFFFFFFFF, or one beyond the
// file, is the rest of the file, as the format allows.
func ReadBasic(data []byte, l Limits) ([]int16, error) {
	if l.MaxBytes > 0 && len(data) > l.MaxBytes {
		return nil, fmt.Errorf("%w: %d bytes (at most %d)", ErrTooLarge, len(data), l.MaxBytes)
	}
	if len(data) >= 4 && string(data[:4]) == ".snd" {
		if len(data) < 24 {
			return nil, fmt.Errorf("%w: .snd header of %d bytes", ErrMalformed, len(data))
		}
		be := binary.BigEndian
		off, size := int64(be.Uint32(data[4:])), int64(be.Uint32(data[8:]))
		enc, rate, ch := be.Uint32(data[12:]), be.Uint32(data[16:]), be.Uint32(data[20:])
		if off < 24 || off > int64(len(data)) {
			return nil, fmt.Errorf("%w: .snd data offset %d in %d bytes", ErrMalformed, off, len(data))
		}
		if enc != 1 || rate != 8000 || ch != 1 {
			return nil, fmt.Errorf("%w: .snd encoding %d, %d samples a second, %d channels (audio/basic is 1, 8000, 1)", ErrUnsupported, enc, rate, ch)
		}
		data = data[off:]
		if size < int64(len(data)) {
			data = data[:size]
		}
	}
	f := Format{Encoding: ULaw, Rate: 8000, Channels: 1}
	return decode(f, data, l)
}
