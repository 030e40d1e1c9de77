package pdu

// Maximum C-Octet String sizes from SMPP 3.4 §4, in octets including the
// NUL terminator ("Var. max" / "Fixed" columns of the body tables).
const (
	sizeSystemID     = 16 // system_id (§4.1)
	sizePassword     = 9  // password (§4.1)
	sizeSystemType   = 13 // system_type (§4.1.1)
	sizeAddressRange = 41 // address_range (§4.1.1)
	sizeServiceType  = 6  // service_type (§4.4.1)
	sizeAddr         = 21 // source_addr, destination_addr (§4.4.1, §4.6.1)
	sizeDataSMAddr   = 65 // data_sm source_addr, destination_addr (§4.7.1)
	sizeTime         = 17 // schedule_delivery_time, validity_period, final_date (§7.1.1)
	sizeMessageID    = 65 // message_id (§4.4.2, §4.7.2, §4.8.1)
)

// MaxShortMessage is the largest short_message, in octets (§4.4.1: sm_length
// 0 to 254). Longer content goes into the message_payload TLV.
const MaxShortMessage = 254

// InterfaceVersion34 is the interface_version of SMPP 3.4 (§5.2.4).
const InterfaceVersion34 = 0x34

// esm_class bits (§5.2.12).
const (
	ESMClassDeliveryReceipt = 0x04 // message type: SMSC delivery receipt (deliver_sm)
	ESMClassUDHI            = 0x40 // GSM feature: short_message starts with a UDH
	ESMClassReplyPath       = 0x80 // GSM feature: set reply path
)

// registered_delivery values (§5.2.17).
const (
	RegisteredDeliveryNone         = 0x00 // no SMSC delivery receipt
	RegisteredDeliveryFinal        = 0x01 // receipt on final outcome, success or failure
	RegisteredDeliveryFailure      = 0x02 // receipt on failure only
	RegisteredDeliveryReceiptMask  = 0x03 // bits selecting the SMSC receipt
	RegisteredDeliveryIntermediate = 0x10 // intermediate notification requested
)

// emptyBody is the body of PDUs that consist of the header only.
type emptyBody struct{}

func (emptyBody) appendBody(*encoder, Status) {}
func (emptyBody) decodeBody(d *decoder, _ Status) {
	d.end()
}

// GenericNack is generic_nack (§4.3): the answer to a PDU with an invalid
// header; Status says why.
type GenericNack struct {
	Header
	emptyBody
}

// Unbind is unbind (§4.2.1).
type Unbind struct {
	Header
	emptyBody
}

// UnbindResp is unbind_resp (§4.2.2).
type UnbindResp struct {
	Header
	emptyBody
}

// EnquireLink is enquire_link (§4.11.1).
type EnquireLink struct {
	Header
	emptyBody
}

// EnquireLinkResp is enquire_link_resp (§4.11.2).
type EnquireLinkResp struct {
	Header
	emptyBody
}

func (*GenericNack) CommandID() CommandID     { return CmdGenericNack }
func (*Unbind) CommandID() CommandID          { return CmdUnbind }
func (*UnbindResp) CommandID() CommandID      { return CmdUnbindResp }
func (*EnquireLink) CommandID() CommandID     { return CmdEnquireLink }
func (*EnquireLinkResp) CommandID() CommandID { return CmdEnquireLinkResp }

// BindFields is the body of bind_transmitter, bind_receiver and
// bind_transceiver (§4.1.1, §4.1.3, §4.1.5).
type BindFields struct {
	SystemID         string // max 15 octets
	Password         string // max 8 octets
	SystemType       string // max 12 octets
	InterfaceVersion uint8  // InterfaceVersion34
	AddrTON          uint8
	AddrNPI          uint8
	AddressRange     string // max 40 octets
}

