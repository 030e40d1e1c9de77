// Package tiffpages checks the structure of a TIFF file (TIFF 6.0 §2:
// header, chain of image file directories) and counts its pages, as a fax
// gateway must before it takes a fax (RFC 3949 TIFF-F: one page per
// directory). It reads the directories only, not the image data.
package tiffpages

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Errors.
var (
	// ErrCorrupt is a file that is not a well-formed TIFF.
	ErrCorrupt = errors.New("tiffpages: not a valid TIFF")
	// ErrNoPages is a TIFF without an image.
	ErrNoPages = errors.New("tiffpages: the TIFF has no pages")
	// ErrTooManyPages is a TIFF with more pages than allowed.
	ErrTooManyPages = errors.New("tiffpages: too many pages")
)

// Count returns the number of pages of a TIFF, checking that every
// directory lies in the file and has an image width and length. More than
// max pages gives ErrTooManyPages (it stops counting there).
func Count(b []byte, max int) (int, error) {
	if len(b) < 8 {
		return 0, fmt.Errorf("%w: %d bytes", ErrCorrupt, len(b))
	}
	var bo binary.ByteOrder
	switch string(b[:2]) {
	case "II":
		bo = binary.LittleEndian
	case "MM":
		bo = binary.BigEndian
	default:
		return 0, fmt.Errorf("%w: no TIFF byte order mark", ErrCorrupt)
	}
	if bo.Uint16(b[2:]) != 42 {
		return 0, fmt.Errorf("%w: no TIFF magic number", ErrCorrupt)
	}
	off := uint64(bo.Uint32(b[4:]))
	seen := map[uint64]bool{}
	pages := 0
	for off != 0 {
		if off < 8 || off+2 > uint64(len(b)) || seen[off] {
			return 0, fmt.Errorf("%w: directory %d at offset %d is outside the file or loops", ErrCorrupt, pages+1, off)
		}
		seen[off] = true
		n := uint64(bo.Uint16(b[off:]))
		end := off + 2 + 12*n
		if n == 0 || end+4 > uint64(len(b)) {
			return 0, fmt.Errorf("%w: directory %d is truncated", ErrCorrupt, pages+1)
		}
		var width, length bool
		for i := uint64(0); i < n; i++ {
			switch bo.Uint16(b[off+2+12*i:]) {
			case 256:
				width = true
			case 257:
				length = true
			}
		}
		if !width || !length {
			return 0, fmt.Errorf("%w: page %d has no image width or length", ErrCorrupt, pages+1)
		}
		pages++
		if pages > max {
			return pages, fmt.Errorf("%w: more than %d", ErrTooManyPages, max)
		}
		off = uint64(bo.Uint32(b[end:]))
	}
	if pages == 0 {
		return 0, ErrNoPages
	}
	return pages, nil
}
