package web

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/uims/uims/schemas"
)

// Usage is the answer of GET /api/v1/usage (docs/WEB.md, "Usage";
// docs/ACCOUNTING.md): the brokers' usage of the caller (PROTOCOL.md
// §6.17) and today's figures summed over the media.
type Usage struct {
	schemas.UsageReply
	Today UsageToday `json:"today"`
}

// UsageToday is today's usage per medium and in total.
type UsageToday struct {
	schemas.UsageDay
	Total schemas.MediumUsage `json:"total"`
}

// getUsage answers GET /api/v1/usage?days=N: the authenticated client's
// sent and received messages and bytes per medium today and on the days
// before (N days, today included, 1 to 31, default 7), its daily quota and
// what is left of it today. A client reads its own usage only: ?client=
// naming another is 403 NOT_ALLOWED, and the brokers answer the usage of
// the client whose token hash the gateway sends, never of a name.
func (g *Gateway) getUsage(w http.ResponseWriter, r *http.Request, c *schemas.ClientInfo) {
	q := r.URL.Query()
	if who := q.Get("client"); who != "" && who != c.ID {
		writeError(w, http.StatusForbidden, schemas.CodeNotAllowed, "a client reads its own usage only")
		return
	}
	days := 0
	if v := q.Get("days"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > schemas.MaxUsageDays {
			writeError(w, http.StatusBadRequest, schemas.CodeMalformed, "days must be 1 to "+strconv.Itoa(schemas.MaxUsageDays))
			return
		}
		days = n
	}
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	u, err := g.kit.Usage(r.Context(), schemas.UsageQuery{Kind: schemas.CredentialToken, Hash: schemas.TokenSHA256(tok), Days: days})
	if err != nil {
		fail(w, err)
		return
	}
	if u.Client != c.ID || len(u.Days) == 0 {
		// the token changed hands between the lookups: answer nothing
		writeError(w, http.StatusConflict, schemas.CodeNotAllowed, "the token names another client now")
		return
	}
	out := Usage{UsageReply: *u, Today: UsageToday{UsageDay: u.Days[0], Total: u.Days[0].Total()}}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, out)
}
