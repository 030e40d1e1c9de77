package wav

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// G.711's code words at the ends and the middle of the scale, as the
// Recommendation's tables 1a/1b (A-law) and 2a/2b (µ-law) give them, on
// the 16-bit scale (A-law's 13-bit values × 8, µ-law's 14-bit × 4).
func TestG711Vectors(t *testing.T) {
	for _, c := range []struct {
		code byte
		want int16
		dec  func(byte) int16
	}{
		{0xFF, 0, ULawDecode}, {0x7F, 0, ULawDecode}, {0x80, 32124, ULawDecode}, {0x00, -32124, ULawDecode},
		{0xD5, 8, ALawDecode}, {0x55, -8, ALawDecode}, {0xAA, 32256, ALawDecode}, {0x2A, -32256, ALawDecode},
		{0x80, 5504, ALawDecode}, {0x00, -5504, ALawDecode},
	} {
		if got := c.dec(c.code); got != c.want {
			t.Errorf("decode(%#02x) = %d, want %d", c.code, got, c.want)
		}
	}
	for _, c := range []struct {
		s    int16
		u, a byte
	}{{0, 0xFF, 0xD5}, {-1, 0x7E, 0x55}, {32767, 0x80, 0xAA}, {-32768, 0x00, 0x2A}, {1000, 0xCE, 0xFA}} {
		if got := ULawEncode(c.s); got != c.u {
			t.Errorf("ULawEncode(%d) = %#02x, want %#02x", c.s, got, c.u)
		}
		if got := ALawEncode(c.s); got != c.a {
			t.Errorf("ALawEncode(%d) = %#02x, want %#02x", c.s, got, c.a)
		}
	}
}

// Every code word decodes to a value that encodes back to it (µ-law's
// negative zero, 0x7F, to positive zero), and every 16-bit sample encodes
// to the code word of the nearest decoded value within one step.
func TestG711RoundTrip(t *testing.T) {
	for i := range 256 {
		b := byte(i)
		if got := ALawEncode(ALawDecode(b)); got != b {
			t.Errorf("A-law %#02x → %d → %#02x", b, ALawDecode(b), got)
		}
		if got, want := ULawEncode(ULawDecode(b)), b; got != want && b != 0x7F {
			t.Errorf("µ-law %#02x → %d → %#02x", b, ULawDecode(b), got)
		}
	}
	for s := math.MinInt16; s <= math.MaxInt16; s++ {
		for _, c := range []struct {
			name string
			enc  func(int16) byte
			dec  func(byte) int16
		}{{"µ-law", ULawEncode, ULawDecode}, {"A-law", ALawEncode, ALawDecode}} {
			got := int(c.dec(c.enc(int16(s))))
			// the step at s: 2^(segment+1) × 2 (µ-law) or × 8 (A-law) at most 1024
			if d := got - s; d < -1024 || d > 1024 || (s > 0 && got < 0) || (s < -8 && got > 0) {
				t.Fatalf("%s: %d → %d", c.name, s, got)
			}
			if abs := max(s, -s); abs < 256 && max(got-s, s-got) > 16 {
				t.Fatalf("%s: %d → %d: quiet samples lose more than 16", c.name, s, got)
			}
		}
	}
}

func sine(n, rate int, hz float64, amp float64) []int16 {
	s := make([]int16, n)
	for i := range s {
		s[i] = int16(amp * math.Sin(2*math.Pi*hz*float64(i)/float64(rate)))
	}
	return s
}

func TestWriteRead(t *testing.T) {
	samples := sine(8000, 8000, 440, 12000)
	for _, f := range []Format{Telephone, {ULaw, 8000, 1}, {ALaw, 8000, 1}, {PCM, 44100, 2}, {ULaw, 16000, 2}} {
		var b bytes.Buffer
		in := samples[:len(samples)/f.Channels*f.Channels]
		if err := Write(&b, f, in); err != nil {
			t.Fatal(err)
		}
		got, s, err := Read(b.Bytes(), DefaultLimits)
		if err != nil || got != f || len(s) != len(in) {
			t.Fatalf("%+v: read %+v, %d samples, %v", f, got, len(s), err)
		}
		for i := range s {
			if d := int(s[i]) - int(in[i]); d < -400 || d > 400 || (f.Encoding == PCM && d != 0) {
				t.Fatalf("%+v: sample %d: %d, wrote %d", f, i, s[i], in[i])
			}
		}
		if d := f.Duration(len(s)); d != time.Duration(len(in)/f.Channels)*time.Second/time.Duration(f.Rate) {
			t.Errorf("duration %s", d)
		}
	}
}

