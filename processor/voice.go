package processor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"mime"
	"mime/multipart"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/net/html/charset"

	"github.com/uims/uims/internal/wav"
	"github.com/uims/uims/schemas"
)

// VoiceType is the content type text2speech makes: a WAV file of 16-bit
// linear PCM, 8000 samples a second, mono (wav.Telephone), which browsers
// and mail readers play and a SIP gateway codes in G.711 as it sends it.
const VoiceType = "audio/wav"

// The Debian paths (package pocketsphinx-en-us) of pocketsphinx's US
// English model: acoustic model (16 kHz), language model, dictionary.
const (
	DebianSphinxHMM  = "/usr/share/pocketsphinx/model/en-us/en-us"
	DebianSphinxLM   = "/usr/share/pocketsphinx/model/en-us/en-us.lm.bin"
	DebianSphinxDict = "/usr/share/pocketsphinx/model/en-us/cmudict-en-us.dict"
)

// sphinxRate is the rate of the acoustic model: recordings are resampled
// to it before recognition.
const sphinxRate = 16000

// VoiceConfig configures the voice conversions.
type VoiceConfig struct {
	// Espeak is the speech synthesiser (espeak-ng), Pocketsphinx the
	// recogniser (pocketsphinx_continuous, 0.8/5prealpha as Debian 12
	// packages it); empty: those names on PATH.
	Espeak, Pocketsphinx string
	// HMM, LM and Dict are the recogniser's acoustic model (a directory),
	// language model and dictionary; empty: the Debian paths.
	HMM, LM, Dict string
	// Voice is espeak-ng's voice; default "en-us". WordsPerMinute its
	// speed; default 150 (espeak-ng's own is 175, fast on a telephone).
	Voice          string
	WordsPerMinute int
	// Timeout bounds one run of a program; default 5 minutes. The route's
	// deadline bounds the whole conversion.
	Timeout time.Duration
	// MaxText bounds the text text2speech speaks, in characters; default
	// 4000 (about 4 minutes of speech).
	MaxText int
	// MaxInput bounds the content a conversion takes, in bytes; default
	// 16 MiB. Limits bounds a recording: default wav.DefaultLimits (10
	// minutes) with MaxBytes = MaxInput.
	MaxInput int
	Limits   wav.Limits
}

func (c *VoiceConfig) setDefaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.Espeak, "espeak-ng")
	def(&c.Pocketsphinx, "pocketsphinx_continuous")
	def(&c.HMM, DebianSphinxHMM)
	def(&c.LM, DebianSphinxLM)
	def(&c.Dict, DebianSphinxDict)
	def(&c.Voice, "en-us")
	if c.WordsPerMinute <= 0 {
		c.WordsPerMinute = 150
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Minute
	}
	if c.MaxText <= 0 {
		c.MaxText = 4000
	}
	if c.MaxInput <= 0 {
		c.MaxInput = 16 << 20
	}
	if c.Limits.MaxDuration <= 0 {
		c.Limits.MaxDuration = wav.DefaultLimits.MaxDuration
	}
	c.Limits.MaxBytes = c.MaxInput
}

// Voice returns the voice conversions whose programs are installed, and a
// line for each program that is missing (for the caller to log):
//
//   - text2speech: text to VoiceType, spoken by espeak-ng;
//   - speech2text: a recording (audio/wav: PCM 16-bit, A-law or µ-law,
//     mono or stereo, any rate from 4 to 192 kHz; or audio/basic) to its
//     transcript, by pocketsphinx with its US English model;
//   - speech2mixed: the same as a multipart/mixed, the transcript first,
//     the recording attached as recording.wav.
//
// Recognition costs 20 as OCR does: lossy (docs/VOICE.md states its word
// error rates) and slow.
func Voice(cfg VoiceConfig) (convs []Conversion, missing []string) {
	cfg.setDefaults()
	v := &voice{cfg: cfg}
	if _, err := exec.LookPath(cfg.Espeak); err != nil {
		missing = append(missing, fmt.Sprintf("espeak-ng (%s) not found: no text2speech (install espeak-ng)", cfg.Espeak))
	} else {
		convs = append(convs, Conversion{Conversion: schemas.Conversion{Name: "text2speech", From: "text/plain", To: VoiceType, Cost: 5},
			Converter: ConverterFunc(v.speak)})
	}
	const text = "text/plain; charset=utf-8"
	// without a recogniser, speech2mixed still carries a voice mail to a
	// recipient whose gateway does not take audio/wav, with a note instead
	// of the transcript
	noSTT := func(why string) ([]Conversion, []string) {
		v.noSTT = "(no transcript: speech to text is not installed on this processor)"
		for _, from := range []string{"audio/wav", "audio/basic"} {
			suffix := ""
			if from == "audio/basic" {
				suffix = "-basic"
			}
			convs = append(convs, Conversion{Conversion: schemas.Conversion{Name: "speech2mixed" + suffix, From: from, To: "multipart/mixed", Cost: 20},
				Converter: v.recognise(true)})
		}
		return convs, append(missing, why)
	}
	if _, err := exec.LookPath(cfg.Pocketsphinx); err != nil {
		return noSTT(fmt.Sprintf("pocketsphinx (%s) not found: no speech2text, speech2mixed without transcripts (install pocketsphinx pocketsphinx-en-us)", cfg.Pocketsphinx))
	}
	for _, p := range []string{cfg.HMM, cfg.LM, cfg.Dict} {
		if _, err := os.Stat(p); err != nil {
			return noSTT(fmt.Sprintf("pocketsphinx model %s: %v: no speech2text, speech2mixed without transcripts (install pocketsphinx-en-us)", p, err))
		}
	}
	for _, from := range []string{"audio/wav", "audio/basic"} {
		suffix := ""
		if from == "audio/basic" {
			suffix = "-basic"
		}
		convs = append(convs,
			Conversion{Conversion: schemas.Conversion{Name: "speech2text" + suffix, From: from, To: text, Cost: 20}, Converter: v.recognise(false)},
			Conversion{Conversion: schemas.Conversion{Name: "speech2mixed" + suffix, From: from, To: "multipart/mixed", Cost: 20}, Converter: v.recognise(true)})
	}
	return convs, missing
}

