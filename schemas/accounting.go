package schemas

import (
	"strconv"
	"time"
)

// Accounting (docs/ACCOUNTING.md): the brokers publish one record per
// attempt of a message at the attempt's outcome into a durable JetStream
// stream, where a billing system reads them; from the same records they
// count each client's usage per medium and UTC day.
const (
	// AccountingStream is the JetStream stream of accounting records.
	AccountingStream = "UIMS_ACCOUNTING"
	// AccountingSubjects is its subject filter:
	// uims.accounting.<origin medium>.<destination medium>.
	AccountingSubjects = "uims.accounting.>"
	// AccountingMaxAge is how long the stream keeps a record.
	AccountingMaxAge = 90 * 24 * time.Hour
	// AccountingDuplicates is the stream's de-duplication window: a record
	// published again within it (a broker's retry, two replicas republishing
	// the same outcome) with the same Nats-Msg-Id (AccountingRecord.ID) is
	// stored once.
	AccountingDuplicates = 10 * time.Minute
)

// AccountingSubject is the subject of a record of a message sent from
// origin medium to dest medium. A medium that is no subject token (it
// holds '.', '*', '>' or white space, or is empty) is written "_".
func AccountingSubject(origin, dest string) string {
	return "uims.accounting." + subjectToken(origin) + "." + subjectToken(dest)
}

func subjectToken(s string) string {
	if s == "" || len(s) > 64 {
		return "_"
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '.' || c == '*' || c == '>' || c <= ' ' || c >= 0x7f:
			return "_"
		}
	}
	return s
}

// SystemParty is the originator of the brokers' own messages to clients
// (a quota warning, docs/ACCOUNTING.md): their IMI names it as gateway and
// MediumSystem as the sender's medium. It holds no key: the brokers sign
// the ticket and nobody takes its notifications.
const (
	SystemParty  = "system"
	MediumSystem = "system"
)

// Outcomes of an accounting record besides OutcomeFailed and OutcomeExpired.
const (
	OutcomeDelivered = "delivered" // the destination delivered it
	OutcomeRead      = "read"      // the destination reported it read without a delivered first
	// OutcomeCancelled: the sender cancelled a held message (code
	// CANCELLED), or another attempt's late success ended the transaction
	// while this one was open (code SETTLED).
	OutcomeCancelled = "cancelled"
)

// AccountingRecord is one attempt of a message at its outcome
// (docs/ACCOUNTING.md). The brokers see only meta information: sizes and
// types are the IMI's, the content as its sender gave it, before any
// conversion.
type AccountingRecord struct {
	V int `json:"v"`
	// ID is "<tx>.<attempt>.<outcome>", the record's Nats-Msg-Id.
	ID      string `json:"id"`
	MsgID   string `json:"msg_id"`
	Tx      string `json:"tx"`
	Attempt int    `json:"attempt"`
	// Group is the group id of a message to several recipients (IMI meta "group").
	Group string `json:"group,omitempty"`
	// Sender and Recipient are client ids; empty for an outside party.
	Sender    string `json:"sender,omitempty"`
	Recipient string `json:"recipient,omitempty"`
	// Origin is the originating gateway, the sender's medium and address.
	Origin Hop `json:"origin"`
	// Dest is the attempt's destination gateway, medium and address.
	Dest    Hop              `json:"dest"`
	Content AccountedContent `json:"content"`
	// Conversions are the attempt's conversions, in order.
	Conversions []string `json:"conversions,omitempty"`
	// Outcome is delivered, read, failed, expired or cancelled; Code the
	// error code of one that is not delivered or read.
	Outcome string `json:"outcome"`
	Code    string `json:"code,omitempty"`
	// Rerouted: the message moved on to another attempt after this one.
	Rerouted bool `json:"rerouted,omitempty"`
	// Final: this record's outcome is the message's; every message that
	// ended has exactly one final record.
	Final bool `json:"final,omitempty"`
	// Late: the destination acknowledged this attempt's delivery after it
	// had been rerouted; the attempt then has a second record, this one.
	Late bool `json:"late,omitempty"`
	// Accepted is when the originating gateway took the message, Routed
	// when the brokers routed this attempt, At when it reached its outcome
	// (Unix ms).
	Accepted int64 `json:"accepted"`
	Routed   int64 `json:"routed"`
	At       int64 `json:"at"`
	// Broker is the instance that published the record.
	Broker string `json:"broker,omitempty"`
}

// AccountedContent is what a record says of the content.
type AccountedContent struct {
	Type        string `json:"type"`
	Length      int64  `json:"length"`
	Attachments int    `json:"attachments,omitempty"`
}

