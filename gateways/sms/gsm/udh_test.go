package gsm

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseUDH(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		concat  Concat
		ies     int
		payload string
		err     error
	}{
		{"concat 8-bit", "050003420302" + "6869", Concat{Ref: 0x42, Total: 3, Seq: 2}, 1, "6869", nil},
		{"concat 16-bit", "060804beef0505" + "00", Concat{Ref: 0xBEEF, Total: 5, Seq: 5, Wide: true}, 1, "00", nil},
		{"ports then concat", "0b0504158200000003010201" + "41", Concat{Ref: 1, Total: 2, Seq: 1}, 2, "41", nil},
		{"empty UDH", "00" + "41", Concat{}, 0, "41", nil},
		{"no payload", "050003010101", Concat{Ref: 1, Total: 1, Seq: 1}, 1, "", nil},
		{"last concat wins", "0a000301020100030203025a", Concat{Ref: 2, Total: 3, Seq: 2}, 2, "5a", nil},
		{"empty", "", Concat{}, 0, "", ErrNoUDH},
		{"UDHL beyond message", "0500030102", Concat{}, 0, "", ErrUDHLength},
		{"IE length overflow", "0400050102", Concat{}, 0, "", ErrIEOverflow},
		{"IE data cut", "0400030101" + "05", Concat{}, 0, "", ErrIEOverflow},
		{"IE header cut", "0100" + "41", Concat{}, 0, "", ErrIEOverflow},
		{"total 0", "050003010001" + "41", Concat{}, 1, "41", ErrBadConcat},
		{"seq 0", "050003010200" + "41", Concat{}, 1, "41", ErrBadConcat},
		{"seq > total", "050003010203" + "41", Concat{}, 1, "41", ErrBadConcat},
		{"concat IE too short", "0400020102" + "41", Concat{}, 1, "41", ErrBadConcat},
		{"16-bit IE too short", "050803010203" + "41", Concat{}, 1, "41", ErrBadConcat},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, payload, err := ParseUDH(unhex(t, tc.in))
			if !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) {
				t.Fatalf("error %v, want %v", err, tc.err)
			}
			if err != nil && !errors.Is(err, ErrBadConcat) {
				return
			}
			if u.Concat != tc.concat || len(u.IEs) != tc.ies || hex.EncodeToString(payload) != tc.payload {
				t.Fatalf("got %+v payload %x", u, payload)
			}
		})
	}
}

func TestConcatUDH(t *testing.T) {
	if got := (Concat{Ref: 0x42, Total: 3, Seq: 1}).AppendUDH(nil); !bytes.Equal(got, unhex(t, "050003420301")) {
		t.Errorf("8-bit: %x", got)
	}
	if got := (Concat{Ref: 0x1234, Total: 3, Seq: 1}).AppendUDH(nil); !bytes.Equal(got, unhex(t, "06080412340301")) {
		t.Errorf("16-bit: %x", got)
	}
	for _, c := range []Concat{{Ref: 7, Total: 2, Seq: 2}, {Ref: 7, Total: 2, Seq: 2, Wide: true}, {Ref: 300, Total: 9, Seq: 4, Wide: true}} {
		u, payload, err := ParseUDH(c.AppendUDH(nil))
		if err != nil || u.Concat != c || len(payload) != 0 {
			t.Errorf("%+v: got %+v %v", c, u.Concat, err)
		}
	}
}
