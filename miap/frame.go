package miap

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
)

// Version is the protocol version this package speaks (§2).
const Version = 1

// Purpose says what a MAC is for (§5.2). The numbers are part of every MAC
// input and every subkey: never renumber, only append.
type Purpose uint8

// The purposes, in the order of figure 5 (§6).
const (
	PurposeLogin      Purpose = 1  // gateway → broker: TSCS login key C
	PurposeLoginAck   Purpose = 2  // broker → gateway: TSCS acknowledgement with C_ack
	PurposeIMI        Purpose = 3  // gateway → broker: the signed IMI
	PurposeRoute      Purpose = 4  // broker → gateway: routed IMI, outer digest
	PurposeRouteAck   Purpose = 5  // gateway → broker: originator acknowledges the routed IMI
	PurposeGwSession  Purpose = 6  // destination's own session token for a transfer (strict)
	PurposeTicket     Purpose = 7  // broker → destination: authorisation of one transfer
	PurposeID         Purpose = 8  // broker internal: inner digest ID under K2
	PurposeAck        Purpose = 9  // gateway → broker: delivered / read / failed with ID
	PurposeAckReply   Purpose = 10 // broker → gateway: the broker's answer to an Ack
	PurposeReceipt    Purpose = 11 // broker → originator: receipt relayed by the destination
	PurposeNotify     Purpose = 12 // broker → originator: status notification
	PurposeConv       Purpose = 13 // processor → broker: converted content report
	PurposeConvReply  Purpose = 14 // broker → processor: ticket for the next hop
	PurposeQuery      Purpose = 15 // gateway → broker: status or client query
	PurposeQueryReply Purpose = 16 // broker → gateway: answer to a query
	PurposeAnnounce   Purpose = 17 // gateway → broker: heartbeat
	PurposeCancel     Purpose = 18 // originator → broker: cancel a held message (§6.16)
	purposeEnd        Purpose = 19 // keep last; not a purpose
)

var purposeNames = [...]string{
	PurposeLogin:      "login",
	PurposeLoginAck:   "login-ack",
	PurposeIMI:        "imi",
	PurposeRoute:      "route",
	PurposeRouteAck:   "route-ack",
	PurposeGwSession:  "gw-session",
	PurposeTicket:     "ticket",
	PurposeID:         "id",
	PurposeAck:        "ack",
	PurposeAckReply:   "ack-reply",
	PurposeReceipt:    "receipt",
	PurposeNotify:     "notify",
	PurposeConv:       "conv",
	PurposeConvReply:  "conv-reply",
	PurposeQuery:      "query",
	PurposeQueryReply: "query-reply",
	PurposeAnnounce:   "announce",
	PurposeCancel:     "cancel",
}

// Direction labels who signs for whom (§5.2).
type Direction uint8

// Directions.
const (
	GatewayToBroker Direction = 1 // signed with the gateway's K1 subkey, checked by brokers
	BrokerToGateway Direction = 2 // signed by brokers with the gateway's K1 subkey
	GatewayToSelf   Direction = 3 // a gateway's token for itself
	BrokerInternal  Direction = 4 // K2, brokers only
)

var purposeDirections = [...]Direction{
	PurposeLogin:      GatewayToBroker,
	PurposeLoginAck:   BrokerToGateway,
	PurposeIMI:        GatewayToBroker,
	PurposeRoute:      BrokerToGateway,
	PurposeRouteAck:   GatewayToBroker,
	PurposeGwSession:  GatewayToSelf,
	PurposeTicket:     BrokerToGateway,
	PurposeID:         BrokerInternal,
	PurposeAck:        GatewayToBroker,
	PurposeAckReply:   BrokerToGateway,
	PurposeReceipt:    BrokerToGateway,
	PurposeNotify:     BrokerToGateway,
	PurposeConv:       GatewayToBroker,
	PurposeConvReply:  BrokerToGateway,
	PurposeQuery:      GatewayToBroker,
	PurposeQueryReply: BrokerToGateway,
	PurposeAnnounce:   GatewayToBroker,
	PurposeCancel:     GatewayToBroker,
}

// Valid reports whether p is a defined purpose.
func (p Purpose) Valid() bool { return p >= PurposeLogin && p < purposeEnd }

// String returns the purpose's name as used in the Miap-Purpose header.
func (p Purpose) String() string {
	if p.Valid() {
		return purposeNames[p]
	}
	return "invalid"
}

// Direction returns the fixed direction of the purpose.
func (p Purpose) Direction() Direction {
	if p.Valid() {
		return purposeDirections[p]
	}
	return 0
}

// ParsePurpose maps a Miap-Purpose header value to a purpose.
func ParsePurpose(s string) (Purpose, bool) {
	for i := PurposeLogin; i < purposeEnd; i++ {
		if purposeNames[i] == s {
			return i, true
		}
	}
	return 0, false
}

