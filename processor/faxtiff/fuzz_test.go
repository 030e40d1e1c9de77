package faxtiff

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"golang.org/x/image/ccitt"
)

// fuzzLimits keep the fuzzer's pages small.
var fuzzLimits = Limits{MaxPages: 8, MaxWidth: 2048, MaxHeight: 2048, MaxBytes: 1 << 20}

// FuzzRead holds Read to: no panic; a typed error, or pages within the
// limits that Encode and Read give back unchanged when they are fax pages.
// Seeds in testdata/fuzz/FuzzRead: a file of Encode, faxes of ImageMagick
// (G3 with EOL fill, G4) and libtiff (tiffcp -c g4, big-endian), and what
// the fuzzer found.
func FuzzRead(f *testing.F) {
	f.Add([]byte("II*\x00\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		pages, err := Read(data, fuzzLimits)
		if err != nil {
			for _, e := range []error{ErrMalformed, ErrNoPages, ErrTooLarge, ErrUnsupported} {
				if errors.Is(err, e) {
					return
				}
			}
			t.Fatalf("untyped error %v", err)
		}
		if len(pages) == 0 || len(pages) > fuzzLimits.MaxPages {
			t.Fatalf("%d pages", len(pages))
		}
		for i, p := range pages {
			if err := p.Bitmap.valid(); err != nil || p.Width > fuzzLimits.MaxWidth || p.Height > fuzzLimits.MaxHeight {
				t.Fatalf("page %d: %d × %d: %v", i+1, p.Width, p.Height, err)
			}
			if p.Width != Width {
				continue
			}
			again, err := Read(mustEncode(t, []Page{{Bitmap: p.Bitmap, YDPI: FineYDPI}}), fuzzLimits)
			if err != nil || !bytes.Equal(again[0].Pix, p.Pix) {
				t.Fatalf("page %d does not survive Encode and Read: %v", i+1, err)
			}
		}
	})
}

// FuzzEncode codes any bitmap (its width from w, its rows from data) and
// decodes it with DecodeMH and x/image/ccitt: both must give it back.
// Seeds in testdata/fuzz/FuzzEncode.
func FuzzEncode(f *testing.F) {
	f.Add(uint16(1728), bytes.Repeat([]byte{0, 0xFF, 0x0F, 0x81}, 216))
	f.Add(uint16(1), []byte{0x80, 0, 0x80})
	f.Fuzz(func(t *testing.T, w uint16, data []byte) {
		width := 1 + int(w)%3000
		stride := (width + 7) / 8
		h := len(data) / stride
		if h == 0 || h > 64 {
			return
		}
		b := &Bitmap{Width: width, Height: h, Stride: stride, Pix: bytes.Clone(data[:h*stride])}
		if width%8 != 0 { // the padding bits are not pixels
			for y := 0; y < h; y++ {
				b.Row(y)[stride-1] &= byte(0xFF << (8 - width%8))
			}
		}
		code, err := EncodeMH(b)
		if err != nil {
			t.Fatal(err)
		}
		ours := NewBitmap(width, h)
		if err := DecodeMH(ours, code, false); err != nil || !bytes.Equal(ours.Pix, b.Pix) {
			t.Fatalf("DecodeMH: %v, or other pixels", err)
		}
		theirs := NewBitmap(width, h)
		r := ccitt.NewReader(bytes.NewReader(code), ccitt.MSB, ccitt.Group3, width, h, &ccitt.Options{Invert: true})
		if _, err := io.ReadFull(r, theirs.Pix); err != nil {
			t.Fatalf("x/image/ccitt: %v", err)
		}
		if width%8 != 0 {
			for y := 0; y < h; y++ {
				theirs.Row(y)[stride-1] &= byte(0xFF << (8 - width%8))
			}
		}
		if !bytes.Equal(theirs.Pix, b.Pix) {
			t.Fatal("x/image/ccitt decodes other pixels")
		}
	})
}
