// Command sessiond is the session authority: a gRPC service that issues,
// validates, lists and revokes user sessions kept in Redis.
//
// Run `sessiond -h` for its flags; each has a SESSIOND_ environment fallback.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/health"

	"github.com/sessiond/sessiond/server"
	"github.com/sessiond/sessiond/server/store"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stderr, nil)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
	case err != nil:
		fmt.Fprintln(os.Stderr, "sessiond:", err)
		os.Exit(1)
	}
}

// run is sessiond: it parses the configuration, connects to Redis, serves
// gRPC until ctx ends, then stops gracefully. ready, if not nil, receives the
// listening address once the server accepts connections.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer, ready chan<- net.Addr) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	stderr = &lockedWriter{w: stderr} // shared by the operational and the audit log
	log := newLogger(cfg, stderr)
	redis.SetLogger(redisLogger{log})
	audit, closeAudit, err := openAuditLog(cfg.audit, stderr, log)
	if err != nil {
		return err
	}
	defer closeAudit()
	sec, err := newSecurity(cfg, log)
	if err != nil {
		return err
	}
	tr, err := newTracing(ctx, getenv, log) // tracing.go: off unless OTEL_ variables ask
	if err != nil {
		return err
	}
	defer tr.shutdown(log) // after Redis and gRPC have stopped: flushes their last spans

	rdb, closeRedis, err := newRedis(cfg, log)
	if err != nil {
		return err
	}
	defer closeRedis()
	if err := tr.instrumentRedis(rdb); err != nil {
		return err
	}
	st := store.New(rdb, store.Config{
		KeyPrefix:          cfg.keyPrefix,
		MaxSessionsPerUser: cfg.maxSessionsPerUser,
		TouchInterval:      cfg.touchInterval,
	})
	metrics := newMetrics(cfg) // admin.go: nil without an admin listener
	svc := server.New(st, server.Config{
		DefaultTTL:         cfg.defaultTTL,
		MaxTTL:             cfg.maxTTL,
		DefaultIdleTimeout: cfg.idleTimeout,
		RequestTimeout:     cfg.requestTimeout,

		// rate limits (ratelimit.go) and the audit log (audit.go)
		CreateLimit:           cfg.rateLimits.create,
		FailedValidationLimit: cfg.rateLimits.failedValidations,
		Audit:                 audit,
	}, log, server.WithMetrics(metrics))
	hs := health.NewServer()
	grpcOpts := server.GRPCOptions{Reflection: cfg.reflection, Auth: sec.auth, ServerOptions: slices.Concat(sec.serverOptions, tr.serverOptions())}
	if cfg.extAuthz {
		grpcOpts.ExtAuthz = &cfg.authz
	}
	gs := server.NewGRPCServer(svc, hs, grpcOpts)

	lis, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	adm, err := newAdmin(cfg, metrics, rdb, hs, log) // admin.go: /metrics, /healthz, /readyz
	if err != nil {
		_ = lis.Close()
		return err
	}
	log.Info("sessiond serving", "listen", lis.Addr().String(), "redis_mode", cfg.redisMode(), "default_ttl", cfg.defaultTTL, "max_ttl", cfg.maxTTL,
		"idle_timeout", cfg.idleTimeout, "touch_interval", cfg.touchInterval, "max_sessions_per_user", cfg.maxSessionsPerUser,
		"key_prefix", cfg.keyPrefix, "ext_authz", cfg.extAuthz, "admin_listen", adm.addr())

	healthCtx, stopHealth := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { server.WatchHealth(healthCtx, metrics.InstrumentStore(st), hs, cfg.healthInterval, log) })
	wg.Go(func() { sec.run(healthCtx, log) }) // reloads certificates, keys and policy
	revocationsCtx, stopRevocations := context.WithCancel(ctx)
	defer stopRevocations()
	wg.Go(func() { svc.RunRevocations(revocationsCtx) })
	serveErr := make(chan error, 1)
	wg.Go(func() { serveErr <- gs.Serve(lis) })
	wg.Go(adm.serve) // logs, and gRPC goes on, if the admin listener fails
	if ready != nil {
		ready <- lis.Addr()
	}

	select {
	case err = <-serveErr:
		err = fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
		log.Info("shutting down: finishing in-flight calls", "timeout", cfg.shutdownTimeout)
		hs.Shutdown()     // probes see NOT_SERVING while calls drain
		stopRevocations() // end WatchRevocations streams: clients drop their caches
		stopped := make(chan struct{})
		go func() { gs.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(cfg.shutdownTimeout):
			log.Warn("shutdown timeout: cancelling the calls still running")
			gs.Stop()
			<-stopped
		}
	}
	adm.shutdown(cfg.shutdownTimeout) // after gRPC: /metrics and /readyz answer while calls drain
	stopHealth()
	stopRevocations()
	wg.Wait()
	log.Info("sessiond stopped")
	return err
}

func newLogger(cfg *config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.logLevel}
	if cfg.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