// sox and file, programs nobody here wrote, read what Write writes; the
// tests skip without them (they are not UIMS's peers, so not required).
func TestWriteOthersRead(t *testing.T) {
	file, err := exec.LookPath("file")
	if err != nil {
		t.Skip("file(1) not installed")
	}
	for f, want := range map[Format]string{
		Telephone:       "Microsoft PCM, 16 bit, mono 8000 Hz",
		{ULaw, 8000, 1}: "ITU G.711 mu-law, mono 8000 Hz",
		{ALaw, 8000, 1}: "ITU G.711 A-law, mono 8000 Hz",
		{PCM, 44100, 2}: "Microsoft PCM, 16 bit, stereo 44100 Hz",
	} {
		p := filepath.Join(t.TempDir(), "a.wav")
		var b bytes.Buffer
		if err := Write(&b, f, sine(800, f.Rate, 440, 1000)); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(p, b.Bytes(), 0o644)
		out, err := exec.Command(file, "-b", p).Output()
		if err != nil || !strings.Contains(string(out), want) {
			t.Errorf("file says %q (%v), want %q", out, err, want)
		}
	}
}

func header(tag, channels, rate, bits int, dataSize uint32) []byte {
	le := binary.LittleEndian
	b := []byte("RIFF\x00\x00\x00\x00WAVEfmt \x10\x00\x00\x00")
	b = le.AppendUint16(b, uint16(tag))
	b = le.AppendUint16(b, uint16(channels))
	b = le.AppendUint32(b, uint32(rate))
	b = le.AppendUint32(b, uint32(rate*channels*bits/8))
	b = le.AppendUint16(b, uint16(channels*bits/8))
	b = le.AppendUint16(b, uint16(bits))
	b = append(b, "data"...)
	return le.AppendUint32(b, dataSize)
}

func TestReadBad(t *testing.T) {
	twoHours := append(header(7, 1, 8000, 8, 2*3600*8000), make([]byte, 2*3600*8000)...)
	for _, c := range []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"not a WAV", []byte("ID3\x03\x00\x00\x00\x00\x00\x00 an MP3, say"), ErrMalformed},
		{"RIFF but AVI", []byte("RIFF\x04\x00\x00\x00AVI "), ErrMalformed},
		{"no data chunk", header(1, 1, 8000, 16, 0)[:36], ErrMalformed},
		{"data longer than the file", append(header(1, 1, 8000, 16, 100000), make([]byte, 1000)...), ErrMalformed},
		{"fmt longer than the file", []byte("RIFF\x00\x00\x00\x00WAVEfmt \xff\xff\x00\x00\x01\x00"), ErrMalformed},
		{"data before fmt", []byte("RIFF\x00\x00\x00\x00WAVEdata\x02\x00\x00\x00\x00\x00"), ErrMalformed},
		{"block align", func() []byte { b := header(1, 2, 8000, 16, 0); b[32] = 2; return b }(), ErrMalformed},
		{"MP3 in WAV", header(0x55, 1, 8000, 16, 0), ErrUnsupported},
		{"8-bit PCM", header(1, 1, 8000, 8, 0), ErrUnsupported},
		{"6 channels", header(1, 6, 8000, 16, 0), ErrUnsupported},
		{"rate 0", header(1, 1, 0, 16, 0), ErrUnsupported},
		{"two hours", twoHours, ErrTooLarge},
		{"two hours, streamed size", append(header(7, 1, 8000, 8, 0xFFFFFFFF), twoHours[44:]...), ErrTooLarge},
	} {
		_, s, err := Read(c.data, Limits{MaxDuration: 10 * time.Minute})
		if !errors.Is(err, c.want) || s != nil {
			t.Errorf("%s: %v, %d samples; want %v", c.name, err, len(s), c.want)
		}
	}
	if _, _, err := Read(twoHours, Limits{MaxBytes: 16 << 20}); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "bytes") {
		t.Errorf("two hours over MaxBytes: %v", err)
	}
	// A streamed size is the rest of the file, as espeak-ng --stdout writes.
	streamed := append(header(1, 1, 8000, 16, 0x7FFFF000), 1, 0, 2, 0, 3)
	if _, s, err := Read(streamed, DefaultLimits); err != nil || len(s) != 2 || s[1] != 2 {
		t.Errorf("streamed: %v %v", s, err)
	}
}

func TestReadBasic(t *testing.T) {
	raw := []byte{0xFF, 0x80, 0x00, 0x7F}
	s, err := ReadBasic(raw, DefaultLimits)
	if err != nil || len(s) != 4 || s[1] != 32124 || s[2] != -32124 {
		t.Fatalf("raw: %v %v", s, err)
	}
	au := append([]byte(".snd\x00\x00\x00\x20\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00\x1f\x40\x00\x00\x00\x01annotate"), raw...)
	if s, err := ReadBasic(au, DefaultLimits); err != nil || len(s) != 2 || s[1] != 32124 {
		t.Fatalf(".au: %v %v", s, err)
	}
	au[15] = 3 // 16-bit linear
	if _, err := ReadBasic(au, DefaultLimits); !errors.Is(err, ErrUnsupported) {
		t.Errorf(".au of 16-bit PCM: %v", err)
	}
	if _, err := ReadBasic(make([]byte, 11*60*8000), DefaultLimits); !errors.Is(err, ErrTooLarge) {
		t.Errorf("11 minutes: %v", err)
	}
}

