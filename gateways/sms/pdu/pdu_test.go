package pdu

import (
	"bytes"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func hdr(seq uint32) Header { return Header{Sequence: seq} }

func samplePDUs() []PDU {
	bind := BindFields{SystemID: "uims", Password: "secret", SystemType: "SMPP", InterfaceVersion: InterfaceVersion34, AddrTON: 1, AddrNPI: 1, AddressRange: "^44"}
	var dlrTLVs TLVs
	dlrTLVs.SetReceiptedMessageID("1A2B")
	dlrTLVs.SetMessageState(StateDelivered)
	dlrTLVs.SetNetworkErrorCode(NetworkError{Type: 3, Code: 0x0101})
	var sar TLVs
	sar.SetSAR(SAR{Ref: 0xBEEF, Total: 3, Seq: 2})
	sar.SetUserMessageReference(42)
	sm := MessageFields{
		ServiceType: "CMT", SourceAddrTON: 5, SourceAddrNPI: 0, SourceAddr: "UIMS",
		DestAddrTON: 1, DestAddrNPI: 1, DestinationAddr: "447700900123",
		ESMClass: ESMClassUDHI, ProtocolID: 0, PriorityFlag: 1,
		ScheduleDeliveryTime: "000001000000000R", ValidityPeriod: "",
		RegisteredDelivery: RegisteredDeliveryFinal, DataCoding: 8,
		ShortMessage: []byte{5, 0, 3, 1, 2, 1, 0, 'h', 0, 'i'}, TLVs: sar,
	}
	var payload TLVs
	payload.SetMessagePayload(bytes.Repeat([]byte("x"), 1000))
	return []PDU{
		&GenericNack{Header: Header{Status: ESME_RINVCMDID, Sequence: 7}},
		&BindTransmitter{Header: hdr(1), BindFields: bind},
		&BindReceiver{Header: hdr(2), BindFields: bind},
		&BindTransceiver{Header: hdr(3), BindFields: bind},
		&BindTransmitterResp{Header: hdr(1), BindRespFields: BindRespFields{SystemID: "SMSC", TLVs: TLVs{{Tag: TagSCInterfaceVersion, Value: []byte{0x34}}}}},
		&BindReceiverResp{Header: hdr(2), BindRespFields: BindRespFields{SystemID: "SMSC"}},
		&BindTransceiverResp{Header: Header{Status: ESME_RBINDFAIL, Sequence: 3}},
		&Outbind{Header: hdr(4), SystemID: "SMSC", Password: "pw"},
		&Unbind{Header: hdr(5)},
		&UnbindResp{Header: hdr(5)},
		&EnquireLink{Header: hdr(6)},
		&EnquireLinkResp{Header: hdr(6)},
		&SubmitSM{Header: hdr(8), MessageFields: sm},
		&SubmitSM{Header: hdr(9), MessageFields: MessageFields{TLVs: payload}},
		&SubmitSMResp{Header: hdr(8), RespFields: RespFields{MessageID: "0e999f21-81ef-4974-a414-3de98174e3c7"}},
		&SubmitSMResp{Header: Header{Status: ESME_RTHROTTLED, Sequence: 10}},
		&DeliverSM{Header: hdr(11), MessageFields: MessageFields{
			SourceAddr: "447700900123", DestinationAddr: "UIMS", ESMClass: ESMClassDeliveryReceipt,
			ShortMessage: []byte("id:1A2B sub:001 dlvrd:001 submit date:2401021504 done date:2401021505 stat:DELIVRD err:000 text:hi"),
			TLVs:         dlrTLVs,
		}},
		&DeliverSMResp{Header: hdr(11)},
		&DataSM{Header: hdr(12), ServiceType: "WAP", SourceAddr: strings.Repeat("1", 64), DestinationAddr: "2", DataCoding: 4, TLVs: payload},
		&DataSMResp{Header: hdr(12), MessageID: "abc", TLVs: TLVs{{Tag: TagDeliveryFailureReason, Value: []byte{1}}}},
		&QuerySM{Header: hdr(13), MessageID: "abc", SourceAddrTON: 1, SourceAddrNPI: 1, SourceAddr: "447700900123"},
		&QuerySMResp{Header: hdr(13), MessageID: "abc", FinalDate: "240102150405000+", MessageState: StateDelivered, ErrorCode: 0},
		&CancelSM{Header: hdr(16), MessageID: "0123456789abcdef0123456789abcdef", SourceAddrTON: 1, SourceAddrNPI: 1,
			SourceAddr: "447700900123", DestAddrTON: 1, DestAddrNPI: 1, DestinationAddr: "447700900456"},
		&CancelSMResp{Header: hdr(16)},
		&SubmitMulti{Header: hdr(14), MessageFields: MessageFields{SourceAddrTON: 1, SourceAddrNPI: 1, SourceAddr: "15550100",
			RegisteredDelivery: RegisteredDeliveryFinal, ShortMessage: []byte("hello all")},
			Dests: []DestAddress{{Flag: DestFlagSME, TON: 1, NPI: 1, Addr: "15550101"}, {Flag: DestFlagDL, DLName: "team"},
				{Flag: DestFlagSME, TON: 5, Addr: "nobody"}}},
		&SubmitMultiResp{Header: hdr(14), MessageID: "0123456789abcdef0123456789abcdef",
			Unsuccess: []UnsuccessSME{{TON: 5, Addr: "nobody", Status: ESME_RINVDSTADR}}},
		&SubmitMultiResp{Header: Header{Status: ESME_RINVNUMDESTS, Sequence: 15}},
	}
}

func TestRoundTrip(t *testing.T) {
	seen := map[CommandID]bool{}
	for _, p := range samplePDUs() {
		t.Run(p.CommandID().String(), func(t *testing.T) {
			b, err := Marshal(p)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			got, err := Decode(b)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if got.Hdr().Length != uint32(len(b)) || got.Hdr().ID != p.CommandID() {
				t.Fatalf("header %+v, frame %d octets", *got.Hdr(), len(b))
			}
			want := reflect.New(reflect.TypeOf(p).Elem()).Interface().(PDU)
			if err := Unmarshal(b, want); err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("Decode and Unmarshal differ:\n%+v\n%+v", got, want)
			}
			// Compare with the input, whose Length/ID were not set.
			*got.Hdr() = Header{Status: got.Hdr().Status, Sequence: got.Hdr().Sequence}
			if !reflect.DeepEqual(normalize(got), normalize(p)) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, p)
			}
			again, err := Marshal(got)
			if err != nil || !bytes.Equal(again, b) {
				t.Fatalf("re-encode differs: %v\n%x\n%x", err, again, b)
			}
		})
		seen[p.CommandID()] = true
	}
	for _, id := range []CommandID{CmdGenericNack, CmdBindReceiver, CmdBindReceiverResp, CmdBindTransmitter,
		CmdBindTransmitterResp, CmdBindTransceiver, CmdBindTransceiverResp, CmdOutbind, CmdUnbind, CmdUnbindResp,
		CmdEnquireLink, CmdEnquireLinkResp, CmdSubmitSM, CmdSubmitSMResp, CmdDeliverSM, CmdDeliverSMResp,
		CmdDataSM, CmdDataSMResp, CmdQuerySM, CmdQuerySMResp, CmdCancelSM, CmdCancelSMResp,
		CmdSubmitMulti, CmdSubmitMultiResp} {
		if !seen[id] {
			t.Errorf("no round-trip case for %s", id)
		}
		if p := New(id); p == nil || p.CommandID() != id {
			t.Errorf("New(%s) = %v", id, p)
		}
	}
}

