package faxtiff

import (
	"bytes"
	"fmt"
)

// PDF returns pages as a PDF 1.4 document (ISO 32000-1 §7.4.6: the
// CCITTFaxDecode filter), one page per fax page at its size, each an image
// XObject holding the page coded by EncodeMH (K 0, EndOfLine true, as
// T.4 sends it), so that web and e-mail recipients see the fax as it came.
// The writer is pure Go: no program runs.
func PDF(pages []Page) ([]byte, error) {
	if len(pages) == 0 {
		return nil, ErrNoPages
	}
	var b bytes.Buffer
	var offsets []int
	obj := func(body string, stream []byte) {
		offsets = append(offsets, b.Len())
		fmt.Fprintf(&b, "%d 0 obj\n%s", len(offsets), body)
		if stream != nil {
			b.WriteString("\nstream\n")
			b.Write(stream)
			b.WriteString("\nendstream")
		}
		b.WriteString("\nendobj\n")
	}
	b.WriteString("%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
	// Objects: 1 catalog, 2 page tree, then per page: page, content, image.
	kids := ""
	for i := range pages {
		kids += fmt.Sprintf("%d 0 R ", 3+3*i)
	}
	obj("<< /Type /Catalog /Pages 2 0 R >>", nil)
	obj(fmt.Sprintf("<< /Type /Pages /Kids [%s] /Count %d >>", kids, len(pages)), nil)
	for i, p := range pages {
		if err := p.Bitmap.valid(); err != nil {
			return nil, err
		}
		xdpi, ydpi := p.XDPI, p.YDPI
		if xdpi <= 0 {
			xdpi = XDPI
		}
		if ydpi <= 0 {
			ydpi = xdpi
		}
		w, h := float64(p.Width)*72/xdpi, float64(p.Height)*72/ydpi
		code, err := EncodeMH(p.Bitmap)
		if err != nil {
			return nil, err
		}
		n := 3 + 3*i
		obj(fmt.Sprintf("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %.2f %.2f] /Resources << /XObject << /Im0 %d 0 R >> >> /Contents %d 0 R >>",
			w, h, n+2, n+1), nil)
		content := fmt.Sprintf("q %.2f 0 0 %.2f 0 0 cm /Im0 Do Q", w, h)
		obj(fmt.Sprintf("<< /Length %d >>", len(content)), []byte(content))
		obj(fmt.Sprintf("<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray /BitsPerComponent 1 "+
			"/Filter /CCITTFaxDecode /DecodeParms << /K 0 /Columns %d /Rows %d /EndOfLine true /BlackIs1 false >> /Length %d >>",
			p.Width, p.Height, p.Width, p.Height, len(code)), code)
	}
	xref := b.Len()
	fmt.Fprintf(&b, "xref\n0 %d\n0000000000 65535 f \n", len(offsets)+1)
	for _, o := range offsets {
		fmt.Fprintf(&b, "%010d 00000 n \n", o)
	}
	fmt.Fprintf(&b, "trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n", len(offsets)+1, xref)
	return b.Bytes(), nil
}
