// Package faxpage lays content out on fax pages (ITU-T T.4 §2: 1728 pixels
// across 215 mm, 204 pixels per inch; 98 or 196 lines per inch; A4 or
// Letter long) for processor/faxtiff to code: UTF-8 text set in Go Mono
// and word-wrapped, or a PNG or JPEG image scaled to the page width and
// dithered to black and white (Floyd–Steinberg). Every page carries a
// header line as fax machines print it: the date, the sender and "P. n/m".
//
// It is pure: the date and sender come in Options; no files, no programs.
package faxpage

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"strings"
	"sync"
	"time"
	"unicode"

	xdraw "golang.org/x/image/draw"
	"golang.org/x/image/font"
	"golang.org/x/image/font/gofont/gomono"
	"golang.org/x/image/font/opentype"
	"golang.org/x/image/math/fixed"

	"github.com/uims/uims/processor/faxtiff"
)

// Paper is a page length.
type Paper int

const (
	// A4 is 297 mm long (T.4 §2.2, ISO 216).
	A4 Paper = iota
	// Letter is 11 inches long (279.4 mm).
	Letter
)

// inches returns the paper's length.
func (p Paper) inches() float64 {
	if p == Letter {
		return 11
	}
	return 297 / 25.4
}

func (p Paper) String() string {
	if p == Letter {
		return "letter"
	}
	return "a4"
}

// Options lay out a fax.
type Options struct {
	Paper Paper
	// Fine selects 196 lines per inch; otherwise 98 (standard).
	Fine bool
	// Sender and Date go in the header line of every page.
	Sender string
	Date   time.Time
	// MaxPages bounds the pages; 0 means DefaultMaxPages.
	MaxPages int
}

// DefaultMaxPages is the most pages a fax has unless Options say: the
// limit processor/faxtiff reads too.
const DefaultMaxPages = 100

// Limits of the input, against content built to exhaust a processor.
const (
	// MaxText is the most text, in bytes, Text lays out (about 100 pages).
	MaxText = 512 << 10
	// MaxImagePixels bounds an image's width × height before decoding.
	MaxImagePixels = 40 << 20
)

// Errors.
var (
	// ErrTooLarge reports content that would exceed MaxPages, MaxText or
	// MaxImagePixels.
	ErrTooLarge = errors.New("faxpage: content too large for a fax")
	// ErrImage reports an image that does not decode.
	ErrImage = errors.New("faxpage: image does not decode")
)

// Geometry at fine resolution (196 lines per inch, 204 pixels per inch);
// standard pages are made at fine resolution and then halved.
const (
	marginX      = 80  // 10 mm
	marginTop    = 20  // 2.6 mm, the header's top
	bodyTop      = 110 // 14 mm
	marginBottom = 80  // 10 mm
	textPoints   = 11
	headerPoints = 9
	lineSpacing  = 1.25
)

var fontOnce = sync.OnceValues(func() (*opentype.Font, error) { return opentype.Parse(gomono.TTF) })

// faces returns new text and header faces (a face is for one goroutine).
func faces() (text, header font.Face, err error) {
	f, err := fontOnce()
	if err != nil {
		return nil, nil, fmt.Errorf("faxpage: font: %w", err)
	}
	text, err = opentype.NewFace(f, &opentype.FaceOptions{Size: textPoints, DPI: faxtiff.XDPI, Hinting: font.HintingFull})
	if err != nil {
		return nil, nil, fmt.Errorf("faxpage: font: %w", err)
	}
	header, err = opentype.NewFace(f, &opentype.FaceOptions{Size: headerPoints, DPI: faxtiff.XDPI, Hinting: font.HintingFull})
	if err != nil {
		return nil, nil, fmt.Errorf("faxpage: font: %w", err)
	}
	return text, header, nil
}

// canvas is one page being drawn at fine resolution, as coverage.
type canvas struct {
	a *image.Alpha
}

