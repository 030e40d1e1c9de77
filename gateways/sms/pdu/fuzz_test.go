package pdu

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

// FuzzDecode checks that Decode never panics, that every failure is an
// *Error, that whatever decodes also encodes, and that decode→encode→decode
// is stable. The Reader must agree with Decode on the same octets.
func FuzzDecode(f *testing.F) {
	for _, p := range samplePDUs() {
		b, err := Marshal(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		p, err := Decode(frame)
		fromReader, rerr := NewReader(bytes.NewReader(frame), 0).ReadPDU()
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %T is not *Error: %v", err, err)
			}
			_ = pe.Response()
			if p != nil {
				t.Fatalf("PDU returned with error")
			}
			if rerr == nil && uint64(len(frame)) <= DefaultMaxLength {
				// Decode rejected it but the Reader accepted a prefix:
				// only possible when the input holds more than one frame.
				if fromReader.Hdr().Length == uint32(len(frame)) {
					t.Fatalf("Reader accepted what Decode rejected: %v", err)
				}
			}
			return
		}
		if rerr != nil && len(frame) <= DefaultMaxLength {
			t.Fatalf("Decode accepted, Reader failed: %v", rerr)
		}
		enc, err := Marshal(p)
		if err != nil {
			t.Fatalf("decoded PDU does not encode: %v\n%+v", err, p)
		}
		p2, err := Decode(enc)
		if err != nil {
			t.Fatalf("re-decode: %v\n%x", err, enc)
		}
		// command_length may shrink: an error response's empty body is
		// omitted on encode.
		p.Hdr().Length, p2.Hdr().Length = 0, 0
		if !reflect.DeepEqual(p, p2) {
			t.Fatalf("decode→encode→decode differs:\n%+v\n%+v", p, p2)
		}
		enc2, err := Marshal(p2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not stable: %v\n%x\n%x", err, enc, enc2)
		}
	})
}
