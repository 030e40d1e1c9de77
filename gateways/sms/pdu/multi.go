package pdu

import "fmt"

// submit_multi (SMPP 3.4 §4.5): one short message for up to 254
// destinations, each an SME address or a distribution list name.

// dest_flag values (§5.2.25).
const (
	DestFlagSME = 1 // SME address: dest_addr_ton, dest_addr_npi, destination_addr
	DestFlagDL  = 2 // distribution list: dl_name
)

// MaxDests is the most destinations of a submit_multi (§4.5.1:
// number_of_dests, "maximum 254").
const MaxDests = 254

const sizeDLName = 21 // dl_name (§4.5.1.2)

// DestAddress is one dest_address of submit_multi (§4.5.1.1, §4.5.1.2):
// with Flag DestFlagSME an address (TON, NPI, Addr), with DestFlagDL a
// distribution list name (DLName); the other fields are zero.
type DestAddress struct {
	Flag   uint8
	TON    uint8
	NPI    uint8
	Addr   string // max 20 octets
	DLName string // max 20 octets
}

// SubmitMulti is submit_multi (§4.5.1). Its fields are those of submit_sm
// but for the destination: Dests replaces DestAddrTON, DestAddrNPI and
// DestinationAddr, which are unused and zero (ignored when encoding).
type SubmitMulti struct {
	Header
	MessageFields
	Dests []DestAddress
}

func (*SubmitMulti) CommandID() CommandID { return CmdSubmitMulti }

func (m *SubmitMulti) appendBody(e *encoder, _ Status) {
	f := &m.MessageFields
	e.cstring("service_type", f.ServiceType, sizeServiceType)
	e.u8(f.SourceAddrTON)
	e.u8(f.SourceAddrNPI)
	e.cstring("source_addr", f.SourceAddr, sizeAddr)
	if e.err == nil && len(m.Dests) > 0xFF {
		e.err = fmt.Errorf("%w: %d destinations, number_of_dests is one octet", ErrFieldTooLong, len(m.Dests))
	}
	e.u8(uint8(len(m.Dests)))
	for _, d := range m.Dests {
		e.u8(d.Flag)
		switch d.Flag {
		case DestFlagSME:
			e.u8(d.TON)
			e.u8(d.NPI)
			e.cstring("destination_addr", d.Addr, sizeAddr)
		case DestFlagDL:
			e.cstring("dl_name", d.DLName, sizeDLName)
		default:
			if e.err == nil {
				e.err = fmt.Errorf("%w: dest_flag %d", ErrBadDestFlag, d.Flag)
			}
		}
	}
	e.u8(f.ESMClass)
	e.u8(f.ProtocolID)
	e.u8(f.PriorityFlag)
	e.cstring("schedule_delivery_time", f.ScheduleDeliveryTime, sizeTime)
	e.cstring("validity_period", f.ValidityPeriod, sizeTime)
	e.u8(f.RegisteredDelivery)
	e.u8(f.ReplaceIfPresentFlag)
	e.u8(f.DataCoding)
	e.u8(f.SMDefaultMsgID)
	e.shortMessage(f.ShortMessage)
	e.tlvs(f.TLVs)
}

