package pdu

import (
	"encoding/binary"
	"fmt"
)

// HeaderLen is the size of the PDU header in octets (SMPP 3.4 §3.2).
const HeaderLen = 16

// Header is the fixed PDU header (SMPP 3.4 §3.2). Every typed PDU embeds
// it. When encoding, Length and ID are computed and the stored values are
// ignored; Decode fills all four fields.
type Header struct {
	Length   uint32    // command_length, including the header itself
	ID       CommandID // command_id
	Status   Status    // command_status; zero (ESME_ROK) in requests
	Sequence uint32    // sequence_number, echoed in the response
}

// Hdr returns h. It is promoted to every typed PDU and lets generic code
// reach the header through the PDU interface.
func (h *Header) Hdr() *Header { return h }

// parseHeader reads a header from the first 16 octets of b.
func parseHeader(b []byte) Header {
	return Header{
		Length:   binary.BigEndian.Uint32(b[0:4]),
		ID:       CommandID(binary.BigEndian.Uint32(b[4:8])),
		Status:   Status(binary.BigEndian.Uint32(b[8:12])),
		Sequence: binary.BigEndian.Uint32(b[12:16]),
	}
}

// CommandID is the command_id header field (SMPP 3.4 §5.1.2.1). Response
// ids are the request id with bit 31 set.
type CommandID uint32

// Command ids, SMPP 3.4 §5.1.2.1.
const (
	CmdGenericNack         CommandID = 0x80000000
	CmdBindReceiver        CommandID = 0x00000001
	CmdBindReceiverResp    CommandID = 0x80000001
	CmdBindTransmitter     CommandID = 0x00000002
	CmdBindTransmitterResp CommandID = 0x80000002
	CmdQuerySM             CommandID = 0x00000003
	CmdQuerySMResp         CommandID = 0x80000003
	CmdSubmitSM            CommandID = 0x00000004
	CmdSubmitSMResp        CommandID = 0x80000004
	CmdDeliverSM           CommandID = 0x00000005
	CmdDeliverSMResp       CommandID = 0x80000005
	CmdUnbind              CommandID = 0x00000006
	CmdUnbindResp          CommandID = 0x80000006
	CmdReplaceSM           CommandID = 0x00000007 // not decoded by this package
	CmdReplaceSMResp       CommandID = 0x80000007 // not decoded by this package
	CmdCancelSM            CommandID = 0x00000008
	CmdCancelSMResp        CommandID = 0x80000008
	CmdBindTransceiver     CommandID = 0x00000009
	CmdBindTransceiverResp CommandID = 0x80000009
	CmdOutbind             CommandID = 0x0000000B
	CmdEnquireLink         CommandID = 0x00000015
	CmdEnquireLinkResp     CommandID = 0x80000015
	CmdSubmitMulti         CommandID = 0x00000021
	CmdSubmitMultiResp     CommandID = 0x80000021
	CmdAlertNotification   CommandID = 0x00000102 // not decoded by this package
	CmdDataSM              CommandID = 0x00000103
	CmdDataSMResp          CommandID = 0x80000103
)

// respBit marks response command ids (SMPP 3.4 §5.1.2.1).
const respBit CommandID = 0x80000000

// IsResponse reports whether id is a response (bit 31 set), including
// generic_nack.
func (id CommandID) IsResponse() bool { return id&respBit != 0 }

// Response returns the command id of the response to request id.
func (id CommandID) Response() CommandID { return id | respBit }

func (id CommandID) String() string {
	switch id {
	case CmdGenericNack:
		return "generic_nack"
	case CmdBindReceiver:
		return "bind_receiver"
	case CmdBindReceiverResp:
		return "bind_receiver_resp"
	case CmdBindTransmitter:
		return "bind_transmitter"
	case CmdBindTransmitterResp:
		return "bind_transmitter_resp"
	case CmdQuerySM:
		return "query_sm"
	case CmdQuerySMResp:
		return "query_sm_resp"
	case CmdSubmitSM:
		return "submit_sm"
	case CmdSubmitSMResp:
		return "submit_sm_resp"
	case CmdDeliverSM:
		return "deliver_sm"
	case CmdDeliverSMResp:
		return "deliver_sm_resp"
	case CmdUnbind:
		return "unbind"
	case CmdUnbindResp:
		return "unbind_resp"
	case CmdReplaceSM:
		return "replace_sm"
	case CmdReplaceSMResp:
		return "replace_sm_resp"
	case CmdCancelSM:
		return "cancel_sm"
	case CmdCancelSMResp:
		return "cancel_sm_resp"
	case CmdBindTransceiver:
		return "bind_transceiver"
	case CmdBindTransceiverResp:
		return "bind_transceiver_resp"
	case CmdOutbind:
		return "outbind"
	case CmdEnquireLink:
		return "enquire_link"
	case CmdEnquireLinkResp:
		return "enquire_link_resp"
	case CmdSubmitMulti:
		return "submit_multi"
	case CmdSubmitMultiResp:
		return "submit_multi_resp"
	case CmdAlertNotification:
		return "alert_notification"
	case CmdDataSM:
		return "data_sm"
	case CmdDataSMResp:
		return "data_sm_resp"
	}
	return fmt.Sprintf("command_id(0x%08X)", uint32(id))
}