func (b *BindFields) appendBody(e *encoder, _ Status) {
	e.cstring("system_id", b.SystemID, sizeSystemID)
	e.cstring("password", b.Password, sizePassword)
	e.cstring("system_type", b.SystemType, sizeSystemType)
	e.u8(b.InterfaceVersion)
	e.u8(b.AddrTON)
	e.u8(b.AddrNPI)
	e.cstring("address_range", b.AddressRange, sizeAddressRange)
}

func (b *BindFields) decodeBody(d *decoder, _ Status) {
	b.SystemID = d.cstring("system_id", sizeSystemID, ESME_RINVSYSID)
	b.Password = d.cstring("password", sizePassword, ESME_RINVPASWD)
	b.SystemType = d.cstring("system_type", sizeSystemType, ESME_RINVSYSTYP)
	b.InterfaceVersion = d.u8("interface_version")
	b.AddrTON = d.u8("addr_ton")
	b.AddrNPI = d.u8("addr_npi")
	b.AddressRange = d.cstring("address_range", sizeAddressRange, ESME_RBINDFAIL)
	d.end()
}

// BindTransmitter is bind_transmitter (§4.1.1).
type BindTransmitter struct {
	Header
	BindFields
}

// BindReceiver is bind_receiver (§4.1.3).
type BindReceiver struct {
	Header
	BindFields
}

// BindTransceiver is bind_transceiver (§4.1.5).
type BindTransceiver struct {
	Header
	BindFields
}

func (*BindTransmitter) CommandID() CommandID { return CmdBindTransmitter }
func (*BindReceiver) CommandID() CommandID    { return CmdBindReceiver }
func (*BindTransceiver) CommandID() CommandID { return CmdBindTransceiver }

// BindRespFields is the body of the bind responses (§4.1.2, §4.1.4,
// §4.1.6). With a non-zero command_status the body may be absent (§4.1.2
// note); a zero BindRespFields is then encoded as no body at all.
type BindRespFields struct {
	SystemID string // SMSC identifier, max 15 octets
	TLVs     TLVs   // sc_interface_version
}

func (b *BindRespFields) appendBody(e *encoder, status Status) {
	if status != ESME_ROK && b.SystemID == "" && len(b.TLVs) == 0 {
		return
	}
	e.cstring("system_id", b.SystemID, sizeSystemID)
	e.tlvs(b.TLVs)
}

func (b *BindRespFields) decodeBody(d *decoder, status Status) {
	*b = BindRespFields{}
	if status != ESME_ROK && len(d.b) == 0 {
		return
	}
	b.SystemID = d.cstring("system_id", sizeSystemID, ESME_RINVSYSID)
	b.TLVs = d.tlvs()
}

// BindTransmitterResp is bind_transmitter_resp (§4.1.2).
type BindTransmitterResp struct {
	Header
	BindRespFields
}

// BindReceiverResp is bind_receiver_resp (§4.1.4).
type BindReceiverResp struct {
	Header
	BindRespFields
}

// BindTransceiverResp is bind_transceiver_resp (§4.1.6).
type BindTransceiverResp struct {
	Header
	BindRespFields
}

func (*BindTransmitterResp) CommandID() CommandID { return CmdBindTransmitterResp }
func (*BindReceiverResp) CommandID() CommandID    { return CmdBindReceiverResp }
func (*BindTransceiverResp) CommandID() CommandID { return CmdBindTransceiverResp }

// Outbind is outbind (§4.1.7): the SMSC asks the ESME to bind as receiver.
type Outbind struct {
	Header
	SystemID string // max 15 octets
	Password string // max 8 octets
}

func (*Outbind) CommandID() CommandID { return CmdOutbind }

func (o *Outbind) appendBody(e *encoder, _ Status) {
	e.cstring("system_id", o.SystemID, sizeSystemID)
	e.cstring("password", o.Password, sizePassword)
}

func (o *Outbind) decodeBody(d *decoder, _ Status) {
	o.SystemID = d.cstring("system_id", sizeSystemID, ESME_RINVSYSID)
	o.Password = d.cstring("password", sizePassword, ESME_RINVPASWD)
	d.end()
}

