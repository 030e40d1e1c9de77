package webui

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

// Base serves the stylesheet as CSS, with the custom properties both
// pages' own rules use.
func TestBase(t *testing.T) {
	w := httptest.NewRecorder()
	Base().ServeHTTP(w, httptest.NewRequest("GET", BasePath, nil))
	body, _ := io.ReadAll(w.Result().Body)
	if w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/css") {
		t.Fatalf("GET %s: %d %s", BasePath, w.Code, w.Header().Get("Content-Type"))
	}
	for _, want := range []string{"--accent:", "--bad-soft:", ".badge {", ".card {"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("base.css lacks %s", want)
		}
	}
}
