package processor

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg" // jpeg2fax
	_ "image/png"  // png2fax
	"io"
	"mime"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/html/charset"

	"github.com/uims/uims/processor/faxpage"
	"github.com/uims/uims/processor/faxtiff"
	"github.com/uims/uims/schemas"
)

// FaxType is the content type of the faxes the conversions make: TIFF-F of
// RFC 3949 profile S, labelled as RFC 3302 §3 says a black-and-white fax
// profile (S, F or J) is. A fax gateway accepts "image/tiff" (types match
// by media type, parameters aside).
const FaxType = "image/tiff; application=faxbw"

// Recipient options of the fax conversions (route.Options).
const (
	// OptionFaxResolution is "fine" (204 × 196 dpi, the default) or
	// "normal" (204 × 98).
	OptionFaxResolution = "fax.resolution"
	// OptionFaxPaper is "a4" (the default) or "letter".
	OptionFaxPaper = "fax.paper"
)

// FaxConfig configures the fax conversions.
type FaxConfig struct {
	// Tesseract and Ghostscript are the programs the OCR conversions run,
	// and Tiffcp (libtiff) turns the G3 2-D faxes that faxtiff does not
	// decode into G4; empty: "tesseract", "gs" and "tiffcp" on PATH.
	Tesseract, Ghostscript, Tiffcp string
	// Timeout bounds the OCR of one page and Ghostscript's work on one PDF;
	// default 60 s. The route's deadline bounds the whole conversion.
	Timeout time.Duration
	// MaxPages bounds the pages of a fax in and out; default 100.
	MaxPages int
	// MaxInput bounds the content a conversion takes, in bytes; default
	// 16 MiB.
	MaxInput int
}

func (c *FaxConfig) setDefaults() {
	if c.Tesseract == "" {
		c.Tesseract = "tesseract"
	}
	if c.Ghostscript == "" {
		c.Ghostscript = "gs"
	}
	if c.Tiffcp == "" {
		c.Tiffcp = "tiffcp"
	}
	if c.Timeout <= 0 {
		c.Timeout = 60 * time.Second
	}
	if c.MaxPages <= 0 {
		c.MaxPages = faxpage.DefaultMaxPages
	}
	if c.MaxInput <= 0 {
		c.MaxInput = 16 << 20
	}
}

// Fax returns the fax conversions whose programs are installed, and a
// line for each program that is missing (for the caller to log):
//
//   - text2fax, png2fax, jpeg2fax: text and images to FaxType, in Go;
//   - fax2text, fax2mixed: a fax (TIFF G3 1-D or G4) to its text by OCR,
//     alone or in a multipart/mixed with the pages as a PDF attached; they
//     need tesseract with English data, and tiffcp for G3 2-D faxes;
//   - pdf2text, pdf2mixed: the same from a PDF (a fax as web and e-mail
//     send it), rasterised by Ghostscript; they need tesseract and gs.
//
// The costs put a conversion by OCR (lossy, slow) far behind others.
func Fax(cfg FaxConfig) (convs []Conversion, missing []string) {
	cfg.setDefaults()
	f := &fax{cfg: cfg}
	convs = []Conversion{
		{Conversion: schemas.Conversion{Name: "text2fax", From: "text/plain", To: FaxType, Cost: 5}, Converter: ConverterFunc(f.text)},
		{Conversion: schemas.Conversion{Name: "png2fax", From: "image/png", To: FaxType, Cost: 5}, Converter: ConverterFunc(f.image)},
		{Conversion: schemas.Conversion{Name: "jpeg2fax", From: "image/jpeg", To: FaxType, Cost: 5}, Converter: ConverterFunc(f.image)},
	}
	if err := haveTesseract(cfg.Tesseract); err != nil {
		return convs, []string{err.Error() + ": no fax2text, fax2mixed, pdf2text, pdf2mixed (install tesseract-ocr tesseract-ocr-eng)"}
	}
	const text = "text/plain; charset=utf-8"
	convs = append(convs,
		Conversion{Conversion: schemas.Conversion{Name: "fax2text", From: "image/tiff", To: text, Cost: 20}, Converter: f.ocr(false, false)},
		Conversion{Conversion: schemas.Conversion{Name: "fax2mixed", From: "image/tiff", To: "multipart/mixed", Cost: 20}, Converter: f.ocr(false, true)},
	)
	if _, err := exec.LookPath(cfg.Tiffcp); err != nil {
		f.cfg.Tiffcp = ""
		missing = append(missing, fmt.Sprintf("tiffcp (%s) not found: fax2text and fax2mixed refuse G3 2-D faxes (install libtiff-tools)", cfg.Tiffcp))
	}
	if _, err := exec.LookPath(cfg.Ghostscript); err != nil {
		return convs, append(missing, fmt.Sprintf("ghostscript (%s) not found: no pdf2text, pdf2mixed (install ghostscript)", cfg.Ghostscript))
	}
	convs = append(convs,
		Conversion{Conversion: schemas.Conversion{Name: "pdf2text", From: "application/pdf", To: text, Cost: 20}, Converter: f.ocr(true, false)},
		Conversion{Conversion: schemas.Conversion{Name: "pdf2mixed", From: "application/pdf", To: "multipart/mixed", Cost: 20}, Converter: f.ocr(true, true)},
	)
	return convs, missing
}

