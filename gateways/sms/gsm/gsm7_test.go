package gsm

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func TestTablesConsistent(t *testing.T) {
	seen := map[rune]bool{}
	for c := range byte(128) {
		if c == esc {
			continue
		}
		r := basic[c]
		if seen[r] {
			t.Errorf("rune %q twice in basic table", r)
		}
		seen[r] = true
		code, ext, ok := lookup(r)
		if !ok || ext || code != c {
			t.Errorf("lookup(%q) = %#x %v %v, want %#x", r, code, ext, ok, c)
		}
	}
	ext := "\f^{}\\[~]|€"
	for _, r := range ext {
		code, isExt, ok := lookup(r)
		if !ok || !isExt || extension(code) != r {
			t.Errorf("extension %q: code %#x ext %v ok %v", r, code, isExt, ok)
		}
	}
	if len(seen) != 127 {
		t.Errorf("%d basic characters", len(seen))
	}
}

func TestEncodable(t *testing.T) {
	for s, want := range map[string]bool{
		"":                   true,
		"Hello, world!":      true,
		"@£$¥èéùìòÇ\nØø\rÅå": true,
		"ΔΦΓΛΩΠΨΣΘΞ ÆæßÉ":    true,
		"{[~]}|^€\\\f":       true,
		"ç":                  false, // only capital Ç is in the table
		"😀":                  false,
		"Привет":             false,
		"`":                  false,
		"\t":                 false,
		"\xff":               false, // invalid UTF-8
	} {
		if got := Encodable(s); got != want {
			t.Errorf("Encodable(%q) = %v", s, got)
		}
	}
	if n, _ := SeptetLen("a€b{"); n != 6 {
		t.Errorf("SeptetLen = %d, want 6", n)
	}
}

func TestSeptetVectors(t *testing.T) {
	tests := []struct {
		text string
		hex  string
	}{
		{"Hello", "48656c6c6f"},
		{"@£$", "000102"},
		{"€", "1b65"},
		{"[x]", "1b3c781b3e"},
		{"ÄÖÑÜ§¿äöñüà", "5b5c5d5e5f607b7c7d7e7f"},
		{"\f", "1b0a"},
	}
	for _, tc := range tests {
		got, err := EncodeSeptets(tc.text)
		if err != nil || hex.EncodeToString(got) != tc.hex {
			t.Errorf("EncodeSeptets(%q) = %x, %v; want %s", tc.text, got, err, tc.hex)
		}
		back, err := DecodeSeptets(got)
		if err != nil || back != tc.text {
			t.Errorf("DecodeSeptets(%x) = %q, %v", got, back, err)
		}
	}
}

func TestSeptetErrors(t *testing.T) {
	if _, err := EncodeSeptets("ok 😀"); !errors.Is(err, ErrNotEncodable) || !strings.HasPrefix(err.Error(), "gsm: ") {
		t.Errorf("encode emoji: %v", err)
	}
	dst, err := AppendSeptets([]byte{1, 2}, "a😀")
	if err == nil || !bytes.Equal(dst, []byte{1, 2}) {
		t.Errorf("AppendSeptets on error: %x %v", dst, err)
	}
	if _, err := DecodeSeptets([]byte{0x41, 0x80}); !errors.Is(err, ErrInvalidSeptet) {
		t.Errorf("decode 0x80: %v", err)
	}
	if _, err := DecodeSeptets([]byte{esc, 0xFF}); !errors.Is(err, ErrInvalidSeptet) {
		t.Errorf("decode ESC 0xFF: %v", err)
	}
	// Lenient receiver rules of TS 23.038 §6.2.1.1.
	for in, want := range map[string]string{
		"\x1b":         " ",  // trailing ESC
		"\x1b\x1bA":    " A", // ESC ESC: space
		"\x1b\x41":     "A",  // not in extension table: basic character
		"\x1b\x0d":     "\r", // CR2 shown as CR
		"a\x1b\x65b":   "a€b",
		"\x00\x11\x24": "@_¤",
	} {
		got, err := DecodeSeptets([]byte(in))
		if err != nil || got != want {
			t.Errorf("DecodeSeptets(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestPack(t *testing.T) {
	// "hellohello", the classic TS 23.038 packing example.
	s, _ := EncodeSeptets("hellohello")
	p := Pack(s, 0)
	if hex.EncodeToString(p) != "e8329bfd4697d9ec37" {
		t.Fatalf("Pack = %x", p)
	}
	u, err := Unpack(p, 0, len(s))
	if err != nil || !bytes.Equal(u, s) {
		t.Fatalf("Unpack = %x %v", u, err)
	}

	// 7 septets leave 7 spare bits: padded with CR (§6.1.2.3.1).
	s7, _ := EncodeSeptets("1234567")
	p7 := Pack(s7, 0)
	if len(p7) != 7 || p7[6]>>1 != 0x0D {
		t.Fatalf("CR padding: %x", p7)
	}
	all, _ := Unpack(p7, 0, -1)
	if len(all) != 8 || all[7] != 0x0D || !bytes.Equal(all[:7], s7) {
		t.Fatalf("Unpack all = %x", all)
	}

	// After a 6-octet UDH: one fill bit.
	if FillBits(6) != 1 || FillBits(0) != 0 || FillBits(7) != 0 || FillBits(5) != 2 {
		t.Fatal("FillBits")
	}
	for fill := 0; fill <= 6; fill++ {
		for n := range 20 {
			in := make([]byte, n)
			for i := range in {
				in[i] = byte(i*37+fill) & 0x7F
			}
			out, err := Unpack(Pack(in, fill), fill, n)
			if err != nil || !bytes.Equal(out, in) {
				t.Fatalf("fill %d n %d: %x != %x (%v)", fill, n, out, in, err)
			}
		}
	}
	// 153 septets + 1 fill bit + 6 octet UDH = 140 octets.
	if got := 6 + len(Pack(make([]byte, 153), 1)); got != 140 {
		t.Fatalf("153-septet part is %d octets", got)
	}

	if _, err := Unpack([]byte{1, 2}, 0, 3); !errors.Is(err, ErrPacked) {
		t.Fatalf("short: %v", err)
	}
	if _, err := Unpack([]byte{1}, 7, 0); !errors.Is(err, ErrPacked) {
		t.Fatalf("fill 7: %v", err)
	}
	if out, err := Unpack(nil, 3, -1); err != nil || len(out) != 0 {
		t.Fatalf("empty: %v", err)
	}
}
