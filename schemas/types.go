package schemas

import "time"

// Version is the schema version carried in the "v" field of every document.
const Version = 1

// Media known to UIMS. A gateway announces the medium it serves.
const (
	MediumWeb   = "web"
	MediumEmail = "email"
	MediumSMS   = "sms"
	MediumFax   = "fax"
	MediumVoice = "voice"
	MediumBot   = "bot"
	MediumXMPP  = "xmpp"
	// MediumCLI is the operator's command-line sender (`uims send`): its
	// address is the client id it sends as (PROTOCOL.md §6.2).
	MediumCLI = "cli"
)

// Statuses of a message, in the order they normally happen. A message ends in
// exactly one terminal status reported to its sender: delivered (possibly
// followed by read) or failed.
const (
	StatusAccepted    = "accepted"    // the originating gateway took it from its client
	StatusRouted      = "routed"      // the broker chose the destination and signed the route
	StatusTransferred = "transferred" // the destination gateway accepted the content
	StatusDelivered   = "delivered"   // the destination handed it to the recipient
	StatusRead        = "read"        // the recipient opened it
	StatusFailed      = "failed"      // non-delivery, with a reason
	// StatusRerouted is not terminal: an attempt failed and the brokers
	// sent the message on to the recipient's next medium (PROTOCOL.md
	// §6.15, docs/ROUTING.md). A notification with it carries the new
	// route for the originator.
	StatusRerouted = "rerouted"
	// StatusHeld is not terminal: the brokers hold the message until a
	// time — the recipient's quiet hours on the chosen medium, or the
	// sender's send_at — and the originator keeps its content meanwhile
	// (PROTOCOL.md §6.16, docs/ROUTING.md "Holds").
	StatusHeld = "held"
	// StatusReleased is not terminal: the hold ended and the brokers
	// routed the message. A notification with it carries the route for
	// the originator, as a rerouted one does.
	StatusReleased = "released"
)

// History entries of a rerouted message besides the statuses above
// (PROTOCOL.md §13.10, docs/ROUTING.md "History").
const (
	// HistoryAttemptFailed ends an attempt that the brokers followed with
	// another one: its medium, code and reason.
	HistoryAttemptFailed = "attempt-failed"
	// HistoryRecorded is an acknowledgement that changed nothing because
	// another attempt already decided the outcome.
	HistoryRecorded = "recorded"
)

// Terminal reports whether a status ends a transaction (read may still follow delivered).
func Terminal(status string) bool {
	return status == StatusDelivered || status == StatusRead || status == StatusFailed
}

// Limits (PROTOCOL.md §10).
const (
	// MaxIMI is the largest IMI or routed IMI document, in bytes.
	MaxIMI = 8 << 10
	// MaxControl is the largest body of any other control document.
	MaxControl = 16 << 10
)

// Endpoint names one side of a message on its medium.
type Endpoint struct {
	Medium  string `json:"medium"`
	Address string `json:"address"`
	// Client is the UIMS client id when the gateway authenticated the sender
	// (bearer token, SMTP AUTH, SMPP bind); empty for an outside sender.
	Client string `json:"client,omitempty"`
	// Name is a display name, if the medium has one.
	Name string `json:"name,omitempty"`
}

// Content describes message content without carrying it (PROTOCOL.md §6.6).
type Content struct {
	// Type is a MIME content type with parameters, e.g. "text/plain; charset=utf-8"
	// or "multipart/mixed; boundary=x". Content bytes are the decoded body.
	Type string `json:"type"`
	// Length is the exact content length in bytes (of the decoded body).
	Length int64 `json:"length"`
	// SHA256 is the lowercase hex SHA-256 of the content bytes.
	SHA256 string `json:"sha256"`
	// Ref names the content in the JetStream object store when it is larger
	// than a NATS message can carry; empty when the content travels inline.
	Ref string `json:"ref,omitempty"`
	// Sealed names how the content is sealed from hop to hop
	// (PROTOCOL.md §14): "x25519-a256gcm", and Length and SHA256 then
	// describe the sealed bytes; empty: the content travels as it is.
	Sealed string `json:"sealed,omitempty"`
	// Attachments lists attached parts (name, type, size) for display and
	// routing; the bytes stay in the content.
	Attachments []Attachment `json:"attachments,omitempty"`
}

