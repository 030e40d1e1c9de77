// Package faxtiff reads and writes fax images: TIFF-F files (RFC 3949
// profile S, the minimal black-and-white fax profile; TIFF 6.0 section 11
// "CCITT Bilevel Encodings") whose pages are coded by ITU-T T.4
// one-dimensional Modified Huffman (MH, TIFF Compression 3).
//
// Go's golang.org/x/image/ccitt decodes CCITT G3 and G4 but has no encoder,
// so this package has one: EncodeMH writes each line as T.4 §4.1 run
// lengths from its white and black code tables (t4tables.go, as T.4
// prints them), an EOL before every line and an RTC (six EOLs) after the
// last (T.4 §4.1.2, §4.1.4). Write puts pages in a multi-page TIFF with
// the profile S tags. Read decodes fax TIFFs made by anyone within Limits:
// G3 one-dimensional with DecodeMH (which, unlike x/image/ccitt, takes the
// fill bits before EOLs that ImageMagick and fax modems write) and G4
// with x/image/ccitt; G3 two-dimensional (MR) is refused as unsupported.
// PDF writes pages as a PDF whose images are CCITT coded, for recipients
// that show PDF and not TIFF.
//
// The package is pure: no files, no programs. Tests prove the encoder
// against decoders nobody here wrote (x/image/ccitt, libtiff's tiffinfo,
// tiffcp and tiff2pdf, ImageMagick).
package faxtiff
