// Package heraldjs serves herald's JavaScript client to browsers: the ES
// module herald-client.js, embedded, so that a Go server's page can
// import it without a build step or a CDN.
//
//	http.Handle("/herald-client.js", heraldjs.Handler())
//	// in the page: import { Client } from '/herald-client.js';
package heraldjs

import (
	_ "embed"
	"net/http"
)

// Source is the client's ES module.
//
//go:embed herald-client.js
var Source []byte

// Handler serves Source as JavaScript at whatever path it is mounted on.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		if r.Method == http.MethodGet {
			_, _ = w.Write(Source)
		}
	})
}
