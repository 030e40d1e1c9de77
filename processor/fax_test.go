package processor_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/image/font/gofont/gomono"

	"github.com/uims/uims/internal/peertest"
	"github.com/uims/uims/processor"
	"github.com/uims/uims/processor/faxtiff"
	"github.com/uims/uims/schemas"
)

const installFax = "apt-get install libtiff-tools tesseract-ocr tesseract-ocr-eng imagemagick ghostscript (.ci/deps.d/fax.sh)"

// faxConversions returns the fax conversions by name; under CI every one
// must be there, elsewhere a test whose conversion is missing skips loudly.
func faxConversion(t *testing.T, name string) processor.Conversion {
	t.Helper()
	convs, missing := processor.Fax(processor.FaxConfig{})
	for _, c := range convs {
		if c.Name == name {
			return c
		}
	}
	peertest.Missing(t, fmt.Sprintf("conversion %s: %s", name, strings.Join(missing, "; ")), installFax)
	return processor.Conversion{}
}

var route = processor.Route{Sender: "Alice Example <+41445550123>", Created: time.Date(2026, 12, 5, 9, 30, 0, 0, time.UTC)}

func convertFax(t *testing.T, name string, in processor.Content, r processor.Route) (processor.Content, error) {
	t.Helper()
	c := faxConversion(t, name)
	out, err := c.Converter.Convert(context.Background(), in, r)
	if announced, _, _ := mime.ParseMediaType(c.To); err == nil && !schemas.TypeMatches([]string{announced}, out.Type) {
		t.Fatalf("%s made %q, announced %q", name, out.Type, c.To)
	}
	return out, err
}

// typed is a typed page: a business letter in English.
const typed = `Dear Mr. Miller,

Thank you for your order of 14 November. We confirm the delivery of
twelve boxes of printer paper and three toner cartridges to your office
in Zurich on Tuesday, 8 December, between 9 and 11 in the morning.

The invoice for CHF 1,284.50 follows by post. Please pay within thirty
days to the account shown on it, quoting the reference number 2026-4471.

If the date does not suit you, call us on 044 555 01 23 or answer this
fax before Friday noon; we will find another time.

Kind regards,
Anna Keller, Sales Office`

// TestText2FaxTiffinfo makes a 3-page fax from text and has libtiff's
// tiffinfo read every page of it: CCITT Group 3, 1728 pixels wide, at the
// fax resolution asked for; tiffcp and ImageMagick's identify read it too.
func TestText2FaxTiffinfo(t *testing.T) {
	tiffinfo := peertest.Require(t, "tiffinfo", installFax)
	tiffcp := peertest.Require(t, "tiffcp", installFax)
	identify := peertest.Require(t, "identify", installFax)
	text := strings.Repeat(typed+"\n\n", 8) // about 2.3 A4 pages of 57 lines
	for _, tc := range []struct {
		resolution, paper string
		ydpi              int
	}{{"fine", "a4", 196}, {"normal", "letter", 98}} {
		r := route
		r.Options = map[string]string{processor.OptionFaxResolution: tc.resolution, processor.OptionFaxPaper: tc.paper}
		out, err := convertFax(t, "text2fax", processor.Content{Type: "text/plain; charset=utf-8", Data: []byte(text)}, r)
		if err != nil {
			t.Fatal(err)
		}
		if out.Type != processor.FaxType {
			t.Errorf("type %q", out.Type)
		}
		f := filepath.Join(t.TempDir(), "fax.tif")
		if err := os.WriteFile(f, out.Data, 0o644); err != nil {
			t.Fatal(err)
		}
		info, err := exec.Command(tiffinfo, "-D", f).CombinedOutput()
		if err != nil {
			t.Fatalf("tiffinfo: %v\n%s", err, info)
		}
		dirs := strings.Split(string(info), "=== TIFF directory")[1:]
		if len(dirs) != 3 {
			t.Fatalf("%s: %d pages, want 3:\n%s", tc.resolution, len(dirs), info)
		}
		for i, d := range dirs {
			for _, want := range []string{"Compression Scheme: CCITT Group 3", "Image Width: 1728 ",
				fmt.Sprintf("Resolution: 204, %d pixels/inch", tc.ydpi), fmt.Sprintf("Page Number: %d-3", i)} {
				if !strings.Contains(d, want) {
					t.Errorf("%s page %d: tiffinfo does not say %q:\n%s", tc.resolution, i+1, want, d)
				}
			}
		}
		if out, err := exec.Command(tiffcp, f, filepath.Join(t.TempDir(), "copy.tif")).CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("tiffcp: %v %s", err, out)
		}
		id, err := exec.Command(identify, "-format", "%w %x %y %C\n", f).CombinedOutput()
		if n := strings.Count(string(id), fmt.Sprintf("1728 204 %d Fax\n", tc.ydpi)); err != nil || n != 3 {
			t.Errorf("identify: %v\n%s", err, id)
		}
	}
}

