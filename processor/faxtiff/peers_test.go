package faxtiff_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/uims/uims/internal/peertest"
	"github.com/uims/uims/processor/faxtiff"
)

// Tests against decoders nobody here wrote: libtiff's tools and
// ImageMagick (.ci/deps.d/fax.sh installs them).

const installTIFF = "apt-get install libtiff-tools imagemagick"

// pages returns n fine pages, each with bars and text-like noise that differ
// page by page.
func pages(n int) []faxtiff.Page {
	out := make([]faxtiff.Page, n)
	for i := range out {
		b := faxtiff.NewBitmap(faxtiff.Width, 400)
		for y := 0; y < b.Height; y++ {
			for x := 0; x < b.Width; x++ {
				if (x/(3+i))%2 == 0 && (y/5)%3 == i%3 || x == y*3+i || x < 2 || x >= b.Width-1-i {
					b.Set(x, y)
				}
			}
		}
		out[i] = faxtiff.Page{Bitmap: b, YDPI: faxtiff.FineYDPI}
	}
	return out
}

func write(t *testing.T, p []faxtiff.Page) string {
	t.Helper()
	data, err := faxtiff.Encode(p)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "fax.tif")
	if err := os.WriteFile(f, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

func run(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// TestTiffinfo has libtiff read every page's data (-D) and checks the
// profile S fields it reports.
func TestTiffinfo(t *testing.T) {
	tiffinfo := peertest.Require(t, "tiffinfo", installTIFF)
	out := string(run(t, tiffinfo, "-D", write(t, pages(3))))
	dirs := strings.Split(out, "=== TIFF directory")[1:]
	if len(dirs) != 3 {
		t.Fatalf("%d directories:\n%s", len(dirs), out)
	}
	for i, d := range dirs {
		for _, want := range []string{
			"Subfile Type: multi-page document", "Image Width: 1728 Image Length: 400",
			"Resolution: 204, 196 pixels/inch", "Bits/Sample: 1", "Compression Scheme: CCITT Group 3",
			"Photometric Interpretation: min-is-white", "FillOrder: msb-to-lsb",
			fmt.Sprintf("Page Number: %d-3", i), "Group 3 Options: (0 = 0x0)",
		} {
			if !strings.Contains(d, want) {
				t.Errorf("directory %d lacks %q:\n%s", i, want, d)
			}
		}
	}
}

// TestTiffcp has libtiff decode the pages and code them again as G4; Read
// (the G4 path of x/image/ccitt) must give back the same pixels.
func TestTiffcp(t *testing.T) {
	tiffcp := peertest.Require(t, "tiffcp", installTIFF)
	in := pages(3)
	g4 := filepath.Join(t.TempDir(), "g4.tif")
	run(t, tiffcp, "-c", "g4", write(t, in), g4)
	data, err := os.ReadFile(g4)
	if err != nil {
		t.Fatal(err)
	}
	out, err := faxtiff.Read(data, faxtiff.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) {
		t.Fatalf("%d pages, want %d", len(out), len(in))
	}
	for i := range in {
		if !bytes.Equal(out[i].Pix, in[i].Pix) {
			t.Errorf("page %d differs after libtiff's decode and G4 encode", i+1)
		}
	}
}

// TestTiff2pdf has libtiff make a PDF of the fax.
func TestTiff2pdf(t *testing.T) {
	tiff2pdf := peertest.Require(t, "tiff2pdf", installTIFF)
	pdf := filepath.Join(t.TempDir(), "fax.pdf")
	run(t, tiff2pdf, "-o", pdf, write(t, pages(2)))
	data, err := os.ReadFile(pdf)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(data, []byte("%PDF-")) || bytes.Count(data, []byte("/Type /Page ")) != 2 {
		t.Errorf("tiff2pdf made no 2-page PDF: %q…", data[:min(len(data), 200)])
	}
}

// TestImageMagick has ImageMagick decode each page and compares the pixels.
func TestImageMagick(t *testing.T) {
	convert := peertest.Require(t, "convert", installTIFF)
	identify := peertest.Require(t, "identify", installTIFF)
	in := pages(3)
	f := write(t, in)
	info := string(run(t, identify, "-format", "%w %h %x %y %C\n", f))
	if n := len(regexp.MustCompile(`(?m)^1728 400 204 196 Fax$`).FindAllString(info, -1)); n != 3 {
		t.Errorf("identify: %d pages of 1728 × 400 at 204 × 196 dpi, Fax compressed; want 3:\n%s", n, info)
	}
	for i, p := range in {
		gray := run(t, convert, fmt.Sprintf("%s[%d]", f, i), "-depth", "8", "gray:-")
		if len(gray) != p.Width*p.Height {
			t.Fatalf("page %d: %d bytes of gray", i+1, len(gray))
		}
		for y := 0; y < p.Height; y++ {
			for x := 0; x < p.Width; x++ {
				if (gray[y*p.Width+x] < 128) != p.Black(x, y) {
					t.Fatalf("page %d: pixel (%d, %d) differs in ImageMagick", i+1, x, y)
				}
			}
		}
	}
}

// TestReadImageMagickFax reads faxes ImageMagick made itself (G3 and G4,
// from a drawn page) and compares them with ImageMagick's own decode.
func TestReadImageMagickFax(t *testing.T) {
	convert := peertest.Require(t, "convert", installTIFF)
	dir := t.TempDir()
	for _, c := range []string{"Fax", "Group4", "Fax lsb"} {
		f := filepath.Join(dir, strings.ReplaceAll(c, " ", "-")+".tif")
		args := []string{"-size", "1728x300", "xc:white", "-fill", "black", "-draw", "rectangle 100,50 700,120",
			"-draw", "circle 1200,150 1260,150", "-compress", strings.Fields(c)[0], "-density", "204x98", "-units", "PixelsPerInch"}
		if strings.HasSuffix(c, "lsb") { // FillOrder 2
			args = append(args, "-define", "tiff:fill-order=lsb")
		}
		run(t, convert, append(args, f)...)
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out, err := faxtiff.Read(data, faxtiff.DefaultLimits)
		if err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		gray := run(t, convert, f, "-depth", "8", "gray:-")
		p := out[0]
		if len(out) != 1 || p.Width != 1728 || p.Height != 300 || p.YDPI != 98 {
			t.Fatalf("%s: %d pages, %d × %d at %g dpi", c, len(out), p.Width, p.Height, p.YDPI)
		}
		black := 0
		for y := 0; y < p.Height; y++ {
			for x := 0; x < p.Width; x++ {
				if (gray[y*p.Width+x] < 128) != p.Black(x, y) {
					t.Fatalf("%s: pixel (%d, %d) differs", c, x, y)
				}
				if p.Black(x, y) {
					black++
				}
			}
		}
		if black < 600*70 {
			t.Errorf("%s: %d black pixels, the drawing has more", c, black)
		}
	}
}

// TestPDFGhostscript has Ghostscript render the PDF of pages back to a
// G4 fax at their resolution; Read must find the same pixels.
func TestPDFGhostscript(t *testing.T) {
	gs := peertest.Require(t, "gs", "apt-get install ghostscript")
	in := pages(2)
	pdf, err := faxtiff.PDF(in)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "in.pdf"), pdf, 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, gs, "-q", "-dSAFER", "-dBATCH", "-dNOPAUSE", "-sDEVICE=tiffg4", "-r204x196",
		"-o", filepath.Join(dir, "out.tif"), filepath.Join(dir, "in.pdf"))
	data, err := os.ReadFile(filepath.Join(dir, "out.tif"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := faxtiff.Read(data, faxtiff.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 {
		t.Fatalf("%d pages", len(out))
	}
	for i := range in {
		diff := 0
		for y := 0; y < min(in[i].Height, out[i].Height); y++ {
			for x := 0; x < faxtiff.Width; x++ {
				if in[i].Black(x, y) != out[i].Black(x, y) {
					diff++
				}
			}
		}
		if out[i].Width != faxtiff.Width || out[i].Height != in[i].Height || diff > in[i].Width*in[i].Height/1000 {
			t.Errorf("page %d: %d × %d, %d pixels differ", i+1, out[i].Width, out[i].Height, diff)
		}
	}
}
