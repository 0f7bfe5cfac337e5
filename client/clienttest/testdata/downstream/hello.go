// Package downstream is a service of another module, protected by sessiond:
// the module TestFromAnotherModule builds, with its go.mod, and tests.
package downstream

import (
	"fmt"
	"net/http"

	"github.com/sessiond/sessiond/client"
)

// NewHandler serves GET /hello to the callers with a live session.
func NewHandler(sessions *client.Client) http.Handler {
	protect := client.HTTPMiddleware(sessions)
	mux := http.NewServeMux()
	mux.Handle("GET /hello", protect(http.HandlerFunc(hello)))
	return mux
}

func hello(w http.ResponseWriter, r *http.Request) {
	s, _ := client.SessionFromContext(r.Context())
	fmt.Fprintf(w, "hello, %s", s.GetUserId())
}
