package daemon

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessiond/sessiond/server"
	"github.com/sessiond/sessiond/server/forwardauth"
)

// ForwardAuthConfig is the HTTP listener of the gateways' forward-auth
// endpoints (see package forwardauth). The cookie and the identity headers
// are ExtAuthzConfig's (--authz-*), shared with ext_authz's Check.
type ForwardAuthConfig struct {
	// Listen is its address (--forward-auth-listen); "" means no listener.
	// It serves TLS with the gRPC listener's certificate when
	// Security.TLSCertFile is set.
	Listen string
	// LoginURL is where browser navigations without a live session are sent
	// (--forward-auth-login-url); "" means none: 401.
	LoginURL string
	// TrustedProxies are the gateways whose X-Forwarded-For names the end
	// user (--forward-auth-trusted-proxies); nil means loopback.
	TrustedProxies []netip.Prefix
}

// newForwardAuth starts listening on cfg.ForwardAuth.Listen; nil (a
// listener that does nothing) when it is empty.
func newForwardAuth(cfg Config, svc *server.Server, tlsConf *tls.Config, m *forwardAuthMetrics, log *slog.Logger) (*httpServer, error) {
	fa := cfg.ForwardAuth
	if fa.Listen == "" {
		return nil, nil
	}
	h := forwardauth.New(svc, forwardauth.Config{
		CookieName:      cfg.ExtAuthzConfig.CookieName,
		SessionIDHeader: cfg.ExtAuthzConfig.SessionIDHeader,
		UserIDHeader:    cfg.ExtAuthzConfig.UserIDHeader,
		LoginURL:        fa.LoginURL,
		TrustedProxies:  fa.TrustedProxies,
		Logger:          log,
		Observe:         m.observe,
	})
	return newHTTPServer("--forward-auth-listen", fa.Listen, h, tlsConf,
		"forward-auth listener failed: gateways get no answer from this sessiond", log)
}

// forwardAuthMetrics measures the forward-auth endpoints as the gRPC
// metrics measure the calls. A nil *forwardAuthMetrics measures nothing.
type forwardAuthMetrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

func newForwardAuthMetrics() *forwardAuthMetrics {
	return &forwardAuthMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessiond_forward_auth_requests_total",
			Help: "Forward-auth requests of the gateways, by endpoint (auth-request, forward-auth, ext-authz) and outcome (allowed, unauthenticated, forbidden: a live session short of the route's step-up requirement, rate_limited, unavailable, error).",
		}, []string{"endpoint", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sessiond_forward_auth_request_duration_seconds",
			Help:    "Time to answer one forward-auth request, by endpoint.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"endpoint"}),
	}
}

func (m *forwardAuthMetrics) observe(endpoint, outcome string, took time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(endpoint, outcome).Inc()
	m.latency.WithLabelValues(endpoint).Observe(took.Seconds())
}

// collectors are what the registry serves; a zero series for every
// endpoint and outcome.
func (m *forwardAuthMetrics) collectors() []prometheus.Collector {
	if m == nil {
		return nil
	}
	for _, e := range []string{"auth-request", "forward-auth", "ext-authz"} {
		for _, o := range []string{"allowed", "unauthenticated", "forbidden", "rate_limited", "unavailable", "error"} {
			m.requests.WithLabelValues(e, o)
		}
		m.latency.WithLabelValues(e)
	}
	return []prometheus.Collector{m.requests, m.latency}
}

// ParseCIDRs parses CIDRs ("10.0.0.0/8") and bare addresses (one host).
func ParseCIDRs(items []string) ([]netip.Prefix, error) {
	out := []netip.Prefix{}
	for _, f := range items {
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("%q: want a CIDR (10.0.0.0/8) or an address", f)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
