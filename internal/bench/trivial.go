package bench

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	json "github.com/goccy/go-json"
)

// trivialMaxBody is the web gateway's default JSON body limit
// (web.Config.MaxBody, docs/WEB.md "Attachments").
const trivialMaxBody = 2 << 20

// trivialHandler is an HTTP server of the web API's shape that does
// nothing: POST /api/v1/messages reads the bearer token and the JSON body
// as the web gateway does (goccy/go-json, unknown fields refused, the
// same body limit) and answers 202 with a new id; it keeps nothing. Its
// row in `uims bench http` is what the clients and the HTTP layer cost on
// this machine, the ceiling of the uims row beside it.
func trivialHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/messages", trivialPost)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		trivialJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	return mux
}

func trivialPost(w http.ResponseWriter, r *http.Request) {
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); !ok || tok == "" {
		trivialJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing bearer token", "code": "UNAUTHORIZED"})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, trivialMaxBody)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	var req struct {
		To   string `json:"to"`
		Text string `json:"text"`
	}
	if err := dec.Decode(&req); err != nil || req.To == "" || req.Text == "" {
		trivialJSON(w, http.StatusBadRequest, map[string]string{"error": "malformed", "code": "MALFORMED"})
		return
	}
	var id [16]byte
	rand.Read(id[:])
	trivialJSON(w, http.StatusAccepted, map[string]string{"id": hex.EncodeToString(id[:]), "status": "delivered"})
}

func trivialJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// startTrivial serves trivialHandler on 127.0.0.1:0 and returns its base
// URL and how to stop it.
func startTrivial() (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("bench: trivial server: %w", err)
	}
	// The web gateway's server settings (gateways/web/web.go).
	srv := &http.Server{Handler: trivialHandler(), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln) // http.ErrServerClosed once stopped
	}()
	stop := func() {
		srv.Close()
		<-done
	}
	return "http://" + ln.Addr().String(), stop, nil
}