// NonceSize is the size of a nonce (§7.2).
const NonceSize = 16

// MACSize is the size of every MAC, ID and ticket (§5.1).
const MACSize = sha256.Size

// Field tags of the MAC input (§5.3). Every MAC input carries all fields, in
// this order; a field a purpose does not use is present with length 0.
const (
	tagParty   = 1
	tagKid     = 2
	tagTS      = 3
	tagNonce   = 4
	tagSession = 5
	tagID      = 6
	tagPeer    = 7
	tagCType   = 8
	tagCLen    = 9
	tagCSHA    = 10
	tagExpiry  = 11
	tagBody    = 12
	tagMAC     = 13 // only in the compact form (§5.5)
)

// magic starts every MAC input (§5.3).
const magic = "MIAP"

// Frame is one MIAP-authenticated message: the fields that the MAC covers
// and the MAC (§5.3). Which fields are set depends on the purpose (§6).
type Frame struct {
	Purpose Purpose
	// Party is the gateway or processor whose K1 keys the MAC (the signer for
	// gateway → broker frames, the addressee for broker → gateway frames).
	// For PurposeID it is empty.
	Party string
	// Kid is the key id of the key used.
	Kid string
	// TS is the signing time, Unix milliseconds.
	TS int64
	// Nonce is single-use per party within the window (§7.2).
	Nonce [NonceSize]byte
	// Session is the session key C_ack (strict mode) or the routed
	// transaction's C_ack; ID is the inner digest (§6.3).
	Session []byte
	ID      []byte
	// Peer names the other party a frame concerns (e.g. the originator in a
	// ticket, the destination in a receipt).
	Peer string
	// Content binding (§6.6): MIME type, exact length, SHA-256.
	CType string
	CLen  int64
	CSHA  []byte
	// Expiry is when the authorisation ends, Unix ms (0: none).
	Expiry int64
	// Body is the exact document bytes sent (JSON).
	Body []byte
	// MAC is the frame's MAC (not part of the MAC input).
	MAC []byte
}

// AppendMACInput appends the exact MAC input of f to dst (§5.3):
//
//	"MIAP" ‖ u8 version ‖ u8 purpose ‖ u8 direction ‖ field*
//	field = u8 tag ‖ u32be length ‖ bytes
func AppendMACInput(dst []byte, f *Frame) []byte {
	return append(appendMACHead(dst, f), f.Body...)
}

// appendMACHead appends the MAC input up to and including the body field's
// tag and length, so that the body can be hashed in place.
func appendMACHead(dst []byte, f *Frame) []byte {
	dst = append(dst, magic...)
	dst = append(dst, Version, byte(f.Purpose), byte(f.Purpose.Direction()))
	dst = appendString(dst, tagParty, f.Party)
	dst = appendString(dst, tagKid, f.Kid)
	dst = appendInt(dst, tagTS, f.TS)
	dst = appendField(dst, tagNonce, f.Nonce[:])
	dst = appendField(dst, tagSession, f.Session)
	dst = appendField(dst, tagID, f.ID)
	dst = appendString(dst, tagPeer, f.Peer)
	dst = appendString(dst, tagCType, f.CType)
	dst = appendInt(dst, tagCLen, f.CLen)
	dst = appendField(dst, tagCSHA, f.CSHA)
	dst = appendInt(dst, tagExpiry, f.Expiry)
	dst = append(dst, tagBody)
	return binary.BigEndian.AppendUint32(dst, uint32(len(f.Body)))
}

func appendField(dst []byte, tag byte, b []byte) []byte {
	dst = append(dst, tag)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(b)))
	return append(dst, b...)
}

func appendString(dst []byte, tag byte, s string) []byte {
	dst = append(dst, tag)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(s)))
	return append(dst, s...)
}

func appendInt(dst []byte, tag byte, v int64) []byte {
	dst = append(dst, tag)
	dst = binary.BigEndian.AppendUint32(dst, 8)
	return binary.BigEndian.AppendUint64(dst, uint64(v))
}

// computeMAC returns HMAC(key, MACInput(f)) appended to dst. The body is
// hashed in place, never copied.
func computeMAC(dst []byte, sk *subkey, f *Frame) []byte {
	m := sk.get()
	m.h.Write(appendMACHead(m.buf[:0], f))
	m.h.Write(f.Body)
	dst = append(dst, m.h.Sum(m.sum[:0])...)
	sk.put(m)
	return dst
}

// checkMAC recomputes f's MAC and compares it in constant time.
func checkMAC(sk *subkey, f *Frame) bool {
	m := sk.get()
	m.h.Write(appendMACHead(m.buf[:0], f))
	m.h.Write(f.Body)
	ok := equalMAC(f.MAC, m.h.Sum(m.sum[:0]))
	sk.put(m)
	return ok
}

// equalMAC compares MACs in constant time.
func equalMAC(a, b []byte) bool { return len(a) == MACSize && hmac.Equal(a, b) }
