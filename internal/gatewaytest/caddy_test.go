package gatewaytest_test

import (
	"net/http"
	"testing"

	"github.com/sessiond/sessiond/internal/gatewaytest"
)

// TestCaddy runs docs/gateways/Caddyfile on a real Caddy.
func TestCaddy(t *testing.T) {
	t.Parallel()
	testGateway(t, gateway{
		start:            startCaddy,
		unavailable:      []int{http.StatusServiceUnavailable}, // sessiond's answer, passed on
		passesRetryAfter: true,
		postLogin:        http.StatusSeeOther, // sessiond's, for a POST
	})
}

// startCaddy runs Caddy with the docs' Caddyfile, its addresses replaced
// by the test's (the site on plain HTTP).
func startCaddy(t testing.TB, forwardAuth, upstream string) *gatewaytest.Gateway {
	docs := gatewaytest.DocsFile(t, "Caddyfile")
	return gatewaytest.StartCaddy(t, func(addr string) string {
		return gatewaytest.Substitute(t, docs,
			"127.0.0.1:9091", forwardAuth,
			"127.0.0.1:8080", upstream,
			"app.example.com {", "http://"+addr+" {")
	})
}
