package faxtiff

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"golang.org/x/image/ccitt"
)

// Errors of Read. Each comes wrapped with what was wrong and on which page.
var (
	// ErrMalformed reports a file that is no TIFF, or whose structure or
	// CCITT data does not decode (truncated, corrupt, an IFD loop).
	ErrMalformed = errors.New("faxtiff: malformed TIFF")
	// ErrNoPages reports a TIFF without a page.
	ErrNoPages = errors.New("faxtiff: no pages")
	// ErrTooLarge reports a file over the Limits.
	ErrTooLarge = errors.New("faxtiff: over the limits")
	// ErrUnsupported reports a TIFF that is no bilevel CCITT fax this
	// package decodes: another compression or depth, G3 2-D (MR), or
	// uncompressed mode.
	ErrUnsupported = errors.New("faxtiff: unsupported TIFF")
)

// Limits bound what Read accepts, against files built to exhaust a
// processor.
type Limits struct {
	// MaxPages is the most pages (IFDs); more is ErrTooLarge.
	MaxPages int
	// MaxWidth and MaxHeight bound a page, in pixels.
	MaxWidth, MaxHeight int
	// MaxBytes bounds the decoded bitmaps of all pages together (one bit
	// a pixel).
	MaxBytes int
}

// DefaultLimits: 100 pages; a page at most 4864 pixels wide (T.4's widest,
// B4 at 16 pixels/mm) and 8192 lines long (2 m at standard resolution);
// 64 MiB of bitmaps (about 140 A4 pages at fine resolution).
var DefaultLimits = Limits{MaxPages: 100, MaxWidth: 4864, MaxHeight: 8192, MaxBytes: 64 << 20}

// maxEntries bounds the entries of one IFD (a fax page has about 20).
const maxEntries = 512

// Read decodes the pages of a TIFF fax: every IFD of the chain that is not a
// reduced-resolution copy, in order. Pages must be bilevel and coded
// CCITT G3 one-dimensional (Compression 3, T4Options bit 0 clear) or G4
// (Compression 4), in any number of strips, either byte order and fill
// order. The IFD chain is walked first, so a file over MaxPages is refused
// before anything is decoded.
func Read(data []byte, lim Limits) ([]Page, error) {
	if len(data) < 8 {
		return nil, errorf(ErrMalformed, "%d bytes", len(data))
	}
	var bo binary.ByteOrder
	switch string(data[:4]) {
	case "II*\x00":
		bo = binary.LittleEndian
	case "MM\x00*":
		bo = binary.BigEndian
	default:
		return nil, errorf(ErrMalformed, "no TIFF header")
	}
	t := &tiff{data: data, bo: bo}
	var ifds []int
	seen := map[uint32]bool{}
	for off := bo.Uint32(data[4:]); off != 0; {
		if seen[off] {
			return nil, errorf(ErrMalformed, "IFD loop at offset %d", off)
		}
		seen[off] = true
		if len(ifds) >= lim.MaxPages {
			return nil, errorf(ErrTooLarge, "more than %d pages", lim.MaxPages)
		}
		n, ok := t.u16(int64(off))
		if !ok || n == 0 || n > maxEntries {
			return nil, errorf(ErrMalformed, "IFD %d at offset %d: %d entries", len(ifds)+1, off, n)
		}
		end := int64(off) + 2 + int64(n)*ifdEntrySize
		nextOff, ok := t.u32(end)
		if !ok {
			return nil, errorf(ErrMalformed, "IFD %d at offset %d runs past the end", len(ifds)+1, off)
		}
		ifds = append(ifds, int(off))
		off = nextOff
	}
	var pages []Page
	total := 0
	for i, off := range ifds {
		p, skip, err := t.page(off, lim, &total)
		if err != nil {
			return nil, fmt.Errorf("%w (page %d)", err, i+1)
		}
		if !skip {
			pages = append(pages, p)
		}
	}
	if len(pages) == 0 {
		return nil, ErrNoPages
	}
	return pages, nil
}

type tiff struct {
	data []byte
	bo   binary.ByteOrder
}

