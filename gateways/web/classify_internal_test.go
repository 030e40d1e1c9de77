package web

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/uims/uims/schemas"
)

// Every code answers by its class (issue 15, docs/WEB.md "Errors"): a
// temporary one is 503 with Retry-After, a permanent one never is 503 and
// has no Retry-After.
func TestHTTPStatusByClass(t *testing.T) {
	want := map[schemas.Code]int{
		schemas.CodeUnknownRecipient: 404, schemas.CodeUnknownTx: 404,
		schemas.CodeUnauthorized: 401,
		schemas.CodeNotAllowed:   403, schemas.CodeUnknownSender: 403,
		schemas.CodeTooLarge:      413,
		schemas.CodeQuotaExceeded: 429,
		schemas.CodeDuplicate:     409, schemas.CodeSettled: 409,
		schemas.CodeMalformed: 400, schemas.CodeBadVersion: 400,
		schemas.CodeUnsupported: 422, schemas.CodeConversionFailed: 422, schemas.CodeRejected: 422,
		schemas.CodeUnreachable: 422, schemas.CodeExpired: 422,
		schemas.CodeStrictRequired: 502, schemas.CodeBadMAC: 502, schemas.CodeBadTicket: 502,
	}
	for _, c := range schemas.Codes() {
		if c == schemas.CodeOK {
			continue
		}
		w := httptest.NewRecorder()
		fail(w, schemas.Errorf(c, nil, "detail"))
		ra := w.Header().Get("Retry-After")
		switch {
		case c.Retryable():
			if w.Code != http.StatusServiceUnavailable || ra != "1" {
				t.Errorf("%s (temporary): %d Retry-After %q, want 503 with Retry-After", c, w.Code, ra)
			}
		case w.Code == http.StatusServiceUnavailable || ra != "":
			t.Errorf("%s (permanent): %d Retry-After %q", c, w.Code, ra)
		case want[c] != 0 && w.Code != want[c]:
			t.Errorf("%s: %d, want %d", c, w.Code, want[c])
		}
	}
}
