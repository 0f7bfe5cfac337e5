package gatewaytest_test

import (
	"net/http"
	"testing"

	"github.com/sessiond/sessiond/internal/gatewaytest"
)

// TestNginx runs docs/gateways/nginx.conf on a real nginx.
func TestNginx(t *testing.T) {
	t.Parallel()
	testGateway(t, gateway{
		start:       startNginx,
		unavailable: []int{http.StatusInternalServerError, http.StatusServiceUnavailable}, // auth_request: 500
		postLogin:   http.StatusFound,                                                     // the docs' return 302
		stepUpPage:  true,                                                                 // the docs' error_page 403
	})
}

// startNginx runs nginx with the docs' configuration, its addresses
// replaced by the test's.
func startNginx(t testing.TB, forwardAuth, upstream string) *gatewaytest.Gateway {
	docs := gatewaytest.DocsFile(t, "nginx.conf")
	return gatewaytest.StartNginx(t, func(addr string) string {
		return gatewaytest.Substitute(t, docs,
			"127.0.0.1:9091", forwardAuth,
			"127.0.0.1:8080", upstream,
			"listen 80;", "listen "+addr+";")
	})
}
