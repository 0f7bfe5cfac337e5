package daemon

import (
	"context"
	"log/slog"
	"runtime/debug"
	"slices"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/server"
	"github.com/sessiond/sessiond/server/access"
	"github.com/sessiond/sessiond/server/extauthz"
)

// serviceName is the SessionAuthority's fully qualified name, also its name
// in the health service.
var serviceName = sessionauthv1.SessionAuthority_ServiceDesc.ServiceName

// newGRPCServer returns the gRPC server with the SessionAuthority service,
// the health service hs and, as cfg asks, ext_authz and server reflection,
// behind the interceptors every call goes through: metrics, the caller's
// authentication, logging (method, code, duration; never a payload, so never
// a token), the caller's authorization, the store deadline, and panic
// recovery.
func newGRPCServer(cfg Config, svc *server.Server, hs *health.Server, auth *access.Auth, undecodableCount *prometheus.CounterVec, log *slog.Logger, opts []grpc.ServerOption) *grpc.Server {
	unary, stream := interceptors(cfg, svc, auth, undecodableCount, log)
	gs := grpc.NewServer(append([]grpc.ServerOption{
		grpc.ForceServerCodecV2(newCodec()),
		// The tests' interceptors run as unaryChain's handler: after
		// recovery, right before the handlers. With none, gRPC calls
		// unaryChain alone, with no chaining of its own.
		grpc.ChainUnaryInterceptor(append([]grpc.UnaryServerInterceptor{unary}, cfg.TestInterceptors...)...),
		grpc.ChainStreamInterceptor(stream...),
	}, opts...)...)
	sessionauthv1.RegisterSessionAuthorityServer(gs, svc)
	healthpb.RegisterHealthServer(gs, hs)
	if cfg.ExtAuthz {
		ec := cfg.ExtAuthzConfig
		ec.Logger = log
		authv3.RegisterAuthorizationServer(gs, extauthz.New(svc, ec))
	}
	if cfg.Reflection {
		registerReflection(gs, log)
	}
	cfg.Service.Metrics.InitializeMetrics(gs) // a zero series for every method
	return gs
}

// interceptors returns what every call goes through: the unary calls'
// interceptor (unaryChain) and the streams' interceptors, in order.
func interceptors(cfg Config, svc *server.Server, auth *access.Auth, undecodableCount *prometheus.CounterVec, log *slog.Logger) (grpc.UnaryServerInterceptor, []grpc.StreamServerInterceptor) {
	logger := logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		log.Log(ctx, slog.Level(lvl), msg, fields...)
	})
	logOpts := []logging.Option{
		logging.WithLogOnEvents(logging.FinishCall),
		logging.WithLevels(codeToLevel),
	}
	recoverOpt := recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		log.ErrorContext(ctx, "panic in handler", "panic", p, "stack", string(debug.Stack()))
		return status.Error(codes.Internal, "internal error")
	})
	l := callLogger{log}
	refuseUndecodable, undecodableStream := undecodableInterceptors(undecodableCount, log)
	chain := &unaryChain{
		metrics: cfg.Service.Metrics, auth: auth, log: l, fullLog: logging.UnaryServerInterceptor(logger, logOpts...),
		refuseUndecodable: refuseUndecodable, svc: svc, recovery: recovery.UnaryServerInterceptor(recoverOpt),
	}
	// Metrics come first, so they count every call, refused ones included:
	// metrics → logging → auth → recovery. A request that did not decode is
	// refused once it is counted and logged. (unaryChain runs the same
	// steps in the same order.)
	_, stream := cfg.Service.Metrics.Interceptors()
	return chain.intercept, append(stream,
		auth.AuthenticateStream,
		l.stream(logging.StreamServerInterceptor(logger, logOpts...)),
		undecodableStream,
		auth.AuthorizeStream,
		recovery.StreamServerInterceptor(recoverOpt),
	)
}

// unaryChain is what every unary call goes through, in this order: its
// metrics, the caller's authentication, logging, the refusal of a request
// that did not decode, the caller's authorization, the store deadline, and
// panic recovery; then the handler. It runs them in one function, as steps, where a chain of
// interceptors (grpc.ChainUnaryInterceptor) allocates a closure for each
// interceptor but the last on every call: 6 of the 20 allocations the chain
// made a validation (BenchmarkUnaryInterceptors).
type unaryChain struct {
	metrics           *server.Metrics
	auth              *access.Auth
	log               callLogger
	fullLog           grpc.UnaryServerInterceptor // every field, when debug logging is on
	refuseUndecodable func(ctx context.Context, method, problem string) error
	svc               *server.Server
	recovery          grpc.UnaryServerInterceptor
}