// MessageFields is the body of submit_sm (§4.4.1) and deliver_sm (§4.6.1),
// in wire order. sm_length is not stored: it is len(ShortMessage). The
// codec does not check that short_message and message_payload are not both
// used. In
// deliver_sm the schedule_delivery_time, validity_period,
// replace_if_present_flag and sm_default_msg_id fields are unused and should
// be zero.
type MessageFields struct {
	ServiceType          string // max 5 octets
	SourceAddrTON        uint8
	SourceAddrNPI        uint8
	SourceAddr           string // max 20 octets
	DestAddrTON          uint8
	DestAddrNPI          uint8
	DestinationAddr      string // max 20 octets
	ESMClass             uint8  // §5.2.12; ESMClassUDHI, ESMClassDeliveryReceipt
	ProtocolID           uint8
	PriorityFlag         uint8
	ScheduleDeliveryTime string // empty or 16 octets, §7.1.1
	ValidityPeriod       string // empty or 16 octets, §7.1.1
	RegisteredDelivery   uint8  // §5.2.17
	ReplaceIfPresentFlag uint8
	DataCoding           uint8 // §5.2.19
	SMDefaultMsgID       uint8
	ShortMessage         []byte // at most MaxShortMessage octets
	TLVs                 TLVs
}

// Message returns the message content: the message_payload TLV when
// present (sm_length is then 0, §5.3.2.32), else short_message. With
// esm_class UDHI it starts with the UDH.
func (m *MessageFields) Message() []byte {
	if p, ok := m.TLVs.MessagePayload(); ok {
		return p
	}
	return m.ShortMessage
}

func (m *MessageFields) appendBody(e *encoder, _ Status) {
	e.cstring("service_type", m.ServiceType, sizeServiceType)
	e.u8(m.SourceAddrTON)
	e.u8(m.SourceAddrNPI)
	e.cstring("source_addr", m.SourceAddr, sizeAddr)
	e.u8(m.DestAddrTON)
	e.u8(m.DestAddrNPI)
	e.cstring("destination_addr", m.DestinationAddr, sizeAddr)
	e.u8(m.ESMClass)
	e.u8(m.ProtocolID)
	e.u8(m.PriorityFlag)
	e.cstring("schedule_delivery_time", m.ScheduleDeliveryTime, sizeTime)
	e.cstring("validity_period", m.ValidityPeriod, sizeTime)
	e.u8(m.RegisteredDelivery)
	e.u8(m.ReplaceIfPresentFlag)
	e.u8(m.DataCoding)
	e.u8(m.SMDefaultMsgID)
	e.shortMessage(m.ShortMessage)
	e.tlvs(m.TLVs)
}

func (m *MessageFields) decodeBody(d *decoder, _ Status) {
	m.ServiceType = d.cstring("service_type", sizeServiceType, ESME_RINVSERTYP)
	m.SourceAddrTON = d.u8("source_addr_ton")
	m.SourceAddrNPI = d.u8("source_addr_npi")
	m.SourceAddr = d.cstring("source_addr", sizeAddr, ESME_RINVSRCADR)
	m.DestAddrTON = d.u8("dest_addr_ton")
	m.DestAddrNPI = d.u8("dest_addr_npi")
	m.DestinationAddr = d.cstring("destination_addr", sizeAddr, ESME_RINVDSTADR)
	m.ESMClass = d.u8("esm_class")
	m.ProtocolID = d.u8("protocol_id")
	m.PriorityFlag = d.u8("priority_flag")
	m.ScheduleDeliveryTime = d.cstring("schedule_delivery_time", sizeTime, ESME_RINVSCHED)
	m.ValidityPeriod = d.cstring("validity_period", sizeTime, ESME_RINVEXPIRY)
	m.RegisteredDelivery = d.u8("registered_delivery")
	m.ReplaceIfPresentFlag = d.u8("replace_if_present_flag")
	m.DataCoding = d.u8("data_coding")
	m.SMDefaultMsgID = d.u8("sm_default_msg_id")
	m.ShortMessage = d.shortMessage()
	m.TLVs = d.tlvs()
}