func (t *tiff) u16(at int64) (uint16, bool) {
	if at < 0 || at+2 > int64(len(t.data)) {
		return 0, false
	}
	return t.bo.Uint16(t.data[at:]), true
}

func (t *tiff) u32(at int64) (uint32, bool) {
	if at < 0 || at+4 > int64(len(t.data)) {
		return 0, false
	}
	return t.bo.Uint32(t.data[at:]), true
}

// entry is one IFD entry.
type entry struct {
	typ   uint16
	count uint32
	at    int64 // where the values are
}

// values returns an entry's integer values (BYTE, SHORT or LONG), at most max.
func (t *tiff) values(e entry, max int) ([]uint32, error) {
	size := map[uint16]int64{1: 1, 3: 2, 4: 4}[e.typ]
	if size == 0 {
		return nil, errorf(ErrMalformed, "field type %d where an integer is due", e.typ)
	}
	if int64(e.count) > int64(max) {
		return nil, errorf(ErrTooLarge, "%d values (at most %d)", e.count, max)
	}
	if e.at+int64(e.count)*size > int64(len(t.data)) {
		return nil, errorf(ErrMalformed, "values past the end of the file")
	}
	out := make([]uint32, e.count)
	for i := range out {
		at := e.at + int64(i)*size
		switch size {
		case 1:
			out[i] = uint32(t.data[at])
		case 2:
			out[i] = uint32(t.bo.Uint16(t.data[at:]))
		default:
			out[i] = t.bo.Uint32(t.data[at:])
		}
	}
	return out, nil
}