// haveTesseract checks that tesseract runs and has English data.
func haveTesseract(path string) error {
	if _, err := exec.LookPath(path); err != nil {
		return fmt.Errorf("tesseract (%s) not found", path)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--list-langs").CombinedOutput()
	if err != nil || !strings.Contains("\n"+string(out), "\neng\n") {
		return fmt.Errorf("tesseract (%s) has no English data (eng)", path)
	}
	return nil
}

type fax struct{ cfg FaxConfig }

// layout returns the page options of a route.
func (f *fax) layout(route Route) (faxpage.Options, error) {
	o := faxpage.Options{Fine: true, Sender: route.Sender, Date: route.Created, MaxPages: f.cfg.MaxPages}
	switch strings.ToLower(route.Options[OptionFaxResolution]) {
	case "", "fine":
	case "normal", "standard":
		o.Fine = false
	default:
		return o, fmt.Errorf("processor: %s %q: fine or normal", OptionFaxResolution, route.Options[OptionFaxResolution])
	}
	switch strings.ToLower(route.Options[OptionFaxPaper]) {
	case "", "a4":
	case "letter":
		o.Paper = faxpage.Letter
	default:
		return o, fmt.Errorf("processor: %s %q: a4 or letter", OptionFaxPaper, route.Options[OptionFaxPaper])
	}
	return o, nil
}

// pagesError gives a layout error its wire code.
func pagesError(err error) error {
	switch {
	case errors.Is(err, faxpage.ErrTooLarge), errors.Is(err, faxtiff.ErrTooLarge):
		return schemas.Errorf(schemas.CodeTooLarge, err, "")
	case errors.Is(err, faxpage.ErrImage), errors.Is(err, faxtiff.ErrMalformed), errors.Is(err, faxtiff.ErrNoPages):
		return schemas.Errorf(schemas.CodeMalformed, err, "")
	}
	return err
}

func (f *fax) tooLarge(in Content) error {
	if len(in.Data) > f.cfg.MaxInput {
		return schemas.Errorf(schemas.CodeTooLarge, nil, fmt.Sprintf("%d bytes (at most %d)", len(in.Data), f.cfg.MaxInput))
	}
	return nil
}

// text is text2fax: text in its charset (UTF-8 without one) to a fax.
func (f *fax) text(ctx context.Context, in Content, route Route) (Content, error) {
	if err := f.tooLarge(in); err != nil {
		return Content{}, err
	}
	o, err := f.layout(route)
	if err != nil {
		return Content{}, err
	}
	data := in.Data
	if _, params, err := mime.ParseMediaType(in.Type); err == nil && params["charset"] != "" &&
		!strings.EqualFold(params["charset"], "utf-8") && !strings.EqualFold(params["charset"], "us-ascii") {
		enc, _ := charset.Lookup(params["charset"])
		if enc == nil {
			return Content{}, fmt.Errorf("processor: text2fax: unknown charset %q", params["charset"])
		}
		if data, err = enc.NewDecoder().Bytes(data); err != nil {
			return Content{}, fmt.Errorf("processor: text2fax: charset %s: %w", params["charset"], err)
		}
	}
	pages, err := faxpage.Text(string(bytes.ToValidUTF8(data, []byte("\uFFFD"))), o)
	if err != nil {
		return Content{}, pagesError(err)
	}
	out, err := faxtiff.Encode(pages)
	if err != nil {
		return Content{}, err
	}
	return Content{Type: FaxType, Data: out}, nil
}

// image is png2fax and jpeg2fax.
func (f *fax) image(ctx context.Context, in Content, route Route) (Content, error) {
	if err := f.tooLarge(in); err != nil {
		return Content{}, err
	}
	o, err := f.layout(route)
	if err != nil {
		return Content{}, err
	}
	cfg, _, err := image.DecodeConfig(bytes.NewReader(in.Data))
	if err != nil {
		return Content{}, schemas.Errorf(schemas.CodeMalformed, fmt.Errorf("%w: %w", faxpage.ErrImage, err), "")
	}
	if int64(cfg.Width)*int64(cfg.Height) > faxpage.MaxImagePixels {
		return Content{}, schemas.Errorf(schemas.CodeTooLarge, nil, fmt.Sprintf("image of %d × %d pixels (at most %d pixels)", cfg.Width, cfg.Height, faxpage.MaxImagePixels))
	}
	img, _, err := image.Decode(bytes.NewReader(in.Data))
	if err != nil {
		return Content{}, schemas.Errorf(schemas.CodeMalformed, fmt.Errorf("%w: %w", faxpage.ErrImage, err), "")
	}
	pages, err := faxpage.Image(img, o)
	if err != nil {
		return Content{}, pagesError(err)
	}
	out, err := faxtiff.Encode(pages)
	if err != nil {
		return Content{}, err
	}
	return Content{Type: FaxType, Data: out}, nil
}

// ocr returns a converter of faxes (or PDFs) to their text, alone or with
// the pages as a PDF attached (mixed).
func (f *fax) ocr(pdf, mixed bool) Converter {
	return ConverterFunc(func(ctx context.Context, in Content, route Route) (Content, error) {
		if err := f.tooLarge(in); err != nil {
			return Content{}, err
		}
		var pages []faxtiff.Page
		var err error
		if pdf {
			pages, err = f.rasterise(ctx, in.Data)
		} else {
			pages, err = f.readTIFF(ctx, in.Data)
		}
		if err != nil {
			return Content{}, pagesError(err)
		}
		text, err := f.recognise(ctx, pages)
		if err != nil {
			return Content{}, err
		}
		if !mixed {
			if strings.TrimSpace(text) == "" { // nothing for a text-only recipient: a photo, a blank page
				return Content{}, fmt.Errorf("processor: OCR found no text on %d pages", len(pages))
			}
			return Content{Type: "text/plain; charset=utf-8", Data: []byte(text)}, nil
		}
		attachment := in.Data // a PDF goes as it came
		if !pdf {
			if attachment, err = faxtiff.PDF(pages); err != nil {
				return Content{}, err
			}
		}
		return mixedContent(text, attachment, len(pages))
	})
}

// readTIFF reads a fax; one that faxtiff does not decode (G3 2-D, MR, as
// modems receive) libtiff's tiffcp codes in G4 first, when it is there.
func (f *fax) readTIFF(ctx context.Context, data []byte) ([]faxtiff.Page, error) {
	pages, err := faxtiff.Read(data, f.limits())
	if !errors.Is(err, faxtiff.ErrUnsupported) || f.cfg.Tiffcp == "" {
		return pages, err
	}
	in, out, done, terr := scratch("uims-tiff", "in.tif", "out.tif", data)
	if terr != nil {
		return nil, terr
	}
	defer done()
	tctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	defer cancel()
	if _, terr := runTool(tctx, f.cfg.Tiffcp, nil, 4096, "-c", "g4", in, out); terr != nil {
		return nil, fmt.Errorf("%w; tiffcp: %v", err, terr)
	}
	g4, terr := os.ReadFile(out)
	if terr != nil {
		return nil, terr
	}
	return faxtiff.Read(g4, f.limits())
}

// scratch makes a private temporary folder for a program's input and
// output files: the input written to in, out the path it writes to, done
// removes the folder.
func scratch(prefix, inName, outName string, data []byte) (in, out string, done func(), err error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", "", nil, err
	}
	done = func() { os.RemoveAll(dir) }
	in, out = filepath.Join(dir, inName), filepath.Join(dir, outName)
	if err := os.WriteFile(in, data, 0o600); err != nil {
		done()
		return "", "", nil, err
	}
	return in, out, done, nil
}