// SubmitSM is submit_sm (§4.4.1).
type SubmitSM struct {
	Header
	MessageFields
}

// DeliverSM is deliver_sm (§4.6.1), also used for delivery receipts
// (esm_class ESMClassDeliveryReceipt, receipt text per Appendix B).
type DeliverSM struct {
	Header
	MessageFields
}

func (*SubmitSM) CommandID() CommandID  { return CmdSubmitSM }
func (*DeliverSM) CommandID() CommandID { return CmdDeliverSM }

// RespFields is the body of submit_sm_resp (§4.4.2) and deliver_sm_resp
// (§4.6.2). The body is absent when command_status is non-zero (§4.4.2
// note); a zero RespFields is then encoded as no body at all.
// deliver_sm_resp's message_id is unused (NUL) but up to 64 octets are
// accepted.
type RespFields struct {
	MessageID string // max 64 octets
}

func (r *RespFields) appendBody(e *encoder, status Status) {
	if status != ESME_ROK && r.MessageID == "" {
		return
	}
	e.cstring("message_id", r.MessageID, sizeMessageID)
}

func (r *RespFields) decodeBody(d *decoder, status Status) {
	*r = RespFields{}
	if status != ESME_ROK && len(d.b) == 0 {
		return
	}
	r.MessageID = d.cstring("message_id", sizeMessageID, ESME_RINVMSGID)
	d.end()
}

// SubmitSMResp is submit_sm_resp (§4.4.2).
type SubmitSMResp struct {
	Header
	RespFields
}

// DeliverSMResp is deliver_sm_resp (§4.6.2).
type DeliverSMResp struct {
	Header
	RespFields
}

func (*SubmitSMResp) CommandID() CommandID  { return CmdSubmitSMResp }
func (*DeliverSMResp) CommandID() CommandID { return CmdDeliverSMResp }

// DataSM is data_sm (§4.7.1). The message travels in the message_payload
// TLV.
type DataSM struct {
	Header
	ServiceType        string // max 5 octets
	SourceAddrTON      uint8
	SourceAddrNPI      uint8
	SourceAddr         string // max 64 octets
	DestAddrTON        uint8
	DestAddrNPI        uint8
	DestinationAddr    string // max 64 octets
	ESMClass           uint8
	RegisteredDelivery uint8
	DataCoding         uint8
	TLVs               TLVs
}

func (*DataSM) CommandID() CommandID { return CmdDataSM }

func (m *DataSM) appendBody(e *encoder, _ Status) {
	e.cstring("service_type", m.ServiceType, sizeServiceType)
	e.u8(m.SourceAddrTON)
	e.u8(m.SourceAddrNPI)
	e.cstring("source_addr", m.SourceAddr, sizeDataSMAddr)
	e.u8(m.DestAddrTON)
	e.u8(m.DestAddrNPI)
	e.cstring("destination_addr", m.DestinationAddr, sizeDataSMAddr)
	e.u8(m.ESMClass)
	e.u8(m.RegisteredDelivery)
	e.u8(m.DataCoding)
	e.tlvs(m.TLVs)
}

func (m *DataSM) decodeBody(d *decoder, _ Status) {
	m.ServiceType = d.cstring("service_type", sizeServiceType, ESME_RINVSERTYP)
	m.SourceAddrTON = d.u8("source_addr_ton")
	m.SourceAddrNPI = d.u8("source_addr_npi")
	m.SourceAddr = d.cstring("source_addr", sizeDataSMAddr, ESME_RINVSRCADR)
	m.DestAddrTON = d.u8("dest_addr_ton")
	m.DestAddrNPI = d.u8("dest_addr_npi")
	m.DestinationAddr = d.cstring("destination_addr", sizeDataSMAddr, ESME_RINVDSTADR)
	m.ESMClass = d.u8("esm_class")
	m.RegisteredDelivery = d.u8("registered_delivery")
	m.DataCoding = d.u8("data_coding")
	m.TLVs = d.tlvs()
}

