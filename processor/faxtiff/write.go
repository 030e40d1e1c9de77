package faxtiff

import (
	"encoding/binary"
	"io"
)

// Fax resolutions (T.4 §2.2): 204 pixels per inch across (8 pixels/mm),
// and 98 (standard, 3.85 lines/mm) or 196 (fine, 7.7 lines/mm) lines per
// inch down, as RFC 3949 §4.2 writes them in TIFF.
const (
	XDPI       = 204
	NormalYDPI = 98
	FineYDPI   = 196
	// Width is the width of a profile S page, A4 and Letter alike
	// (T.4 §2.2: 1728 pixels on 215 mm).
	Width = 1728
)

// Page is one fax page.
type Page struct {
	*Bitmap
	// XDPI and YDPI are the resolution; Write takes XDPI 204 (0 means 204)
	// and YDPI 98 or 196. Read reports what the file says, in pixels per
	// inch (0: not stated).
	XDPI, YDPI float64
}

// TIFF tags and values written (TIFF 6.0 §8, §11; RFC 3949 §4.2.1).
const (
	tagNewSubfileType   = 254
	tagImageWidth       = 256
	tagImageLength      = 257
	tagBitsPerSample    = 258
	tagCompression      = 259
	tagPhotometric      = 262
	tagFillOrder        = 266
	tagStripOffsets     = 273
	tagSamplesPerPixel  = 277
	tagRowsPerStrip     = 278
	tagStripByteCounts  = 279
	tagXResolution      = 282
	tagYResolution      = 283
	tagT4Options        = 292
	tagT6Options        = 293
	tagResolutionUnit   = 296
	tagPageNumber       = 297
	tagCleanFaxData     = 327
	typeShort           = 3
	typeLong            = 4
	typeRational        = 5
	subfilePage         = 2 // NewSubfileType bit 1: one page of a multi-page image
	compressionG3       = 3
	compressionG4       = 4
	photometricWhite0   = 0 // WhiteIsZero
	resolutionUnitInch  = 2
	resolutionUnitCm    = 3
	ifdEntrySize        = 12
	profileSEntries     = 17
	profileSIFDSize     = 2 + profileSEntries*ifdEntrySize + 4
	profileSIFDWithRats = profileSIFDSize + 16
)

// Write writes pages as one TIFF-F file of RFC 3949 profile S (§4.2):
// little-endian, each page one strip coded by EncodeMH (Compression 3,
// T4Options 0: one-dimensional, no fill bits), FillOrder 1, WhiteIsZero,
// 204 × 98 or 204 × 196 dpi, NewSubfileType "page", PageNumber n/m
// (0-based, as TIFF counts), CleanFaxData 0. Pages must be Width pixels
// wide (ErrProfile).
func Write(w io.Writer, pages []Page) error {
	out, err := Encode(pages)
	if err != nil {
		return err
	}
	_, err = w.Write(out)
	return err
}

// Encode returns pages as Write writes them.
func Encode(pages []Page) ([]byte, error) {
	if len(pages) == 0 || len(pages) > 0xFFFF {
		return nil, errorf(ErrProfile, "%d pages", len(pages))
	}
	strips := make([][]byte, len(pages))
	size := 8
	for i, p := range pages {
		if err := p.Bitmap.valid(); err != nil {
			return nil, errorf(err, "page %d", i+1)
		}
		if p.Width != Width || (p.XDPI != 0 && p.XDPI != XDPI) || (p.YDPI != NormalYDPI && p.YDPI != FineYDPI) {
			return nil, errorf(ErrProfile, "page %d is %d pixels wide at %g × %g dpi (want %d at %d × %d or %d)",
				i+1, p.Width, p.XDPI, p.YDPI, Width, XDPI, NormalYDPI, FineYDPI)
		}
		s, err := EncodeMH(p.Bitmap)
		if err != nil {
			return nil, err
		}
		strips[i] = s
		size += len(s) + 1 + profileSIFDWithRats
	}
	le := binary.LittleEndian
	buf := make([]byte, 8, size)
	copy(buf, "II*\x00")
	next := 4 // where the offset of the next IFD goes
	for i, p := range pages {
		stripAt := len(buf)
		buf = append(buf, strips[i]...)
		if len(buf)%2 == 1 { // IFDs begin on a word boundary (TIFF 6.0 §2)
			buf = append(buf, 0)
		}
		ifd := len(buf)
		le.PutUint32(buf[next:], uint32(ifd))
		rats := ifd + profileSIFDSize
		entries := []struct {
			tag, typ uint16
			count    uint32
			value    uint32
		}{
			{tagNewSubfileType, typeLong, 1, subfilePage},
			{tagImageWidth, typeLong, 1, uint32(p.Width)},
			{tagImageLength, typeLong, 1, uint32(p.Height)},
			{tagBitsPerSample, typeShort, 1, 1},
			{tagCompression, typeShort, 1, compressionG3},
			{tagPhotometric, typeShort, 1, photometricWhite0},
			{tagFillOrder, typeShort, 1, 1},
			{tagStripOffsets, typeLong, 1, uint32(stripAt)},
			{tagSamplesPerPixel, typeShort, 1, 1},
			{tagRowsPerStrip, typeLong, 1, uint32(p.Height)},
			{tagStripByteCounts, typeLong, 1, uint32(len(strips[i]))},
			{tagXResolution, typeRational, 1, uint32(rats)},
			{tagYResolution, typeRational, 1, uint32(rats + 8)},
			{tagT4Options, typeLong, 1, 0},
			{tagResolutionUnit, typeShort, 1, resolutionUnitInch},
			{tagPageNumber, typeShort, 2, uint32(i) | uint32(len(pages))<<16},
			{tagCleanFaxData, typeShort, 1, 0},
		}
		buf = le.AppendUint16(buf, uint16(len(entries)))
		for _, e := range entries {
			buf = le.AppendUint16(buf, e.tag)
			buf = le.AppendUint16(buf, e.typ)
			buf = le.AppendUint32(buf, e.count)
			buf = le.AppendUint32(buf, e.value) // SHORTs sit left-justified: little-endian puts them first
		}
		next = len(buf)
		buf = le.AppendUint32(buf, 0)
		buf = le.AppendUint32(buf, XDPI)
		buf = le.AppendUint32(buf, 1)
		buf = le.AppendUint32(buf, uint32(p.YDPI))
		buf = le.AppendUint32(buf, 1)
	}
	return buf, nil
}