// levenshtein returns the edit distance of a and b, in runes.
func levenshtein(a, b []rune) int {
	prev, cur := make([]int, len(b)+1), make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// cer is the character error rate of got against want, white space
// collapsed to single spaces in both.
func cer(got, want string) float64 {
	norm := func(s string) []rune { return []rune(strings.Join(strings.Fields(s), " ")) }
	w := norm(want)
	return float64(levenshtein(norm(got), w)) / float64(len(w))
}

// TestFaxOCRRoundTrip types a page (text2fax), reads it back by OCR
// (fax2text, tesseract --psm 6) and measures the character error rate, at
// both resolutions: at most 5 %. The header line (date, sender, page) is
// read too and must be there.
func TestFaxOCRRoundTrip(t *testing.T) {
	for _, res := range []string{"fine", "normal"} {
		r := route
		r.Options = map[string]string{processor.OptionFaxResolution: res}
		fax, err := convertFax(t, "text2fax", processor.Content{Type: "text/plain", Data: []byte(typed)}, r)
		if err != nil {
			t.Fatal(err)
		}
		out, err := convertFax(t, "fax2text", processor.Content{Type: processor.FaxType, Data: fax.Data}, processor.Route{})
		if err != nil {
			t.Fatal(err)
		}
		text := string(out.Data)
		header, body, _ := strings.Cut(text, "\n")
		rate := cer(body, typed)
		t.Logf("%s: character error rate %.2f %% over %d characters; header %q", res, 100*rate, len(typed), header)
		if rate > 0.05 {
			t.Errorf("%s: character error rate %.1f %% (at most 5 %%):\n%s", res, 100*rate, text)
		}
		for _, want := range []string{"2026-12-05 09:30 UTC", "FROM", "P. 1/1"} {
			if !strings.Contains(header, want) {
				t.Errorf("%s: header %q lacks %q", res, header, want)
			}
		}
	}
}

// TestFaxFromImageMagick reads a fax nobody here made: ImageMagick draws a
// typed page (with FreeType, in Go Mono, whose TTF file this writes:
// ImageMagick's policy here refuses text: and @file) and codes it G3 (with
// EOL fill bits) and G4; libtiff codes it G3 2-D, which fax2text reads
// through tiffcp.
func TestFaxFromImageMagick(t *testing.T) {
	convertPath := peertest.Require(t, "convert", installFax)
	dir := t.TempDir()
	font := filepath.Join(dir, "gomono.ttf")
	if err := os.WriteFile(font, gomono.TTF, 0o644); err != nil {
		t.Fatal(err)
	}
	const page = "FAX MESSAGE\n\nPlease send the signed contract\nto our office by Monday.\nThe meeting moves to room 4B."
	tiffcp := peertest.Require(t, "tiffcp", installFax)
	for _, c := range []string{"Fax", "Group4", "G3 2-D"} {
		f := filepath.Join(dir, c+".tif")
		if c == "G3 2-D" { // as fax modems receive: tiffcp re-codes ImageMagick's G3 1-D
			if out, err := exec.Command(tiffcp, "-c", "g3:2d", filepath.Join(dir, "Fax.tif"), f).CombinedOutput(); err != nil {
				t.Fatalf("tiffcp: %v\n%s", err, out)
			}
		} else if out, err := exec.Command(convertPath, "-size", "1728x1100", "xc:white", "-font", font, "-density", "204x98",
			"-units", "PixelsPerInch", "-pointsize", "12", "-fill", "black", "-annotate", "+80+100", page,
			"-monochrome", "-compress", c, f).CombinedOutput(); err != nil {
			t.Fatalf("convert: %v\n%s", err, out)
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := faxtiff.Read(data, faxtiff.DefaultLimits); c == "G3 2-D" && !errors.Is(err, faxtiff.ErrUnsupported) {
			t.Errorf("faxtiff reads G3 2-D itself now (%v): drop the tiffcp step", err)
		}
		out, err := convertFax(t, "fax2text", processor.Content{Type: "image/tiff", Data: data}, processor.Route{})
		if err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		rate := cer(string(out.Data), page)
		t.Logf("ImageMagick -compress %s: character error rate %.2f %%", c, 100*rate)
		if rate > 0.05 {
			t.Errorf("%s: character error rate %.1f %%:\n%s", c, 100*rate, out.Data)
		}
	}
}

// TestFax2Mixed: the OCR text first, then the pages as a PDF that
// Ghostscript counts.
func TestFax2Mixed(t *testing.T) {
	gs := peertest.Require(t, "gs", installFax)
	fax, err := convertFax(t, "text2fax", processor.Content{Type: "text/plain", Data: []byte(strings.Repeat(typed+"\n\n", 4))}, route)
	if err != nil {
		t.Fatal(err)
	}
	out, err := convertFax(t, "fax2mixed", processor.Content{Type: "image/tiff; application=faxbw", Data: fax.Data}, processor.Route{})
	if err != nil {
		t.Fatal(err)
	}
	mt, params, err := mime.ParseMediaType(out.Type)
	if err != nil || mt != "multipart/mixed" {
		t.Fatalf("type %q", out.Type)
	}
	r := multipart.NewReader(bytes.NewReader(out.Data), params["boundary"])
	text, err := r.NextPart()
	if err != nil || text.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Fatalf("first part %v %v", text, err)
	}
	body, _ := io.ReadAll(text)
	if !strings.Contains(string(body), "Kind regards") {
		t.Errorf("text part %q", body)
	}
	pdf, err := r.NextPart() // multipart.Reader does not undo base64: the header says it
	if err != nil || pdf.Header.Get("Content-Type") != `application/pdf; name="fax.pdf"` || pdf.FileName() != "fax.pdf" {
		t.Fatalf("second part %v %v", pdf.Header, err)
	}
	raw, _ := io.ReadAll(pdf)
	data, err := base64Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "fax.pdf")
	os.WriteFile(f, data, 0o644)
	n, err := exec.Command(gs, "-q", "-dNODISPLAY", "-dSAFER", "--permit-file-read="+f, "-c", "("+f+") (r) file runpdfbegin pdfpagecount = quit").Output()
	if err != nil || strings.TrimSpace(string(n)) != "2" {
		t.Errorf("gs counts %q pages in the attachment: %v", n, err)
	}
}

