package faxtiff

import "fmt"

// Bitmap is a bilevel image, one bit per pixel, rows MSB first and byte
// aligned; a 1 bit is black (ink), a 0 bit white (paper).
type Bitmap struct {
	Width, Height int
	// Stride is the bytes per row, (Width+7)/8.
	Stride int
	Pix    []byte
}

// NewBitmap returns a white bitmap of w × h pixels.
func NewBitmap(w, h int) *Bitmap {
	stride := (w + 7) / 8
	return &Bitmap{Width: w, Height: h, Stride: stride, Pix: make([]byte, stride*h)}
}

// Black reports whether pixel (x, y) is black; outside the bitmap it is white.
func (b *Bitmap) Black(x, y int) bool {
	if x < 0 || y < 0 || x >= b.Width || y >= b.Height {
		return false
	}
	return b.Pix[y*b.Stride+x/8]&(0x80>>(x%8)) != 0
}

// Set makes pixel (x, y) black; outside the bitmap it does nothing.
func (b *Bitmap) Set(x, y int) {
	if x < 0 || y < 0 || x >= b.Width || y >= b.Height {
		return
	}
	b.Pix[y*b.Stride+x/8] |= 0x80 >> (x % 8)
}

// Row returns row y's bytes.
func (b *Bitmap) Row(y int) []byte { return b.Pix[y*b.Stride : (y+1)*b.Stride] }

// valid reports a bitmap whose fields agree.
func (b *Bitmap) valid() error {
	if b == nil || b.Width <= 0 || b.Height <= 0 || b.Stride != (b.Width+7)/8 || len(b.Pix) != b.Stride*b.Height {
		if b == nil {
			return fmt.Errorf("%w: nil bitmap", ErrBitmap)
		}
		return fmt.Errorf("%w: %d × %d, stride %d, %d bytes", ErrBitmap, b.Width, b.Height, b.Stride, len(b.Pix))
	}
	return nil
}