// PlainLength is the content's length before sealing: Length, less
// SealOverhead for sealed content (what usage and accounting count).
func (c *Content) PlainLength() int64 {
	if c.Sealed != "" && c.Length >= SealOverhead {
		return c.Length - SealOverhead
	}
	return c.Length
}

// Attachment describes one attached part of multipart content.
type Attachment struct {
	Name   string `json:"name"`
	Type   string `json:"type"`
	Length int64  `json:"length"` // bytes
}

// IMI is the instant message meta information that the originating gateway
// extracts from a message and sends to the brokers (patent: IMI; PROTOCOL.md §6.2).
// It never carries the content itself.
type IMI struct {
	V int `json:"v"`
	// MsgID is the message id: 128 bits as 32 lowercase hex digits, chosen at
	// the edge and reused on every retry.
	MsgID string `json:"msg_id"`
	// Gateway is the originating gateway's party id; Instance its instance.
	Gateway  string `json:"gateway"`
	Instance string `json:"instance,omitempty"`
	// From is the sender as the originating gateway knows it.
	From Endpoint `json:"from"`
	// To is the recipient as the sender wrote it: a client id or an address
	// (e-mail address, phone number).
	To string `json:"to"`
	// Subject, if the medium has one.
	Subject string  `json:"subject,omitempty"`
	Content Content `json:"content"`
	// Created is when the gateway accepted the message, Unix milliseconds.
	Created int64 `json:"created"`
	// InReplyTo is the message id this one answers, if known.
	InReplyTo string `json:"in_reply_to,omitempty"`
	// Meta carries medium-specific hints that travel end to end (e.g.
	// "email.message_id", "sms.registered_delivery"); small strings only.
	Meta map[string]string `json:"meta,omitempty"`
	// SendAt is when the sender wants the message delivered, Unix ms: the
	// brokers hold it until then (PROTOCOL.md §6.16); 0 or a time past:
	// at once. At most MaxHold after Created.
	SendAt int64 `json:"send_at,omitempty"`
	// Expires is when the message stops being worth delivering, Unix ms
	// (SMPP validity_period): one still held then fails EXPIRED; 0: none.
	Expires int64 `json:"expires,omitempty"`
	// Urgent asks to pass the recipient's quiet hours; it does only for
	// a sender the recipient's profile lists in urgent_from.
	Urgent bool `json:"urgent,omitempty"`
}

// MaxHold bounds how far ahead a message may be scheduled (IMI SendAt),
// and so how long the brokers hold one (PROTOCOL.md §6.16).
const MaxHold = 7 * 24 * time.Hour

// Hop is one gateway or processor on a route.
type Hop struct {
	// Gateway is the destination party id (e.g. "web", "email").
	Gateway string `json:"gateway"`
	Medium  string `json:"medium"`
	// Address is the recipient's address on that medium.
	Address string `json:"address"`
}

// RoutedIMI is the broker's modified meta information (patent: IMI'; PROTOCOL.md §6.3).
// Its exact bytes are what the inner digest ID, the outer digest and the
// destination ticket cover, and what the originator forwards with the content.
type RoutedIMI struct {
	V   int `json:"v"`
	IMI IMI `json:"imi"`
	// Tx is the transaction id (the broker's handle on this message).
	Tx string `json:"tx"`
	// Sender and Recipient are client ids when known.
	Sender    string `json:"sender,omitempty"`
	Recipient string `json:"recipient,omitempty"`
	// RecipientName is the recipient's display name, for receipts.
	RecipientName string `json:"recipient_name,omitempty"`
	// Dest is where the content goes.
	Dest Hop `json:"dest"`
	// Conversions is the chain of processors the content passes first, in order.
	Conversions []Step `json:"conversions,omitempty"`
	// Routed is when the broker signed the route; Deadline is when the
	// transfer must be done (Unix ms). A missing acknowledgement becomes a
	// non-delivery report at Deadline.
	Routed   int64 `json:"routed"`
	Deadline int64 `json:"deadline"`
	// Attempt counts routes for this transaction (1, then 2... on reroute).
	Attempt int `json:"attempt"`
	// Receipts says which receipts the sender wants: "delivery", "read", "failure".
	Receipts []string `json:"receipts,omitempty"`
	// Options carries recipient-side delivery options from the profile
	// (e.g. "sms.long": "segment" | "shorten").
	Options map[string]string `json:"options,omitempty"`
	// Fallback says that the brokers route the message to another medium
	// if this attempt fails: the originator keeps the content until the
	// outcome (PROTOCOL.md §6.15).
	Fallback bool `json:"fallback,omitempty"`
	// HeldUntil, when set, says the brokers hold the message until then
	// (Unix ms; PROTOCOL.md §6.16): the route carries no ticket, the
	// originator keeps the content, and a released notification brings
	// the route to use. Held names why ("quiet hours on sms until …",
	// "scheduled for …").
	HeldUntil int64  `json:"held_until,omitempty"`
	Held      string `json:"held,omitempty"`
	// Seal maps each hop of the route (the processors of Conversions and
	// the destination gateway) to the encryption key it announced, for
	// sealed content (PROTOCOL.md §14): the key each sealer wraps to.
	Seal map[string]string `json:"seal,omitempty"`
}