func (m *SubmitMulti) decodeBody(d *decoder, _ Status) {
	f := &m.MessageFields
	*m = SubmitMulti{Header: m.Header}
	f.ServiceType = d.cstring("service_type", sizeServiceType, ESME_RINVSERTYP)
	f.SourceAddrTON = d.u8("source_addr_ton")
	f.SourceAddrNPI = d.u8("source_addr_npi")
	f.SourceAddr = d.cstring("source_addr", sizeAddr, ESME_RINVSRCADR)
	n := int(d.u8("number_of_dests"))
	if d.err == nil && n > 0 {
		m.Dests = make([]DestAddress, 0, min(n, len(d.b)/2))
	}
	for i := 0; i < n && d.err == nil; i++ {
		var a DestAddress
		a.Flag = d.u8("dest_flag")
		switch a.Flag {
		case DestFlagSME:
			a.TON = d.u8("dest_addr_ton")
			a.NPI = d.u8("dest_addr_npi")
			a.Addr = d.cstring("destination_addr", sizeAddr, ESME_RINVDSTADR)
		case DestFlagDL:
			a.DLName = d.cstring("dl_name", sizeDLName, ESME_RINVDLNAME)
		default:
			d.fail(ESME_RINVDESTFLAG, ErrBadDestFlag, "dest_flag %d of destination %d", a.Flag, i+1)
		}
		m.Dests = append(m.Dests, a)
	}
	f.ESMClass = d.u8("esm_class")
	f.ProtocolID = d.u8("protocol_id")
	f.PriorityFlag = d.u8("priority_flag")
	f.ScheduleDeliveryTime = d.cstring("schedule_delivery_time", sizeTime, ESME_RINVSCHED)
	f.ValidityPeriod = d.cstring("validity_period", sizeTime, ESME_RINVEXPIRY)
	f.RegisteredDelivery = d.u8("registered_delivery")
	f.ReplaceIfPresentFlag = d.u8("replace_if_present_flag")
	f.DataCoding = d.u8("data_coding")
	f.SMDefaultMsgID = d.u8("sm_default_msg_id")
	f.ShortMessage = d.shortMessage()
	f.TLVs = d.tlvs()
}

// UnsuccessSME is one unsuccess_sme of submit_multi_resp (§4.5.2): a
// destination the message was not submitted to, and why.
type UnsuccessSME struct {
	TON    uint8
	NPI    uint8
	Addr   string // max 20 octets
	Status Status // error_status_code
}

// SubmitMultiResp is submit_multi_resp (§4.5.2). Unlike submit_sm_resp
// (§4.4.2) its body is always sent, also with a non-zero command_status
// (gosmpp, for one, cannot read it without); an absent body is accepted
// when decoding a non-zero command_status.
type SubmitMultiResp struct {
	Header
	MessageID string // max 64 octets
	Unsuccess []UnsuccessSME
}

func (*SubmitMultiResp) CommandID() CommandID { return CmdSubmitMultiResp }

func (r *SubmitMultiResp) appendBody(e *encoder, _ Status) {
	e.cstring("message_id", r.MessageID, sizeMessageID)
	if e.err == nil && len(r.Unsuccess) > 0xFF {
		e.err = fmt.Errorf("%w: %d unsuccess_sme, no_unsuccess is one octet", ErrFieldTooLong, len(r.Unsuccess))
	}
	e.u8(uint8(len(r.Unsuccess)))
	for _, u := range r.Unsuccess {
		e.u8(u.TON)
		e.u8(u.NPI)
		e.cstring("destination_addr", u.Addr, sizeAddr)
		e.u32(uint32(u.Status))
	}
}

func (r *SubmitMultiResp) decodeBody(d *decoder, status Status) {
	r.MessageID, r.Unsuccess = "", nil
	if status != ESME_ROK && len(d.b) == 0 {
		return
	}
	r.MessageID = d.cstring("message_id", sizeMessageID, ESME_RINVMSGID)
	n := int(d.u8("no_unsuccess"))
	if d.err == nil && n > 0 {
		r.Unsuccess = make([]UnsuccessSME, 0, min(n, len(d.b)/7))
	}
	for i := 0; i < n && d.err == nil; i++ {
		var u UnsuccessSME
		u.TON = d.u8("dest_addr_ton")
		u.NPI = d.u8("dest_addr_npi")
		u.Addr = d.cstring("destination_addr", sizeAddr, ESME_RINVDSTADR)
		u.Status = Status(d.u32("error_status_code"))
		if d.err == nil {
			r.Unsuccess = append(r.Unsuccess, u)
		}
	}
	d.end()
}

func (d *decoder) u32(field string) uint32 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 4 {
		d.fail(ESME_RINVCMDLEN, ErrShortBody, "%s", field)
		return 0
	}
	v := uint32(d.b[0])<<24 | uint32(d.b[1])<<16 | uint32(d.b[2])<<8 | uint32(d.b[3])
	d.b = d.b[4:]
	return v
}

func (e *encoder) u32(v uint32) {
	e.b = append(e.b, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}
