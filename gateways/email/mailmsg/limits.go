package mailmsg

import (
	"errors"
	"fmt"
	"io"
)

// Default limits, used for every Limits field that is zero or negative.
const (
	DefaultMaxBytes       int64 = 32 << 20 // whole message
	DefaultMaxDepth             = 10       // multipart nesting levels
	DefaultMaxParts             = 100      // MIME parts in the whole tree
	DefaultMaxHeaderBytes       = 256 << 10
	DefaultMaxHeaders           = 1000
	// HardMaxDepth caps Limits.MaxDepth whatever the caller asks for.
	HardMaxDepth = 100
)

// Limits bound the resources Extract and ParseDSN spend on one message. A
// zero or negative field selects its default; there is no "unlimited".
type Limits struct {
	// MaxBytes is the largest accepted message, header included. At most
	// MaxBytes+1 bytes are ever read from the input.
	MaxBytes int64
	// MaxDepth is the deepest accepted multipart nesting: the message's
	// top-level entity is at depth 0, its parts at depth 1, and so on.
	MaxDepth int
	// MaxParts is the largest accepted number of MIME parts (multipart
	// containers included, the top-level entity excluded).
	MaxParts int
	// MaxHeaderBytes bounds each header block (the message's and each
	// part's), folding included.
	MaxHeaderBytes int
	// MaxHeaders bounds the number of fields in each header block.
	MaxHeaders int
}

// DefaultLimits returns the limits used for zero fields.
func DefaultLimits() Limits {
	return Limits{}.withDefaults()
}

func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	if l.MaxDepth > HardMaxDepth {
		l.MaxDepth = HardMaxDepth
	}
	if l.MaxParts <= 0 {
		l.MaxParts = DefaultMaxParts
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if l.MaxHeaders <= 0 {
		l.MaxHeaders = DefaultMaxHeaders
	}
	return l
}

// readLimited reads all of r but refuses, with ErrTooLarge, anything longer
// than max bytes; it never reads more than max+1 bytes.
func readLimited(r io.Reader, max int64) ([]byte, error) {
	lr := &io.LimitedReader{R: r, N: max + 1}
	var buf []byte
	chunk := int64(32 << 10)
	for {
		if int64(len(buf)) > max {
			return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, max)
		}
		if len(buf) == cap(buf) {
			grow := int64(cap(buf))
			if grow < chunk {
				grow = chunk
			}
			if room := max + 1 - int64(len(buf)); grow > room {
				grow = room
			}
			nb := make([]byte, len(buf), int64(len(buf))+grow)
			copy(nb, buf)
			buf = nb
		}
		n, err := lr.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			if int64(len(buf)) > max {
				return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, max)
			}
			return buf, nil
		}
		if err != nil {
			return nil, fmt.Errorf("mailmsg: read message: %w", err)
		}
	}
}
