package web

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/nats-io/nats.go/jetstream"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	json "github.com/goccy/go-json"
	"github.com/nats-io/nats.go"

	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/gateways/kit/authlimit"
	"github.com/uims/uims/schemas"
	"github.com/uims/uims/webui"
)

// Handler returns the gateway's HTTP handler: the API under /api/v1/ and
// the page at /.
func (g *Gateway) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/messages", g.auth(g.postMessages))          // group.go
	mux.HandleFunc("GET /api/v1/messages/{id}", g.auth(g.getMessageOrGroup)) // group.go
	mux.HandleFunc("DELETE /api/v1/messages/{id}", g.auth(g.deleteMessage))
	mux.HandleFunc("POST /api/v1/messages/{id}/read", g.auth(g.postRead))
	mux.HandleFunc("GET /api/v1/messages/{id}/content", g.auth(g.getContent))
	mux.HandleFunc("GET /api/v1/messages/{id}/attachments/{n}", g.auth(g.getAttachment))
	mux.HandleFunc("GET /api/v1/inbox", g.auth(g.getInbox))
	mux.HandleFunc("GET /api/v1/events", g.authStream(g.getEvents))
	mux.HandleFunc("GET /api/v1/usage", g.auth(g.getUsage)) // usage.go
	mux.HandleFunc("GET /api/v1/me", g.auth(func(w http.ResponseWriter, r *http.Request, c *schemas.ClientInfo) {
		writeJSON(w, http.StatusOK, c)
	}))
	mux.HandleFunc("GET /api/v1/limits", g.auth(func(w http.ResponseWriter, r *http.Request, c *schemas.ClientInfo) {
		writeJSON(w, http.StatusOK, Limits{MaxUpload: g.cfg.MaxUpload, MaxFiles: MaxFiles, MaxBody: g.cfg.MaxBody})
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]string{"status": "ok"}) })
	for p, h := range g.cfg.Extra {
		mux.Handle(p, h)
	}
	g.mountMetrics(mux) // metrics.go
	sub, _ := fs.Sub(static, "static")
	mux.Handle("GET /", http.FileServerFS(sub))
	mux.Handle("GET "+webui.BasePath, webui.Base()) // the rules both pages share
	return g.httpm.instrument(mux)
}

// apiError is the JSON error body.
type apiError struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// writeError answers an error: a temporary one (schemas.ClassTemporary)
// with Retry-After, so that clients retry the same message; a permanent
// one without.
func writeError(w http.ResponseWriter, status int, code schemas.Code, msg string) {
	if code.Retryable() && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, apiError{Error: msg, Code: code.String()})
}

// httpStatus is the one mapping of a wire code to an HTTP status
// (docs/WEB.md, "Errors"). Its class decides first (schemas.Code.Class):
// every temporary failure is 503 with Retry-After, so clients retry as
// mail and SMS clients do on 4xx and ESME_RTHROTTLED (docs/RELIABILITY.md,
// Hand-over); a permanent one is a 4xx naming what is wrong, or 502 when
// the gateway and the fabric disagree (keys, MACs, mode: the operator's to
// fix, and retrying does not help).
func httpStatus(c schemas.Code) int {
	if c.Retryable() {
		return http.StatusServiceUnavailable
	}
	switch c {
	case schemas.CodeUnknownRecipient, schemas.CodeUnknownTx:
		return http.StatusNotFound
	case schemas.CodeUnauthorized:
		return http.StatusUnauthorized
	case schemas.CodeNotAllowed, schemas.CodeUnknownSender:
		return http.StatusForbidden
	case schemas.CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case schemas.CodeQuotaExceeded:
		// The daily quota (schemas.Profile.Quota): not before the next
		// UTC day, so no Retry-After.
		return http.StatusTooManyRequests
	case schemas.CodeDuplicate, schemas.CodeSettled:
		return http.StatusConflict
	case schemas.CodeMalformed, schemas.CodeBadVersion:
		return http.StatusBadRequest
	case schemas.CodeUnsupported, schemas.CodeConversionFailed, schemas.CodeRejected,
		schemas.CodeUnreachable, schemas.CodeExpired:
		// Understood, but the recipient's side cannot take it: this
		// content, this address, or not in time.
		return http.StatusUnprocessableEntity
	}
	// STRICT_REQUIRED (the gateway runs in fast mode, the brokers in
	// strict mode) and the MIAP faults between the gateway and the fabric.
	return http.StatusBadGateway
}