// TestFaxBadInput: a corrupt TIFF, a TIFF without pages, one of 200 pages,
// PDF bombs (5000 pages; a page 5 m across), something that is no PDF
// and too much text: each a clear error of a wire code; the PDF with the
// huge page is drawn on A4 and read.
func TestFaxBadInput(t *testing.T) {
	page := func(n int) []faxtiff.Page {
		p := make([]faxtiff.Page, n)
		for i := range p {
			p[i] = faxtiff.Page{Bitmap: faxtiff.NewBitmap(faxtiff.Width, 50), YDPI: faxtiff.NormalYDPI}
		}
		return p
	}
	good, err := faxtiff.Encode(page(2))
	if err != nil {
		t.Fatal(err)
	}
	corrupt := bytes.Clone(good)
	for i := 8; i < 40; i++ {
		corrupt[i] = 0xA5
	}
	many, _ := faxtiff.Encode(page(200))
	for _, tc := range []struct {
		name, conv, ctype string
		data              []byte
		want              schemas.Code
	}{
		{"corrupt TIFF", "fax2text", "image/tiff", corrupt, schemas.CodeMalformed},
		{"0-page TIFF", "fax2text", "image/tiff", []byte("II*\x00\x00\x00\x00\x00"), schemas.CodeMalformed},
		{"200-page TIFF", "fax2mixed", "image/tiff", many, schemas.CodeTooLarge},
		{"5000-page PDF", "pdf2text", "application/pdf", pdfOf(5000, "0 0 612 792"), schemas.CodeTooLarge},
		{"0-page PDF", "pdf2text", "application/pdf", pdfOf(0, "0 0 612 792"), schemas.CodeMalformed},
		{"no PDF", "pdf2mixed", "application/pdf", []byte("%!PS-Adobe-3.0\nshowpage\n"), schemas.CodeMalformed},
		{"broken PDF", "pdf2text", "application/pdf", []byte("%PDF-1.4\n1 0 obj <<"), schemas.CodeMalformed},
		{"36 000 lines of text", "text2fax", "text/plain", bytes.Repeat([]byte("a line\n"), 60*600), schemas.CodeTooLarge},
		{"20 MB", "text2fax", "text/plain", make([]byte, 20<<20), schemas.CodeTooLarge},
		{"no PNG", "png2fax", "image/png", []byte("\x89PNG\r\n\x1a\nbroken"), schemas.CodeMalformed},
	} {
		start := time.Now()
		_, err := convertFax(t, tc.conv, processor.Content{Type: tc.ctype, Data: tc.data}, route)
		var se *schemas.Error
		if !errors.As(err, &se) || se.Code != tc.want {
			t.Errorf("%s: %v, want %s", tc.name, err, tc.want)
			continue
		}
		t.Logf("%s: %v (%s)", tc.name, err, time.Since(start).Round(time.Millisecond))
	}
	// A page of 5 m × 5 m is drawn on A4, not at its size: a blank page,
	// no text (for a text-only recipient, CONVERSION_FAILED) and its PDF.
	huge := processor.Content{Type: "application/pdf", Data: pdfOf(1, "0 0 14400 14400")}
	if _, err := convertFax(t, "pdf2text", huge, route); err == nil || !strings.Contains(err.Error(), "no text") {
		t.Errorf("huge blank page to text: %v", err)
	}
	if out, err := convertFax(t, "pdf2mixed", huge, route); err != nil || !bytes.Contains(out.Data, []byte("fax.pdf")) {
		t.Errorf("huge blank page to mixed: %v", err)
	}
}