// normalize makes empty byte slices nil so that a decoded empty
// short_message equals an unset one.
func normalize(p PDU) PDU {
	switch m := p.(type) {
	case *SubmitSM:
		c := *m
		if len(c.ShortMessage) == 0 {
			c.ShortMessage = nil
		}
		return &c
	case *DeliverSM:
		c := *m
		if len(c.ShortMessage) == 0 {
			c.ShortMessage = nil
		}
		return &c
	}
	return p
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBindTransceiverVector checks the §4.1.5 layout octet by octet.
func TestBindTransceiverVector(t *testing.T) {
	// 16 header + "uims\0" 5 + "secret\0" 7 + "SMPP\0" 5 + 3 + "^44\0" 4 = 40.
	want := mustHex(t, `
		00000028 00000009 00000000 00000001
		75 69 6D 73 00
		73 65 63 72 65 74 00
		53 4D 50 50 00
		34
		01
		01
		5E 34 34 00
	`)
	p := &BindTransceiver{Header: hdr(1), BindFields: BindFields{
		SystemID: "uims", Password: "secret", SystemType: "SMPP",
		InterfaceVersion: 0x34, AddrTON: 1, AddrNPI: 1, AddressRange: "^44",
	}}
	got, err := Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("encoding\n got %x\nwant %x", got, want)
	}
	d, err := Decode(want)
	if err != nil {
		t.Fatal(err)
	}
	b := d.(*BindTransceiver)
	if b.SystemID != "uims" || b.Password != "secret" || b.SystemType != "SMPP" || b.InterfaceVersion != 0x34 ||
		b.AddrTON != 1 || b.AddrNPI != 1 || b.AddressRange != "^44" || b.Length != 40 || b.Sequence != 1 {
		t.Fatalf("decoded %+v", b)
	}
}

