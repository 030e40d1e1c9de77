package tiffpages

import (
	"encoding/binary"
	"errors"
	"testing"
)

// tiff builds a little-endian TIFF with n minimal directories.
func tiff(n int) []byte {
	b := []byte{'I', 'I', 42, 0, 0, 0, 0, 0}
	if n == 0 {
		return b
	}
	binary.LittleEndian.PutUint32(b[4:], 8)
	for i := 0; i < n; i++ {
		d := make([]byte, 2+2*12+4)
		binary.LittleEndian.PutUint16(d, 2)
		binary.LittleEndian.PutUint16(d[2:], 256)
		binary.LittleEndian.PutUint16(d[14:], 257)
		if i < n-1 {
			binary.LittleEndian.PutUint32(d[26:], uint32(len(b)+len(d)))
		}
		b = append(b, d...)
	}
	return b
}

func TestCount(t *testing.T) {
	if n, err := Count(tiff(3), 100); n != 3 || err != nil {
		t.Fatalf("3 pages: %d %v", n, err)
	}
	if _, err := Count(tiff(0), 100); !errors.Is(err, ErrNoPages) {
		t.Fatalf("0 pages: %v", err)
	}
	if _, err := Count(tiff(200), 100); !errors.Is(err, ErrTooManyPages) {
		t.Fatalf("200 pages: %v", err)
	}
	b := tiff(2)
	if _, err := Count(b[:len(b)-10], 100); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("truncated: %v", err)
	}
	loop := tiff(1)
	binary.LittleEndian.PutUint32(loop[len(loop)-4:], 8)
	if _, err := Count(loop, 100); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("loop: %v", err)
	}
	if _, err := Count([]byte("GIF89a.."), 100); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("gif: %v", err)
	}
}

// FuzzCount: any input gives a count in 1..max or an error, never a panic.
func FuzzCount(f *testing.F) {
	f.Add(tiff(1))
	f.Add(tiff(3))
	f.Add([]byte("MM\x00\x2a\x00\x00\x00\x08"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := Count(b, 5)
		if err == nil && (n < 1 || n > 5) {
			t.Fatalf("count %d without error", n)
		}
	})
}