// Step is one conversion on a route.
type Step struct {
	Conversion string `json:"conversion"`
	// Processor is the processor's party id (the ticket for the step names it).
	Processor string `json:"processor"`
	// To is the content type the step produces.
	To string `json:"to"`
}

// Ack is a destination gateway's acknowledgement to the brokers (patent:
// delivery / read / non-delivery acknowledgement; PROTOCOL.md §6.8). The
// inner digest ID travels with it in the Miap-Id header.
type Ack struct {
	V       int    `json:"v"`
	Tx      string `json:"tx"`
	MsgID   string `json:"msg_id"`
	Gateway string `json:"gateway"`
	// Status is delivered, read or failed.
	Status string `json:"status"`
	// Code and Reason explain a failure.
	Code   string `json:"code,omitempty"`
	Reason string `json:"reason,omitempty"`
	// At is the destination's clock when the status happened, Unix ms;
	// informative (the brokers date a status by their own clock).
	At int64 `json:"at"`
	// Relayed says the destination relays the broker's receipt to the
	// originator in its transfer reply, so the brokers need not also store a
	// notification for this status (PROTOCOL.md §6.8).
	Relayed bool `json:"relayed,omitempty"`
}

// AckReply is the broker's answer to an Ack.
type AckReply struct {
	V  int    `json:"v"`
	Tx string `json:"tx"`
	// State is the transaction state after the acknowledgement.
	State string `json:"state"`
	// Duplicate is true when the same acknowledgement had already been applied.
	Duplicate bool `json:"duplicate,omitempty"`
	// Rerouted is true when the acknowledged failure made the brokers try
	// another medium (PROTOCOL.md §6.15); State is then "failed", the
	// outcome of the acknowledged attempt.
	Rerouted bool `json:"rerouted,omitempty"`
}

// StatusEvent tells the originating gateway what happened to a message
// (PROTOCOL.md §6.9); the gateway tells its client in the client's medium.
type StatusEvent struct {
	V      int    `json:"v"`
	Tx     string `json:"tx"`
	MsgID  string `json:"msg_id"`
	Status string `json:"status"`
	Code   string `json:"code,omitempty"`
	Reason string `json:"reason,omitempty"`
	// At is when the brokers applied the status, Unix ms.
	At int64 `json:"at"`
	// Sender is the client id of the sender, From its endpoint, so that the
	// originating gateway can find whom to tell without state of its own.
	Sender string   `json:"sender,omitempty"`
	From   Endpoint `json:"from"`
	// To is the recipient as the sender wrote it; Dest where it went.
	To      string `json:"to,omitempty"`
	Dest    Hop    `json:"dest"`
	Subject string `json:"subject,omitempty"`
	// Meta echoes the IMI's Meta (e.g. the SMPP message id to put in a receipt).
	Meta map[string]string `json:"meta,omitempty"`
	// Attempt is the attempt the status belongs to (absent: 1), Earlier
	// the attempts before it that failed (PROTOCOL.md §6.15).
	Attempt int       `json:"attempt,omitempty"`
	Earlier []Attempt `json:"earlier,omitempty"`
	// Routed is, for StatusRerouted only, the new IMI′ as base64url of its
	// exact bytes: the originator transfers the content with it and the
	// ticket headers of the notification (PROTOCOL.md §6.15).
	Routed string `json:"routed,omitempty"`
}

// Attempt is one attempt of a message that the brokers followed with
// another one (PROTOCOL.md §6.15).
type Attempt struct {
	Attempt int    `json:"attempt"`
	Medium  string `json:"medium"`
	Gateway string `json:"gateway"`
	Address string `json:"address,omitempty"`
	// Outcome is "failed" (the destination acknowledged a failure) or
	// "expired" (its deadline passed without an outcome).
	Outcome string `json:"outcome"`
	Code    string `json:"code,omitempty"`
	Reason  string `json:"reason,omitempty"`
	// At is when the brokers ended the attempt, Unix ms.
	At int64 `json:"at"`
}