// TestSubmitSMVector checks the §4.4.1 layout octet by octet, with an
// optional parameter (§3.2.1) after short_message.
func TestSubmitSMVector(t *testing.T) {
	// 16 + 1 + 7 + 15 + 3 + 2 + 4 + 6 + 6 = 60.
	frame := mustHex(t, `
		0000003C 00000004 00000000 0000002A
		00
		05 00 55 49 4D 53 00
		01 01 34 34 37 37 30 30 39 30 30 31 32 33 00
		00
		00
		00
		00
		00
		01
		00
		00
		00
		05 48 65 6C 6C 6F
		02 04 0002 0007
	`)
	p := &SubmitSM{Header: hdr(42), MessageFields: MessageFields{
		SourceAddrTON: 5, SourceAddr: "UIMS",
		DestAddrTON: 1, DestAddrNPI: 1, DestinationAddr: "447700900123",
		RegisteredDelivery: 1, ShortMessage: []byte("Hello"),
		TLVs: TLVs{{Tag: TagUserMessageReference, Value: []byte{0, 7}}},
	}}
	got, err := Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(frame) != 60 || !bytes.Equal(got, frame) {
		t.Fatalf("encoding (%d octets)\n got %x\nwant %x", len(frame), got, frame)
	}
	var s SubmitSM
	if err := Unmarshal(frame, &s); err != nil {
		t.Fatal(err)
	}
	if ref, ok := s.TLVs.UserMessageReference(); !ok || ref != 7 {
		t.Fatalf("user_message_reference %d %v", ref, ok)
	}
	if string(s.ShortMessage) != "Hello" || s.SourceAddr != "UIMS" || s.DestinationAddr != "447700900123" || s.Sequence != 42 {
		t.Fatalf("decoded %+v", s)
	}
}

