package main

import (
	"context"
	"errors"
	"flag"
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

	"github.com/sessiond/sessiond/server"
)

// adminConfig is the admin HTTP listener's flag.
type adminConfig struct {
	listen string
}

func (a *adminConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&a.listen, "admin-listen", "127.0.0.1:9090", "admin HTTP listen address (host:port) for /metrics, /healthz and /readyz,\nseparate from gRPC; empty: no admin listener and no metrics")
}

func (a *adminConfig) check() []error {
	if a.listen == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(a.listen); err != nil {
		return []error{fmt.Errorf("--admin-listen %q: want host:port (or empty to turn it off)", a.listen)}
	}
	return nil
}

// newMetrics returns the service's metrics, or nil (no metrics) when there
// is no admin listener to serve them.
func newMetrics(cfg *config) *server.Metrics {
	if cfg.admin.listen == "" {
		return nil
	}
	return server.NewMetrics()
}

// newAdmin starts listening on --admin-listen, with the registry of m and
// rdb's pool; it returns nil (a listener that does nothing) when
// --admin-listen is empty.
func newAdmin(cfg *config, m *server.Metrics, rdb redis.UniversalClient, hs *health.Server, log *slog.Logger) (*adminServer, error) {
	if cfg.admin.listen == "" {
		return nil, nil
	}
	reg, err := newRegistry(m, rdb)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return newAdminServer(cfg.admin.listen, reg, hs, log)
}

// adminServer serves the operators' HTTP endpoints:
//
//	/metrics  Prometheus metrics (metrics.go)
//	/healthz  200 while the process runs (liveness)
//	/readyz   200 while the health service says sessionauth.v1.SessionAuthority
//	          is SERVING (Redis answers), 503 otherwise (readiness)
//
// A nil *adminServer is the admin listener turned off: its methods do
// nothing.
type adminServer struct {
	srv *http.Server
	lis net.Listener
	log *slog.Logger
}

// newAdminServer listens on addr; serve serves.
func newAdminServer(addr string, reg prometheus.Gatherer, hs *health.Server, log *slog.Logger) (*adminServer, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--admin-listen: %w", err)
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
		if resp, err := hs.Check(r.Context(), &healthpb.HealthCheckRequest{Service: server.ServiceName}); err == nil {
			st = resp.GetStatus()
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if st != healthpb.HealthCheckResponse_SERVING {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_, _ = fmt.Fprintln(w, st)
	})
	return &adminServer{lis: lis, log: log, srv: &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}}, nil
}

// addr is the address the listener is bound to ("" when off).
func (a *adminServer) addr() string {
	if a == nil {
		return ""
	}
	return a.lis.Addr().String()
}

// serve serves until shutdown. If the listener fails, it logs why: gRPC
// goes on without metrics.
func (a *adminServer) serve() {
	if a == nil {
		return
	}
	if err := a.srv.Serve(a.lis); !errors.Is(err, http.ErrServerClosed) {
		a.log.Error("admin listener failed: no metrics, health or readiness over HTTP", "error", err)
	}
}

// shutdown stops accepting and waits up to timeout for the requests in
// flight; then it closes what is left.
func (a *adminServer) shutdown(timeout time.Duration) {
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
