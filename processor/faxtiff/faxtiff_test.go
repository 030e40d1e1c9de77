package faxtiff

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"golang.org/x/image/ccitt"
)

// decodeXImage decodes EncodeMH's output with x/image/ccitt, a decoder
// written by others, into a Bitmap.
func decodeXImage(t testing.TB, data []byte, w, h int) *Bitmap {
	t.Helper()
	b := NewBitmap(w, h)
	r := ccitt.NewReader(bytes.NewReader(data), ccitt.MSB, ccitt.Group3, w, h, &ccitt.Options{Invert: true})
	if _, err := io.ReadFull(r, b.Pix); err != nil {
		t.Fatalf("x/image/ccitt: %v", err)
	}
	for y := 0; y < h; y++ { // ccitt leaves the padding bits as it likes
		if w%8 != 0 {
			b.Row(y)[b.Stride-1] &= byte(0xFF << (8 - w%8))
		}
	}
	return b
}

func sameBitmap(t testing.TB, got, want *Bitmap) {
	t.Helper()
	if got.Width != want.Width || got.Height != want.Height {
		t.Fatalf("got %d × %d, want %d × %d", got.Width, got.Height, want.Width, want.Height)
	}
	for y := 0; y < want.Height; y++ {
		for x := 0; x < want.Width; x++ {
			if got.Black(x, y) != want.Black(x, y) {
				t.Fatalf("pixel (%d, %d): got black=%v, want %v", x, y, got.Black(x, y), want.Black(x, y))
			}
		}
	}
}

// TestCodesPrefixFree checks that no code word of a colour (with the EOL)
// begins another: a slip in a table breaks this or the round trips.
func TestCodesPrefixFree(t *testing.T) {
	for name, tab := range map[string]struct {
		term   [64]string
		makeup [27]string
	}{"white": {whiteTerm, whiteMakeup}, "black": {blackTerm, blackMakeup}} {
		all := append(append(append([]string{eol}, tab.term[:]...), tab.makeup[:]...), extMakeup[:]...)
		for i, a := range all {
			for j, b := range all {
				if i != j && strings.HasPrefix(b, a) {
					t.Errorf("%s: code %d %q is a prefix of code %d %q", name, i, a, j, b)
				}
			}
		}
		if len(all) != 1+64+27+13 {
			t.Errorf("%s: %d codes", name, len(all))
		}
	}
}

// TestEveryRunLength codes a row for every run length from 0 to 2700 in
// both colours (terminating codes, every make-up code, the extended ones
// and a repeated 2560) and decodes it with x/image/ccitt.
func TestEveryRunLength(t *testing.T) {
	const maxRun = 2700
	b := NewBitmap(2*maxRun+8, maxRun+1)
	for n := 0; n <= maxRun; n++ {
		for x := n; x < 2*n; x++ { // white n, black n, white to the end
			b.Set(x, n)
		}
	}
	data, err := EncodeMH(b)
	if err != nil {
		t.Fatal(err)
	}
	sameBitmap(t, decodeXImage(t, data, b.Width, b.Height), b)
	ours := NewBitmap(b.Width, b.Height)
	if err := DecodeMH(ours, data, false); err != nil {
		t.Fatal(err)
	}
	sameBitmap(t, ours, b)
}

// TestRandomBitmaps round-trips noise of several densities and widths,
// black at the start and the end of rows included.
func TestRandomBitmaps(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, w := range []int{1, 7, 8, 9, 1728, 2000} {
		for _, density := range []float64{0, 0.02, 0.5, 0.98, 1} {
			b := NewBitmap(w, 40)
			for y := 0; y < b.Height; y++ {
				for x := 0; x < w; x++ {
					if rng.Float64() < density {
						b.Set(x, y)
					}
				}
			}
			data, err := EncodeMH(b)
			if err != nil {
				t.Fatal(err)
			}
			sameBitmap(t, decodeXImage(t, data, w, b.Height), b)
			ours := NewBitmap(w, b.Height)
			if err := DecodeMH(ours, data, false); err != nil {
				t.Fatal(err)
			}
			sameBitmap(t, ours, b)
		}
	}
}

// TestEOLAndRTC checks the framing T.4 asks for: an EOL first, and six
// EOLs (the RTC) at the end.
func TestEOLAndRTC(t *testing.T) {
	b := NewBitmap(Width, 1) // one white line: EOL, white 1728 (make-up 1728, term 0), RTC
	data, err := EncodeMH(b)
	if err != nil {
		t.Fatal(err)
	}
	var bits strings.Builder
	for _, c := range data {
		for i := 7; i >= 0; i-- {
			bits.WriteByte('0' + c>>i&1)
		}
	}
	want := eol + "010011011" + "00110101" + strings.Repeat(eol, 6)
	if got := strings.TrimRight(bits.String(), "0"); got != strings.TrimRight(want, "0") || bits.Len() != (len(want)+7)/8*8 {
		t.Fatalf("bits\n got %s\nwant %s", bits.String(), want)
	}
}