func (c *unaryChain) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	call := c.metrics.StartUnary(info.FullMethod)
	ctx = c.auth.Authenticate(ctx, info.FullMethod)
	var (
		resp any
		err  error
	)
	// With debug logging on, go-grpc-middleware's logging interceptor logs
	// every field; otherwise only the calls whose code is logged above debug
	// (codeToLevel) are, with the fields an operator needs: building the
	// full field set for every call costs about 30 allocations, a tenth of
	// a ValidateSession, for lines that would be dropped.
	if c.log.log.Enabled(ctx, slog.LevelDebug) {
		resp, err = c.fullLog(ctx, req, info, func(ctx context.Context, req any) (any, error) {
			return c.checked(ctx, req, info, handler)
		})
	} else {
		start := time.Now()
		resp, err = c.checked(ctx, req, info, handler)
		c.log.logFinished(ctx, info.FullMethod, start, err)
	}
	call.Finish(err)
	return resp, err
}

// checked is the chain after logging. The last interceptor, recovery, is
// handed the handler itself: no closure.
func (c *unaryChain) checked(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if problem, bad := undecodable(req); bad {
		return nil, c.refuseUndecodable(ctx, info.FullMethod, problem)
	}
	if err := c.auth.Authorize(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	ctx, release := c.svc.WithRequestTimeout(ctx)
	defer release()
	return c.recovery(ctx, req, info, handler)
}

// callLogger logs finished calls.
type callLogger struct{ log *slog.Logger }

// stream runs the full logging interceptor (go-grpc-middleware's, with
// every field) when debug logging is on; otherwise it logs only what
// logFinished logs (as unaryChain does for unary calls).
func (s callLogger) stream(full grpc.StreamServerInterceptor) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if s.log.Enabled(ss.Context(), slog.LevelDebug) {
			return full(srv, ss, info, handler)
		}
		start := time.Now()
		err := handler(srv, ss)
		s.logFinished(ss.Context(), info.FullMethod, start, err)
		return err
	}
}

func (s callLogger) logFinished(ctx context.Context, method string, start time.Time, err error) {
	code := status.Code(err)
	lvl := slog.Level(codeToLevel(code))
	if lvl <= slog.LevelDebug || !s.log.Enabled(ctx, lvl) {
		return
	}
	attrs := []any{"grpc.method", method, "grpc.code", code.String(), "grpc.time_ms", float64(time.Since(start).Microseconds()) / 1000}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		attrs = append(attrs, "peer.address", p.Addr.String())
	}
	if err != nil {
		attrs = append(attrs, "grpc.error", err.Error())
	}
	s.log.Log(ctx, lvl, "finished call", attrs...)
}

// codeToLevel logs the codes a caller causes at debug level (a rejected
// token is routine), and the ones an operator must see at warn or error.
func codeToLevel(code codes.Code) logging.Level {
	switch code {
	case codes.OK, codes.InvalidArgument, codes.Unauthenticated, codes.NotFound, codes.Canceled,
		codes.DeadlineExceeded, codes.Aborted, codes.PermissionDenied:
		return logging.LevelDebug
	case codes.ResourceExhausted:
		// A caller over its rate limit is routine under attack: one line per
		// refused call would flood the log. Audit, metrics and the first
		// refusals at debug level tell the story.
		return logging.LevelDebug
	case codes.Unavailable:
		return logging.LevelWarn
	default:
		return logging.LevelError
	}
}

// storeFree reports whether the service called name answers without the
// session store: the health service itself and server reflection. Every other
// service sessiond serves (the SessionAuthority, ext_authz's Authorization)
// needs Redis, and so does a service added later unless it is listed here.
func storeFree(name string) bool {
	switch name {
	case healthpb.Health_ServiceDesc.ServiceName,
		reflectionv1.ServerReflection_ServiceDesc.ServiceName,
		reflectionv1alpha.ServerReflection_ServiceDesc.ServiceName:
		return true
	}
	return false
}

// watchHealth gives every one of services (the gRPC server's) a status in hs
// and pings the store every interval until ctx ends: the services that need
// the store (see storeFree) are SERVING while Redis answers and NOT_SERVING
// while it does not; the others, and the overall status (""), are SERVING
// while the process runs. Use "" for liveness, a service's name for its
// readiness. hs.Shutdown at stop turns them all NOT_SERVING.
//
// A ping may take pingTimeout: at least the interval, and as long as a call
// may wait for Redis (the request timeout, at most 1s), so that a loaded
// machine on which calls succeed is not reported unready because a ping
// missed a very short interval.
func watchHealth(ctx context.Context, ping func(context.Context) error, hs *health.Server, services map[string]grpc.ServiceInfo, interval, pingTimeout time.Duration, log *slog.Logger) {
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	var needStore []string
	for name := range services {
		if storeFree(name) {
			hs.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
		} else {
			needStore = append(needStore, name)
		}
	}
	slices.Sort(needStore)
	last := healthpb.HealthCheckResponse_UNKNOWN
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		pingCtx, cancel := context.WithTimeout(ctx, max(interval, pingTimeout))
		err := ping(pingCtx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		next := healthpb.HealthCheckResponse_SERVING
		if err != nil {
			next = healthpb.HealthCheckResponse_NOT_SERVING
		}
		if next != last {
			for _, name := range needStore {
				hs.SetServingStatus(name, next)
			}
			if err != nil {
				log.Warn("session store unreachable: not serving", "services", needStore, "error", err)
			} else {
				log.Info("session store reachable: serving", "services", needStore)
			}
			last = next
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}