func newCanvas(o Options) canvas {
	h := int(o.Paper.inches()*faxtiff.FineYDPI + 0.5)
	return canvas{a: image.NewAlpha(image.Rect(0, 0, faxtiff.Width, h))}
}

func (c canvas) clear() { clear(c.a.Pix) }

// text draws s with its baseline at y from x.
func (c canvas) text(face font.Face, x, y int, s string) {
	d := font.Drawer{Dst: c.a, Src: image.Opaque, Face: face, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

// page thresholds the canvas to a page of the options' resolution: a pixel
// is black when ink covers 40 % of it (thin strokes stay), and a standard
// page's line is the OR of two fine lines.
func (c canvas) page(o Options) faxtiff.Page {
	h := c.a.Rect.Dy()
	ydpi := float64(faxtiff.FineYDPI)
	step := 1
	if !o.Fine {
		ydpi, step = faxtiff.NormalYDPI, 2
	}
	b := faxtiff.NewBitmap(faxtiff.Width, h/step)
	for y := 0; y < b.Height; y++ {
		for k := 0; k < step; k++ {
			src := c.a.Pix[(y*step+k)*c.a.Stride:][:faxtiff.Width]
			row := b.Row(y)
			for x, v := range src {
				if v >= 102 {
					row[x>>3] |= 0x80 >> (x & 7)
				}
			}
		}
	}
	return faxtiff.Page{Bitmap: b, XDPI: faxtiff.XDPI, YDPI: ydpi}
}

// header draws the fax header line: date and sender left, page right.
func (c canvas) header(face font.Face, o Options, n, m int) {
	date := o.Date
	if date.IsZero() {
		date = time.Unix(0, 0).UTC()
	}
	left := date.Format("2006-01-02 15:04 MST")
	if s := clean(o.Sender); s != "" {
		left += "  FROM " + s
	}
	right := fmt.Sprintf("P. %d/%d", n, m)
	asc := face.Metrics().Ascent.Ceil()
	rw := font.MeasureString(face, right).Ceil()
	maxLeft := faxtiff.Width - 2*marginX - rw - 40
	for font.MeasureString(face, left).Ceil() > maxLeft && len(left) > 0 {
		r := []rune(left)
		left = string(r[:len(r)-1])
	}
	c.text(face, marginX, marginTop+asc, left)
	c.text(face, faxtiff.Width-marginX-rw, marginTop+asc, right)
	y := marginTop + face.Metrics().Height.Ceil() + 8
	for x := marginX; x < faxtiff.Width-marginX; x++ {
		c.a.Pix[y*c.a.Stride+x], c.a.Pix[(y+1)*c.a.Stride+x] = 0xFF, 0xFF
	}
}

// clean drops control characters from a line of the header.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, s)
}

func maxPages(o Options) int {
	if o.MaxPages > 0 {
		return o.MaxPages
	}
	return DefaultMaxPages
}

// Text lays text out: lines broken at words (a word too long for a line is
// cut), tabs to 8 columns, control characters dropped, as many pages as it
// takes, at most MaxPages (else ErrTooLarge).
func Text(text string, o Options) ([]faxtiff.Page, error) {
	if len(text) > MaxText {
		return nil, fmt.Errorf("%w: %d bytes of text (at most %d)", ErrTooLarge, len(text), MaxText)
	}
	tf, hf, err := faces()
	if err != nil {
		return nil, err
	}
	c := newCanvas(o)
	advance, _ := tf.GlyphAdvance('M')
	cols := (faxtiff.Width - 2*marginX) / advance.Ceil()
	lineH := int(float64(tf.Metrics().Height.Ceil()) * lineSpacing)
	perPage := (c.a.Rect.Dy() - bodyTop - marginBottom) / lineH
	lines := wrap(text, cols)
	n := max(1, (len(lines)+perPage-1)/perPage)
	if n > maxPages(o) {
		return nil, fmt.Errorf("%w: %d pages of text (at most %d)", ErrTooLarge, n, maxPages(o))
	}
	pages := make([]faxtiff.Page, 0, n)
	asc := tf.Metrics().Ascent.Ceil()
	for p := 0; p < n; p++ {
		c.clear()
		c.header(hf, o, p+1, n)
		for i, l := range lines[p*perPage : min(len(lines), (p+1)*perPage)] {
			c.text(tf, marginX, bodyTop+asc+i*lineH, l)
		}
		pages = append(pages, c.page(o))
	}
	return pages, nil
}

// wrap breaks text into lines of at most cols characters.
func wrap(text string, cols int) []string {
	var out []string
	text = strings.ReplaceAll(text, "\r\n", "\n")
	for _, para := range strings.Split(text, "\n") {
		var line []rune
		col := 0
		for _, r := range para {
			if r == '\t' {
				for n := 8 - col%8; n > 0; n-- {
					line = append(line, ' ')
					col++
				}
			} else if !unicode.IsControl(r) {
				line = append(line, r)
				col++
			}
			for len(line) > cols {
				cut := cols
				if i := lastSpace(line[:cols+1]); i > 0 {
					cut = i
				}
				out = append(out, strings.TrimRight(string(line[:cut]), " "))
				line = []rune(strings.TrimLeft(string(line[cut:]), " "))
				col = len(line)
			}
		}
		out = append(out, strings.TrimRight(string(line), " "))
	}
	for len(out) > 1 && out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	return out
}

func lastSpace(r []rune) int {
	for i := len(r) - 1; i > 0; i-- {
		if r[i] == ' ' {
			return i
		}
	}
	return -1
}

// Image lays an image out: scaled to the page width (its aspect kept, at
// the page's resolution), dithered to black and white by Floyd–Steinberg,
// and cut across as many pages as its length takes, at most MaxPages.
func Image(img image.Image, o Options) ([]faxtiff.Page, error) {
	b := img.Bounds()
	if b.Dx() <= 0 || b.Dy() <= 0 {
		return nil, fmt.Errorf("%w: empty image", ErrImage)
	}
	if int64(b.Dx())*int64(b.Dy()) > MaxImagePixels {
		return nil, fmt.Errorf("%w: %d × %d pixels (at most %d)", ErrTooLarge, b.Dx(), b.Dy(), MaxImagePixels)
	}
	_, hf, err := faces()
	if err != nil {
		return nil, err
	}
	c := newCanvas(o)
	// Dithered at the page's own resolution: a standard line is drawn on
	// two fine lines, which page() makes one again.
	ydpi, step := float64(faxtiff.FineYDPI), 1
	if !o.Fine {
		ydpi, step = faxtiff.NormalYDPI, 2
	}
	h := max(1, int(float64(b.Dy())*faxtiff.Width/float64(b.Dx())*ydpi/faxtiff.XDPI))
	body := (c.a.Rect.Dy() - bodyTop - marginBottom) / step
	n := (h + body - 1) / body
	if n > maxPages(o) {
		return nil, fmt.Errorf("%w: the image takes %d pages (at most %d)", ErrTooLarge, n, maxPages(o))
	}
	gray := image.NewGray(image.Rect(0, 0, faxtiff.Width, h))
	xdraw.CatmullRom.Scale(gray, gray.Rect, img, b, xdraw.Src, nil)
	bw := image.NewPaletted(gray.Rect, color.Palette{color.White, color.Black})
	draw.FloydSteinberg.Draw(bw, bw.Rect, gray, image.Point{})
	pages := make([]faxtiff.Page, 0, n)
	for p := 0; p < n; p++ {
		c.clear()
		c.header(hf, o, p+1, n)
		for y := 0; y < body && p*body+y < h; y++ {
			src := bw.Pix[(p*body+y)*bw.Stride:][:faxtiff.Width]
			for k := 0; k < step; k++ {
				dst := c.a.Pix[(bodyTop+y*step+k)*c.a.Stride:][:faxtiff.Width]
				for x, v := range src {
					dst[x] = v * 0xFF // palette index 1 is black
				}
			}
		}
		pages = append(pages, c.page(o))
	}
	return pages, nil
}
