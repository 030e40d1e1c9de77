package fax

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/uims/uims/gateways/fax/faxaddr"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// hookPath is where HylaFAX's faxrcvd hook (`uims fax received`) posts a
// received fax: the TIFF as the body, Authorization: Bearer <HookToken>,
// X-Fax-From: the caller's number (CIDNUMBER or TSI), X-Fax-To: the
// recipient (client id or number). HTTP on a loopback port rather than
// NATS: the hook runs as HylaFAX's user on the fax server, which gets a
// token that allows this one thing, not the gateway's MIAP key and NATS
// identity; and a fax larger than a NATS message passes as it is.
const hookPath = "/fax/received"

// HookReply is the hook's JSON answer.
type HookReply struct {
	MsgID  string `json:"msg_id,omitempty"`
	Status string `json:"status,omitempty"`
	Code   string `json:"code,omitempty"`
	Error  string `json:"error,omitempty"`
}

func (g *Gateway) hookHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+hookPath, func(w http.ResponseWriter, r *http.Request) {
		answer := func(status int, rep HookReply) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			json.NewEncoder(w).Encode(rep)
		}
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if subtle.ConstantTimeCompare([]byte(tok), []byte(g.cfg.HookToken)) != 1 {
			answer(http.StatusUnauthorized, HookReply{Code: schemas.CodeUnauthorized.String(), Error: "wrong or missing hook token"})
			return
		}
		number, err := faxaddr.Number(strings.TrimSpace(r.Header.Get("X-Fax-From")))
		if err != nil {
			answer(http.StatusBadRequest, HookReply{Code: schemas.CodeMalformed.String(), Error: "X-Fax-From: " + err.Error()})
			return
		}
		to := strings.TrimSpace(r.Header.Get("X-Fax-To"))
		if to == "" {
			answer(http.StatusBadRequest, HookReply{Code: schemas.CodeMalformed.String(), Error: "X-Fax-To: no recipient"})
			return
		}
		tiff, err := io.ReadAll(io.LimitReader(r.Body, g.cfg.MaxSize+1))
		if err != nil {
			answer(http.StatusBadRequest, HookReply{Code: schemas.CodeMalformed.String(), Error: err.Error()})
			return
		}
		pages, err := g.checkFax(tiff)
		if err != nil {
			answer(http.StatusUnprocessableEntity, HookReply{Code: miap.CodeOf(err).String(), Error: deliveryText(err)})
			return
		}
		res, err := g.receive(r.Context(), number, to, tiff, pages, r.Header.Get("X-Fax-CommID"))
		if err != nil {
			code := miap.CodeOf(err)
			st := http.StatusUnprocessableEntity
			if code.Retryable() {
				st = http.StatusServiceUnavailable
			}
			answer(st, HookReply{Code: code.String(), Error: deliveryText(err)})
			return
		}
		answer(http.StatusOK, HookReply{MsgID: res.MsgID, Status: res.Status})
	})
	return mux
}

// PostReceived hands a received fax to the gateway's hook at url (what
// `uims fax received` does for HylaFAX's faxrcvd).
func PostReceived(client *http.Client, url, token, from, to, commID string, tiff io.Reader) (*HookReply, error) {
	req, err := http.NewRequest(http.MethodPost, url, tiff)
	if err != nil {
		return nil, fmt.Errorf("fax: hook request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", ContentType)
	req.Header.Set("X-Fax-From", from)
	req.Header.Set("X-Fax-To", to)
	if commID != "" {
		req.Header.Set("X-Fax-CommID", commID)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fax: hook: %w", err)
	}
	defer resp.Body.Close()
	var rep HookReply
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&rep); err != nil {
		return nil, fmt.Errorf("fax: hook answered %s: %w", resp.Status, err)
	}
	if resp.StatusCode != http.StatusOK {
		return &rep, fmt.Errorf("fax: hook answered %s: %s (%s)", resp.Status, rep.Error, rep.Code)
	}
	return &rep, nil
}
