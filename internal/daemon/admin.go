package daemon

import (
	"context"
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

	"github.com/sessiond/sessiond/server"
)

// newAdmin starts listening on addr, with the registry of m and rdb's pool;
// it returns nil (a listener that does nothing) when addr is empty.
func newAdmin(addr string, m *server.Metrics, rdb redis.UniversalClient, hs *health.Server, log *slog.Logger) (*adminServer, error) {
	if addr == "" {
		return nil, nil
	}
	reg, err := newRegistry(m, rdb)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return newAdminServer(addr, reg, hs, log)
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
		if resp, err := hs.Check(r.Context(), &healthpb.HealthCheckRequest{Service: serviceName}); err == nil {
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

// netAddr is addr, nil when off.
func (a *adminServer) netAddr() net.Addr {
	if a == nil {
		return nil
	}
	return a.lis.Addr()
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