// DataSMResp is data_sm_resp (§4.7.2). A zero body with a non-zero
// command_status is encoded as no body at all.
type DataSMResp struct {
	Header
	MessageID string // max 64 octets
	TLVs      TLVs   // delivery_failure_reason, network_error_code, ...
}

func (*DataSMResp) CommandID() CommandID { return CmdDataSMResp }

func (r *DataSMResp) appendBody(e *encoder, status Status) {
	if status != ESME_ROK && r.MessageID == "" && len(r.TLVs) == 0 {
		return
	}
	e.cstring("message_id", r.MessageID, sizeMessageID)
	e.tlvs(r.TLVs)
}

func (r *DataSMResp) decodeBody(d *decoder, status Status) {
	r.MessageID, r.TLVs = "", nil
	if status != ESME_ROK && len(d.b) == 0 {
		return
	}
	r.MessageID = d.cstring("message_id", sizeMessageID, ESME_RINVMSGID)
	r.TLVs = d.tlvs()
}

// QuerySM is query_sm (§4.8.1).
type QuerySM struct {
	Header
	MessageID     string // max 64 octets
	SourceAddrTON uint8
	SourceAddrNPI uint8
	SourceAddr    string // max 20 octets
}

func (*QuerySM) CommandID() CommandID { return CmdQuerySM }

func (q *QuerySM) appendBody(e *encoder, _ Status) {
	e.cstring("message_id", q.MessageID, sizeMessageID)
	e.u8(q.SourceAddrTON)
	e.u8(q.SourceAddrNPI)
	e.cstring("source_addr", q.SourceAddr, sizeAddr)
}

func (q *QuerySM) decodeBody(d *decoder, _ Status) {
	q.MessageID = d.cstring("message_id", sizeMessageID, ESME_RINVMSGID)
	q.SourceAddrTON = d.u8("source_addr_ton")
	q.SourceAddrNPI = d.u8("source_addr_npi")
	q.SourceAddr = d.cstring("source_addr", sizeAddr, ESME_RINVSRCADR)
	d.end()
}

// QuerySMResp is query_sm_resp (§4.8.2). A zero body with a non-zero
// command_status is encoded as no body at all.
type QuerySMResp struct {
	Header
	MessageID    string // max 64 octets
	FinalDate    string // empty or 16 octets, §7.1.1
	MessageState MessageState
	ErrorCode    uint8 // network-specific error code
}

func (*QuerySMResp) CommandID() CommandID { return CmdQuerySMResp }

func (q *QuerySMResp) appendBody(e *encoder, status Status) {
	if status != ESME_ROK && q.MessageID == "" && q.FinalDate == "" && q.MessageState == 0 && q.ErrorCode == 0 {
		return
	}
	e.cstring("message_id", q.MessageID, sizeMessageID)
	e.cstring("final_date", q.FinalDate, sizeTime)
	e.u8(uint8(q.MessageState))
	e.u8(q.ErrorCode)
}

func (q *QuerySMResp) decodeBody(d *decoder, status Status) {
	q.MessageID, q.FinalDate, q.MessageState, q.ErrorCode = "", "", 0, 0
	if status != ESME_ROK && len(d.b) == 0 {
		return
	}
	q.MessageID = d.cstring("message_id", sizeMessageID, ESME_RINVMSGID)
	q.FinalDate = d.cstring("final_date", sizeTime, ESME_RINVCMDLEN)
	q.MessageState = MessageState(d.u8("message_state"))
	q.ErrorCode = d.u8("error_code")
	d.end()
}