// senderReasons are the codes whose detail is meant for the sender
// (Uims-Reason, PROTOCOL.md §9: never MIAP verification details).
var senderReasons = map[schemas.Code]bool{
	schemas.CodeUnknownRecipient: true, schemas.CodeMalformed: true, schemas.CodeTooLarge: true,
	schemas.CodeUnsupported: true, schemas.CodeNoRoute: true, schemas.CodeConversionFailed: true,
	schemas.CodeUnreachable: true, schemas.CodeRejected: true, schemas.CodeExpired: true,
}

func fail(w http.ResponseWriter, err error) {
	var se *schemas.Error
	if !errors.As(err, &se) {
		se = &schemas.Error{Code: schemas.CodeInternal}
	}
	msg := se.Code.Text()
	if senderReasons[se.Code] && se.Detail != "" && !strings.HasPrefix(se.Detail, se.Code.String()+":") {
		msg += ": " + se.Detail
	}
	writeError(w, httpStatus(se.Code), se.Code, msg)
}

// maxTokens bounds each of the token caches (known, unknown).
const maxTokens = 10000

// urlTokenParams are the query parameters a bearer token could come in
// (RFC 6750 §2.3 names access_token).
var urlTokenParams = []string{"access_token", "token"}

// auth resolves the bearer token of the Authorization header to a client.
// A token in the URL is refused: it ends up in logs and browser history.
func (g *Gateway) auth(h func(http.ResponseWriter, *http.Request, *schemas.ClientInfo)) http.HandlerFunc {
	return g.authFrom(false, h)
}

// authStream is auth for GET /api/v1/events, which also takes
// ?access_token=: EventSource cannot set headers.
func (g *Gateway) authStream(h func(http.ResponseWriter, *http.Request, *schemas.ClientInfo)) http.HandlerFunc {
	return g.authFrom(true, h)
}

func (g *Gateway) authFrom(urlToken bool, h func(http.ResponseWriter, *http.Request, *schemas.ClientInfo)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if urlToken && !ok {
			tok = r.URL.Query().Get("access_token")
		}
		if !urlToken && tokenInURL(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="uims", error="invalid_request"`)
			writeError(w, http.StatusUnauthorized, schemas.CodeUnauthorized,
				"bearer token in the URL refused: send it in the Authorization header (only GET /api/v1/events takes ?access_token=)")
			return
		}
		if tok == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="uims"`)
			writeError(w, http.StatusUnauthorized, schemas.CodeUnauthorized, "missing bearer token")
			return
		}
		c, err := g.client(r.Context(), tok, authlimit.HostKey(r.RemoteAddr))
		if err != nil {
			var lo *lockedOut
			switch {
			case errors.As(err, &lo):
				w.Header().Set("WWW-Authenticate", `Bearer realm="uims", error="invalid_token"`)
				w.Header().Set("Retry-After", strconv.Itoa(int(lo.retry.Seconds())+1))
				writeError(w, http.StatusUnauthorized, schemas.CodeUnauthorized,
					"too many failed authentications from your address: tokens not seen before are refused for a while")
			case kit.IsCode(err, schemas.CodeUnauthorized):
				w.Header().Set("WWW-Authenticate", `Bearer realm="uims", error="invalid_token"`)
				writeError(w, http.StatusUnauthorized, schemas.CodeUnauthorized, "invalid bearer token")
			default:
				fail(w, err)
			}
			return
		}
		h(w, r, c)
	}
}

