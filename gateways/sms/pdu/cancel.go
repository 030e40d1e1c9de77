package pdu

// CancelSM is cancel_sm (SMPP 3.4 §4.9.1): cancel a message submitted
// earlier and not yet delivered — here, one that the brokers hold
// (scheduled, or in its recipient's quiet hours).
type CancelSM struct {
	Header
	ServiceType     string // max 6 octets
	MessageID       string // max 64 octets; empty: every message from source to destination (not supported here)
	SourceAddrTON   uint8
	SourceAddrNPI   uint8
	SourceAddr      string // max 20 octets
	DestAddrTON     uint8
	DestAddrNPI     uint8
	DestinationAddr string // max 20 octets
}

func (*CancelSM) CommandID() CommandID { return CmdCancelSM }

func (c *CancelSM) appendBody(e *encoder, _ Status) {
	e.cstring("service_type", c.ServiceType, sizeServiceType)
	e.cstring("message_id", c.MessageID, sizeMessageID)
	e.u8(c.SourceAddrTON)
	e.u8(c.SourceAddrNPI)
	e.cstring("source_addr", c.SourceAddr, sizeAddr)
	e.u8(c.DestAddrTON)
	e.u8(c.DestAddrNPI)
	e.cstring("destination_addr", c.DestinationAddr, sizeAddr)
}

func (c *CancelSM) decodeBody(d *decoder, _ Status) {
	c.ServiceType = d.cstring("service_type", sizeServiceType, ESME_RINVSERTYP)
	c.MessageID = d.cstring("message_id", sizeMessageID, ESME_RINVMSGID)
	c.SourceAddrTON = d.u8("source_addr_ton")
	c.SourceAddrNPI = d.u8("source_addr_npi")
	c.SourceAddr = d.cstring("source_addr", sizeAddr, ESME_RINVSRCADR)
	c.DestAddrTON = d.u8("dest_addr_ton")
	c.DestAddrNPI = d.u8("dest_addr_npi")
	c.DestinationAddr = d.cstring("destination_addr", sizeAddr, ESME_RINVDSTADR)
	d.end()
}

// CancelSMResp is cancel_sm_resp (§4.9.2): a header only.
type CancelSMResp struct{ Header }

func (*CancelSMResp) CommandID() CommandID { return CmdCancelSMResp }

func (*CancelSMResp) appendBody(*encoder, Status) {}

func (*CancelSMResp) decodeBody(d *decoder, _ Status) { d.end() }