// AccountingID is the ID (and Nats-Msg-Id) of the record of attempt of tx
// with outcome.
func AccountingID(tx string, attempt int, outcome string) string {
	return tx + "." + strconv.Itoa(attempt) + "." + outcome
}

// Delivered reports whether the record's outcome is a delivery.
func (r *AccountingRecord) Delivered() bool {
	return r.Outcome == OutcomeDelivered || r.Outcome == OutcomeRead
}

// Usage (PROTOCOL.md §6.17): a client's messages per medium and UTC day,
// with its quota.
const (
	// UsageDays is how many days a usage query answers by default, today
	// included; MaxUsageDays the most it may ask.
	UsageDays    = 7
	MaxUsageDays = 31
	// QuotaWarnPercent is the share of its daily quota past which a client
	// gets its quota warning, once a day.
	QuotaWarnPercent = 80
)

// UsageQuery asks the brokers for a client's usage (PROTOCOL.md §6.17):
// the client authenticated by its credential (Kind CredentialToken,
// CredentialSMPP, CredentialSMTP, with Hash as in a ClientQuery), or by id
// (Kind ClientByID), which only the operator's command-line party may ask.
type UsageQuery struct {
	V    int    `json:"v"`
	Kind string `json:"kind"`
	User string `json:"user,omitempty"`
	Hash string `json:"hash,omitempty"`
	// Days is how many UTC days to answer, today first; 0: UsageDays.
	Days int `json:"days,omitempty"`
}

// Validate checks a usage query's version, kind and days.
func (q *UsageQuery) Validate() error {
	if q.V != Version {
		return Errorf(CodeBadVersion, nil, "usage query version")
	}
	if q.Days < 0 || q.Days > MaxUsageDays {
		return Errorf(CodeMalformed, nil, "usage days "+strconv.Itoa(q.Days)+" outside 0.."+strconv.Itoa(MaxUsageDays))
	}
	switch q.Kind {
	case CredentialToken, CredentialSMPP, CredentialSMTP:
		if !validHex64(q.Hash) {
			return Errorf(CodeMalformed, nil, "usage query hash")
		}
		return nil
	case ClientByID:
		if q.User == "" {
			return Errorf(CodeMalformed, nil, "usage query without a client id")
		}
		return nil
	}
	return Errorf(CodeMalformed, nil, "usage query kind "+q.Kind)
}

func validHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// UsageReply answers a UsageQuery.
type UsageReply struct {
	V      int    `json:"v"`
	Client string `json:"client"`
	Quota  Quota  `json:"quota"`
	// Days are the UTC days asked for, today first, each with the media
	// the client used that day.
	Days []UsageDay `json:"days"`
}

// Quota is a client's daily quota and what it used of it today.
type Quota struct {
	// Limit is the most messages the client may send per UTC day; 0: none.
	Limit int64 `json:"limit"`
	// Used is the messages the brokers accepted from the client today
	// (counted against the quota when accepted); Left what remains. Both 0
	// without a quota.
	Used int64 `json:"used"`
	Left int64 `json:"left"`
	// Resets is when the count starts again: the next 00:00 UTC, Unix ms.
	Resets int64 `json:"resets"`
	// Warned: the client got its quota warning today.
	Warned bool `json:"warned,omitempty"`
}

// UsageDay is a client's usage on one UTC day.
type UsageDay struct {
	// Day is the UTC day, YYYY-MM-DD.
	Day string `json:"day"`
	// Media maps a medium to the usage on it; absent: none that day.
	Media map[string]MediumUsage `json:"media,omitempty"`
}

// MediumUsage counts a client's messages on one medium on one day, by the
// day of their outcome. Sent counts the messages the client sent from this
// medium that ended (one per message, whatever its attempts), Failed those
// of them that were not delivered; Received the messages delivered to the
// client on this medium. Bytes are the content's, as sent.
type MediumUsage struct {
	Sent          int64 `json:"sent"`
	SentBytes     int64 `json:"sent_bytes"`
	Failed        int64 `json:"failed"`
	Received      int64 `json:"received"`
	ReceivedBytes int64 `json:"received_bytes"`
}

// Total sums the usage of every medium.
func (d *UsageDay) Total() MediumUsage {
	var t MediumUsage
	for _, m := range d.Media {
		t.Sent += m.Sent
		t.SentBytes += m.SentBytes
		t.Failed += m.Failed
		t.Received += m.Received
		t.ReceivedBytes += m.ReceivedBytes
	}
	return t
}
