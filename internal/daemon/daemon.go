// Package daemon is sessiond, the process: Run builds the Redis client, the
// session store and service, the gRPC listener with its interceptors and
// services, the admin listener, tracing and file reloading, serves until its
// context ends, and stops gracefully. cmd/sessiond turns flags into a Config
// and calls Run; the in-process sessionds of the tests call the same Run, so
// they exercise the production wiring.
//
// Error messages name the flag of the setting at fault (--redis-url, say):
// each Config field says which flag sets it.
package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"

	"github.com/sessiond/sessiond/server"
	"github.com/sessiond/sessiond/server/extauthz"
	"github.com/sessiond/sessiond/server/store"
)

// The defaults of Config.
const (
	DefaultListen          = "127.0.0.1:50051"
	DefaultHealthInterval  = time.Second
	DefaultShutdownTimeout = 10 * time.Second
)

// Config is a sessiond. The zero value is a working sessiond for
// development: gRPC on DefaultListen over the embedded in-memory store, no
// admin listener, no reflection, no ext_authz, no authorization and no
// limits but the transport's. Each field's zero value means what is written
// on it; cmd/sessiond's flags give the production defaults.
type Config struct {
	// Listen is the gRPC address (--listen); "" means DefaultListen. Port 0
	// picks a free port (see Started).
	Listen string
	// AdminListen is the admin HTTP address for /metrics, /healthz and
	// /readyz (--admin-listen); "" means no admin listener, and no metrics.
	AdminListen string
	// Reflection serves gRPC server reflection (--reflection).
	Reflection bool
	// ExtAuthz serves Envoy's Authorization/Check (--ext-authz) with the
	// settings in ExtAuthzConfig (--authz-*).
	ExtAuthz       bool
	ExtAuthzConfig extauthz.Config
	// ForwardAuth is the gateways' HTTP listener (nginx, Caddy, Traefik,
	// Envoy's HTTP mode); its zero value is none.
	ForwardAuth ForwardAuthConfig

	// Redis is where sessions are kept; its zero value is the embedded
	// development store.
	Redis RedisConfig
	// Store is the data model's policy (--key-prefix, --max-sessions-per-user,
	// --touch-interval). Its Clock, if nil, is Clock.
	Store store.Config
	// Service is the service's policy (--default-ttl, --max-ttl,
	// --idle-timeout, --request-timeout, --rate-limit-*). Run sets its
	// Logger, Audit, Metrics and, if nil, Clock.
	Service server.Config
	// Security is the gRPC listener's TLS, callers, policy and limits.
	Security SecurityConfig

	// HealthInterval is how often Redis is pinged for the health service
	// (--health-interval); 0 means DefaultHealthInterval.
	HealthInterval time.Duration
	// DrainDelay is how long sessiond goes on serving once ctx ends, with
	// every health status NOT_SERVING, before it closes its listener
	// (--shutdown-drain-delay): the time load balancers need to see it
	// unready and stop sending it calls. 0 means none.
	DrainDelay time.Duration
	// ShutdownTimeout is how long in-flight calls may take to finish once
	// the listener is closed (--shutdown-timeout); 0 means
	// DefaultShutdownTimeout.
	ShutdownTimeout time.Duration

	// Log is the operational log.
	Log LogConfig
	// AuditLog is where the audit log goes (--audit-log): "" the operational
	// log's output, "-" standard output, anything else a file appended to.
	AuditLog string

	// Getenv reads the OpenTelemetry environment (OTEL_*: tracing is off
	// unless it asks for traces); nil means os.Getenv.
	Getenv func(string) string
	// Clock is the time of the store, the service and the rate limits; nil
	// means time.Now. Tests inject one.
	Clock func() time.Time
	// GlobalLoggers sends the messages of go-redis and of the OpenTelemetry
	// SDK, which have one logger per process, to this sessiond's log. Only a
	// process that runs one sessiond (cmd/sessiond) sets it.
	GlobalLoggers bool
	// Started, if not nil, is called once every listener accepts
	// connections, with their addresses.
	Started func(Addrs)
	// TestInterceptors run innermost, right before the handlers, after
	// authentication and authorization: tests use them to make calls as a
	// caller of their choosing. Production leaves them empty.
	TestInterceptors []grpc.UnaryServerInterceptor
}

