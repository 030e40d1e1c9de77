package sms

import (
	"context"
	"strings"
	"time"

	"github.com/uims/uims/gateways/sms/pdu"
	"github.com/uims/uims/schemas"
)

// messageOf is the UIMS message id of an id this gateway gave an
// application: the part "-<n>" of a concatenated message names the
// whole message.
func messageOf(smppID string) (string, bool) {
	id, _, _ := strings.Cut(smppID, "-")
	return id, schemas.ValidMsgID(id)
}

// query answers query_sm (SMPP 3.4 §4.8) from the brokers' transaction
// state. Only the application that submitted a message may query it.
func (g *Gateway) query(ctx context.Context, s *session, p *pdu.QuerySM) pdu.PDU {
	resp := &pdu.QuerySMResp{Header: pdu.Header{Sequence: p.Sequence}}
	id, ok := messageOf(p.MessageID)
	if !ok {
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
		switch last.Code {
		case schemas.CodeExpired.String():
			resp.MessageState = pdu.StateExpired
		case schemas.CodeCancelled.String():
			resp.MessageState = pdu.StateDeleted
		}
	}
	if schemas.Terminal(st.State) && last.At > 0 {
		// §7.1.1 absolute time format YYMMDDhhmmsstnnp, in UTC.
		resp.FinalDate = time.UnixMilli(last.At).UTC().Format("060102150405") + "000+"
	}
	return resp
}

// cancel answers cancel_sm (SMPP 3.4 §4.9): a message the application
// submitted that the brokers still hold (scheduled, or in its recipient's
// quiet hours) is cancelled (PROTOCOL.md §6.16); its receipt, if it asked
// for one, says DELETED. Anything else — a message on its way or
// delivered, another application's, no message_id (cancelling every
// message from source to destination is not supported) — is
// ESME_RCANCELFAIL.
func (g *Gateway) cancel(ctx context.Context, s *session, p *pdu.CancelSM) pdu.PDU {
	resp := &pdu.CancelSMResp{Header: pdu.Header{Sequence: p.Sequence}}
	if p.MessageID == "" {
		resp.Status = pdu.ESME_RCANCELFAIL
		return resp
	}
	id, ok := messageOf(p.MessageID)
	if !ok {
		resp.Status = pdu.ESME_RINVMSGID
		return resp
	}
	cctx, cancel := context.WithTimeout(ctx, g.cfg.ResponseTimeout)
	defer cancel()
	st, err := g.kit.Query(cctx, id)
	if err == nil && st.Sender != s.clientInfo().ID {
		err = schemas.Errorf(schemas.CodeUnknownTx, nil, id)
	}
	if err == nil {
		_, err = g.kit.Cancel(cctx, id)
	}
	if err != nil {
		s.logger().Info().Err(err).Str("msg_id", id).Msg("cancel_sm refused")
		resp.Status = pdu.ESME_RCANCELFAIL
		return resp
	}
	return resp
}
