package pdu

import (
	"bytes"
	"encoding/binary"
)

// Tag is an optional parameter tag (SMPP 3.4 §5.3.2).
type Tag uint16

// Optional parameter tags, SMPP 3.4 §5.3.2 table 5-7 (subset).
const (
	TagDestAddrSubunit        Tag = 0x0005
	TagDestNetworkType        Tag = 0x0006
	TagDestBearerType         Tag = 0x0007
	TagDestTelematicsID       Tag = 0x0008
	TagSourceAddrSubunit      Tag = 0x000D
	TagSourceNetworkType      Tag = 0x000E
	TagSourceBearerType       Tag = 0x000F
	TagSourceTelematicsID     Tag = 0x0010
	TagQOSTimeToLive          Tag = 0x0017
	TagPayloadType            Tag = 0x0019
	TagAdditionalStatusInfo   Tag = 0x001D
	TagReceiptedMessageID     Tag = 0x001E // C-Octet String, max 65 octets (§5.3.2.12)
	TagMSMsgWaitFacilities    Tag = 0x0030
	TagPrivacyIndicator       Tag = 0x0201
	TagSourceSubaddress       Tag = 0x0202
	TagDestSubaddress         Tag = 0x0203
	TagUserMessageReference   Tag = 0x0204 // 2-octet integer (§5.3.2.17)
	TagUserResponseCode       Tag = 0x0205
	TagSourcePort             Tag = 0x020A
	TagDestinationPort        Tag = 0x020B
	TagSarMsgRefNum           Tag = 0x020C // 2-octet integer (§5.3.2.22)
	TagLanguageIndicator      Tag = 0x020D
	TagSarTotalSegments       Tag = 0x020E // 1-octet integer (§5.3.2.23)
	TagSarSegmentSeqnum       Tag = 0x020F // 1-octet integer (§5.3.2.24)
	TagSCInterfaceVersion     Tag = 0x0210 // 1-octet integer (§5.3.2.25)
	TagCallbackNumPresInd     Tag = 0x0302
	TagCallbackNumAtag        Tag = 0x0303
	TagNumberOfMessages       Tag = 0x0304
	TagCallbackNum            Tag = 0x0381
	TagDPFResult              Tag = 0x0420
	TagSetDPF                 Tag = 0x0421
	TagMSAvailabilityStatus   Tag = 0x0422
	TagNetworkErrorCode       Tag = 0x0423 // 3 octets: network type, error code (§5.3.2.31)
	TagMessagePayload         Tag = 0x0424 // octet string (§5.3.2.32)
	TagDeliveryFailureReason  Tag = 0x0425
	TagMoreMessagesToSend     Tag = 0x0426
	TagMessageState           Tag = 0x0427 // 1-octet integer (§5.3.2.35)
	TagUSSDServiceOp          Tag = 0x0501
	TagDisplayTime            Tag = 0x1201
	TagSMSSignal              Tag = 0x1203
	TagMSValidity             Tag = 0x1204
	TagAlertOnMessageDelivery Tag = 0x130C
	TagItsReplyType           Tag = 0x1380
	TagItsSessionInfo         Tag = 0x1383
)

// MessageState is the message_state value (§5.2.28), carried by the
// message_state TLV of delivery receipts and by query_sm_resp.
type MessageState uint8

// Message states, SMPP 3.4 §5.2.28.
const (
	StateEnroute       MessageState = 1
	StateDelivered     MessageState = 2
	StateExpired       MessageState = 3
	StateDeleted       MessageState = 4
	StateUndeliverable MessageState = 5
	StateAccepted      MessageState = 6
	StateUnknown       MessageState = 7
	StateRejected      MessageState = 8
)

// TLV is one optional parameter (§3.2.1): tag, 2-octet length, value.
type TLV struct {
	Tag   Tag
	Value []byte
}

// TLVs is an ordered list of optional parameters. Order and repeats are
// preserved when decoding and encoding. Getters return the first
// occurrence; setters replace the first occurrence or append.
type TLVs []TLV

// Get returns the value of the first TLV with tag.
func (t TLVs) Get(tag Tag) ([]byte, bool) {
	for _, v := range t {
		if v.Tag == tag {
			return v.Value, true
		}
	}
	return nil, false
}

// Set replaces the value of the first TLV with tag, or appends one.
func (t *TLVs) Set(tag Tag, value []byte) {
	for i := range *t {
		if (*t)[i].Tag == tag {
			(*t)[i].Value = value
			return
		}
	}
	*t = append(*t, TLV{Tag: tag, Value: value})
}

// Del removes every TLV with tag.
func (t *TLVs) Del(tag Tag) {
	out := (*t)[:0]
	for _, v := range *t {
		if v.Tag != tag {
			out = append(out, v)
		}
	}
	clear((*t)[len(out):])
	*t = out
}

