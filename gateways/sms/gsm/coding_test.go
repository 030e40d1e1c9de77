package gsm

import (
	"encoding/hex"
	"errors"
	"testing"
)

func TestUCS2(t *testing.T) {
	tests := []struct {
		text string
		hex  string
	}{
		{"", ""},
		{"Hi", "00480069"},
		{"Привет", "041f04400438043204350442"},
		{"😀", "d83dde00"},
		{"a😀b", "0061d83dde000062"},
		{"€", "20ac"},
	}
	for _, tc := range tests {
		got := EncodeUCS2(tc.text)
		if hex.EncodeToString(got) != tc.hex {
			t.Errorf("EncodeUCS2(%q) = %x, want %s", tc.text, got, tc.hex)
		}
		if n := UCS2Len(tc.text); n != len(got)/2 {
			t.Errorf("UCS2Len(%q) = %d", tc.text, n)
		}
		back, err := DecodeUCS2(got)
		if err != nil || back != tc.text {
			t.Errorf("DecodeUCS2(%x) = %q, %v", got, back, err)
		}
	}
	for in, want := range map[string]string{
		"d83d0041":     "\uFFFDA", // high surrogate without low
		"de00":         "\uFFFD",  // lone low surrogate
		"d83d":         "\uFFFD",  // high surrogate at the end
		"d83dd83dde00": "\uFFFD😀",
	} {
		b, _ := hex.DecodeString(in)
		got, err := DecodeUCS2(b)
		if err != nil || got != want {
			t.Errorf("DecodeUCS2(%s) = %q, %v; want %q", in, got, err, want)
		}
	}
	if s, err := DecodeUCS2([]byte{0, 'A', 0}); !errors.Is(err, ErrOddLength) || s != "A" {
		t.Errorf("odd length: %q %v", s, err)
	}
	if EncodeUCS2("\xff") == nil || hex.EncodeToString(EncodeUCS2("\xff")) != "fffd" {
		t.Error("invalid UTF-8 should encode as U+FFFD")
	}
}

func TestLatin1(t *testing.T) {
	if s := DecodeLatin1([]byte{'c', 'a', 'f', 0xE9, 0xA3, 0xFF}); s != "café£ÿ" {
		t.Errorf("DecodeLatin1 = %q", s)
	}
	b, err := EncodeLatin1("café£ÿ")
	if err != nil || hex.EncodeToString(b) != "636166e9a3ff" {
		t.Errorf("EncodeLatin1 = %x %v", b, err)
	}
	if _, err := EncodeLatin1("€"); !errors.Is(err, ErrNotLatin1) {
		t.Errorf("EncodeLatin1(€): %v", err)
	}
}

func TestChooseAndDecode(t *testing.T) {
	tests := []struct {
		text  string
		c     Coding
		units int
	}{
		{"hello", CodingGSM7, 5},
		{"price: 5€", CodingGSM7, 10},
		{"ça va", CodingUCS2, 5},
		{"hi 😀", CodingUCS2, 5},
	}
	for _, tc := range tests {
		c, n := Choose(tc.text)
		if c != tc.c || n != tc.units {
			t.Errorf("Choose(%q) = %s %d, want %s %d", tc.text, c, n, tc.c, tc.units)
		}
		b, err := Encode(c, tc.text)
		if err != nil {
			t.Fatal(err)
		}
		s, err := Decode(c, b)
		if err != nil || s != tc.text {
			t.Errorf("Decode(%s) = %q %v", c, s, err)
		}
	}
	if s, err := Decode(CodingASCII, []byte("abc")); err != nil || s != "abc" {
		t.Errorf("ASCII: %q %v", s, err)
	}
	if _, err := Decode(CodingASCII, []byte{0x80}); !errors.Is(err, ErrNotASCII) {
		t.Errorf("ASCII 0x80: %v", err)
	}
	if _, err := Encode(CodingASCII, "é"); !errors.Is(err, ErrNotEncodable) {
		t.Errorf("ASCII é: %v", err)
	}
	if _, err := Decode(CodingBinary, nil); !errors.Is(err, ErrUnsupportedCoding) {
		t.Errorf("binary: %v", err)
	}
	if _, err := Encode(Coding(0xF5), ""); !errors.Is(err, ErrUnsupportedCoding) {
		t.Errorf("0xF5: %v", err)
	}
	if CodingUCS2.String() != "UCS2" || Coding(0x42).String() != "data_coding(0x42)" {
		t.Error("Coding.String")
	}
}