// Addrs are the addresses a running sessiond listens on.
type Addrs struct {
	GRPC        net.Addr
	Admin       net.Addr // nil without an admin listener
	ForwardAuth net.Addr // nil without a forward-auth listener
}

// LogConfig is the operational log's format.
type LogConfig struct {
	// Output is where lines go; nil means os.Stderr.
	Output io.Writer
	// Level is the lowest level written (--log-level); the zero value is
	// info.
	Level slog.Level
	// JSON writes JSON lines instead of text (--log-format json).
	JSON bool
}

// Run runs sessiond until ctx ends, then stops gracefully: probes see
// NOT_SERVING while it serves on for DrainDelay, then the listener closes
// (new calls are refused: Unavailable), revocation streams end, and
// in-flight calls get ShutdownTimeout to finish. It returns an error if sessiond cannot start (a file that does
// not read, an address in use) or stops serving early.
func Run(ctx context.Context, cfg Config) error {
	return run(ctx, cfg, nil)
}

// run is Run, with wrap (in this package's tests) around the store the
// service uses.
func run(ctx context.Context, cfg Config, wrap func(server.Store) server.Store) error {
	cfg = cfg.withDefaults()
	out := &lockedWriter{w: cfg.Log.Output} // shared by the operational and the audit log
	log := newLogger(cfg.Log, out)
	if cfg.GlobalLoggers {
		redis.SetLogger(redisLogger{log})
		// The SDK reports export failures through the global error handler.
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			log.Warn("tracing: exporting spans failed", "error", err)
		}))
	}
	audit, closeAudit, err := openAuditLog(cfg.AuditLog, out, log)
	if err != nil {
		return err
	}
	defer closeAudit()
	sec, err := newSecurity(cfg, log)
	if err != nil {
		return err
	}
	tr, err := newTracing(ctx, cfg.Getenv, log)
	if err != nil {
		return err
	}
	defer tr.shutdown(log) // after Redis and gRPC have stopped: flushes their last spans

	rdb, closeRedis, err := newRedis(cfg.Redis, log)
	if err != nil {
		return err
	}
	defer closeRedis()
	if err := tr.instrumentRedis(rdb); err != nil {
		return err
	}
	sessions := store.New(rdb, cfg.Store)
	var st server.Store = sessions
	if wrap != nil {
		st = wrap(st)
	}
	var ( // nil without an admin listener to serve them
		metrics     *server.Metrics
		faMetrics   *forwardAuthMetrics
		undecodable *prometheus.CounterVec
	)
	if cfg.AdminListen != "" {
		metrics = server.NewMetrics()
		undecodable = newUndecodableMetric()
		if cfg.ForwardAuth.Listen != "" {
			faMetrics = newForwardAuthMetrics()
		}
	}
	cfg.Service.Logger, cfg.Service.Audit, cfg.Service.Metrics = log, audit, metrics
	svc := server.New(st, cfg.Service)
	hs := health.NewServer()
	gs := newGRPCServer(cfg, svc, hs, sec.auth, undecodable, log, slices.Concat(sec.serverOptions, tr.serverOptions()))

	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	var own []prometheus.Collector
	if metrics != nil {
		own = append([]prometheus.Collector{metrics, undecodable, newRetriesCollector(sessions.WatchRetries), newReadsCollector(sessions.ReadStats)}, faMetrics.collectors()...)
	}
	adm, err := newAdmin(cfg.AdminListen, own, rdb, hs, log)
	if err != nil {
		_ = lis.Close()
		return err
	}
	fa, err := newForwardAuth(cfg, svc, sec.httpTLS, faMetrics, log)
	if err != nil {
		_ = lis.Close()
		adm.close()
		return err
	}
	log.Info("sessiond serving", "listen", lis.Addr().String(), "redis_mode", cfg.Redis.mode(),
		"default_ttl", cfg.Service.DefaultTTL, "max_ttl", cfg.Service.MaxTTL, "idle_timeout", max(cfg.Service.DefaultIdleTimeout, 0),
		"touch_interval", cfg.Store.TouchInterval, "max_sessions_per_user", cfg.Store.MaxSessionsPerUser, "min_replica_acks", cfg.Store.MinReplicaAcks,
		"key_prefix", cfg.Store.KeyPrefix, "ext_authz", cfg.ExtAuthz, "admin_listen", adm.addr(), "forward_auth_listen", fa.addr())

	healthCtx, stopHealth := context.WithCancel(ctx)
	var wg sync.WaitGroup
	pingTimeout := time.Second
	if t := cfg.Service.RequestTimeout; t > 0 {
		pingTimeout = min(t, time.Second)
	}
	wg.Go(func() {
		watchHealth(healthCtx, svc.Ping, hs, gs.GetServiceInfo(), cfg.HealthInterval, pingTimeout, log)
	})
	wg.Go(func() { sec.files.run(healthCtx, log) }) // reloads certificates, keys and policy
	wg.Go(func() { sessions.KeepCutoffFresh(healthCtx) })
	revocationsCtx, stopRevocations := context.WithCancel(ctx)
	defer stopRevocations()
	// The validations' coalesced reads run until every listener has
	// stopped: calls that drain at shutdown still read through them.
	readsCtx, stopReads := context.WithCancel(context.WithoutCancel(ctx))
	defer stopReads()
	wg.Go(func() { sessions.RunReads(readsCtx) })
	wg.Go(func() { svc.RunRevocations(revocationsCtx) })
	serveErr := make(chan error, 1)
	wg.Go(func() { serveErr <- gs.Serve(lis) })
	wg.Go(adm.serve) // logs, and gRPC goes on, if the admin listener fails
	wg.Go(fa.serve)
	if cfg.Started != nil {
		cfg.Started(Addrs{GRPC: lis.Addr(), Admin: adm.netAddr(), ForwardAuth: fa.netAddr()})
	}

	select {
	case err = <-serveErr:
		err = fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
		hs.Shutdown() // probes see NOT_SERVING while calls drain
		if cfg.DrainDelay > 0 {
			log.Info("shutting down: not ready, serving on while load balancers stop sending", "drain_delay", cfg.DrainDelay)
			select {
			case err = <-serveErr:
			case <-time.After(cfg.DrainDelay):
			}
		}
		log.Info("shutting down: listener closed, finishing in-flight calls", "timeout", cfg.ShutdownTimeout)
		stopRevocations() // end WatchRevocations streams: clients drop their caches
		stopped := make(chan struct{})
		go func() { gs.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(cfg.ShutdownTimeout):
			log.Warn("shutdown timeout: cancelling the calls still running")
			gs.Stop()
			<-stopped
		}
	}
	fa.shutdown(cfg.ShutdownTimeout)
	stopReads()
	adm.shutdown(cfg.ShutdownTimeout) // after gRPC: /metrics and /readyz answer while calls drain
	stopHealth()
	stopRevocations()
	wg.Wait()
	log.Info("sessiond stopped")
	return err
}

// withDefaults returns c with its zero fields replaced by their defaults.
func (c Config) withDefaults() Config {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.HealthInterval <= 0 {
		c.HealthInterval = DefaultHealthInterval
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.Log.Output == nil {
		c.Log.Output = os.Stderr
	}
	if c.Getenv == nil {
		c.Getenv = os.Getenv
	}
	if c.Clock != nil {
		if c.Store.Clock == nil {
			c.Store.Clock = c.Clock
		}
		if c.Service.Clock == nil {
			c.Service.Clock = c.Clock
		}
	}
	if c.Store.KeyPrefix == "" {
		c.Store.KeyPrefix = store.DefaultKeyPrefix
	}
	c.Service = c.Service.WithDefaults() // so that the start-up line reports what is in force
	c.Redis = c.Redis.withDefaults()
	c.Security = c.Security.withDefaults()
	return c
}
