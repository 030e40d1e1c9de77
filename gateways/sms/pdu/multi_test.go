package pdu

import (
	"bytes"
	"errors"
	"testing"

	"github.com/linxGnu/gosmpp/data"
	gpdu "github.com/linxGnu/gosmpp/pdu"
)

// submit_multi as gosmpp, an SMPP library nobody here wrote, encodes it
// decodes here, and what this package encodes gosmpp decodes: the same
// reading of SMPP 3.4 §4.5.
func TestSubmitMultiWithGosmpp(t *testing.T) {
	sm := gpdu.NewSubmitMulti().(*gpdu.SubmitMulti)
	sm.SequenceNumber = 77
	sm.SourceAddr, _ = gpdu.NewAddressWithTonNpiAddr(1, 1, "15550100")
	for _, a := range []struct {
		ton, npi byte
		addr     string
	}{{1, 1, "15550101"}, {5, 0, "nobody"}} {
		d := gpdu.NewDestinationAddress()
		addr, _ := gpdu.NewAddressWithTonNpiAddr(a.ton, a.npi, a.addr)
		d.SetAddress(addr)
		sm.DestAddrs.Add(d)
	}
	dl := gpdu.NewDestinationAddress()
	list, _ := gpdu.NewDistributionList("team")
	dl.SetDistributionList(list)
	sm.DestAddrs.Add(dl)
	sm.RegisteredDelivery = 1
	sm.Message, _ = gpdu.NewShortMessage("hello all")
	b := gpdu.NewBuffer(nil)
	sm.Marshal(b)

	p, err := Decode(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	m, ok := p.(*SubmitMulti)
	if !ok || m.Sequence != 77 || m.SourceAddr != "15550100" || len(m.Dests) != 3 || m.RegisteredDelivery != 1 || string(m.ShortMessage) != "hello all" {
		t.Fatalf("decoded %+v", p)
	}
	want := []DestAddress{{Flag: DestFlagSME, TON: 1, NPI: 1, Addr: "15550101"}, {Flag: DestFlagSME, TON: 5, Addr: "nobody"}, {Flag: DestFlagDL, DLName: "team"}}
	for i, d := range want {
		if m.Dests[i] != d {
			t.Errorf("dest %d: %+v, want %+v", i, m.Dests[i], d)
		}
	}

	resp := &SubmitMultiResp{Header: Header{Sequence: 77}, MessageID: "0123456789abcdef0123456789abcdef",
		Unsuccess: []UnsuccessSME{{TON: 5, Addr: "nobody", Status: ESME_RINVDSTADR}, {TON: 1, NPI: 1, Addr: "15550199", Status: ESME_RSUBMITFAIL}}}
	enc, err := Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	gp, err := gpdu.Parse(bytes.NewReader(enc))
	if err != nil {
		t.Fatal(err)
	}
	gr, ok := gp.(*gpdu.SubmitMultiResp)
	if !ok || gr.MessageID != resp.MessageID || gr.SequenceNumber != 77 {
		t.Fatalf("gosmpp read %+v", gp)
	}
	us := gr.UnsuccessSMEs.Get()
	if len(us) != 2 || us[0].Address.Address() != "nobody" || us[0].Ton() != 5 || us[0].ErrorStatusCode() != data.ESME_RINVDSTADR ||
		us[1].Address.Address() != "15550199" || us[1].ErrorStatusCode() != data.ESME_RSUBMITFAIL {
		t.Fatalf("gosmpp unsuccess %+v", us)
	}
}

// What a submit_multi may not be: each fault the status §5.1.3 names.
func TestSubmitMultiRefused(t *testing.T) {
	frame := func(body ...byte) []byte {
		b := append(make([]byte, 16), body...)
		b[3] = byte(len(b))
		b[7] = byte(CmdSubmitMulti)
		return b
	}
	head := []byte{0, 1, 1, '1', 0} // service_type, source ton/npi/addr
	tail := []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for name, c := range map[string]struct {
		frame []byte
		want  Status
		err   error
	}{
		"dest_flag 3":         {frame(cat(head, []byte{1, 3, 0}, tail)...), ESME_RINVDESTFLAG, ErrBadDestFlag},
		"dl_name too long":    {frame(cat(head, []byte{1, 2}, bytes.Repeat([]byte{'x'}, 25), []byte{0}, tail)...), ESME_RINVDLNAME, ErrFieldTooLong},
		"address too long":    {frame(cat(head, []byte{1, 1, 1, 1}, bytes.Repeat([]byte{'1'}, 21), []byte{0}, tail)...), ESME_RINVDSTADR, ErrFieldTooLong},
		"fewer than numbered": {frame(cat(head, []byte{2, 1, 1, 1, '2', 0})...), ESME_RINVCMDLEN, nil},
	} {
		_, err := Decode(c.frame)
		var pe *Error
		if !errors.As(err, &pe) || pe.Status != c.want || (c.err != nil && !errors.Is(err, c.err)) {
			t.Errorf("%s: %v, want %s", name, err, c.want)
		}
	}
	if _, err := Marshal(&SubmitMulti{Dests: []DestAddress{{Flag: 9}}}); !errors.Is(err, ErrBadDestFlag) {
		t.Errorf("encode dest_flag 9: %v", err)
	}
	if _, err := Marshal(&SubmitMulti{Dests: make([]DestAddress, 256)}); err == nil {
		t.Error("encoded 256 destinations")
	}
}