// Outcomes of an Attempt.
const (
	OutcomeFailed  = "failed"
	OutcomeExpired = "expired"
)

// HistoryEntry is one status change with its time.
type HistoryEntry struct {
	Status string `json:"status"`
	// At is when it happened, Unix ms.
	At     int64  `json:"at"`
	Code   string `json:"code,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Party is who caused the change (gateway or broker instance).
	Party string `json:"party,omitempty"`
	// Attempt and Medium name the attempt of a rerouted message the entry
	// belongs to; absent for a message routed once (PROTOCOL.md §6.15).
	Attempt int    `json:"attempt,omitempty"`
	Medium  string `json:"medium,omitempty"`
	// Until is, for a held entry, when the hold ends (Unix ms).
	Until int64 `json:"until,omitempty"`
}

// HeldQuery is a broker's question to a destination gateway about a
// message whose deadline passed without an acknowledgement: does it hold
// it? A destination that does answers with its signed acknowledgement
// (PROTOCOL.md §6.14), so the deadline never fails a message that sits
// with its recipient.
type HeldQuery struct {
	V         int    `json:"v"`
	MsgID     string `json:"msg_id"`
	Tx        string `json:"tx"`
	Recipient string `json:"recipient,omitempty"`
	Dest      Hop    `json:"dest"`
}

// HeldReply answers a HeldQuery: Held is true once the destination sent
// its acknowledgement for the message; Later when it could not look now
// (its store failed), so the broker asks again instead of failing it.
type HeldReply struct {
	V     int  `json:"v"`
	Held  bool `json:"held"`
	Later bool `json:"later,omitempty"`
}

// StatusQuery asks the brokers for a message's status (PROTOCOL.md §6.10).
type StatusQuery struct {
	V     int    `json:"v"`
	MsgID string `json:"msg_id"`
}

// TxStatus is the brokers' view of one transaction.
type TxStatus struct {
	V       int            `json:"v"`
	Tx      string         `json:"tx"`
	MsgID   string         `json:"msg_id"`
	State   string         `json:"state"`
	Sender  string         `json:"sender,omitempty"`
	To      string         `json:"to,omitempty"`
	Dest    Hop            `json:"dest"`
	History []HistoryEntry `json:"history"`
	// Attempt is the current attempt (absent: 1; PROTOCOL.md §6.15).
	Attempt int `json:"attempt,omitempty"`
	// HeldUntil is, for state held, when the hold ends (Unix ms).
	HeldUntil int64 `json:"held_until,omitempty"`
}

// CancelRequest asks the brokers to cancel a held message (PROTOCOL.md
// §6.16); only its originator may.
type CancelRequest struct {
	V     int    `json:"v"`
	MsgID string `json:"msg_id"`
}

// RouteAck is the body of the originator's acknowledgement of a routed
// IMI (strict mode, PROTOCOL.md §6.4).
type RouteAck struct {
	V int `json:"v"`
	// Tx is the routed IMI's transaction id.
	Tx string `json:"tx"`
}

// RouteAckReply is the body of the brokers' answer to a RouteAck: nothing
// but the version (PROTOCOL.md §6.4).
type RouteAckReply struct {
	V int `json:"v"`
}

// ConvReport is a processor's report of converted content to the brokers
// (PROTOCOL.md §6.7). The broker answers with a new ticket for the next hop.
type ConvReport struct {
	V          int     `json:"v"`
	Tx         string  `json:"tx"`
	MsgID      string  `json:"msg_id"`
	Conversion string  `json:"conversion"`
	Step       int     `json:"step"`
	Content    Content `json:"content"`
}

// Kinds of a ClientQuery that look a client up rather than check a
// credential (PROTOCOL.md §6.11).
const (
	ClientByAddress = "address" // User is an address on Medium
	ClientByID      = "id"      // User is a client id
)

// ClientQuery asks the brokers to resolve a client (PROTOCOL.md §6.11):
// by a credential (Kind CredentialToken, CredentialSMPP, CredentialSMTP), by
// an address on a medium (Kind "address") or by id (Kind "id"). A credential
// travels as its hash (TokenSHA256, CredentialHash), never in clear; the
// broker compares it in constant time and never returns it.
type ClientQuery struct {
	V      int    `json:"v"`
	Kind   string `json:"kind"`
	Medium string `json:"medium,omitempty"`
	User   string `json:"user,omitempty"`
	// Hash is TokenSHA256(token) for CredentialToken and
	// CredentialHash(Kind, User, password) for CredentialSMPP and CredentialSMTP.
	Hash string `json:"hash,omitempty"`
}

// ClientInfo is the public part of a profile, returned to gateways.
type ClientInfo struct {
	V         int               `json:"v"`
	ID        string            `json:"id"`
	Name      string            `json:"name,omitempty"`
	Addresses map[string]string `json:"addresses,omitempty"`
	Prefer    []string          `json:"prefer,omitempty"`
	Receipts  ReceiptPrefs      `json:"receipts"`
	// Groups are the client's named groups (Profile.Groups), only in the
	// answer to a credential query: the client's own gateway expands
	// "group:<name>" from them (PROTOCOL.md §6.3, "Group messages").
	Groups map[string][]string `json:"groups,omitempty"`
}

// Announce is a gateway or processor heartbeat (PROTOCOL.md §6.12). Brokers
// route only to parties whose announcement has not expired.
type Announce struct {
	V        int    `json:"v"`
	Gateway  string `json:"gateway"`
	Medium   string `json:"medium"`
	Instance string `json:"instance"`
	// Accepts lists content types the gateway delivers as they are
	// ("text/plain", "text/*", "*/*"); others need a conversion.
	Accepts []string `json:"accepts,omitempty"`
	// Conversions lists what a processor converts.
	Conversions []Conversion `json:"conversions,omitempty"`
	// Domains and Prefixes say which outside addresses the gateway can reach
	// ("*" for any), for recipients that are not clients.
	Reach []string `json:"reach,omitempty"`
	// TTL is how long the announcement is valid after At, in
	// milliseconds (0 to MaxAnnounceTTL; 0: the instance stops).
	TTL int64 `json:"ttl"`
	// At is the announcer's clock, Unix ms.
	At int64 `json:"at"`
	// XKey is the party's public encryption key ("X…", nkeys xkeys) that
	// sealed content is wrapped to (PROTOCOL.md §14); absent: content
	// reaches it unsealed.
	XKey string `json:"xkey,omitempty"`
}

// Conversion is one content conversion a processor offers.
type Conversion struct {
	// Name is the conversion's name and subject token (uims.proc.<name>).
	Name string `json:"name"`
	// From is the content type pattern it takes ("text/html", "image/*").
	From string `json:"from"`
	// To is the content type it produces ("text/plain; charset=utf-8").
	To string `json:"to"`
	// Cost is what the conversion costs a route, 1 to MaxConversionCost;
	// absent or 0 means 1. Brokers pick the cheapest chain (PROTOCOL.md §6.12).
	Cost int `json:"cost,omitempty"`
}

// ReceiptPrefs says which receipts a client wants for the messages it sends.
type ReceiptPrefs struct {
	Delivery bool `json:"delivery" yaml:"delivery"`
	Read     bool `json:"read" yaml:"read"`
	Failure  bool `json:"failure" yaml:"failure"`
}

// SMPPCredentials let an application bind to the SMS gateway as a client.
type SMPPCredentials struct {
	SystemID string `json:"system_id" yaml:"system_id"`
	// Password in clear is accepted on input only (profile YAML, profiles
	// stored before PROTOCOL.md rev 1.2): the brokers keep PasswordHash
	// instead and never store or return it.
	Password string `json:"password,omitempty" yaml:"password"`
	// PasswordHash is CredentialHash(CredentialSMPP, SystemID, password).
	PasswordHash string `json:"password_hash,omitempty" yaml:"password_hash"`
}

// SMTPCredentials let a mail client submit as a client (AUTH PLAIN).
type SMTPCredentials struct {
	Username string `json:"username" yaml:"username"`
	// Password in clear is accepted on input only, as SMPPCredentials.Password.
	Password string `json:"password,omitempty" yaml:"password"`
	// PasswordHash is CredentialHash(CredentialSMTP, Username, password).
	PasswordHash string `json:"password_hash,omitempty" yaml:"password_hash"`
}

// Profile is a client profile (patent: client profile database). Brokers
// own profiles; gateways see only ClientInfo.
type Profile struct {
	V    int    `json:"v" yaml:"-"`
	ID   string `json:"id" yaml:"id"`
	Name string `json:"name,omitempty" yaml:"name"`
	// Token is the bearer token for the HTTP API and the web page, in clear.
	// It is accepted on input only (profile YAML, profiles stored before
	// PROTOCOL.md rev 1.2): the brokers keep TokenSHA256 instead and never
	// store or return it.
	Token string `json:"token,omitempty" yaml:"token"`
	// TokenSHA256 is TokenSHA256(token): what the brokers keep and compare.
	TokenSHA256 string `json:"token_sha256,omitempty" yaml:"token_sha256"`
	// Addresses maps a medium to the client's address on it.
	Addresses map[string]string `json:"addresses,omitempty" yaml:"addresses"`
	// Prefer is the delivery order of media; the first with a live gateway wins,
	// the next ones are fallbacks.
	Prefer   []string         `json:"prefer,omitempty" yaml:"prefer"`
	SMPP     *SMPPCredentials `json:"smpp,omitempty" yaml:"smpp"`
	SMTP     *SMTPCredentials `json:"smtp,omitempty" yaml:"smtp"`
	Receipts *ReceiptPrefs    `json:"receipts,omitempty" yaml:"receipts"`
	// Quota is the most messages the client may send per UTC day; 0 is unlimited.
	Quota int64 `json:"quota,omitempty" yaml:"quota"`
	// Options are recipient-side delivery options (e.g. "sms.long": "shorten").
	Options map[string]string `json:"options,omitempty" yaml:"options"`
	// Operator marks a client allowed into the operator view.
	Operator bool `json:"operator,omitempty" yaml:"operator"`
	// Fallback says when a message for this client moves on to its next
	// medium (docs/ROUTING.md); nil: the defaults.
	Fallback *Fallback `json:"fallback,omitempty" yaml:"fallback"`
	// TimeZone is the client's IANA time zone ("Europe/Berlin"), in which
	// QuietHours are read; default UTC.
	TimeZone string `json:"time_zone,omitempty" yaml:"time_zone"`
	// QuietHours maps a medium to the windows in which it must not disturb
	// the client (package schemas/quiet: "22:00-07:00", "sat-sun
	// 00:00-24:00"; several separated by ";"); "*" applies to every medium.
	QuietHours map[string]string `json:"quiet_hours,omitempty" yaml:"quiet_hours"`
	// Quiet says what happens to a message for a quiet medium: QuietHold
	// (default) waits until the window ends, QuietNext takes the next medium
	// of Prefer that is not quiet.
	Quiet string `json:"quiet,omitempty" yaml:"quiet"`
	// UrgentFrom lists the senders (client ids) whose messages marked
	// urgent pass quiet hours.
	UrgentFrom []string `json:"urgent_from,omitempty" yaml:"urgent_from"`
	// Groups are named groups of recipients the client sends to as
	// "group:<name>" (ValidateGroups; docs/ROUTING.md, "Groups").
	Groups map[string][]string `json:"groups,omitempty" yaml:"groups"`
}

// What Profile.Quiet may say.
const (
	QuietHold = "hold"
	QuietNext = "next"
)

// ReceiptsOrDefault returns the profile's receipt preferences; all on by default.
func (p *Profile) ReceiptsOrDefault() ReceiptPrefs {
	if p.Receipts == nil {
		return ReceiptPrefs{Delivery: true, Read: true, Failure: true}
	}
	return *p.Receipts
}

// TraceEvent is one protocol step of one message, published in batches on
// uims.trace.<party>.batch for observers (operator view, metrics). Nothing
// depends on it being received.
type TraceEvent struct {
	Step   string `json:"step"`
	MsgID  string `json:"msg_id,omitempty"`
	Tx     string `json:"tx,omitempty"`
	Party  string `json:"party"`
	By     string `json:"by"`
	Result string `json:"result"`
	At     int64  `json:"at"`
	// Step details.
	Dest       string `json:"dest,omitempty"`
	Status     string `json:"status,omitempty"`
	IDMatch    bool   `json:"id_match,omitempty"`
	ID         string `json:"id,omitempty"` // a prefix of the inner digest ID
	Conversion string `json:"conversion,omitempty"`
	Next       string `json:"next,omitempty"`
	// Sender and Recipient client ids and the recipient as written (imi step).
	Sender    string `json:"sender,omitempty"`
	Recipient string `json:"recipient,omitempty"`
	To        string `json:"to,omitempty"`
	// Code of a refusal.
	Code string `json:"code,omitempty"`
}
