package faxtiff

import "math/bits"

// DecodeMH decodes T.4 one-dimensional Modified Huffman data of h lines of
// w pixels into b (which must be w × h and white). lsb says the bits are
// packed least significant first (TIFF FillOrder 2). EOLs before and after
// lines are optional and may carry fill bits (any number of 0 bits before
// the EOL's 1, T.4 §4.1.2 and TIFF T4Options bit 2), which x/image/ccitt
// does not take; data after the last line (an RTC) is not read.
func DecodeMH(b *Bitmap, data []byte, lsb bool) error {
	r := mhReader{data: data, lsb: lsb}
	for y := 0; y < b.Height; y++ {
		r.skipEOLs()
		if r.pos >= len(r.data)*8 {
			return errorf(ErrMalformed, "MH data ends at line %d of %d", y+1, b.Height)
		}
		row := b.Row(y)
		isBlack := false
		for x := 0; x < b.Width; isBlack = !isBlack {
			n, ok := r.run(isBlack)
			if !ok {
				return errorf(ErrMalformed, "MH code at bit %d of line %d does not decode", r.pos, y+1)
			}
			if x+n > b.Width {
				return errorf(ErrMalformed, "line %d is longer than %d pixels", y+1, b.Width)
			}
			if isBlack {
				fill(row, x, x+n)
			}
			x += n
		}
	}
	return nil
}

// fill makes pixels [from, to) of row black.
func fill(row []byte, from, to int) {
	for x := from; x < to; {
		if x&7 == 0 && to-x >= 8 {
			row[x>>3] = 0xFF
			x += 8
			continue
		}
		row[x>>3] |= 0x80 >> (x & 7)
		x++
	}
}

type mhReader struct {
	data []byte
	pos  int // in bits
	lsb  bool
}

// bit returns the bit at pos, or -1 past the end.
func (r *mhReader) bit(pos int) int {
	if pos >= len(r.data)*8 {
		return -1
	}
	c := r.data[pos>>3]
	if r.lsb {
		c = bits.Reverse8(c)
	}
	return int(c>>(7-pos&7)) & 1
}

// skipEOLs passes any EOLs (eleven or more 0 bits, then a 1) at pos. No
// code word begins with more than seven 0 bits.
func (r *mhReader) skipEOLs() {
	for {
		z := 0
		for r.bit(r.pos+z) == 0 {
			z++
		}
		if z < 11 || r.bit(r.pos+z) != 1 {
			if z >= 11 { // fill to the end of the data
				r.pos += z
			}
			return
		}
		r.pos += z + 1
	}
}

// run decodes one run length: make-up codes, then a terminating code.
func (r *mhReader) run(isBlack bool) (int, bool) {
	tree := &whiteTree
	if isBlack {
		tree = &blackTree
	}
	total := 0
	for {
		node := 0
		for {
			b := r.bit(r.pos)
			if b < 0 {
				return 0, false
			}
			r.pos++
			node = int(tree.next[node][b])
			if node <= 0 {
				return 0, false
			}
			if v := tree.value[node]; v >= 0 {
				total += int(v)
				if v < 64 {
					return total, true
				}
				break
			}
			if len(tree.next) <= node {
				return 0, false
			}
		}
	}
}

// codeTree is a binary tree of one colour's codes: next[node][bit] is a
// child (0: none), value[node] a run length or -1.
type codeTree struct {
	next  [][2]int16
	value []int16
}

var whiteTree, blackTree = buildTree(whiteTerm, whiteMakeup), buildTree(blackTerm, blackMakeup)

func buildTree(term [64]string, makeup [27]string) codeTree {
	t := codeTree{next: [][2]int16{{}}, value: []int16{-1}}
	add := func(s string, v int) {
		node := 0
		for _, c := range s {
			b := c - '0'
			if t.next[node][b] == 0 {
				t.next = append(t.next, [2]int16{})
				t.value = append(t.value, -1)
				t.next[node][b] = int16(len(t.next) - 1)
			}
			node = int(t.next[node][b])
		}
		t.value[node] = int16(v)
	}
	for i, s := range term {
		add(s, i)
	}
	for i, s := range makeup {
		add(s, 64*(i+1))
	}
	for i, s := range extMakeup {
		add(s, 1792+64*i)
	}
	return t
}