// tokenInURL reports whether the query carries a bearer token parameter.
func tokenInURL(r *http.Request) bool {
	q := r.URL.Query()
	for _, p := range urlTokenParams {
		if q.Has(p) {
			return true
		}
	}
	return false
}

// lockedOut: the client's address has too many failed lookups.
type lockedOut struct{ retry time.Duration }

func (e *lockedOut) Error() string { return "web: too many failed authentications" }

// client resolves a bearer token from the client address addr. Only its
// SHA-256 leaves the gateway: it keys the caches and is what the brokers
// compare (PROTOCOL.md §6.11). Answers are reused for Config.TokenTTL, a
// refusal too, so a repeated bad token never reaches NATS or the store;
// an address past Config.AuthPerAddr gets *lockedOut for tokens the
// gateway does not know.
func (g *Gateway) client(ctx context.Context, token, addr string) (*schemas.ClientInfo, error) {
	k := schemas.TokenSHA256(token)
	if c, ok := g.known.Get(k); ok {
		return c, nil
	}
	if _, ok := g.unknown.Get(k); ok {
		return nil, &schemas.Error{Code: schemas.CodeUnauthorized}
	}
	// One lookup per token at a time: a burst of requests with one token
	// the gateway has not cached (after a pause, or many requests behind
	// one proxy) is one attempt for the address's budget, not one each.
	g.lookMu.Lock()
	l, waiting := g.lookups[k]
	if !waiting {
		l = &tokenLookup{done: make(chan struct{})}
		g.lookups[k] = l
	}
	g.lookMu.Unlock()
	if !waiting {
		// Detached from this request: the others wait for its answer.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		l.c, l.err = g.lookup(lctx, k, addr)
		cancel()
		g.lookMu.Lock()
		delete(g.lookups, k)
		g.lookMu.Unlock()
		close(l.done)
	}
	select {
	case <-l.done:
		return l.c, l.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// tokenLookup is a token lookup in flight.
type tokenLookup struct {
	done chan struct{}
	c    *schemas.ClientInfo
	err  error
}

// lookup asks the brokers for the client of token hash k, within the
// address's budget of failed lookups, and caches the answer.
func (g *Gateway) lookup(ctx context.Context, k, addr string) (*schemas.ClientInfo, error) {
	v := g.authAddr.Begin(addr)
	if !v.OK {
		if v.Refused == 1 || v.Refused%100 == 0 {
			g.log.Warn().Str("address", addr).Dur("retry", v.Retry).Int("refused", v.Refused).Bool("security", true).
				Msg("bearer tokens refused: too many failed authentications from this address")
		}
		return nil, &lockedOut{retry: v.Retry}
	}
	c, err := g.kit.Client(ctx, schemas.ClientQuery{Kind: schemas.CredentialToken, Hash: k})
	unauthorized := kit.IsCode(err, schemas.CodeUnauthorized)
	if g.authAddr.End(addr, unauthorized) {
		g.log.Warn().Str("address", addr).Dur("for", g.cfg.AuthPerAddr.Lockout).Bool("security", true).
			Msg("address locked out after failed authentications")
	}
	if err != nil {
		if unauthorized {
			g.unknown.Put(k, struct{}{})
		}
		return nil, err
	}
	g.known.Put(k, c)
	return c, nil
}

// SendRequest is the body of POST /api/v1/messages.
type SendRequest struct {
	To      string `json:"to"`
	Subject string `json:"subject,omitempty"`
	Text    string `json:"text,omitempty"`
	HTML    string `json:"html,omitempty"`
	// SendAt and ExpiresAt are RFC 3339 times (docs/WEB.md, "Scheduled
	// messages"): deliver not before SendAt (at most 7 days ahead), not
	// after ExpiresAt. Urgent asks to pass the recipient's quiet hours.
	SendAt    string `json:"send_at,omitempty"`
	ExpiresAt string `json:"expires_at,omitempty"`
	Urgent    bool   `json:"urgent,omitempty"`
}

// SendResponse is the answer to POST /api/v1/messages.
type SendResponse struct {
	ID     string      `json:"id"`
	Status string      `json:"status"`
	Dest   schemas.Hop `json:"dest"`
	// HeldUntil (RFC 3339, UTC) and Held, for status held: the brokers
	// hold the message until then, and why (PROTOCOL.md §6.16).
	HeldUntil string `json:"held_until,omitempty"`
	Held      string `json:"held,omitempty"`
}

// submission is what POST /api/v1/messages sends, but its recipients:
// the content and its type, the schedule, and the message id from
// Idempotency-Key (a client retry reuses it, so every hop sees one
// message; for a group, the group id and with it every recipient's).
// Errors are MALFORMED with what is wrong. A message with attachments
// (upload.go) may have no text.
func submission(r *http.Request, c *schemas.ClientInfo, req *SendRequest, attached bool) (*kit.Submission, error) {
	switch {
	case req.Text == "" && req.HTML == "" && !attached:
		return nil, schemas.Errorf(schemas.CodeMalformed, nil, "missing \"text\" or \"html\"")
	case !utf8.ValidString(req.Text) || !utf8.ValidString(req.HTML) || strings.ContainsAny(req.Subject, "\r\n\x00"):
		return nil, schemas.Errorf(schemas.CodeMalformed, nil, "text must be UTF-8 and the subject one line")
	}
	s := &kit.Submission{From: schemas.Endpoint{Medium: schemas.MediumWeb, Address: c.ID, Client: c.ID, Name: c.Name},
		Subject: req.Subject, Type: "text/plain; charset=utf-8", Content: []byte(req.Text), Urgent: req.Urgent}
	if req.HTML != "" {
		s.Type, s.Content = "text/html; charset=utf-8", []byte(req.HTML)
	}
	var err error
	if s.SendAt, err = rfc3339ms("send_at", req.SendAt); err == nil {
		s.Expires, err = rfc3339ms("expires_at", req.ExpiresAt)
	}
	if err != nil {
		return nil, err
	}
	s.MsgID = idempotentID(r, c)
	return s, nil
}

// idempotentID is the message id Idempotency-Key names for the client
// ("" without one: the kit chooses).
func idempotentID(r *http.Request, c *schemas.ClientInfo) string {
	key := r.Header.Get("Idempotency-Key")
	if key == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(c.ID + "\x00" + key))
	return hex.EncodeToString(sum[:16])
}

// rfc3339ms parses an optional RFC 3339 time of the request body into
// Unix ms (0 when absent).
func rfc3339ms(field, v string) (int64, error) {
	if v == "" {
		return 0, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return 0, schemas.Errorf(schemas.CodeMalformed, nil, field+" must be an RFC 3339 time such as 2026-12-08T07:00:00+01:00")
	}
	return t.UnixMilli(), nil
}

// postMessage takes a JSON message to one recipient.
func (g *Gateway) postMessage(w http.ResponseWriter, r *http.Request, c *schemas.ClientInfo) {
	r.Body = http.MaxBytesReader(w, r.Body, g.cfg.MaxBody)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	var req SendRequest
	if err := dec.Decode(&req); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, schemas.CodeTooLarge, fmt.Sprintf("body over %d bytes", mbe.Limit))
			return
		}
		writeError(w, http.StatusBadRequest, schemas.CodeMalformed, "malformed JSON: "+err.Error())
		return
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, schemas.CodeMalformed, "malformed JSON: trailing data")
		return
	}
	req.To = strings.TrimSpace(req.To)
	if req.To == "" {
		writeError(w, http.StatusBadRequest, schemas.CodeMalformed, "missing \"to\"")
		return
	}
	s, err := submission(r, c, &req, false)
	if err != nil {
		fail(w, err)
		return
	}
	g.sendOne(w, r, s, req.To)
}

