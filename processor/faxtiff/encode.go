package faxtiff

import (
	"errors"
	"fmt"
)

// Errors of the encoder and Write.
var (
	// ErrBitmap reports a Bitmap whose size and buffer do not agree.
	ErrBitmap = errors.New("faxtiff: invalid bitmap")
	// ErrProfile reports a page that TIFF-F profile S cannot carry: not
	// 1728 pixels wide, or not 98 or 196 lines per inch.
	ErrProfile = errors.New("faxtiff: not a profile S page")
)

// EncodeMH returns b coded by T.4 one-dimensional Modified Huffman, as a
// Group 3 facsimile sends it (T.4 §4.1): an EOL, then each line as
// alternating white and black run lengths starting with white (a line
// starting black starts with a white run of 0, §4.1.1), each followed by an
// EOL, and after the last line's EOL five more, which make the RTC
// (§4.1.4). A run of 64 or more pixels is a make-up code then a
// terminating code; one over 2560 repeats the 2560 make-up code (§4.1.1.2).
// Bits are packed most significant first (TIFF FillOrder 1) and the last
// byte is padded with 0 bits.
func EncodeMH(b *Bitmap) ([]byte, error) {
	if err := b.valid(); err != nil {
		return nil, err
	}
	// A typed page is mostly a few runs a line: start at 16 bytes a line.
	w := bitWriter{buf: make([]byte, 0, 16*b.Height+64)}
	w.put(eolCode)
	for y := 0; y < b.Height; y++ {
		row := b.Row(y)
		isBlack := false
		for x := 0; x < b.Width; {
			end := nextChange(row, x, b.Width, isBlack)
			if isBlack {
				w.run(black, end-x)
			} else {
				w.run(white, end-x)
			}
			x, isBlack = end, !isBlack
		}
		if b.Width == 0 {
			w.run(white, 0)
		}
		w.put(eolCode)
	}
	for i := 0; i < 5; i++ {
		w.put(eolCode)
	}
	w.flush()
	return w.buf, nil
}

// nextChange returns the first x' ≥ x whose pixel is not of the colour
// isBlack, or width.
func nextChange(row []byte, x, width int, isBlack bool) int {
	skip := byte(0x00)
	if isBlack {
		skip = 0xFF
	}
	for x < width {
		c := row[x>>3]
		if x&7 == 0 && c == skip {
			x += 8
			continue
		}
		if (c&(0x80>>(x&7)) != 0) != isBlack {
			return x
		}
		x++
	}
	return width
}

// bitWriter packs code words most significant bit first.
type bitWriter struct {
	buf []byte
	acc uint64 // the low n bits are pending
	n   uint8
}

func (w *bitWriter) put(c code) {
	w.acc = w.acc<<c.n | uint64(c.bits)
	w.n += c.n
	for w.n >= 8 {
		w.n -= 8
		w.buf = append(w.buf, byte(w.acc>>w.n))
	}
}

// run writes a run of n pixels of colour c.
func (w *bitWriter) run(c *colour, n int) {
	for n > 2560 {
		w.put(c.makeup[len(c.makeup)-1])
		n -= 2560
	}
	if n >= 64 {
		w.put(c.makeup[n/64-1])
		n %= 64
	}
	w.put(c.term[n])
}

func (w *bitWriter) flush() {
	if w.n > 0 {
		w.buf = append(w.buf, byte(w.acc<<(8-w.n)))
		w.n = 0
	}
}

// errorf wraps a sentinel with a detail.
func errorf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: %s", sentinel, fmt.Sprintf(format, args...))
}
