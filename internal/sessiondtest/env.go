package sessiondtest

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/internal/daemon"
	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/internal/testutil"
	"github.com/sessiond/sessiond/server"
	"github.com/sessiond/sessiond/server/access"
	"github.com/sessiond/sessiond/server/extauthz"
	"github.com/sessiond/sessiond/server/store"
)

// Env is a sessiond on a redis-server of its own, with a client of each of
// its services and an injected clock: what the service's end-to-end tests
// talk to.
type Env struct {
	Redis  *redistest.Server
	RDB    *redis.Client // a client of Redis, to look at the keys
	Client sessionauthv1.SessionAuthorityClient
	Health healthpb.HealthClient
	Authz  authv3.AuthorizationClient // served with EnvOptions.ExtAuthz set
	Clock  *testutil.Clock            // the store's, the service's and the limits'
	Logs   *testutil.SyncBuffer       // JSON lines at debug level
	Audit  AuditLog                   // with EnvOptions.Audit
	Addr   string                     // sessiond's gRPC address
}

// EnvOptions configure NewEnv.
type EnvOptions struct {
	Service server.Config
	Store   store.Config
	// ExtAuthz, if not nil, serves ext_authz with this configuration.
	ExtAuthz *extauthz.Config
	// Audit writes the audit log to a file of its own (Env.Audit); otherwise
	// audit events go to Logs with the operational log.
	Audit bool
	// InfoLogs logs at info level, as production does, instead of debug.
	InfoLogs bool
}

// CallerHeader names, in tests, the caller a call is made as (see As): the
// identity the authentication interceptor establishes for real callers.
const CallerHeader = "x-test-caller"

// NewEnv starts a redis-server and sessiond (daemon.Run) on it, with
// reflection and the options' services, and clients of it; all stopped at
// the test's end. A call with CallerHeader metadata is made as that caller.
func NewEnv(t testing.TB, o EnvOptions) *Env {
	t.Helper()
	srv := redistest.Start(t)
	e := &Env{Redis: srv, RDB: srv.Client(t), Logs: &testutil.SyncBuffer{}, Clock: testutil.NewClock()}
	cfg := daemon.Config{
		Reflection: true,
		Redis:      daemon.RedisConfig{URL: "redis://" + srv.Addr(), DialTimeout: 200 * time.Millisecond},
		Store:      o.Store,
		Service:    o.Service,
		Log:        daemon.LogConfig{Output: e.Logs, Level: slog.LevelDebug, JSON: true},
		Clock:      e.Clock.Now,

		HealthInterval:   50 * time.Millisecond,
		TestInterceptors: []grpc.UnaryServerInterceptor{callerFromMetadata},
	}
	if o.InfoLogs {
		cfg.Log.Level = slog.LevelInfo
	}
	if o.ExtAuthz != nil {
		cfg.ExtAuthz, cfg.ExtAuthzConfig = true, *o.ExtAuthz
	}
	if o.Audit {
		cfg.AuditLog = filepath.Join(t.TempDir(), "audit.log")
		e.Audit = AuditLog(cfg.AuditLog)
	}
	d := Run(t, cfg)
	e.Addr = d.Addr
	e.Client = sessionauthv1.NewSessionAuthorityClient(d.Conn)
	e.Health = healthpb.NewHealthClient(d.Conn)
	e.Authz = authv3.NewAuthorizationClient(d.Conn)
	return e
}

// As returns ctx for a call made as the caller name (see CallerHeader).
func As(ctx context.Context, name string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, CallerHeader, name)
}

// callerFromMetadata makes a call with CallerHeader: <name> a call of the
// caller called name.
func callerFromMetadata(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if v := metadata.ValueFromIncomingContext(ctx, CallerHeader); len(v) > 0 {
		c := access.CallerFromContext(ctx) // its address and end user stay
		c.Name, c.Roles = v[0], []string{"test"}
		ctx = access.ContextWithCaller(ctx, c)
	}
	return handler(ctx, req)
}

// AuditLog is an audit log file; String reads what has been written so far.
type AuditLog string

func (a AuditLog) String() string {
	b, _ := os.ReadFile(string(a))
	return string(b)
}

// Create creates a session, failing the test if it cannot.
func (e *Env) Create(t testing.TB, req *sessionauthv1.CreateSessionRequest) *sessionauthv1.CreateSessionResponse {
	t.Helper()
	resp, err := e.Client.CreateSession(testutil.CallCtx(t), req)
	if err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	return resp
}

// PauseRedis makes Redis answer no client for d (CLIENT PAUSE).
func (e *Env) PauseRedis(t testing.TB, d time.Duration) {
	t.Helper()
	if err := e.RDB.Do(testutil.CallCtx(t), "CLIENT", "PAUSE", d.Milliseconds(), "ALL").Err(); err != nil {
		t.Fatal(err)
	}
}