// sendOne sends a submission to one recipient and answers its outcome.
func (g *Gateway) sendOne(w http.ResponseWriter, r *http.Request, s *kit.Submission, to string) {
	s.To = to
	res, err := g.kit.Send(r.Context(), s)
	if err != nil {
		fail(w, err)
		return
	}
	out := SendResponse{ID: res.MsgID, Status: res.Status, Dest: res.Dest, Held: res.Held}
	if res.HeldUntil > 0 {
		out.HeldUntil = time.UnixMilli(res.HeldUntil).UTC().Format(time.RFC3339)
	}
	writeJSON(w, http.StatusAccepted, out)
}

// deleteMessage cancels a message its sender sent from here while the
// brokers hold it (PROTOCOL.md §6.16): 200 with its status (failed,
// CANCELLED); 409 once it is on its way or has its outcome; 404 for a
// message that is not the caller's.
func (g *Gateway) deleteMessage(w http.ResponseWriter, r *http.Request, c *schemas.ClientInfo) {
	id := r.PathValue("id")
	if !schemas.ValidMsgID(id) {
		writeError(w, http.StatusBadRequest, schemas.CodeMalformed, "bad message id")
		return
	}
	st, err := g.kit.Query(r.Context(), id)
	if err == nil && st.Sender != c.ID {
		err = &schemas.Error{Code: schemas.CodeUnknownTx}
	}
	if err == nil {
		st, err = g.kit.Cancel(r.Context(), id)
	}
	var se *schemas.Error
	if errors.As(err, &se) && (se.Code == schemas.CodeNotAllowed || se.Code == schemas.CodeSettled) {
		writeError(w, http.StatusConflict, se.Code, "not cancelled: the message is no longer held (it is on its way, or has its outcome)")
		return
	}
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (g *Gateway) getMessage(w http.ResponseWriter, r *http.Request, c *schemas.ClientInfo) {
	id := r.PathValue("id")
	if !schemas.ValidMsgID(id) {
		writeError(w, http.StatusBadRequest, schemas.CodeMalformed, "bad message id")
		return
	}
	st, err := g.kit.Query(r.Context(), id)
	if err == nil && st.Sender != c.ID && !(st.Dest.Gateway == g.cfg.Gateway && st.Dest.Address == c.ID) {
		err = &schemas.Error{Code: schemas.CodeUnknownTx}
	}
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// inboxMiss answers a failed inbox.get: 404 when the inbox does not hold
// the message, 503 (retry) when it could not be read.
func inboxMiss(w http.ResponseWriter, err error) {
	if errors.Is(err, jetstream.ErrMsgNotFound) || errors.Is(err, errBadEntry) {
		writeError(w, http.StatusNotFound, schemas.CodeUnknownTx, "no such message in your inbox")
		return
	}
	if errors.Is(err, errContentLost) { // retrying will not bring it back
		writeError(w, http.StatusNotFound, schemas.CodeUnknownTx, "the content of this message is no longer stored")
		return
	}
	fail(w, schemas.Errorf(schemas.CodeBusy, err, "inbox"))
}

func (g *Gateway) postRead(w http.ResponseWriter, r *http.Request, c *schemas.ClientInfo) {
	id := r.PathValue("id")
	if !schemas.ValidMsgID(id) {
		writeError(w, http.StatusBadRequest, schemas.CodeMalformed, "bad message id")
		return
	}
	s, err := g.inbox.get(r.Context(), c.ID, id)
	if err != nil {
		inboxMiss(w, err)
		return
	}
	if s.ReadAt == 0 {
		now := time.Now().UnixMilli()
		// The read receipt travels back to the sender through the brokers.
		if err := g.kit.Ack(r.Context(), s.Ref, schemas.StatusRead, "", ""); err != nil {
			fail(w, err)
			return
		}
		if err := g.inbox.markRead(r.Context(), c.ID, id, now); err != nil {
			fail(w, schemas.Errorf(schemas.CodeBusy, err, "inbox"))
			return
		}
		s.ReadAt = now
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "read_at": s.ReadAt})
}

// getContent sends a message's whole content as it came (a multipart
// body with its parts, or a single file), to save (RFC 6266 attachment).
func (g *Gateway) getContent(w http.ResponseWriter, r *http.Request, c *schemas.ClientInfo) {
	s, err := g.inbox.get(r.Context(), c.ID, r.PathValue("id"))
	if err != nil {
		inboxMiss(w, err)
		return
	}
	var body io.Reader
	switch {
	case s.Content != nil || s.Chunks > 0:
		if body, err = g.inbox.content(r.Context(), c.ID, s); err != nil {
			inboxMiss(w, err)
			return
		}
	case s.HTML != "":
		body = strings.NewReader(s.HTML)
	default:
		body = strings.NewReader(s.Text)
	}
	name := "message-" + s.ID[:min(8, len(s.ID))]
	mt, _, _ := mime.ParseMediaType(s.Type)
	switch {
	case len(s.Attachments) == 1 && !strings.HasPrefix(mt, "multipart/"):
		name = s.Attachments[0].Name // the content is that one file
	case mt == "text/plain":
		name += ".txt"
	case mt == "text/html":
		name += ".html"
	}
	download(w, s.Type, name, -1, body)
}

// getAttachment sends attachment n (from 0, in the order of the message's
// "attachments") with its name and type, decoded, to save.
func (g *Gateway) getAttachment(w http.ResponseWriter, r *http.Request, c *schemas.ClientInfo) {
	n, err := strconv.Atoi(r.PathValue("n"))
	if err != nil || n < 0 || n > 10000 {
		writeError(w, http.StatusBadRequest, schemas.CodeMalformed, "bad attachment number: 0 for the first of the message's attachments")
		return
	}
	s, err := g.inbox.get(r.Context(), c.ID, r.PathValue("id"))
	if err != nil {
		inboxMiss(w, err)
		return
	}
	if n >= len(s.Attachments) || (s.Content == nil && s.Chunks == 0) {
		writeError(w, http.StatusNotFound, schemas.CodeUnknownTx, fmt.Sprintf("the message has no attachment %d", n))
		return
	}
	body, err := g.inbox.content(r.Context(), c.ID, s)
	if err != nil {
		inboxMiss(w, err)
		return
	}
	mt, params, _ := mime.ParseMediaType(s.Type)
	if !strings.HasPrefix(mt, "multipart/") {
		// the content is the attachment (a fax, a recording, large HTML)
		a := s.Attachments[0]
		download(w, a.Type, a.Name, a.Length, body)
		return
	}
	// No Content-Length: entries listed before issue 18 have lengths
	// counted from a capped read.
	_, _, _, found, err := scanMultipart(body, params["boundary"], n, func(a schemas.Attachment, part io.Reader) error {
		return download(w, a.Type, a.Name, -1, part)
	})
	if !found && err == nil {
		writeError(w, http.StatusNotFound, schemas.CodeUnknownTx, fmt.Sprintf("the message has no attachment %d", n))
	}
}

// download answers a file to save: the type it has (X-Content-Type-Options:
// nosniff, so a browser never guesses another), always as an attachment
// with its name (RFC 6266), and sandboxed should it be opened anyway, so
// that an HTML file never runs in the gateway's origin. size, if known
// (>= 0), is sent as Content-Length. A failure once the body has begun
// aborts the response, so that a client never takes a cut file for whole.
func download(w http.ResponseWriter, ctype, name string, size int64, body io.Reader) error {
	h := w.Header()
	h.Set("Content-Type", safeType(ctype))
	h.Set("Content-Disposition", contentDisposition(name))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "sandbox; default-src 'none'")
	h.Set("Cache-Control", "private, no-store")
	if size >= 0 {
		h.Set("Content-Length", strconv.FormatInt(size, 10))
	}
	n, err := io.Copy(w, body)
	if err != nil || (size >= 0 && n != size) {
		panic(http.ErrAbortHandler)
	}
	return nil
}