// page decodes the IFD at off; skip is true for a reduced-resolution copy.
func (t *tiff) page(off int, lim Limits, total *int) (Page, bool, error) {
	n, _ := t.u16(int64(off))
	fields := map[uint16]entry{}
	for i := 0; i < int(n); i++ {
		at := int64(off) + 2 + int64(i)*ifdEntrySize
		tag, typ := t.bo.Uint16(t.data[at:]), t.bo.Uint16(t.data[at+2:])
		count := t.bo.Uint32(t.data[at+4:])
		e := entry{typ: typ, count: count, at: at + 8}
		size := map[uint16]int64{1: 1, 2: 1, 3: 2, 4: 4, 5: 8}[typ]
		if int64(count)*size > 4 {
			e.at = int64(t.bo.Uint32(t.data[at+8:]))
		}
		fields[tag] = e
	}
	one := func(tag uint16, def uint32) (uint32, error) {
		e, ok := fields[tag]
		if !ok {
			return def, nil
		}
		v, err := t.values(e, 1<<16)
		if err != nil {
			return 0, errorf(err, "tag %d", tag)
		}
		if len(v) == 0 {
			return def, nil
		}
		return v[0], nil
	}
	var err error
	get := func(tag uint16, def uint32) uint32 {
		v, e := one(tag, def)
		if err == nil {
			err = e
		}
		return v
	}
	subfile := get(tagNewSubfileType, 0)
	width, height := get(tagImageWidth, 0), get(tagImageLength, 0)
	bps, spp := get(tagBitsPerSample, 1), get(tagSamplesPerPixel, 1)
	compression := get(tagCompression, 1)
	t4, t6 := get(tagT4Options, 0), get(tagT6Options, 0)
	fill := get(tagFillOrder, 1)
	rps := get(tagRowsPerStrip, math.MaxUint32)
	if err != nil {
		return Page{}, false, err
	}
	if subfile&1 != 0 {
		return Page{}, true, nil
	}
	switch {
	case width == 0 || height == 0:
		return Page{}, false, errorf(ErrMalformed, "%d × %d pixels", width, height)
	case int64(width) > int64(lim.MaxWidth) || int64(height) > int64(lim.MaxHeight):
		return Page{}, false, errorf(ErrTooLarge, "%d × %d pixels (at most %d × %d)", width, height, lim.MaxWidth, lim.MaxHeight)
	case bps != 1 || spp != 1:
		return Page{}, false, errorf(ErrUnsupported, "%d bits × %d samples a pixel (a fax has 1)", bps, spp)
	case compression != compressionG3 && compression != compressionG4:
		return Page{}, false, errorf(ErrUnsupported, "compression %d (a fax has 3, G3, or 4, G4)", compression)
	case compression == compressionG3 && t4&1 != 0:
		return Page{}, false, errorf(ErrUnsupported, "G3 two-dimensional coding (T4Options %d)", t4)
	case compression == compressionG3 && t4&2 != 0, compression == compressionG4 && t6&2 != 0:
		return Page{}, false, errorf(ErrUnsupported, "uncompressed mode")
	}
	if rps == 0 || rps > height {
		rps = height
	}
	nStrips := int((height + rps - 1) / rps)
	so, ok1 := fields[tagStripOffsets]
	sc, ok2 := fields[tagStripByteCounts]
	if !ok1 || !ok2 {
		return Page{}, false, errorf(ErrMalformed, "no strips")
	}
	offsets, err := t.values(so, nStrips)
	if err != nil {
		return Page{}, false, errorf(err, "strip offsets")
	}
	counts, err := t.values(sc, nStrips)
	if err != nil {
		return Page{}, false, errorf(err, "strip byte counts")
	}
	if len(offsets) != nStrips || len(counts) != nStrips {
		return Page{}, false, errorf(ErrMalformed, "%d strip offsets and %d byte counts for %d strips", len(offsets), len(counts), nStrips)
	}
	stride := (int(width) + 7) / 8
	if *total += stride * int(height); *total > lim.MaxBytes {
		return Page{}, false, errorf(ErrTooLarge, "over %d bytes of bitmaps", lim.MaxBytes)
	}
	b := NewBitmap(int(width), int(height))
	order, sf := ccitt.MSB, ccitt.Group3
	if fill == 2 {
		order = ccitt.LSB
	}
	if compression == compressionG4 {
		sf = ccitt.Group4
	}
	for s := 0; s < nStrips; s++ {
		y := s * int(rps)
		rows := min(int(rps), int(height)-y)
		start, end := int64(offsets[s]), int64(offsets[s])+int64(counts[s])
		if end > int64(len(t.data)) {
			return Page{}, false, errorf(ErrMalformed, "strip %d past the end of the file", s+1)
		}
		strip := t.data[start:end]
		if sf == ccitt.Group3 {
			sb := &Bitmap{Width: b.Width, Height: rows, Stride: stride, Pix: b.Pix[y*stride : (y+rows)*stride]}
			if err := DecodeMH(sb, strip, fill == 2); err != nil {
				return Page{}, false, fmt.Errorf("%w (strip %d)", err, s+1)
			}
			continue
		}
		r := ccitt.NewReader(bytes.NewReader(strip), order, sf, int(width), rows, nil)
		if _, err := io.ReadFull(r, b.Pix[y*stride:(y+rows)*stride]); err != nil {
			return Page{}, false, errorf(ErrMalformed, "strip %d: CCITT data: %v", s+1, err)
		}
		// x/image/ccitt gives white as 1; here black is 1, and the bits
		// past the width are 0.
		pad := byte(0xFF << (uint(stride*8-int(width)) & 7))
		for yy := y; yy < y+rows; yy++ {
			row := b.Row(yy)
			for i := range row {
				row[i] = ^row[i]
			}
			row[stride-1] &= pad
		}
	}
	return Page{Bitmap: b, XDPI: t.resolution(fields, tagXResolution), YDPI: t.resolution(fields, tagYResolution)}, false, nil
}

// resolution returns a resolution tag in pixels per inch, 0 if absent.
func (t *tiff) resolution(fields map[uint16]entry, tag uint16) float64 {
	e, ok := fields[tag]
	if !ok || e.typ != typeRational || e.count != 1 {
		return 0
	}
	num, ok1 := t.u32(e.at)
	den, ok2 := t.u32(e.at + 4)
	if !ok1 || !ok2 || den == 0 {
		return 0
	}
	v := float64(num) / float64(den)
	if u, ok := fields[tagResolutionUnit]; ok {
		if vals, err := t.values(u, 1); err == nil && len(vals) == 1 && vals[0] == resolutionUnitCm {
			v *= 2.54
		}
	}
	return math.Round(v*100) / 100
}