func frameOf(t *testing.T, p PDU) []byte {
	t.Helper()
	b, err := Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeErrors(t *testing.T) {
	submit := frameOf(t, &SubmitSM{Header: hdr(9), MessageFields: MessageFields{SourceAddr: "A", DestinationAddr: "B", ShortMessage: []byte("hello")}})
	// Offset of sm_length: 16 + service_type 1 + 2 + "A\0" 2 + 2 + "B\0" 2 + 3 + 1 + 1 + 4.
	const smLenOff = 16 + 1 + 2 + 2 + 2 + 2 + 3 + 1 + 1 + 4
	if submit[smLenOff] != 5 {
		t.Fatalf("sm_length offset wrong: %x", submit)
	}
	edit := func(b []byte, f func([]byte) []byte) []byte {
		return f(append([]byte(nil), b...))
	}
	setLen := func(b []byte) []byte {
		b[0], b[1], b[2], b[3] = byte(len(b)>>24), byte(len(b)>>16), byte(len(b)>>8), byte(len(b))
		return b
	}
	longSrc := edit(submit, func(b []byte) []byte {
		// Replace source_addr "A" with 25 'A's.
		out := append([]byte(nil), b[:19]...)
		out = append(out, bytes.Repeat([]byte("A"), 25)...)
		out = append(out, b[20:]...)
		return setLen(out)
	})
	tests := []struct {
		name   string
		frame  []byte
		want   error
		status Status
		seq    uint32
	}{
		{"short input", []byte{0, 0, 0, 16, 0, 0}, ErrTruncated, ESME_RINVCMDLEN, 0},
		{"command_length 12", mustHex(t, "0000000C 00000015 00000000 00000001"), ErrCommandLengthTooSmall, ESME_RINVCMDLEN, 1},
		{"command_length beyond input", mustHex(t, "00000020 00000015 00000000 00000001"), ErrTruncated, ESME_RINVCMDLEN, 1},
		{"command_length below input", mustHex(t, "00000010 00000015 00000000 00000001 00"), ErrLengthMismatch, ESME_RINVCMDLEN, 1},
		{"unknown command", mustHex(t, "00000010 00000099 00000000 00000005"), ErrUnknownCommand, ESME_RINVCMDID, 5},
		{"unsupported replace_sm", mustHex(t, "00000010 00000007 00000000 00000006"), ErrUnknownCommand, ESME_RINVCMDID, 6},
		{"cancel_sm without body", mustHex(t, "00000010 00000008 00000000 00000006"), ErrMissingNUL, ESME_RINVCMDLEN, 6},
		{"enquire_link with body", mustHex(t, "00000011 00000015 00000000 00000007 00"), ErrTrailingBytes, ESME_RINVCMDLEN, 7},
		{"truncated submit_sm body", edit(submit[:20], setLen), ErrMissingNUL, ESME_RINVCMDLEN, 9},
		{"submit_sm ends before esm_class", setLen(append([]byte(nil), submit[:16+1+2+2+2+2]...)), ErrShortBody, ESME_RINVCMDLEN, 9},
		{"missing NUL in system_id", mustHex(t, "00000013 00000009 00000000 00000003 414243"), ErrMissingNUL, ESME_RINVCMDLEN, 3},
		{"system_id too long", setLen(append(mustHex(t, "00000000 00000009 00000000 00000003"), []byte(strings.Repeat("x", 16)+"\x00pw\x00\x00\x34\x00\x00\x00")...)), ErrFieldTooLong, ESME_RINVSYSID, 3},
		{"source_addr too long", longSrc, ErrFieldTooLong, ESME_RINVSRCADR, 9},
		{"sm_length beyond body", edit(submit, func(b []byte) []byte { b[smLenOff] = 6; return b }), ErrSMLength, ESME_RINVMSGLEN, 9},
		{"sm_length 255", edit(submit, func(b []byte) []byte {
			b[smLenOff] = 255
			return setLen(append(b, make([]byte, 250)...))
		}), ErrSMLength, ESME_RINVMSGLEN, 9},
		{"sm_length short leaves junk", edit(submit, func(b []byte) []byte { b[smLenOff] = 2; return b }), ErrTLVOverflow, ESME_RINVOPTPARSTREAM, 9},
		{"TLV length overflow", setLen(append(append([]byte(nil), submit...), 0x04, 0x24, 0x00, 0x10, 'x')), ErrTLVOverflow, ESME_RINVOPTPARSTREAM, 9},
		{"TLV header truncated", setLen(append(append([]byte(nil), submit...), 0x04, 0x24, 0x00)), ErrTLVOverflow, ESME_RINVOPTPARSTREAM, 9},
		{"submit_sm_resp trailing bytes", mustHex(t, "00000013 80000004 00000000 00000002 410042"), ErrTrailingBytes, ESME_RINVCMDLEN, 2},
		{"submit_sm_resp ok without body", mustHex(t, "00000010 80000004 00000000 00000002"), ErrMissingNUL, ESME_RINVCMDLEN, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Decode(tc.frame)
			if err == nil {
				t.Fatalf("no error, got %+v", p)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %T is not *Error", err)
			}
			if pe.Status != tc.status || pe.Header.Sequence != tc.seq {
				t.Fatalf("status %s seq %d, want %s seq %d (%v)", pe.Status, pe.Header.Sequence, tc.status, tc.seq, err)
			}
			if !strings.HasPrefix(err.Error(), "pdu: ") {
				t.Fatalf("error text %q lacks package prefix", err)
			}
		})
	}
}