// getInbox answers one page of the caller's inbox (paging.go): ?limit=
// (1 to MaxPageLimit, default DefaultPageLimit), and ?before= (older than
// a page's "next") or ?after= (newer than a page's "newer").
func (g *Gateway) getInbox(w http.ResponseWriter, r *http.Request, c *schemas.ClientInfo) {
	q := r.URL.Query()
	limit := DefaultPageLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxPageLimit {
			writeError(w, http.StatusBadRequest, schemas.CodeMalformed, fmt.Sprintf("limit must be a number from 1 to %d", MaxPageLimit))
			return
		}
		limit = n
	}
	before, after := q.Get("before"), q.Get("after")
	if before != "" && after != "" {
		writeError(w, http.StatusBadRequest, schemas.CodeMalformed, "before and after exclude each other")
		return
	}
	var pos cursor
	if cur := before + after; cur != "" {
		var err error
		if pos, err = decodeCursor(cur, g.inbox.shards); err != nil {
			writeError(w, http.StatusBadRequest, schemas.CodeMalformed, "bad cursor: pass a \"next\" or \"newer\" of an earlier answer")
			return
		}
	}
	p, err := g.inbox.page(r.Context(), c.ID, pos, after != "", limit)
	if err != nil {
		fail(w, schemas.Errorf(schemas.CodeBusy, err, "inbox"))
		return
	}
	writeJSON(w, http.StatusOK, p)
}

