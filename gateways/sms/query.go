package sms

import (
	"context"
	"strings"
	"time"

	"github.com/uims/uims/gateways/sms/pdu"
	"github.com/uims/uims/schemas"
)

// query answers query_sm (SMPP 3.4 §4.8) from the brokers' transaction
// state. Only the application that submitted a message may query it.
func (g *Gateway) query(ctx context.Context, s *session, p *pdu.QuerySM) pdu.PDU {
	resp := &pdu.QuerySMResp{Header: pdu.Header{Sequence: p.Sequence}}
	id := p.MessageID
	if i := strings.IndexByte(id, '-'); i >= 0 {
		id = id[:i] // a part of a concatenated message
	}
	if !schemas.ValidMsgID(id) {
		resp.Status = pdu.ESME_RINVMSGID
		return resp
	}
	qctx, cancel := context.WithTimeout(ctx, g.cfg.ResponseTimeout)
	defer cancel()
	st, err := g.kit.Query(qctx, id)
	if err != nil || st.Sender != s.clientInfo().ID {
		resp.Status = pdu.ESME_RQUERYFAIL
		return resp
	}
	resp.MessageID = p.MessageID
	resp.MessageState = pdu.StateEnroute
	var last schemas.HistoryEntry
	if n := len(st.History); n > 0 {
		last = st.History[n-1]
	}
	switch st.State {
	case schemas.StatusDelivered, schemas.StatusRead:
		resp.MessageState = pdu.StateDelivered
	case schemas.StatusFailed:
		resp.MessageState = pdu.StateUndeliverable
		if last.Code == schemas.CodeExpired.String() {
			resp.MessageState = pdu.StateExpired
		}
	}
	if schemas.Terminal(st.State) && last.At > 0 {
		// §7.1.1 absolute time format YYMMDDhhmmsstnnp, in UTC.
		resp.FinalDate = time.UnixMilli(last.At).UTC().Format("060102150405") + "000+"
	}
	return resp
}