func TestErrorResponse(t *testing.T) {
	_, err := Decode(mustHex(t, "00000010 00000099 00000000 00000005"))
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatal(err)
	}
	n, ok := pe.Response().(*GenericNack)
	if !ok || n.Status != ESME_RINVCMDID || n.Sequence != 5 {
		t.Fatalf("unknown command answered with %+v", pe.Response())
	}
	if pe.Fatal() {
		t.Fatal("unknown command reported fatal")
	}

	long := frameOf(t, &SubmitSM{Header: hdr(77), MessageFields: MessageFields{SourceAddr: "A", DestinationAddr: "B"}})
	// Corrupt: source_addr loses its NUL and runs to the end of the body.
	for i := 19; i < len(long); i++ {
		long[i] = 'A'
	}
	_, err = Decode(long)
	if !errors.As(err, &pe) {
		t.Fatal(err)
	}
	r, ok := pe.Response().(*SubmitSMResp)
	if !ok || r.Status != pe.Status || r.Sequence != 77 {
		t.Fatalf("malformed submit_sm answered with %+v (%v)", pe.Response(), err)
	}
	b := frameOf(t, r)
	if len(b) != HeaderLen {
		t.Fatalf("error submit_sm_resp should have no body: %x", b)
	}

	_, err = Decode(mustHex(t, "00000013 80000004 00000000 00000002 410042"))
	if !errors.As(err, &pe) {
		t.Fatal(err)
	}
	if pe.Response() != nil {
		t.Fatalf("malformed response answered with %+v", pe.Response())
	}
}

func TestUnmarshalMismatch(t *testing.T) {
	var s SubmitSM
	err := Unmarshal(frameOf(t, &EnquireLink{Header: hdr(1)}), &s)
	if !errors.Is(err, ErrCommandMismatch) {
		t.Fatalf("got %v", err)
	}
}

