// Package webui holds what the pages UIMS serves share: base.css, the
// rules common to the web client page (gateways/web) and the operator view
// (ops). Each serves it at /base.css next to its own static files, and its
// page links it before its own style.css. A leaf with no dependency: the
// components that import it share a stylesheet, nothing else.
package webui

import (
	"embed"
	"net/http"
)

//go:embed base.css
var files embed.FS

// BasePath is where a server mounts Base.
const BasePath = "/base.css"

// Base serves base.css (GET /base.css).
func Base() http.Handler { return http.FileServerFS(files) }
