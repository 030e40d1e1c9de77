package email

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"mime"
	"mime/multipart"
	"net/textproto"
	"strings"

	"github.com/uims/uims/gateways/email/mailmsg"
	"github.com/uims/uims/schemas"
)

// readNotice is an incoming message disposition notification (RFC 8098).
type readNotice struct {
	OriginalMessageID string // without angle brackets
	Disposition       string // as received
	Displayed         bool   // the disposition type is "displayed"
}

// maxNoticeField bounds the message/disposition-notification part read.
const maxNoticeField = 64 << 10

// parseMDN reads a message disposition notification (RFC 8098 §3: a
// multipart/report with report-type=disposition-notification and a
// message/disposition-notification part) from extracted content. It
// reports false for anything else.
func parseMDN(contentType string, content []byte) (*readNotice, bool) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "multipart/report" || !strings.EqualFold(params["report-type"], "disposition-notification") || params["boundary"] == "" {
		return nil, false
	}
	mr := multipart.NewReader(bytes.NewReader(content), params["boundary"])
	for range 10 {
		p, err := mr.NextPart()
		if err != nil {
			return nil, false
		}
		ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		if ct != "message/disposition-notification" && ct != "message/global-disposition-notification" {
			continue
		}
		body, err := io.ReadAll(io.LimitReader(p, maxNoticeField))
		if err != nil {
			return nil, false
		}
		body = append(bytes.TrimRight(body, "\r\n"), "\r\n\r\n"...)
		h, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(body))).ReadMIMEHeader()
		if err != nil && len(h) == 0 {
			return nil, false
		}
		n := &readNotice{Disposition: strings.TrimSpace(h.Get("Disposition"))}
		if id := strings.TrimSpace(h.Get("Original-Message-Id")); strings.HasPrefix(id, "<") {
			if end := strings.IndexByte(id, '>'); end > 0 && !strings.ContainsAny(id[1:end], "<> \t\r\n\x00") {
				n.OriginalMessageID = id[1:end]
			}
		}
		// disposition = action-mode "/" sending-mode ";" disposition-type
		// [ "/" modifier ] (RFC 8098 §3.2.6).
		if _, typ, ok := strings.Cut(n.Disposition, ";"); ok {
			typ = strings.ToLower(strings.TrimSpace(typ))
			if i := strings.IndexAny(typ, "/ \t;("); i >= 0 {
				typ = typ[:i]
			}
			n.Displayed = typ == "displayed"
		}
		return n, true
	}
	return nil, false
}

// handleReadNotice takes a read notice about a mail we sent (matched by
// our VERP address or the original Message-ID) and acknowledges the
// original message as read. It reports whether the mail was such a notice;
// an error means the store could not be read, and the sending MTA should
// try again.
func (g *Gateway) handleReadNotice(ctx context.Context, raw []byte, rcpts []recipient) (bool, error) {
	m, err := mailmsg.Extract(bytes.NewReader(raw), g.cfg.Limits)
	if err != nil {
		return false, nil
	}
	n, ok := parseMDN(m.ContentType, m.Content)
	if !ok {
		return false, nil
	}
	id := g.verpID(rcpts)
	if id == "" {
		if id, _, err = g.store.lookupMessageID(ctx, n.OriginalMessageID); err != nil {
			return false, err
		}
	}
	if id == "" {
		return false, nil
	}
	rec, err := g.store.getOut(ctx, id)
	if err != nil {
		return false, err
	}
	if rec == nil {
		return false, nil
	}
	log := g.log.With().Str("msg_id", id).Str("disposition", oneLine(n.Disposition, 200)).Logger()
	if !n.Displayed {
		log.Info().Msg("disposition notification other than displayed")
		return true, nil
	}
	if err := g.kit.Ack(ctx, rec.Ref, schemas.StatusRead, "", ""); err != nil {
		log.Warn().Err(err).Msg("read acknowledgement refused")
	} else {
		log.Info().Msg("read notice: message read")
	}
	return true, nil
}
