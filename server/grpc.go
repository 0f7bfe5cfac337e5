package server

import (
	"context"
	"log/slog"
	"runtime/debug"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
)

// ServiceName is the fully qualified name of the service, also its name in
// the health service.
const ServiceName = "sessionauth.v1.SessionAuthority"

// GRPCOptions configures the gRPC server NewGRPCServer builds.
type GRPCOptions struct {
	// Reflection registers the server reflection service (for grpcurl).
	Reflection bool
	// ServerOptions are passed on to grpc.NewServer (credentials, limits).
	ServerOptions []grpc.ServerOption
	// ExtAuthz, if not nil, also registers Envoy's external authorization
	// service (envoy.service.auth.v3.Authorization) with this configuration.
	ExtAuthz *ExtAuthzConfig
	// Auth, if not nil, establishes each call's Caller first in the chain,
	// and authorizes the call after logging (see Auth).
	Auth *Auth
}

// NewGRPCServer returns a gRPC server with the SessionAuthority service, the
// health service hs and, if asked, server reflection, behind the interceptors
// every call goes through: the caller's authentication (opts.Auth), logging
// (method, code, duration; never a payload, so never a token), the caller's
// authorization, the store deadline, and panic recovery.
func NewGRPCServer(svc *Server, hs *health.Server, opts GRPCOptions) *grpc.Server {
	logger := logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		svc.log.Log(ctx, slog.Level(lvl), msg, fields...)
	})
	logOpts := []logging.Option{
		logging.WithLogOnEvents(logging.FinishCall),
		logging.WithLevels(codeToLevel),
	}
	recoverOpts := []recovery.Option{
		recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
			svc.log.ErrorContext(ctx, "panic in handler", "panic", p, "stack", string(debug.Stack()))
			return status.Error(codes.Internal, "internal error")
		}),
	}
	// Metrics (WithMetrics) come first, so they count every call, refused
	// ones included: metrics → logging → auth → recovery.
	unary, stream := svc.metrics.interceptors()
	serverOpts := append([]grpc.ServerOption{
		grpc.ChainUnaryInterceptor(append(unary,
			opts.Auth.AuthenticateUnary,
			logging.UnaryServerInterceptor(logger, logOpts...),
			opts.Auth.AuthorizeUnary,
			svc.deadlineUnaryInterceptor,
			recovery.UnaryServerInterceptor(recoverOpts...),
		)...),
		grpc.ChainStreamInterceptor(append(stream,
			opts.Auth.AuthenticateStream,
			logging.StreamServerInterceptor(logger, logOpts...),
			opts.Auth.AuthorizeStream,
			recovery.StreamServerInterceptor(recoverOpts...),
		)...),
	}, opts.ServerOptions...)
	gs := grpc.NewServer(serverOpts...)
	sessionauthv1.RegisterSessionAuthorityServer(gs, svc)
	healthpb.RegisterHealthServer(gs, hs)
	if opts.ExtAuthz != nil {
		authv3.RegisterAuthorizationServer(gs, NewExtAuthz(svc, *opts.ExtAuthz))
	}
	if opts.Reflection {
		reflection.Register(gs)
	}
	svc.metrics.initialize(gs) // a zero series for every method
	return gs
}

// deadlineUnaryInterceptor bounds how long a call waits for the store: a
// hung Redis gives Unavailable after RequestTimeout, whatever deadline (or
// none) the caller set.
func (s *Server) deadlineUnaryInterceptor(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if s.cfg.RequestTimeout <= 0 {
		return handler(ctx, req)
	}
	ctx, cancel := context.WithTimeoutCause(ctx, s.cfg.RequestTimeout, errStoreTimeout)
	defer cancel()
	return handler(ctx, req)
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

// WatchHealth pings the store every interval until ctx ends, and keeps the
// service's health status in hs in step: SERVING while Redis answers,
// NOT_SERVING while it does not. The overall status ("") stays SERVING while
// the process runs: use it for liveness, the service's for readiness.
func WatchHealth(ctx context.Context, st Store, hs *health.Server, interval time.Duration, log *slog.Logger) {
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	last := healthpb.HealthCheckResponse_UNKNOWN
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		pingCtx, cancel := context.WithTimeout(ctx, interval)
		err := st.Ping(pingCtx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		next := healthpb.HealthCheckResponse_SERVING
		if err != nil {
			next = healthpb.HealthCheckResponse_NOT_SERVING
		}
		if next != last {
			hs.SetServingStatus(ServiceName, next)
			if err != nil {
				log.Warn("session store unreachable: not serving", "error", err)
			} else {
				log.Info("session store reachable: serving")
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