func (t TLVs) uint8(tag Tag) (uint8, bool) {
	v, ok := t.Get(tag)
	if !ok || len(v) != 1 {
		return 0, false
	}
	return v[0], true
}

func (t TLVs) uint16(tag Tag) (uint16, bool) {
	v, ok := t.Get(tag)
	if !ok || len(v) != 2 {
		return 0, false
	}
	return binary.BigEndian.Uint16(v), true
}

// ReceiptedMessageID returns receipted_message_id (0x001E) without its NUL
// terminator. A value missing the NUL (seen from some SMSCs) is accepted;
// anything after an embedded NUL is dropped.
func (t TLVs) ReceiptedMessageID() (string, bool) {
	v, ok := t.Get(TagReceiptedMessageID)
	if !ok {
		return "", false
	}
	if i := bytes.IndexByte(v, 0); i >= 0 {
		v = v[:i]
	}
	return string(v), true
}

// SetReceiptedMessageID sets receipted_message_id (0x001E) as a C-Octet
// String.
func (t *TLVs) SetReceiptedMessageID(id string) {
	v := make([]byte, len(id)+1)
	copy(v, id)
	t.Set(TagReceiptedMessageID, v)
}

// MessageState returns message_state (0x0427); ok is false when absent or
// not one octet long.
func (t TLVs) MessageState() (MessageState, bool) {
	v, ok := t.uint8(TagMessageState)
	return MessageState(v), ok
}

// SetMessageState sets message_state (0x0427).
func (t *TLVs) SetMessageState(s MessageState) {
	t.Set(TagMessageState, []byte{byte(s)})
}

// NetworkError is the network_error_code TLV value (§5.3.2.31).
type NetworkError struct {
	Type uint8  // 1 ANSI-136, 2 IS-95, 3 GSM, 4 reserved, ...
	Code uint16 // network specific error code
}

// NetworkErrorCode returns network_error_code (0x0423); ok is false when
// absent or not three octets long.
func (t TLVs) NetworkErrorCode() (NetworkError, bool) {
	v, ok := t.Get(TagNetworkErrorCode)
	if !ok || len(v) != 3 {
		return NetworkError{}, false
	}
	return NetworkError{Type: v[0], Code: binary.BigEndian.Uint16(v[1:])}, true
}

// SetNetworkErrorCode sets network_error_code (0x0423).
func (t *TLVs) SetNetworkErrorCode(ne NetworkError) {
	t.Set(TagNetworkErrorCode, []byte{ne.Type, byte(ne.Code >> 8), byte(ne.Code)})
}

// MessagePayload returns message_payload (0x0424), which replaces
// short_message (sm_length must then be 0, §5.3.2.32).
func (t TLVs) MessagePayload() ([]byte, bool) {
	return t.Get(TagMessagePayload)
}

// SetMessagePayload sets message_payload (0x0424).
func (t *TLVs) SetMessagePayload(b []byte) {
	t.Set(TagMessagePayload, b)
}

// UserMessageReference returns user_message_reference (0x0204).
func (t TLVs) UserMessageReference() (uint16, bool) {
	return t.uint16(TagUserMessageReference)
}

// SetUserMessageReference sets user_message_reference (0x0204).
func (t *TLVs) SetUserMessageReference(ref uint16) {
	t.Set(TagUserMessageReference, binary.BigEndian.AppendUint16(nil, ref))
}

// SAR is the segmentation-and-reassembly TLV triple (§5.3.2.22-24), the
// TLV alternative to a concatenation UDH.
type SAR struct {
	Ref   uint16 // sar_msg_ref_num
	Total uint8  // sar_total_segments, 1..255
	Seq   uint8  // sar_segment_seqnum, 1..Total
}

// SAR returns the sar_* TLVs; ok is false unless all three are present
// with the right sizes. Values are not range-checked.
func (t TLVs) SAR() (SAR, bool) {
	ref, ok1 := t.uint16(TagSarMsgRefNum)
	total, ok2 := t.uint8(TagSarTotalSegments)
	seq, ok3 := t.uint8(TagSarSegmentSeqnum)
	return SAR{Ref: ref, Total: total, Seq: seq}, ok1 && ok2 && ok3
}

// SetSAR sets sar_msg_ref_num, sar_total_segments and sar_segment_seqnum.
func (t *TLVs) SetSAR(s SAR) {
	t.Set(TagSarMsgRefNum, binary.BigEndian.AppendUint16(nil, s.Ref))
	t.Set(TagSarTotalSegments, []byte{s.Total})
	t.Set(TagSarSegmentSeqnum, []byte{s.Seq})
}