// Status is the command_status header field (SMPP 3.4 §5.1.3).
type Status uint32

// Command status codes, SMPP 3.4 §5.1.3 table 5-2. The constants keep the
// specification's names so they can be grepped against the spec and SMSC
// documentation. ESME_RINVDCS is from SMPP 5.0 §4.7.6; 3.4 has no code for
// a bad data_coding, and many 3.4 SMSCs use the 5.0 value.
const (
	ESME_ROK              Status = 0x00000000 // No error
	ESME_RINVMSGLEN       Status = 0x00000001 // Message length is invalid
	ESME_RINVCMDLEN       Status = 0x00000002 // Command length is invalid
	ESME_RINVCMDID        Status = 0x00000003 // Invalid command ID
	ESME_RINVBNDSTS       Status = 0x00000004 // Incorrect bind status for given command
	ESME_RALYBND          Status = 0x00000005 // ESME already in bound state
	ESME_RINVPRTFLG       Status = 0x00000006 // Invalid priority flag
	ESME_RINVREGDLVFLG    Status = 0x00000007 // Invalid registered delivery flag
	ESME_RSYSERR          Status = 0x00000008 // System error
	ESME_RINVSRCADR       Status = 0x0000000A // Invalid source address
	ESME_RINVDSTADR       Status = 0x0000000B // Invalid destination address
	ESME_RINVMSGID        Status = 0x0000000C // Message ID is invalid
	ESME_RBINDFAIL        Status = 0x0000000D // Bind failed
	ESME_RINVPASWD        Status = 0x0000000E // Invalid password
	ESME_RINVSYSID        Status = 0x0000000F // Invalid system ID
	ESME_RCANCELFAIL      Status = 0x00000011 // cancel_sm failed
	ESME_RREPLACEFAIL     Status = 0x00000013 // replace_sm failed
	ESME_RMSGQFUL         Status = 0x00000014 // Message queue full
	ESME_RINVSERTYP       Status = 0x00000015 // Invalid service type
	ESME_RINVNUMDESTS     Status = 0x00000033 // Invalid number of destinations
	ESME_RINVDLNAME       Status = 0x00000034 // Invalid distribution list name
	ESME_RINVDESTFLAG     Status = 0x00000040 // Destination flag is invalid (submit_multi)
	ESME_RINVESMCLASS     Status = 0x00000043 // Invalid esm_class field data
	ESME_RSUBMITFAIL      Status = 0x00000045 // submit_sm or submit_multi failed
	ESME_RINVSRCTON       Status = 0x00000048 // Invalid source address TON
	ESME_RINVSRCNPI       Status = 0x00000049 // Invalid source address NPI
	ESME_RINVDSTTON       Status = 0x00000050 // Invalid destination address TON
	ESME_RINVDSTNPI       Status = 0x00000051 // Invalid destination address NPI
	ESME_RINVSYSTYP       Status = 0x00000053 // Invalid system_type field
	ESME_RINVREPFLAG      Status = 0x00000054 // Invalid replace_if_present flag
	ESME_RTHROTTLED       Status = 0x00000058 // Throttling error (ESME exceeded allowed message limits)
	ESME_RINVSCHED        Status = 0x00000061 // Invalid scheduled delivery time
	ESME_RINVEXPIRY       Status = 0x00000062 // Invalid message validity period
	ESME_RINVDFTMSGID     Status = 0x00000063 // Predefined message invalid or not found
	ESME_RX_T_APPN        Status = 0x00000064 // ESME receiver temporary app error
	ESME_RX_P_APPN        Status = 0x00000065 // ESME receiver permanent app error
	ESME_RX_R_APPN        Status = 0x00000066 // ESME receiver reject message error
	ESME_RQUERYFAIL       Status = 0x00000067 // query_sm request failed
	ESME_RINVOPTPARSTREAM Status = 0x000000C0 // Error in the optional part of the PDU body
	ESME_ROPTPARNOTALLWD  Status = 0x000000C1 // Optional parameter not allowed
	ESME_RINVPARLEN       Status = 0x000000C2 // Invalid parameter length
	ESME_RMISSINGOPTPARAM Status = 0x000000C3 // Expected optional parameter missing
	ESME_RINVOPTPARAMVAL  Status = 0x000000C4 // Invalid optional parameter value
	ESME_RDELIVERYFAILURE Status = 0x000000FE // Delivery failure (data_sm_resp)
	ESME_RUNKNOWNERR      Status = 0x000000FF // Unknown error
	ESME_RINVDCS          Status = 0x00000104 // Invalid data coding scheme (SMPP 5.0)
)