// getEvents streams the client's live events as Server-Sent Events.
func (g *Gateway) getEvents(w http.ResponseWriter, r *http.Request, c *schemas.ClientInfo) {
	fl, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, schemas.CodeInternal, "streaming unsupported")
		return
	}
	ch := make(chan *nats.Msg, 256)
	sub, err := g.nc.ChanSubscribe(EventsSubject(c.ID), ch)
	if err != nil {
		fail(w, schemas.Errorf(schemas.CodeBusy, err, "events"))
		return
	}
	defer sub.Unsubscribe()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, ": connected\n\n")
	fl.Flush()
	ping := time.NewTicker(15 * time.Second)
	defer ping.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-ping.C:
			io.WriteString(w, ": ping\n\n")
		case m := <-ch:
			var ev struct {
				Type string `json:"type"`
			} // the type only: a message event may carry megabytes of text
			json.Unmarshal(m.Data, &ev)
			fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.Type, m.Data)
		}
		fl.Flush()
	}
}

// Deliver implements kit.Medium: the message goes into the recipient's
// durable inbox; delivered means stored there.
func (g *Gateway) Deliver(ctx context.Context, d *kit.Delivery) (string, error) {
	client := d.Routed.Recipient
	if client == "" {
		client = d.Routed.Dest.Address
	}
	if client == "" {
		return "", schemas.Errorf(schemas.CodeUnknownRecipient, nil, "no web client")
	}
	if _, err := g.inbox.deliver(ctx, client, entry(d)); err != nil {
		return "", schemas.Errorf(schemas.CodeBusy, err, "inbox")
	}
	return schemas.StatusDelivered, nil
}

// Held implements kit.Holder: whether the recipient's inbox holds the
// message, for the brokers' deadline check (PROTOCOL.md §6.14).
func (g *Gateway) Held(ctx context.Context, q *schemas.HeldQuery) (*kit.AckRef, error) {
	client := q.Recipient
	if client == "" {
		client = q.Dest.Address
	}
	if client == "" {
		return nil, nil
	}
	s, err := g.inbox.get(ctx, client, q.MsgID)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil // not held: the deadline may fail it
	}
	if err != nil {
		return nil, err // could not look: ask again later
	}
	return &s.Ref, nil
}

// Notify implements kit.Medium: the sender's open pages get a status event.
func (g *Gateway) Notify(ctx context.Context, ev *schemas.StatusEvent) error {
	if ev.Sender == "" {
		return nil
	}
	g.inbox.event(ev.Sender, &Event{Type: "status", Status: ev})
	return nil
}