func TestEncodeErrors(t *testing.T) {
	tests := []struct {
		name string
		p    PDU
		want error
	}{
		{"system_id", &BindTransmitter{BindFields: BindFields{SystemID: strings.Repeat("x", 16)}}, ErrFieldTooLong},
		{"password", &BindTransmitter{BindFields: BindFields{Password: "123456789"}}, ErrFieldTooLong},
		{"NUL", &SubmitSM{MessageFields: MessageFields{SourceAddr: "a\x00b"}}, ErrEmbeddedNUL},
		{"short_message", &SubmitSM{MessageFields: MessageFields{ShortMessage: make([]byte, 255)}}, ErrFieldTooLong},
		{"tlv", &SubmitSM{MessageFields: MessageFields{TLVs: TLVs{{Tag: TagMessagePayload, Value: make([]byte, 65536)}}}}, ErrFieldTooLong},
		{"data_sm addr", &DataSM{SourceAddr: strings.Repeat("1", 65)}, ErrFieldTooLong},
	}
	for _, tc := range tests {
		dst := []byte("keep")
		out, err := Append(dst, tc.p)
		if !errors.Is(err, tc.want) || !strings.HasPrefix(err.Error(), "pdu: ") {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
		if string(out) != "keep" {
			t.Errorf("%s: dst modified: %q", tc.name, out)
		}
	}
	// Exactly at the limits encodes.
	ok := &SubmitSM{MessageFields: MessageFields{SourceAddr: strings.Repeat("1", 20), ShortMessage: make([]byte, 254)}}
	if _, err := Marshal(ok); err != nil {
		t.Fatal(err)
	}
}

func TestTLVHelpers(t *testing.T) {
	var tl TLVs
	if _, ok := tl.MessageState(); ok {
		t.Fatal("empty list has message_state")
	}
	tl.SetReceiptedMessageID("abc")
	tl.SetMessageState(StateUndeliverable)
	tl.SetNetworkErrorCode(NetworkError{Type: 3, Code: 0x1234})
	tl.SetMessagePayload([]byte("payload"))
	tl.SetSAR(SAR{Ref: 513, Total: 4, Seq: 4})
	tl.SetUserMessageReference(65535)
	tl.SetMessageState(StateDelivered) // replaces
	if id, ok := tl.ReceiptedMessageID(); !ok || id != "abc" {
		t.Errorf("receipted_message_id %q %v", id, ok)
	}
	if v, _ := tl.Get(TagReceiptedMessageID); string(v) != "abc\x00" {
		t.Errorf("receipted_message_id not NUL terminated: %q", v)
	}
	if s, ok := tl.MessageState(); !ok || s != StateDelivered {
		t.Errorf("message_state %d %v", s, ok)
	}
	if ne, ok := tl.NetworkErrorCode(); !ok || ne != (NetworkError{3, 0x1234}) {
		t.Errorf("network_error_code %+v %v", ne, ok)
	}
	if p, ok := tl.MessagePayload(); !ok || string(p) != "payload" {
		t.Errorf("message_payload %q", p)
	}
	if s, ok := tl.SAR(); !ok || s != (SAR{513, 4, 4}) {
		t.Errorf("sar %+v %v", s, ok)
	}
	if r, ok := tl.UserMessageReference(); !ok || r != 65535 {
		t.Errorf("user_message_reference %d", r)
	}
	if len(tl) != 8 {
		t.Errorf("len %d, want 8: %+v", len(tl), tl)
	}
	tl.Del(TagSarTotalSegments)
	if _, ok := tl.SAR(); ok {
		t.Error("SAR complete after deleting sar_total_segments")
	}
	// Receipted id without NUL, as some SMSCs send it.
	tl.Set(TagReceiptedMessageID, []byte("xyz"))
	if id, _ := tl.ReceiptedMessageID(); id != "xyz" {
		t.Errorf("id %q", id)
	}
	tl.Set(TagMessageState, []byte{1, 2})
	if _, ok := tl.MessageState(); ok {
		t.Error("2-octet message_state accepted")
	}
}

func TestStrings(t *testing.T) {
	if CmdSubmitSM.String() != "submit_sm" || CommandID(0x1234).String() != "command_id(0x00001234)" {
		t.Error(CmdSubmitSM.String(), CommandID(0x1234).String())
	}
	if ESME_RTHROTTLED.String() != "ESME_RTHROTTLED" || Status(0x999).String() != "command_status(0x00000999)" {
		t.Error(ESME_RTHROTTLED.String())
	}
	if !CmdGenericNack.IsResponse() || CmdSubmitSM.IsResponse() || CmdSubmitSM.Response() != CmdSubmitSMResp {
		t.Error("response bit")
	}
}

func TestMessageContent(t *testing.T) {
	m := MessageFields{ShortMessage: []byte("short")}
	if string(m.Message()) != "short" {
		t.Fatal("short_message")
	}
	m.TLVs.SetMessagePayload([]byte("payload"))
	if string(m.Message()) != "payload" {
		t.Fatal("message_payload")
	}
}