func (s Status) String() string {
	switch s {
	case ESME_ROK:
		return "ESME_ROK"
	case ESME_RINVMSGLEN:
		return "ESME_RINVMSGLEN"
	case ESME_RINVCMDLEN:
		return "ESME_RINVCMDLEN"
	case ESME_RINVCMDID:
		return "ESME_RINVCMDID"
	case ESME_RINVBNDSTS:
		return "ESME_RINVBNDSTS"
	case ESME_RALYBND:
		return "ESME_RALYBND"
	case ESME_RINVPRTFLG:
		return "ESME_RINVPRTFLG"
	case ESME_RINVREGDLVFLG:
		return "ESME_RINVREGDLVFLG"
	case ESME_RSYSERR:
		return "ESME_RSYSERR"
	case ESME_RINVSRCADR:
		return "ESME_RINVSRCADR"
	case ESME_RINVDSTADR:
		return "ESME_RINVDSTADR"
	case ESME_RINVMSGID:
		return "ESME_RINVMSGID"
	case ESME_RBINDFAIL:
		return "ESME_RBINDFAIL"
	case ESME_RINVPASWD:
		return "ESME_RINVPASWD"
	case ESME_RINVSYSID:
		return "ESME_RINVSYSID"
	case ESME_RCANCELFAIL:
		return "ESME_RCANCELFAIL"
	case ESME_RREPLACEFAIL:
		return "ESME_RREPLACEFAIL"
	case ESME_RMSGQFUL:
		return "ESME_RMSGQFUL"
	case ESME_RINVNUMDESTS:
		return "ESME_RINVNUMDESTS"
	case ESME_RINVDLNAME:
		return "ESME_RINVDLNAME"
	case ESME_RINVDESTFLAG:
		return "ESME_RINVDESTFLAG"
	case ESME_RINVSERTYP:
		return "ESME_RINVSERTYP"
	case ESME_RINVESMCLASS:
		return "ESME_RINVESMCLASS"
	case ESME_RSUBMITFAIL:
		return "ESME_RSUBMITFAIL"
	case ESME_RINVSRCTON:
		return "ESME_RINVSRCTON"
	case ESME_RINVSRCNPI:
		return "ESME_RINVSRCNPI"
	case ESME_RINVDSTTON:
		return "ESME_RINVDSTTON"
	case ESME_RINVDSTNPI:
		return "ESME_RINVDSTNPI"
	case ESME_RINVSYSTYP:
		return "ESME_RINVSYSTYP"
	case ESME_RINVREPFLAG:
		return "ESME_RINVREPFLAG"
	case ESME_RTHROTTLED:
		return "ESME_RTHROTTLED"
	case ESME_RINVSCHED:
		return "ESME_RINVSCHED"
	case ESME_RINVEXPIRY:
		return "ESME_RINVEXPIRY"
	case ESME_RINVDFTMSGID:
		return "ESME_RINVDFTMSGID"
	case ESME_RX_T_APPN:
		return "ESME_RX_T_APPN"
	case ESME_RX_P_APPN:
		return "ESME_RX_P_APPN"
	case ESME_RX_R_APPN:
		return "ESME_RX_R_APPN"
	case ESME_RQUERYFAIL:
		return "ESME_RQUERYFAIL"
	case ESME_RINVOPTPARSTREAM:
		return "ESME_RINVOPTPARSTREAM"
	case ESME_ROPTPARNOTALLWD:
		return "ESME_ROPTPARNOTALLWD"
	case ESME_RINVPARLEN:
		return "ESME_RINVPARLEN"
	case ESME_RMISSINGOPTPARAM:
		return "ESME_RMISSINGOPTPARAM"
	case ESME_RINVOPTPARAMVAL:
		return "ESME_RINVOPTPARAMVAL"
	case ESME_RDELIVERYFAILURE:
		return "ESME_RDELIVERYFAILURE"
	case ESME_RUNKNOWNERR:
		return "ESME_RUNKNOWNERR"
	case ESME_RINVDCS:
		return "ESME_RINVDCS"
	}
	return fmt.Sprintf("command_status(0x%08X)", uint32(s))
}