func (f *fax) limits() faxtiff.Limits {
	l := faxtiff.DefaultLimits
	l.MaxPages = f.cfg.MaxPages
	return l
}

// recognise runs tesseract on each page (--psm 6: a uniform block of
// text, which a typed fax is) and returns the pages' text, a blank line
// between pages. A standard page's lines are doubled first, so that
// tesseract sees square pixels.
func (f *fax) recognise(ctx context.Context, pages []faxtiff.Page) (string, error) {
	var texts []string
	for i, p := range pages {
		b := p.Bitmap
		if p.YDPI > 0 && p.XDPI > 0 && p.XDPI/p.YDPI > 1.5 {
			b = doubleRows(b)
		}
		pbm := append([]byte(fmt.Sprintf("P4\n%d %d\n", b.Width, b.Height)), b.Pix...) // PBM: 1 is black, as in Bitmap
		pctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
		out, err := runTool(pctx, f.cfg.Tesseract, pbm, 1<<20, "stdin", "stdout", "--psm", "6", "--dpi", "204", "-l", "eng")
		cancel()
		if err != nil {
			return "", fmt.Errorf("processor: OCR of page %d of %d: %w", i+1, len(pages), err)
		}
		texts = append(texts, strings.TrimSpace(strings.ReplaceAll(string(out), "\f", "")))
	}
	return strings.Join(texts, "\n\n"), nil
}