func testPages(n int, ydpi float64) []Page {
	pages := make([]Page, n)
	for i := range pages {
		b := NewBitmap(Width, 300)
		for y := 10 + 20*i; y < 60+20*i; y++ { // a bar that moves down page by page
			for x := 100; x < 900; x++ {
				b.Set(x, y)
			}
		}
		pages[i] = Page{Bitmap: b, YDPI: ydpi}
	}
	return pages
}

func TestWriteRead(t *testing.T) {
	for _, ydpi := range []float64{NormalYDPI, FineYDPI} {
		in := testPages(3, ydpi)
		data, err := Encode(in)
		if err != nil {
			t.Fatal(err)
		}
		out, err := Read(data, DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		if len(out) != 3 {
			t.Fatalf("%d pages, want 3", len(out))
		}
		for i := range out {
			if out[i].XDPI != XDPI || out[i].YDPI != ydpi {
				t.Errorf("page %d: %g × %g dpi", i+1, out[i].XDPI, out[i].YDPI)
			}
			sameBitmap(t, out[i].Bitmap, in[i].Bitmap)
		}
	}
}

func TestWriteRefusesOtherProfiles(t *testing.T) {
	for name, p := range map[string]Page{
		"narrow":       {Bitmap: NewBitmap(1000, 10), YDPI: NormalYDPI},
		"resolution":   {Bitmap: NewBitmap(Width, 10), YDPI: 100},
		"bad bitmap":   {Bitmap: &Bitmap{Width: Width, Height: 2, Stride: 216, Pix: make([]byte, 3)}, YDPI: FineYDPI},
		"nil bitmap":   {YDPI: FineYDPI},
		"x resolution": {Bitmap: NewBitmap(Width, 10), XDPI: 200, YDPI: FineYDPI},
	} {
		if _, err := Encode([]Page{p}); !errors.Is(err, ErrProfile) && !errors.Is(err, ErrBitmap) {
			t.Errorf("%s: %v, want ErrProfile or ErrBitmap", name, err)
		}
	}
	if _, err := Encode(nil); !errors.Is(err, ErrProfile) {
		t.Errorf("no pages: %v", err)
	}
}

func TestReadBadInput(t *testing.T) {
	good, err := Encode(testPages(2, NormalYDPI))
	if err != nil {
		t.Fatal(err)
	}
	// The first IFD's offset is at 4; the second page's strip sits after it.
	truncated := good[:len(good)/2]
	loop := bytes.Clone(good)
	{ // point the last IFD's next offset back at the first IFD
		first := int(loop[4]) | int(loop[5])<<8 | int(loop[6])<<16 | int(loop[7])<<24
		last := len(loop) - 16 - 4
		loop[last], loop[last+1], loop[last+2], loop[last+3] = byte(first), byte(first>>8), byte(first>>16), byte(first>>24)
	}
	corrupt := bytes.Clone(good)
	for i := 20; i < 200; i++ { // garble the first strip's codes
		corrupt[i] = 0x00
	}
	for name, tc := range map[string]struct {
		data []byte
		want error
	}{
		"empty":      {nil, ErrMalformed},
		"not a tiff": {[]byte("%PDF-1.4\n%âãÏÓ\n1 0 obj"), ErrMalformed},
		"no pages":   {[]byte("II*\x00\x00\x00\x00\x00"), ErrNoPages},
		"truncated":  {truncated, ErrMalformed},
		"ifd loop":   {loop, ErrMalformed},
		"corrupt":    {corrupt, ErrMalformed},
		"200 pages":  {mustEncode(t, testPages(200, NormalYDPI)), ErrTooLarge},
		"wide":       {mustEncodeWide(t), ErrTooLarge},
	} {
		_, err := Read(tc.data, DefaultLimits)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	if _, err := Read(good, Limits{MaxPages: 100, MaxWidth: 4864, MaxHeight: 8192, MaxBytes: 1000}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("over MaxBytes: %v", err)
	}
	if _, err := Read(mustEncode(t, testPages(100, NormalYDPI)), DefaultLimits); err != nil {
		t.Errorf("100 pages, the limit: %v", err)
	}
}

func mustEncode(t testing.TB, pages []Page) []byte {
	t.Helper()
	data, err := Encode(pages)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// mustEncodeWide returns a valid TIFF whose page claims 10000 pixels across.
func mustEncodeWide(t testing.TB) []byte {
	data := mustEncode(t, testPages(1, NormalYDPI))
	ifd := int(data[4]) | int(data[5])<<8 | int(data[6])<<16 | int(data[7])<<24
	at := ifd + 2 + 12 + 8 // entry 1 (ImageWidth)'s value
	data[at], data[at+1] = byte(10000&0xFF), byte(10000>>8)
	return data
}
