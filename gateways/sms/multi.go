package sms

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/gateways/sms/pdu"
	"github.com/uims/uims/schemas"
)

// submit_multi (SMPP 3.4 §4.5; docs/SMS.md, "submit_multi"): one short
// message for several destinations, a group message (kit.SendGroup): one
// transaction per recipient, each with its own route, status and
// receipt. A distribution list name (dest_flag 2) is a named group of the
// bound client's profile. The application gets the group id as the
// message_id, and an unsuccess_sme for each destination the fabric did
// not take; each receipt names the group id, with the recipient as its
// source address, as SMS centres do.

// submitMultiFromApp handles submit_multi of a bound application: it
// answers once the fabric took or refused each destination
// (docs/RELIABILITY.md, Hand-over).
func (g *Gateway) submitMultiFromApp(ctx context.Context, s *session, m *pdu.SubmitMulti) *pdu.SubmitMultiResp {
	resp := &pdu.SubmitMultiResp{Header: pdu.Header{Sequence: m.Sequence}}
	ci := s.clientInfo()
	refuse := func(st pdu.Status, format string, args ...any) *pdu.SubmitMultiResp {
		err := reject(st, format, args...)
		s.logger().Info().Err(err).Int("dests", len(m.Dests)).Msg("submit_multi rejected")
		resp.Status = st
		return resp
	}
	switch {
	case len(m.Dests) == 0 || len(m.Dests) > schemas.MaxGroupRecipients:
		return refuse(pdu.ESME_RINVNUMDESTS, "%d destinations: 1 to %d", len(m.Dests), schemas.MaxGroupRecipients)
	case m.ESMClass&0x3C != 0: // §5.2.12 message type bits: only a normal message can be submitted
		return refuse(pdu.ESME_RINVESMCLASS, "esm_class 0x%02X is not a normal message", m.ESMClass)
	case len(m.ShortMessage) > 0 && hasPayload(m.TLVs):
		return refuse(pdu.ESME_RINVMSGLEN, "both short_message and message_payload") // §5.3.2.32
	}
	// The recipients as written, and the address to name each in an
	// unsuccess_sme: the destination as the application wrote it, or a
	// distribution list member in SMPP form.
	var written []string
	addrOf := map[string]address{}
	for i, d := range m.Dests {
		switch d.Flag {
		case pdu.DestFlagSME:
			a := address{TON: d.TON, NPI: d.NPI, Addr: d.Addr}
			if strings.TrimSpace(a.Addr) == "" {
				return refuse(pdu.ESME_RINVDSTADR, "destination %d: empty destination_addr", i+1)
			}
			to := a.international()
			if _, ok := addrOf[to]; !ok {
				addrOf[to] = a
			}
			written = append(written, to)
		case pdu.DestFlagDL:
			members, ok := ci.Groups[d.DLName]
			if !ok {
				return refuse(pdu.ESME_RINVDLNAME, "no distribution list %q in the profile of %s", d.DLName, ci.ID)
			}
			for _, mem := range members {
				if _, ok := addrOf[mem]; !ok {
					addrOf[mem] = smppAddress(mem, 20)
				}
			}
			written = append(written, members...)
		}
	}
	to, err := kit.NormaliseRecipients(written)
	if err != nil {
		if len(written) > schemas.MaxGroupRecipients {
			return refuse(pdu.ESME_RINVNUMDESTS, "%v", err)
		}
		return refuse(pdu.ESME_RINVDSTADR, "%v", err)
	}
	parsed, err := parseIncoming(m.ESMClass, m.DataCoding, m.Message(), m.TLVs)
	if err == nil && parsed.concat.Total > 1 {
		err = reject(pdu.ESME_RINVESMCLASS, "a part of a concatenated message in submit_multi: send the text whole, in message_payload")
	}
	if err != nil {
		resp.Status = appStatus(err)
		s.logger().Info().Err(err).Stringer("status", resp.Status).Msg("submit_multi rejected")
		return resp
	}

	src := address{TON: m.SourceAddrTON, NPI: m.SourceAddrNPI, Addr: m.SourceAddr}
	if strings.TrimSpace(src.Addr) == "" {
		if a := ci.Addresses[schemas.MediumSMS]; a != "" {
			src = smppAddress(a, 20)
		} else {
			src = address{TON: tonAlphanumeric, Addr: ci.ID}
		}
	}
	gid := kit.NewMsgID()
	// As send (submit.go) does for one destination; each recipient's
	// address comes from the status event's "to" (receiptFor).
	meta := map[string]string{
		"sms.message_id":          gid,
		"sms.registered_delivery": strconv.Itoa(int(m.RegisteredDelivery)),
		"sms.source_addr":         src.Addr,
		"sms.source_ton":          strconv.Itoa(int(src.TON)),
		"sms.source_npi":          strconv.Itoa(int(src.NPI)),
		"sms.data_coding":         strconv.Itoa(int(m.DataCoding)),
		"sms.submit_date":         time.Now().UTC().Format("0601021504"),
	}
	track := wantsReceipts(m.RegisteredDelivery)
	if track {
		for _, t := range to {
			id := schemas.GroupMemberID(gid, t)
			g.deciding.begin(id)
			defer g.deciding.end(id)
		}
	}
	var when incoming // schedule_delivery_time, validity_period, priority_flag
	if err := schedule(&when, &m.MessageFields, time.Now()); err != nil {
		var re *rejectError
		errors.As(err, &re)
		return refuse(re.status, "%s", re.msg)
	}
	sctx, cancel := context.WithTimeout(ctx, g.cfg.SendTimeout)
	res, err := g.kit.SendGroup(sctx, &kit.Submission{MsgID: gid, From: schemas.Endpoint{Medium: schemas.MediumSMS, Address: src.international(), Client: ci.ID},
		Type: "text/plain; charset=utf-8", Content: []byte(parsed.text), Meta: meta,
		SendAt: when.sendAt, Expires: when.expires, Urgent: when.urgent}, to)
	cancel()
	if err != nil {
		resp.Status = appStatus(err)
		s.logger().Info().Err(err).Stringer("status", resp.Status).Msg("submit_multi rejected")
		return resp
	}
	temporary := false
	for _, r := range res.Recipients {
		if r.Err == nil {
			continue
		}
		st := appStatus(r.Err)
		temporary = temporary || st == pdu.ESME_RTHROTTLED
		a := addrOf[r.To]
		resp.Unsuccess = append(resp.Unsuccess, pdu.UnsuccessSME{TON: a.TON, NPI: a.NPI, Addr: a.Addr, Status: st})
		if track {
			// The application was told this destination failed: no
			// receipt names the group id for it (receipt.go, Refusals).
			g.refuse(ctx, r.ID, gid)
		}
	}
	switch {
	case res.Accepted() > 0:
		resp.MessageID = gid
	case temporary:
		resp.Status = pdu.ESME_RTHROTTLED // nothing taken: submit it again later
	default:
		resp.Status = resp.Unsuccess[0].Status
	}
	s.logger().Info().Str("group", gid).Int("recipients", len(res.Recipients)).Int("unsuccess", len(resp.Unsuccess)).
		Stringer("status", resp.Status).Msg("submit_multi")
	return resp
}