// pdfOf returns a PDF of n empty pages of the given MediaBox.
func pdfOf(n int, box string) []byte {
	var kids []string
	objs := []string{"<< /Type /Catalog /Pages 2 0 R >>", ""}
	for i := 0; i < n; i++ {
		kids = append(kids, fmt.Sprintf("%d 0 R", 3+i))
		objs = append(objs, "<< /Type /Page /Parent 2 0 R /MediaBox ["+box+"] >>")
	}
	objs[1] = fmt.Sprintf("<< /Type /Pages /Kids [%s] /Count %d >>", strings.Join(kids, " "), n)
	var b bytes.Buffer
	b.WriteString("%PDF-1.4\n")
	var offs []int
	for i, o := range objs {
		offs = append(offs, b.Len())
		fmt.Fprintf(&b, "%d 0 obj\n%s\nendobj\n", i+1, o)
	}
	x := b.Len()
	fmt.Fprintf(&b, "xref\n0 %d\n0000000000 65535 f \n", len(objs)+1)
	for _, o := range offs {
		fmt.Fprintf(&b, "%010d 00000 n \n", o)
	}
	fmt.Fprintf(&b, "trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n", len(objs)+1, x)
	return b.Bytes()
}

func base64Decode(raw []byte) ([]byte, error) {
	return base64.StdEncoding.DecodeString(strings.Join(strings.Fields(string(raw)), ""))
}

// BenchmarkText2Fax converts a typed page, and ten, to a fine A4 fax:
// layout, rendering, MH coding and the TIFF.
func BenchmarkText2Fax(b *testing.B) {
	convs, _ := processor.Fax(processor.FaxConfig{})
	text2fax := convs[0].Converter
	for _, pages := range []int{1, 10} {
		// A fine A4 page holds 45 lines of 11 points.
		lines := strings.Split(strings.Repeat(typed+"\n", 4*pages), "\n")[:45*pages]
		text := strings.Join(lines, "\n")
		in := processor.Content{Type: "text/plain", Data: []byte(text)}
		out, err := text2fax.Convert(context.Background(), in, route)
		if err != nil {
			b.Fatal(err)
		}
		got, err := faxtiff.Read(out.Data, faxtiff.DefaultLimits)
		if err != nil || len(got) != pages {
			b.Fatalf("%d pages, want %d: %v", len(got), pages, err)
		}
		b.Run(fmt.Sprintf("pages=%d", pages), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(out.Data)))
			for b.Loop() {
				if _, err := text2fax.Convert(context.Background(), in, route); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
