package sms

import (
	"context"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/uims/uims/gateways/sms/dlr"
	"github.com/uims/uims/gateways/sms/gsm"
	"github.com/uims/uims/gateways/sms/pdu"
	"github.com/uims/uims/schemas"
)

// receipt is a delivery receipt for an application (SMPP 3.4 §5.2.12
// esm_class 0x04, Appendix B text, §5.3.2.12 and §5.3.2.35 TLVs).
type receipt struct {
	// IDs are the message ids the application got in submit_sm_resp: one
	// for a single message, one per part of a concatenated one. Each gets
	// its own receipt.
	IDs    []string  `json:"ids"`
	Stat   dlr.Stat  `json:"stat"`
	Err    string    `json:"err"`
	Submit time.Time `json:"submit"`
	Done   time.Time `json:"done"`
	// Src and Dst address the receipt: from the original destination to
	// the original source, as the application wrote them.
	Src address `json:"src"`
	Dst address `json:"dst"`
}

// Refusals. A receipt names only message ids the application was given in
// submit_sm_resp (SMPP 3.4 §5.2.17, Appendix B). A submission the fabric
// refused gave it none, yet the message may still get a status: a
// destination that refuses it for good acknowledges the failure to the
// brokers, which notify this gateway, often before kit.Send returns here
// (the UNDELIV receipt for an id the application never got, issue 15); one
// refused for now fails at the brokers' deadline. So a refused submission
// whose application asked for receipts is recorded in SMSCBucket
// before its error status goes out, and a receipt is checked against the
// record when it is due (queue.handle). A receipt for a submission still
// being decided on this instance waits for the decision; on another
// instance, ReceiptDelay covers the moment between the brokers' failure
// and the record.

// wantsReceipts reports whether registered_delivery asks for any receipt
// (§5.2.17).
func wantsReceipts(rd uint8) bool {
	return rd&(pdu.RegisteredDeliveryReceiptMask|pdu.RegisteredDeliveryIntermediate) != 0
}

// deciding counts the submissions being handed to the fabric on this
// instance, by message id.
type deciding struct {
	mu sync.Mutex
	m  map[string]int
}

func (d *deciding) begin(msgID string) {
	d.mu.Lock()
	if d.m == nil {
		d.m = make(map[string]int)
	}
	d.m[msgID]++
	d.mu.Unlock()
}

func (d *deciding) end(msgID string) {
	d.mu.Lock()
	if d.m[msgID]--; d.m[msgID] <= 0 {
		delete(d.m, msgID)
	}
	d.mu.Unlock()
}

func (d *deciding) has(msgID string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.m[msgID] > 0
}

// refuse records that the application was refused ids of message msgID
// (see Refusals). It is called before the application hears the refusal.
func (g *Gateway) refuse(ctx context.Context, msgID string, ids ...string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.cfg.ResponseTimeout)
	defer cancel()
	if err := g.store.markRefused(ctx, msgID, ids); err != nil {
		g.log.Warn().Err(err).Str("msg_id", msgID).Strs("ids", ids).
			Msg("refusal not recorded: the application may get a receipt for an id it was not given")
	}
}

// given removes from r the ids the application was refused. ok is false
// when none is left: the receipt is dropped.
func (g *Gateway) given(ctx context.Context, msgID string, r *receipt) (ok bool, err error) {
	refused, err := g.store.refusedIDs(ctx, msgID)
	if err != nil || len(refused) == 0 {
		return err == nil, err
	}
	r.IDs = slices.DeleteFunc(r.IDs, func(id string) bool { return slices.Contains(refused, id) })
	return len(r.IDs) > 0, nil
}

// receiptFor returns the receipt an application asked for with
// registered_delivery (§5.2.17) for a status event, if any: the final
// outcome (bits 1..0 = 01), failures only (10), and intermediate
// notifications (bit 4) for a message waiting at its destination. A read
// receipt adds nothing: delivered was reported already.
func receiptFor(ev *schemas.StatusEvent, now time.Time) (*receipt, bool) {
	rd, _ := strconv.Atoi(ev.Meta["sms.registered_delivery"])
	mask := rd & pdu.RegisteredDeliveryReceiptMask
	r := &receipt{Err: "000"}
	switch ev.Status {
	case schemas.StatusDelivered:
		if mask != pdu.RegisteredDeliveryFinal {
			return nil, false
		}
		r.Stat = dlr.StatDelivered
	case schemas.StatusFailed:
		if mask != pdu.RegisteredDeliveryFinal && mask != pdu.RegisteredDeliveryFailure {
			return nil, false
		}
		r.Stat = dlr.StatUndeliverable
		code, _ := schemas.ParseCode(ev.Code)
		switch code {
		case schemas.CodeExpired:
			r.Stat = dlr.StatExpired
		case schemas.CodeCancelled: // cancel_sm, or DELETE over HTTP (PROTOCOL.md §6.16)
			r.Stat = dlr.StatDeleted
		case schemas.CodeNotAllowed, schemas.CodeQuotaExceeded, schemas.CodeUnsupported:
			r.Stat = dlr.StatRejected
		}
		r.Err = fmt.Sprintf("%03d", int(code)%1000)
	case schemas.StatusTransferred:
		if rd&pdu.RegisteredDeliveryIntermediate == 0 {
			return nil, false
		}
		r.Stat = dlr.StatEnroute
	default:
		return nil, false
	}
	id := ev.Meta["sms.message_id"]
	if parts := ev.Meta["sms.parts"]; parts != "" {
		for _, p := range strings.Split(parts, ",") {
			r.IDs = append(r.IDs, id+"-"+p)
		}
	} else {
		r.IDs = []string{id}
	}
	r.Src = metaAddress(ev.Meta, "sms.dest")
	if ev.Meta[schemas.MetaGroup] != "" {
		// One of a submit_multi's recipients (multi.go): the receipt
		// comes from it, as an SMS centre's does.
		r.Src = smppAddress(ev.To, 20)
	}
	r.Dst = metaAddress(ev.Meta, "sms.source")
	r.Done = now.UTC()
	if ev.At > 0 {
		r.Done = time.UnixMilli(ev.At).UTC()
	}
	if t, err := time.Parse("0601021504", ev.Meta["sms.submit_date"]); err == nil {
		r.Submit = t
	}
	return r, true
}