type voice struct {
	cfg   VoiceConfig
	noSTT string // the text of speech2mixed when no recogniser is installed
}

// plainText returns text content as UTF-8, decoded from its charset.
func plainText(in Content) (string, error) {
	data := in.Data
	if _, params, err := mime.ParseMediaType(in.Type); err == nil && params["charset"] != "" &&
		!strings.EqualFold(params["charset"], "utf-8") && !strings.EqualFold(params["charset"], "us-ascii") {
		enc, _ := charset.Lookup(params["charset"])
		if enc == nil {
			return "", schemas.Errorf(schemas.CodeUnsupported, nil, fmt.Sprintf("unknown charset %q", params["charset"]))
		}
		if data, err = enc.NewDecoder().Bytes(data); err != nil {
			return "", schemas.Errorf(schemas.CodeMalformed, err, "charset "+params["charset"])
		}
	}
	return string(bytes.ToValidUTF8(data, []byte("\uFFFD"))), nil
}

// speak is text2speech: espeak-ng speaks the text (voice and speed of the
// configuration, read from standard input, SSML and phoneme input off) into
// a WAV at its own rate (22050 Hz), which is resampled to 8 kHz.
func (v *voice) speak(ctx context.Context, in Content, route Route) (Content, error) {
	if len(in.Data) > 4*v.cfg.MaxText {
		return Content{}, schemas.Errorf(schemas.CodeTooLarge, nil, fmt.Sprintf("%d bytes of text (at most %d characters)", len(in.Data), v.cfg.MaxText))
	}
	text, err := plainText(in)
	if err != nil {
		return Content{}, err
	}
	text = strings.Map(func(r rune) rune { // control characters are no speech
		if r < ' ' && r != '\n' && r != '\t' || r == 0x7F {
			return ' '
		}
		return r
	}, text)
	if strings.TrimSpace(text) == "" {
		return Content{}, schemas.Errorf(schemas.CodeMalformed, nil, "no text to speak")
	}
	if n := utf8.RuneCountInString(text); n > v.cfg.MaxText {
		return Content{}, schemas.Errorf(schemas.CodeTooLarge, nil, fmt.Sprintf("%d characters of text (at most %d)", n, v.cfg.MaxText))
	}
	dir, err := os.MkdirTemp("", "uims-tts")
	if err != nil {
		return Content{}, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "speech.wav")
	tctx, cancel := context.WithTimeout(ctx, v.cfg.Timeout)
	defer cancel()
	if _, err := runTool(tctx, v.cfg.Espeak, []byte(text), 4096, "-v", v.cfg.Voice, "-s", strconv.Itoa(v.cfg.WordsPerMinute),
		"-w", out, "--stdin"); err != nil {
		return Content{}, fmt.Errorf("processor: text2speech: %w", err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		return Content{}, fmt.Errorf("processor: text2speech: espeak-ng's output: %w", err)
	}
	f, samples, err := wav.Read(data, wav.Limits{MaxDuration: time.Hour})
	if err != nil {
		return Content{}, fmt.Errorf("processor: text2speech: espeak-ng's output: %w", err)
	}
	var b bytes.Buffer
	if err := wav.Write(&b, wav.Telephone, wav.Resample(wav.Mono(samples, f.Channels), f.Rate, wav.Telephone.Rate)); err != nil {
		return Content{}, fmt.Errorf("processor: text2speech: %w", err)
	}
	return Content{Type: VoiceType, Data: b.Bytes()}, nil
}

// audioError gives a wav error its wire code.
func audioError(err error) error {
	switch {
	case errors.Is(err, wav.ErrTooLarge):
		return schemas.Errorf(schemas.CodeTooLarge, err, "")
	case errors.Is(err, wav.ErrMalformed):
		return schemas.Errorf(schemas.CodeMalformed, err, "")
	case errors.Is(err, wav.ErrUnsupported):
		return schemas.Errorf(schemas.CodeUnsupported, err, "")
	}
	return err
}

// readRecording decodes audio/wav or audio/basic to mono samples.
func (v *voice) readRecording(in Content) (wav.Format, []int16, error) {
	if len(in.Data) > v.cfg.MaxInput {
		return wav.Format{}, nil, schemas.Errorf(schemas.CodeTooLarge, nil, fmt.Sprintf("%d bytes (at most %d)", len(in.Data), v.cfg.MaxInput))
	}
	if schemas.MediaType(in.Type) == "audio/basic" {
		s, err := wav.ReadBasic(in.Data, v.cfg.Limits)
		return wav.Format{Encoding: wav.ULaw, Rate: 8000, Channels: 1}, s, audioError(err)
	}
	f, s, err := wav.Read(in.Data, v.cfg.Limits)
	if err != nil {
		return f, nil, audioError(err)
	}
	return f, wav.Mono(s, f.Channels), nil
}

// recognise returns speech2text (mixed: speech2mixed): the recording, in
// mono, resampled to the model's 16 kHz, recognised by pocketsphinx; one
// line of the transcript per utterance it finds.
func (v *voice) recognise(mixed bool) Converter {
	return ConverterFunc(func(ctx context.Context, in Content, route Route) (Content, error) {
		f, samples, err := v.readRecording(in)
		if err != nil {
			return Content{}, err
		}
		if len(samples) == 0 {
			return Content{}, schemas.Errorf(schemas.CodeMalformed, nil, "a recording without sound")
		}
		text := v.noSTT
		if text == "" {
			if text, err = v.transcribe(ctx, wav.Resample(samples, f.Rate, sphinxRate)); err != nil {
				return Content{}, err
			}
		}
		if !mixed {
			if text == "" {
				return Content{}, fmt.Errorf("processor: speech2text recognised no words in %s of sound", f.Duration(len(samples)).Round(time.Second))
			}
			return Content{Type: "text/plain; charset=utf-8", Data: []byte(text)}, nil
		}
		if text == "" {
			text = "(no words recognised)"
		}
		recording := in.Data
		if schemas.MediaType(in.Type) != "audio/wav" { // audio/basic: the same µ-law bytes in a WAV
			var b bytes.Buffer
			if err := wav.Write(&b, wav.Format{Encoding: wav.ULaw, Rate: 8000, Channels: 1}, samples); err != nil {
				return Content{}, err
			}
			recording = b.Bytes()
		}
		return mixedContentOf(text, attachment{Type: "audio/wav", Name: "recording.wav", Data: recording,
			Description: fmt.Sprintf("recording, %s", f.Duration(len(samples)).Round(time.Second))})
	})
}

// transcribe runs pocketsphinx_continuous on 16 kHz mono samples.
func (v *voice) transcribe(ctx context.Context, samples []int16) (string, error) {
	dir, err := os.MkdirTemp("", "uims-stt")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	in := filepath.Join(dir, "in.wav")
	var b bytes.Buffer
	if err := wav.Write(&b, wav.Format{Encoding: wav.PCM, Rate: sphinxRate, Channels: 1}, samples); err != nil {
		return "", err
	}
	if err := os.WriteFile(in, b.Bytes(), 0o600); err != nil {
		return "", err
	}
	tctx, cancel := context.WithTimeout(ctx, v.cfg.Timeout)
	defer cancel()
	out, err := runTool(tctx, v.cfg.Pocketsphinx, nil, 1<<20, "-infile", in, "-samprate", strconv.Itoa(sphinxRate),
		"-hmm", v.cfg.HMM, "-lm", v.cfg.LM, "-dict", v.cfg.Dict, "-logfn", os.DevNull)
	if err != nil {
		if tctx.Err() != nil {
			return "", fmt.Errorf("processor: speech2text: pocketsphinx took over %s", v.cfg.Timeout)
		}
		return "", fmt.Errorf("processor: speech2text: %w", err)
	}
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n"), nil
}

// attachment is the second part of a multipart/mixed.
type attachment struct {
	Type, Name, Description string
	Data                    []byte
}

// mixedContentOf returns a multipart/mixed body (RFC 2046 §5.1.3): the
// text first, then the attachment, in base64.
func mixedContentOf(text string, a attachment) (Content, error) {
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	h := textproto.MIMEHeader{}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Transfer-Encoding", "8bit")
	p, err := w.CreatePart(h)
	if err != nil {
		return Content{}, err
	}
	p.Write([]byte(text))
	h = textproto.MIMEHeader{}
	h.Set("Content-Type", fmt.Sprintf(`%s; name=%q`, a.Type, a.Name))
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename=%q; size=%d`, a.Name, len(a.Data)))
	h.Set("Content-Description", a.Description)
	h.Set("Content-Transfer-Encoding", "base64")
	p, err = w.CreatePart(h)
	if err != nil {
		return Content{}, err
	}
	base64Lines{w: p}.write(a.Data)
	if err := w.Close(); err != nil {
		return Content{}, err
	}
	return Content{Type: "multipart/mixed; boundary=" + w.Boundary(), Data: b.Bytes()}, nil
}
