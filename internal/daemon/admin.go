package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// newAdmin starts listening on addr, with the registry of the collectors
// (the service's metrics and others) and rdb's pool; it returns nil (a
// listener that does nothing) when addr is empty. It serves the operators'
// HTTP endpoints:
//
//	/metrics  Prometheus metrics (metrics.go)
//	/healthz  200 while the process runs (liveness)
//	/readyz   200 while the health service says sessionauth.v1.SessionAuthority
//	          is SERVING (Redis answers), 503 otherwise (readiness)
func newAdmin(addr string, collectors []prometheus.Collector, rdb redis.UniversalClient, hs *health.Server, log *slog.Logger) (*httpServer, error) {
	if addr == "" {
		return nil, nil
	}
	reg, err := newRegistry(collectors, rdb)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:          promErrorLog{log},
		ErrorHandling:     promhttp.ContinueOnError, // a failing collector must not hide the others
		EnableOpenMetrics: true,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		st := healthpb.HealthCheckResponse_SERVICE_UNKNOWN // WatchHealth has not checked yet
		if resp, err := hs.Check(r.Context(), &healthpb.HealthCheckRequest{Service: serviceName}); err == nil {
			st = resp.GetStatus()
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if st != healthpb.HealthCheckResponse_SERVING {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_, _ = fmt.Fprintln(w, st)
	})
	return newHTTPServer("--admin-listen", addr, mux, nil, "admin listener failed: no metrics, health or readiness over HTTP", log)
}

// httpServer is an HTTP listener of sessiond's besides gRPC (the admin
// endpoints, the gateways' forward auth). A nil *httpServer is a listener
// turned off: its methods do nothing.
type httpServer struct {
	srv    *http.Server
	lis    net.Listener
	log    *slog.Logger
	failed string // what is lost if it fails
}

// newHTTPServer listens on addr (flag names it in errors), with TLS when
// tlsConf is not nil; serve serves.
func newHTTPServer(flag, addr string, h http.Handler, tlsConf *tls.Config, failed string, log *slog.Logger) (*httpServer, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	if tlsConf != nil {
		lis = tls.NewListener(lis, tlsConf)
	}
	return &httpServer{lis: lis, log: log, failed: failed, srv: &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}}, nil
}

// addr is the address the listener is bound to ("" when off).
func (a *httpServer) addr() string {
	if a == nil {
		return ""
	}
	return a.lis.Addr().String()
}

// netAddr is addr, nil when off.
func (a *httpServer) netAddr() net.Addr {
	if a == nil {
		return nil
	}
	return a.lis.Addr()
}

// serve serves until shutdown. If the listener fails, it logs why: gRPC
// goes on without it.
func (a *httpServer) serve() {
	if a == nil {
		return
	}
	if err := a.srv.Serve(a.lis); !errors.Is(err, http.ErrServerClosed) {
		a.log.Error(a.failed, "error", err)
	}
}

// close releases the listener of a server that never served.
func (a *httpServer) close() {
	if a != nil {
		_ = a.lis.Close()
	}
}

// shutdown stops accepting and waits up to timeout for the requests in
// flight; then it closes what is left.
func (a *httpServer) shutdown(timeout time.Duration) {
	if a == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := a.srv.Shutdown(ctx); err != nil {
		_ = a.srv.Close()
	}
}

// promErrorLog sends promhttp's errors (a collector that failed) to slog.
type promErrorLog struct{ log *slog.Logger }

func (l promErrorLog) Println(v ...any) {
	l.log.Warn("metrics: "+fmt.Sprint(v...), "component", "promhttp")
}
