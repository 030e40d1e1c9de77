package faxpage

import (
	"errors"
	"image"
	"image/color"
	"strings"
	"testing"
	"time"

	"github.com/uims/uims/processor/faxtiff"
)

func TestWrap(t *testing.T) {
	got := wrap("one two three four\n\n\tx\r\nabcdefghijkl\x07m\n\n", 10)
	want := []string{"one two", "three four", "", "        x", "abcdefghij", "klm"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("wrap: %q, want %q", got, want)
	}
}

func ink(p faxtiff.Page, y0, y1 int) int {
	n := 0
	for y := y0; y < y1; y++ {
		for x := 0; x < p.Width; x++ {
			if p.Black(x, y) {
				n++
			}
		}
	}
	return n
}

func TestTextPages(t *testing.T) {
	o := Options{Sender: "+41 44 555 01 23", Date: time.Date(2026, 12, 5, 9, 30, 0, 0, time.UTC)}
	for _, tc := range []struct {
		o      Options
		height int
		ydpi   float64
	}{
		{Options{Paper: A4, Fine: true}, 2292, 196},
		{Options{Paper: A4}, 1146, 98},
		{Options{Paper: Letter, Fine: true}, 2156, 196},
	} {
		tc.o.Sender, tc.o.Date = o.Sender, o.Date
		pages, err := Text(strings.Repeat("The quick brown fox jumps over the lazy dog. ", 200), tc.o)
		if err != nil {
			t.Fatal(err)
		}
		if len(pages) < 2 {
			t.Fatalf("%d pages for 9000 characters", len(pages))
		}
		for i, p := range pages {
			if p.Width != faxtiff.Width || p.Height != tc.height || p.YDPI != tc.ydpi {
				t.Errorf("%s fine=%v page %d: %d × %d at %g", tc.o.Paper, tc.o.Fine, i+1, p.Width, p.Height, p.YDPI)
			}
			top := bodyTop * int(tc.ydpi) / 196 // the header band
			if ink(p, 0, top) == 0 || ink(p, top, p.Height) == 0 {
				t.Errorf("page %d: no header or no text", i+1)
			}
			if ink(p, 0, p.Height) > p.Width*p.Height/4 {
				t.Errorf("page %d is mostly black", i+1)
			}
		}
	}
}

func TestTooLarge(t *testing.T) {
	if _, err := Text(strings.Repeat("x\n", 60*3), Options{MaxPages: 2}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("3 pages over a limit of 2: %v", err)
	}
	if _, err := Text(strings.Repeat("x", MaxText+1), Options{}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("over MaxText: %v", err)
	}
	if _, err := Image(image.NewGray(image.Rect(0, 0, 10, 300000)), Options{}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("an image 30000 times as long as wide: %v", err)
	}
}

func TestImage(t *testing.T) {
	img := image.NewGray(image.Rect(0, 0, 400, 300)) // black left half, mid gray right half
	for y := 0; y < 300; y++ {
		for x := 0; x < 400; x++ {
			v := uint8(0)
			if x >= 200 {
				v = 128
			}
			img.SetGray(x, y, color.Gray{v})
		}
	}
	for _, fine := range []bool{false, true} {
		pages, err := Image(img, Options{Fine: fine})
		if err != nil {
			t.Fatal(err)
		}
		p := pages[0]
		y0, y1 := p.Height/6, p.Height/3 // inside the image, below the header
		left, right := 0, 0
		for y := y0; y < y1; y++ {
			for x := 100; x < 700; x++ {
				if p.Black(x, y) {
					left++
				}
				if p.Black(x+900, y) {
					right++
				}
			}
		}
		area := 600 * (y1 - y0)
		if left < area*95/100 || right < area*35/100 || right > area*65/100 {
			t.Errorf("fine=%v: black %d%% on black, %d%% on mid gray", fine, 100*left/area, 100*right/area)
		}
	}
}
