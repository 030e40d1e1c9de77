package gsm

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"unicode/utf16"
)

// join checks the invariants of a split and returns the decoded text.
func join(t *testing.T, segs []Segment, c Coding, ref uint8) string {
	t.Helper()
	single, part := MaxSingleSeptets, MaxPartSeptets
	if c == CodingUCS2 {
		single, part = MaxSingleUCS2, MaxPartUCS2
	}
	var all []byte
	for i, s := range segs {
		if int(s.Seq) != i+1 || int(s.Total) != len(segs) {
			t.Fatalf("segment %d: seq %d total %d", i, s.Seq, s.Total)
		}
		if len(segs) == 1 {
			if s.UDH != nil || s.Units > single {
				t.Fatalf("single segment: UDH %x, %d units", s.UDH, s.Units)
			}
		} else {
			want := []byte{5, 0, 3, ref, byte(len(segs)), byte(i + 1)}
			if !bytes.Equal(s.UDH, want) || s.Units > part {
				t.Fatalf("segment %d: UDH %x, %d units", i, s.UDH, s.Units)
			}
			if !bytes.Equal(s.ShortMessage(), append(append([]byte{}, want...), s.Payload...)) {
				t.Fatalf("ShortMessage")
			}
		}
		switch c {
		case CodingGSM7:
			if s.Units != len(s.Payload) {
				t.Fatalf("segment %d: %d units, %d octets", i, s.Units, len(s.Payload))
			}
			if _, err := DecodeSeptets(s.Payload); err != nil {
				t.Fatal(err)
			}
			if n := len(s.Payload); n > 0 && s.Payload[n-1] == esc {
				t.Fatalf("segment %d ends inside an escape sequence", i)
			}
		case CodingUCS2:
			if s.Units*2 != len(s.Payload) {
				t.Fatalf("segment %d: %d units, %d octets", i, s.Units, len(s.Payload))
			}
			// Each part must decode on its own without replacement
			// characters: surrogate pairs intact.
			txt, err := DecodeUCS2(s.Payload)
			if err != nil || strings.ContainsRune(txt, '\uFFFD') {
				t.Fatalf("segment %d splits a surrogate pair: %q %v", i, txt, err)
			}
		}
		all = append(all, s.Payload...)
	}
	txt, err := Decode(c, all)
	if err != nil {
		t.Fatal(err)
	}
	return txt
}

func TestSplitGSM7Long(t *testing.T) {
	text := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 9)[:400]
	segs, c := Split(text, 0x42)
	if c != CodingGSM7 || len(segs) != 3 {
		t.Fatalf("coding %s, %d parts", c, len(segs))
	}
	if segs[0].Units != 153 || segs[1].Units != 153 || segs[2].Units != 94 {
		t.Fatalf("units %d %d %d", segs[0].Units, segs[1].Units, segs[2].Units)
	}
	if got := join(t, segs, c, 0x42); got != text {
		t.Fatalf("joined text differs:\n%q\n%q", got, text)
	}
}

func TestSplitLimits(t *testing.T) {
	tests := []struct {
		text  string
		c     Coding
		parts int
	}{
		{"", CodingGSM7, 1},
		{strings.Repeat("a", 160), CodingGSM7, 1},
		{strings.Repeat("a", 161), CodingGSM7, 2},
		{strings.Repeat("€", 80), CodingGSM7, 1}, // 160 septets
		{strings.Repeat("€", 81), CodingGSM7, 2},
		{strings.Repeat("a", 153*2), CodingGSM7, 2},
		{strings.Repeat("a", 153*2+1), CodingGSM7, 3},
		{strings.Repeat("ж", 70), CodingUCS2, 1},
		{strings.Repeat("ж", 71), CodingUCS2, 2},
		{strings.Repeat("😀", 35), CodingUCS2, 1}, // 70 code units
		{strings.Repeat("😀", 36), CodingUCS2, 2},
		{strings.Repeat("ж", 67*3), CodingUCS2, 3},
		{strings.Repeat("a", 153*255), CodingGSM7, 255},
	}
	for _, tc := range tests {
		segs, c := Split(tc.text, 7)
		if c != tc.c || len(segs) != tc.parts {
			t.Errorf("len %d: coding %s, %d parts; want %s %d", len(tc.text), c, len(segs), tc.c, tc.parts)
			continue
		}
		if got := join(t, segs, c, 7); got != tc.text {
			t.Errorf("len %d: text differs", len(tc.text))
		}
	}
	if segs, _ := Split(strings.Repeat("a", 153*255+1), 1); segs != nil {
		t.Error("256 parts should fail")
	}
	if _, _, err := SplitN(strings.Repeat("a", 161), 1, 1); !errors.Is(err, ErrTooManyParts) {
		t.Errorf("SplitN limit: %v", err)
	}
	if _, _, err := SplitN("a", 1, 0); !errors.Is(err, ErrTooManyParts) {
		t.Errorf("SplitN 0: %v", err)
	}
}

func TestSplitEscapeBoundary(t *testing.T) {
	// 152 septets, then € (ESC 0x65) straddling septets 153-154.
	text := strings.Repeat("a", 152) + "€" + strings.Repeat("b", 20)
	segs, c := Split(text, 1)
	if c != CodingGSM7 || len(segs) != 2 {
		t.Fatalf("%s %d parts", c, len(segs))
	}
	if segs[0].Units != 152 || !bytes.Equal(segs[1].Payload[:2], []byte{esc, 0x65}) {
		t.Fatalf("escape split: part 1 has %d septets, part 2 starts %x", segs[0].Units, segs[1].Payload[:2])
	}
	if join(t, segs, c, 1) != text {
		t.Fatal("text differs")
	}
	// Only extension characters: every part must hold whole pairs.
	text = strings.Repeat("{", 200)
	segs, c = Split(text, 2)
	if len(segs) != 3 || segs[0].Units != 152 || join(t, segs, c, 2) != text {
		t.Fatalf("%d parts, first %d septets", len(segs), segs[0].Units)
	}
}

func TestSplitUCS2Emoji(t *testing.T) {
	text := strings.Repeat("Hello 😀 мир! ", 20)
	segs, c := Split(text, 9)
	if c != CodingUCS2 {
		t.Fatal(c)
	}
	units := 0
	for _, s := range segs {
		units += s.Units
	}
	if units != len(utf16.Encode([]rune(text))) {
		t.Fatalf("%d units", units)
	}
	if join(t, segs, c, 9) != text {
		t.Fatal("text differs")
	}
	// Surrogate pair straddling code units 67-68.
	text = strings.Repeat("ж", 66) + "😀" + "end"
	segs, c = Split(text, 3)
	if len(segs) != 2 || segs[0].Units != 66 || segs[1].Units != 5 {
		t.Fatalf("%d parts, units %d", len(segs), segs[0].Units)
	}
	if join(t, segs, c, 3) != text {
		t.Fatal("text differs")
	}
}