// power returns the RMS of s at frequency hz (Goertzel).
func power(s []int16, rate int, hz float64) float64 {
	w := 2 * math.Cos(2*math.Pi*hz/float64(rate))
	var s1, s2 float64
	for _, x := range s {
		s1, s2 = float64(x)+w*s1-s2, s1
	}
	return math.Sqrt(s1*s1+s2*s2-w*s1*s2) * 2 / float64(len(s))
}

// Resampling keeps a tone in the pass band at its frequency and level,
// and removes one above the new Nyquist frequency instead of folding it.
func TestResample(t *testing.T) {
	for _, from := range []int{16000, 22050, 44100, 48000} {
		in := sine(from, from, 1000, 10000) // one second of 1 kHz
		alias := sine(from, from, 6000, 10000)
		out := Resample(in, from, 8000)
		if len(out) != 8000 {
			t.Fatalf("%d Hz: %d samples out", from, len(out))
		}
		mid := out[1000:7000] // away from the edges
		if p := power(mid, 8000, 1000); p < 9500 || p > 10100 {
			t.Errorf("%d Hz → 8 kHz: 1 kHz at %.0f, want 10000", from, p)
		}
		aout := Resample(alias, from, 8000)[1000:7000]
		if p := power(aout, 8000, 2000); p > 100 { // 6 kHz would fold to 2 kHz
			t.Errorf("%d Hz → 8 kHz: 6 kHz folds to 2 kHz at %.0f", from, p)
		}
	}
	up := Resample(sine(8000, 8000, 1000, 10000), 8000, 16000)
	if p := power(up[2000:14000], 16000, 1000); len(up) != 16000 || p < 9500 || p > 10100 {
		t.Errorf("8 → 16 kHz: %d samples, 1 kHz at %.0f", len(up), p)
	}
	if got := Mono([]int16{100, 300, -2, -4}, 2); len(got) != 2 || got[0] != 200 || got[1] != -3 {
		t.Errorf("Mono: %v", got)
	}
}

func FuzzRead(f *testing.F) {
	var b bytes.Buffer
	Write(&b, Telephone, sine(80, 8000, 440, 1000))
	f.Add(b.Bytes())
	b.Reset()
	Write(&b, Format{ULaw, 8000, 2}, sine(80, 8000, 440, 1000))
	f.Add(b.Bytes())
	f.Add(header(1, 1, 8000, 16, 0x7FFFF000))
	f.Add([]byte(".snd\x00\x00\x00\x18\xff\xff\xff\xff\x00\x00\x00\x01\x00\x00\x1f\x40\x00\x00\x00\x01\x00\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		l := Limits{MaxBytes: 1 << 20, MaxDuration: time.Minute}
		if _, err := ReadBasic(data, l); err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupported) && !errors.Is(err, ErrTooLarge) {
			t.Fatalf("ReadBasic: untyped error %v", err)
		}
		f, s, err := Read(data, l)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupported) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if len(s)%f.Channels != 0 || f.Duration(len(s)) > time.Minute {
			t.Fatalf("%+v: %d samples", f, len(s))
		}
		var b bytes.Buffer // what Read takes, Write writes and Read reads back the same
		if err := Write(&b, f, s); err != nil {
			t.Fatal(err)
		}
		f2, s2, err := Read(b.Bytes(), l)
		if err != nil || f2 != f || len(s2) != len(s) {
			t.Fatalf("again: %+v %d %v", f2, len(s2), err)
		}
		for i := range s {
			if f.Encoding == PCM && s[i] != s2[i] {
				t.Fatalf("sample %d: %d then %d", i, s[i], s2[i])
			}
		}
		_ = Resample(Mono(s, f.Channels), f.Rate, 8000)
	})
}

// BenchmarkResample resamples one second of espeak-ng's 22050 Hz to 8 kHz.
func BenchmarkResample(b *testing.B) {
	s := sine(22050, 22050, 440, 10000)
	for b.Loop() {
		Resample(s, 22050, 8000)
	}
}

// WAVE_FORMAT_EXTENSIBLE with the PCM SubFormat reads as PCM.
func TestReadExtensible(t *testing.T) {
	seed, err := os.ReadFile("testdata/fuzz/FuzzRead/extensible")
	if err != nil {
		t.Fatal(err)
	}
	var data []byte
	_, q, _ := strings.Cut(string(seed), "[]byte(")
	s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimSpace(q), ")"))
	if err != nil {
		t.Fatal(err)
	}
	data = []byte(s)
	f, samples, err := Read(data, DefaultLimits)
	if err != nil || f != (Format{PCM, 44100, 2}) || len(samples) != 60 {
		t.Fatalf("%+v, %d samples, %v", f, len(samples), err)
	}
}