func doubleRows(b *faxtiff.Bitmap) *faxtiff.Bitmap {
	d := faxtiff.NewBitmap(b.Width, 2*b.Height)
	for y := 0; y < b.Height; y++ {
		copy(d.Row(2*y), b.Row(y))
		copy(d.Row(2*y+1), b.Row(y))
	}
	return d
}

// rasterise renders a PDF to fax pages with Ghostscript: its pages counted
// first (more than MaxPages: TOO_LARGE, before any is drawn), then drawn
// in G4 at 204 × 196 dpi on A4 whatever the page size says (-dFIXEDMEDIA
// -dPDFFitPage: a page of a square kilometre costs what an A4 page does),
// under -dSAFER and within the timeout.
func (f *fax) rasterise(ctx context.Context, pdf []byte) ([]faxtiff.Page, error) {
	if !bytes.HasPrefix(bytes.TrimLeft(pdf[:min(len(pdf), 1024)], "\x00\t\n\r "), []byte("%PDF-")) {
		return nil, schemas.Errorf(schemas.CodeMalformed, nil, "not a PDF")
	}
	in, out, done, err := scratch("uims-pdf", "in.pdf", "out.tif", pdf)
	if err != nil {
		return nil, err
	}
	defer done()
	gctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	defer cancel()
	count, err := runTool(gctx, f.cfg.Ghostscript, nil, 4096, "-q", "-dNODISPLAY", "-dSAFER", "--permit-file-read="+in,
		"-c", "("+in+") (r) file runpdfbegin pdfpagecount = quit")
	n, perr := strconv.Atoi(strings.TrimSpace(string(count)))
	switch {
	case gctx.Err() != nil:
		return nil, fmt.Errorf("processor: ghostscript took over %s counting the PDF's pages", f.cfg.Timeout)
	case err != nil || perr != nil || n < 0:
		return nil, schemas.Errorf(schemas.CodeMalformed, err, "ghostscript cannot read the PDF")
	case n == 0:
		return nil, schemas.Errorf(schemas.CodeMalformed, faxtiff.ErrNoPages, "PDF")
	case n > f.cfg.MaxPages:
		return nil, schemas.Errorf(schemas.CodeTooLarge, nil, fmt.Sprintf("a PDF of %d pages (at most %d)", n, f.cfg.MaxPages))
	}
	if _, err := runTool(gctx, f.cfg.Ghostscript, nil, 64<<10, "-q", "-dSAFER", "-dBATCH", "-dNOPAUSE",
		"-sDEVICE=tiffg4", "-r204x196", "-sPAPERSIZE=a4", "-dFIXEDMEDIA", "-dPDFFitPage",
		"-dLastPage="+strconv.Itoa(n), "-o", out, in); err != nil {
		if gctx.Err() != nil {
			return nil, fmt.Errorf("processor: ghostscript took over %s drawing the PDF", f.cfg.Timeout)
		}
		return nil, schemas.Errorf(schemas.CodeMalformed, err, "ghostscript cannot draw the PDF")
	}
	data, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("processor: ghostscript's output: %w", err)
	}
	return faxtiff.Read(data, f.limits())
}

// runTool runs a program with stdin, and returns at most max bytes of its
// standard output; its standard error (the first 1 KiB) is in the error.
func runTool(ctx context.Context, path string, stdin []byte, max int, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, path, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	stdout, stderr := &capped{max: max}, &capped{max: 1024}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.Env = append(os.Environ(), "OMP_THREAD_LIMIT=1")
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s: %w: %s", filepath.Base(path), err, strings.TrimSpace(stderr.b.String()))
	}
	if stdout.over {
		return nil, fmt.Errorf("%s: more than %d bytes of output", filepath.Base(path), max)
	}
	return stdout.b.Bytes(), nil
}

// capped keeps the first max bytes written to it.
type capped struct {
	b    bytes.Buffer
	max  int
	over bool
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.b.Len(); len(p) > room {
		c.b.Write(p[:max(room, 0)])
		c.over = true
		return len(p), nil
	}
	return c.b.Write(p)
}

// mixedContent returns a multipart/mixed body (RFC 2046 §5.1.3): the text
// first, then the fax as fax.pdf.
func mixedContent(text string, pdf []byte, pages int) (Content, error) {
	return mixedContentOf(text, attachment{Type: "application/pdf", Name: "fax.pdf", Data: pdf,
		Description: fmt.Sprintf("fax, %d pages", pages)})
}

// base64Lines writes base64 in lines of 76 characters (RFC 2045 §6.8).
type base64Lines struct{ w io.Writer }

func (e base64Lines) write(data []byte) {
	s := base64.StdEncoding.EncodeToString(data)
	for len(s) > 76 {
		e.w.Write([]byte(s[:76] + "\r\n"))
		s = s[76:]
	}
	e.w.Write([]byte(s + "\r\n"))
}