func metaAddress(meta map[string]string, prefix string) address {
	ton, _ := strconv.Atoi(meta[prefix+"_ton"])
	npi, _ := strconv.Atoi(meta[prefix+"_npi"])
	return address{TON: uint8(ton), NPI: uint8(npi), Addr: meta[prefix+"_addr"]}
}

// pdus returns one deliver_sm per receipted message id.
func (r *receipt) pdus() []*pdu.DeliverSM {
	out := make([]*pdu.DeliverSM, 0, len(r.IDs))
	dlvrd := 0
	if r.Stat == dlr.StatDelivered {
		dlvrd = 1
	}
	for _, id := range r.IDs {
		text := dlr.Format(dlr.Receipt{ID: id, Sub: 1, Dlvrd: dlvrd, SubmitDate: r.Submit, DoneDate: r.Done, Stat: r.Stat, Err: r.Err})
		var t pdu.TLVs
		t.SetReceiptedMessageID(id)
		t.SetMessageState(pdu.MessageState(r.Stat.MessageState()))
		out = append(out, &pdu.DeliverSM{MessageFields: pdu.MessageFields{
			SourceAddrTON: r.Src.TON, SourceAddrNPI: r.Src.NPI, SourceAddr: r.Src.Addr,
			DestAddrTON: r.Dst.TON, DestAddrNPI: r.Dst.NPI, DestinationAddr: r.Dst.Addr,
			ESMClass:     pdu.ESMClassDeliveryReceipt,
			DataCoding:   uint8(gsm.CodingGSM7), // letters, digits, ':' and space: the same octets in GSM 7-bit and ASCII
			ShortMessage: []byte(text),
			TLVs:         t,
		}})
	}
	return out
}

// segments cuts text into SMS parts (GSM 7-bit or UCS-2, UDH
// concatenation, TS 23.040 §9.2.3.24.1). A text longer than maxParts
// parts, or longer than one part when the recipient's profile says
// "sms.long": "shorten", is shortened to one SMS ending in a pointer to
// the web inbox.
func segments(text, long, inboxURL string, ref uint8, maxParts int) ([]gsm.Segment, gsm.Coding) {
	segs, c, err := gsm.SplitN(text, ref, maxParts)
	if err == nil && (len(segs) == 1 || long != "shorten") {
		return segs, c
	}
	pointer := " [continued in your web inbox]"
	if inboxURL != "" {
		pointer = " [more: " + inboxURL + "]"
	}
	return shorten(text, pointer, ref)
}

// shorten keeps as much of text as fits one SMS together with suffix.
func shorten(text, suffix string, ref uint8) ([]gsm.Segment, gsm.Coding) {
	fits := func(n int) ([]gsm.Segment, gsm.Coding, bool) {
		segs, c, err := gsm.SplitN(truncateRunes(text, n)+"..."+suffix, ref, 1)
		return segs, c, err == nil
	}
	lo, hi := 0, utf8.RuneCountInString(text) // fits(lo) is assumed
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if _, _, ok := fits(mid); ok {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	if segs, c, ok := fits(lo); ok {
		return segs, c
	}
	segs, c := gsm.Split(truncateRunes(suffix, 60), ref)
	return segs, c
}

func truncateRunes(s string, n int) string {
	i := 0
	for j := range s {
		if i == n {
			return strings.TrimRight(s[:j], " \n")
		}
		i++
	}
	return s
}

// udhRef derives the concatenation reference of a message from its id, so
// that a retry sends the same parts.
func udhRef(msgID string) uint8 {
	b, err := hex.DecodeString(msgID[:min(2, len(msgID))])
	if err != nil || len(b) == 0 {
		return 0
	}
	return b[0]
}

// mtPDUs returns the deliver_sm PDUs of a message for an application.
func mtPDUs(src, dst address, segs []gsm.Segment, c gsm.Coding) []*pdu.DeliverSM {
	out := make([]*pdu.DeliverSM, 0, len(segs))
	for _, s := range segs {
		var esm uint8
		if s.UDH != nil {
			esm = pdu.ESMClassUDHI
		}
		out = append(out, &pdu.DeliverSM{MessageFields: pdu.MessageFields{
			SourceAddrTON: src.TON, SourceAddrNPI: src.NPI, SourceAddr: src.Addr,
			DestAddrTON: dst.TON, DestAddrNPI: dst.NPI, DestinationAddr: dst.Addr,
			ESMClass: esm, DataCoding: uint8(c), ShortMessage: s.ShortMessage(),
		}})
	}
	return out
}
