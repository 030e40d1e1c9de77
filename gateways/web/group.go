package web

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	json "github.com/goccy/go-json"

	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/schemas"
)

// Group messages over HTTP (docs/WEB.md, "Group messages"): POST
// /api/v1/messages with "to" as a list of recipients, or a named group
// of the sender's profile ("group:team", also inside the list), sends one
// transaction per recipient (kit.SendGroup); GET /api/v1/messages/{id} of
// the group's id answers its aggregate status.

// groupRequest is SendRequest with "to" as written: a string or a list.
type groupRequest struct {
	SendRequest
	To json.RawMessage `json:"to"`
}

// GroupResponse answers a group message: the group id, its aggregate
// status and each recipient's outcome; with Error and Code when no
// recipient was accepted.
type GroupResponse struct {
	ID         string                `json:"id"`
	Status     string                `json:"status"`
	Counts     map[string]int        `json:"counts"`
	Recipients []kit.RecipientResult `json:"recipients"`
	Error      string                `json:"error,omitempty"`
	Code       string                `json:"code,omitempty"`
}

// postMessages takes POST /api/v1/messages: a multipart/form-data body
// (files) to postUpload, a JSON group message to postGroup, any other to
// postMessage, unchanged.
func (g *Gateway) postMessages(w http.ResponseWriter, r *http.Request, c *schemas.ClientInfo) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "multipart/form-data" {
		g.postUpload(w, r, c)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, g.cfg.MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, schemas.CodeTooLarge, fmt.Sprintf("body over %d bytes", mbe.Limit))
			return
		}
		writeError(w, http.StatusBadRequest, schemas.CodeMalformed, "body: "+err.Error())
		return
	}
	var peek struct {
		To json.RawMessage `json:"to"`
	}
	if json.Unmarshal(body, &peek) == nil && isGroup(peek.To) {
		g.postGroup(w, r, c, body)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	g.postMessage(w, r, c)
}

// isGroup reports whether "to" names a group message: a list, or a
// string "group:<name>".
func isGroup(to json.RawMessage) bool {
	to = bytes.TrimSpace(to)
	if len(to) > 0 && to[0] == '[' {
		return true
	}
	var s string
	return json.Unmarshal(to, &s) == nil && strings.HasPrefix(strings.TrimSpace(s), schemas.GroupPrefix)
}

func (g *Gateway) postGroup(w http.ResponseWriter, r *http.Request, c *schemas.ClientInfo, body []byte) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var req groupRequest
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, schemas.CodeMalformed, "malformed JSON: "+err.Error())
		return
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, schemas.CodeMalformed, "malformed JSON: trailing data")
		return
	}
	var to []string
	if raw := bytes.TrimSpace(req.To); len(raw) > 0 && raw[0] == '[' {
		if err := json.Unmarshal(req.To, &to); err != nil {
			writeError(w, http.StatusBadRequest, schemas.CodeMalformed, "\"to\" must be a string or a list of strings")
			return
		}
	} else {
		to = []string{""}
		json.Unmarshal(req.To, &to[0])
	}
	switch {
	case len(to) == 0:
		writeError(w, http.StatusBadRequest, schemas.CodeMalformed, "empty \"to\" list")
		return
	case len(to) > schemas.MaxGroupRecipients:
		writeError(w, http.StatusBadRequest, schemas.CodeMalformed, fmt.Sprintf("%d recipients, at most %d", len(to), schemas.MaxGroupRecipients))
		return
	}
	s, err := submission(r, c, &req.SendRequest, false)
	if err != nil {
		fail(w, err)
		return
	}
	g.sendGroup(w, r, c, s, to)
}

// sendGroup sends a submission to every recipient of to (expanded) and
// answers the group's outcome.
func (g *Gateway) sendGroup(w http.ResponseWriter, r *http.Request, c *schemas.ClientInfo, s *kit.Submission, to []string) {
	// The sender's own groups, from its credential query (auth).
	to, err := kit.ExpandRecipients(c, to)
	if err == nil {
		to, err = kit.NormaliseRecipients(to)
	}
	if err != nil {
		fail(w, err)
		return
	}
	res, err := g.kit.SendGroup(r.Context(), s, to)
	if err != nil {
		fail(w, err)
		return
	}
	out := GroupResponse{ID: res.ID, Status: res.Status, Counts: res.Counts, Recipients: res.Recipients}
	var permanent, temporary *schemas.Error
	for i := range out.Recipients {
		rr := &out.Recipients[i]
		var se *schemas.Error
		if errors.As(rr.Err, &se) {
			if se.Code.Retryable() && temporary == nil {
				temporary = se
			} else if !se.Code.Retryable() && permanent == nil {
				permanent = se
			}
		}
		if code, _ := schemas.ParseCode(rr.Code); !senderReasons[code] {
			rr.Reason = "" // PROTOCOL.md §9: no fabric details for the sender
		}
	}
	status := http.StatusAccepted
	if res.Accepted() == 0 {
		// Nobody took it: the answer a single recipient would get, the
		// list in the body. One refused for now makes it "try again".
		se := permanent
		if temporary != nil {
			se = temporary
		}
		if se == nil {
			se = &schemas.Error{Code: schemas.CodeInternal}
		}
		status, out.Code, out.Error = httpStatus(se.Code), se.Code.String(), se.Code.Text()
		if se.Code.Retryable() {
			w.Header().Set("Retry-After", "1")
		}
	}
	writeJSON(w, status, out)
}

// getMessageOrGroup answers GET /api/v1/messages/{id}: a group message
// of the caller's with its aggregate status and recipients, else the
// message as getMessage does.
func (g *Gateway) getMessageOrGroup(w http.ResponseWriter, r *http.Request, c *schemas.ClientInfo) {
	id := r.PathValue("id")
	if schemas.ValidMsgID(id) {
		st, err := g.kit.GroupStatus(r.Context(), id)
		switch {
		case kit.IsCode(err, schemas.CodeUnknownTx):
			// not a group: a message
		case err != nil:
			fail(w, err)
			return
		case st.Sender != c.ID:
			fail(w, &schemas.Error{Code: schemas.CodeUnknownTx})
			return
		default:
			for i := range st.Recipients {
				if code, _ := schemas.ParseCode(st.Recipients[i].Code); !senderReasons[code] {
					st.Recipients[i].Reason = ""
				}
			}
			writeJSON(w, http.StatusOK, st)
			return
		}
	}
	g.getMessage(w, r, c)
}
