package pdu

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

func TestReaderStream(t *testing.T) {
	var stream []byte
	for _, p := range samplePDUs() {
		stream = append(stream, frameOf(t, p)...)
	}
	unknown := mustHex(t, "00000014 00000099 00000000 0000000B DEADBEEF")
	malformed := mustHex(t, "00000011 00000015 00000000 0000000C 00")
	stream = append(stream, unknown...)
	stream = append(stream, malformed...)
	stream = append(stream, frameOf(t, &EnquireLink{Header: hdr(13)})...)

	// One octet per Read call exercises io.ReadFull across short reads.
	r := NewReader(iotest.OneByteReader(bytes.NewReader(stream)), 0)
	for i, want := range samplePDUs() {
		p, err := r.ReadPDU()
		if err != nil {
			t.Fatalf("pdu %d: %v", i, err)
		}
		if p.CommandID() != want.CommandID() || p.Hdr().Sequence != want.Hdr().Sequence {
			t.Fatalf("pdu %d: got %s seq %d", i, p.CommandID(), p.Hdr().Sequence)
		}
	}
	var pe *Error
	if _, err := r.ReadPDU(); !errors.As(err, &pe) || !errors.Is(err, ErrUnknownCommand) || pe.Fatal() ||
		pe.Header.Sequence != 11 || pe.Status != ESME_RINVCMDID {
		t.Fatalf("unknown command: %v", err)
	}
	if _, err := r.ReadPDU(); !errors.As(err, &pe) || !errors.Is(err, ErrTrailingBytes) || pe.Fatal() {
		t.Fatalf("malformed: %v", err)
	}
	if p, err := r.ReadPDU(); err != nil || p.Hdr().Sequence != 13 {
		t.Fatalf("after errors: %v %v", p, err)
	}
	if _, err := r.ReadPDU(); err != io.EOF {
		t.Fatalf("end of stream: %v", err)
	}
}

func TestReaderErrors(t *testing.T) {
	big := mustHex(t, "00010011 00000004 00000000 00000009")
	tests := []struct {
		name    string
		in      []byte
		max     uint32
		want    error
		seq     uint32
		wantEOF bool
	}{
		{"command_length 12", mustHex(t, "0000000C 00000015 00000000 00000001"), 0, ErrCommandLengthTooSmall, 0, false},
		{"command_length 0", mustHex(t, "00000000"), 0, ErrCommandLengthTooSmall, 0, false},
		{"above default max", big, 0, ErrCommandLengthTooLarge, 9, false},
		{"above custom max", mustHex(t, "00000100 00000004 00000000 00000003"), 255, ErrCommandLengthTooLarge, 3, false},
		{"truncated length", []byte{0, 0}, 0, ErrTruncated, 0, true},
		{"truncated header", mustHex(t, "00000010 00000015 0000"), 0, ErrTruncated, 0, true},
		{"truncated body", mustHex(t, "00000020 00000004 00000000 00000004 0000"), 0, ErrTruncated, 4, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewReader(bytes.NewReader(tc.in), tc.max).ReadPDU()
			var pe *Error
			if !errors.Is(err, tc.want) || !errors.As(err, &pe) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if !pe.Fatal() || pe.Status != ESME_RINVCMDLEN || pe.Header.Sequence != tc.seq {
				t.Fatalf("fatal %v status %s seq %d", pe.Fatal(), pe.Status, pe.Header.Sequence)
			}
			if errors.Is(err, io.ErrUnexpectedEOF) != tc.wantEOF {
				t.Fatalf("io.ErrUnexpectedEOF wrapped = %v", !tc.wantEOF)
			}
			if _, ok := pe.Response().(*GenericNack); !ok {
				t.Fatalf("response %T", pe.Response())
			}
		})
	}

	// A frame exactly at the limit is accepted.
	f := frameOf(t, &SubmitSM{Header: hdr(1)})
	if _, err := NewReader(bytes.NewReader(f), uint32(len(f))).ReadPDU(); err != nil {
		t.Fatal(err)
	}
	if r := NewReader(nil, 3); r.max != HeaderLen {
		t.Fatalf("max %d", r.max)
	}

	boom := errors.New("boom")
	_, err := NewReader(iotest.ErrReader(boom), 0).ReadFrame()
	var pe *Error
	if !errors.Is(err, boom) || errors.As(err, &pe) {
		t.Fatalf("transport error: %v", err)
	}
}
