package daemon

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/internal/testutil"
	"github.com/sessiond/sessiond/server"
	"github.com/sessiond/sessiond/server/store"
)

// startWrapped runs sessiond (on the embedded store) with wrap around its
// store, until the test ends, and returns a connection to it and its logs.
func startWrapped(t *testing.T, cfg Config, wrap func(server.Store) server.Store) (*grpc.ClientConn, *testutil.SyncBuffer) {
	t.Helper()
	logs := &testutil.SyncBuffer{}
	cfg.Listen, cfg.Log = "127.0.0.1:0", LogConfig{Output: logs, Level: slog.LevelDebug}
	started := make(chan Addrs, 1)
	cfg.Started = func(a Addrs) { started <- a }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, wrap) }()
	t.Cleanup(func() { cancel(); <-done })
	var addr string
	select {
	case a := <-started:
		addr = a.GRPC.String()
	case err := <-done:
		t.Fatalf("sessiond did not start: %v\n%s", err, logs)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn, logs
}

// panicStore panics on every call, as a bug in the store would.
type panicStore struct{ server.Store }

func (panicStore) Create(context.Context, store.NewSession) (*store.Created, error) {
	panic("a bug in the store")
}

func TestPanicIsInternalAndServerSurvives(t *testing.T) {
	t.Parallel()
	conn, logs := startWrapped(t, Config{}, func(st server.Store) server.Store { return panicStore{st} })
	c := sessionauthv1.NewSessionAuthorityClient(conn)
	for range 2 {
		_, err := c.CreateSession(testutil.CallCtx(t), &sessionauthv1.CreateSessionRequest{UserId: "u"})
		if st := testutil.WantCode(t, err, codes.Internal, "create on a panicking store"); st.Message() != "internal error" {
			t.Fatalf("message %q, want the generic one", st.Message())
		}
	}
	if !strings.Contains(logs.String(), "panic in handler") {
		t.Fatalf("the panic was not logged:\n%s", logs)
	}
}

// errStore fails every read with an error that is none of the store's.
type errStore struct{ server.Store }

func (errStore) Get(context.Context, string) (*store.Session, error) {
	return nil, errors.New("ERR secret redis detail at 10.1.2.3:6379")
}

func TestExtAuthzInternalErrorIs500(t *testing.T) {
	t.Parallel()
	conn, logs := startWrapped(t, Config{ExtAuthz: true}, func(st server.Store) server.Store { return errStore{st} })
	resp, err := authv3.NewAuthorizationClient(conn).Check(testutil.CallCtx(t),
		testutil.CheckRequest(map[string]string{"authorization": "Bearer " + strings.Repeat("A", 72)}))
	if err != nil {
		t.Fatalf("Check returned the gRPC error %v; the decision belongs in the response", err)
	}
	testutil.WantDenied(t, resp, codes.Internal, typev3.StatusCode_InternalServerError, "", "", "store fault")
	if s := resp.String(); strings.Contains(s, "secret") || strings.Contains(s, "10.1.2.3") {
		t.Fatalf("the error text is in the response: %v", resp)
	}
	if !strings.Contains(logs.String(), "secret redis detail") {
		t.Fatalf("the internal error was not logged:\n%s", logs)
	}
}

// At info level the cheap logging path logs only what an operator must see.
func TestLogFinishedAtInfoLevel(t *testing.T) {
	t.Parallel()
	logs := &testutil.SyncBuffer{}
	l := callLogger{slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	ctx := context.Background()
	l.logFinished(ctx, "/sessionauth.v1.SessionAuthority/ValidateSession", time.Now(), nil)
	l.logFinished(ctx, "/sessionauth.v1.SessionAuthority/ValidateSession", time.Now(), status.Error(codes.Unauthenticated, "x"))
	if logs.String() != "" {
		t.Fatalf("routine outcomes were logged at info level: %s", logs)
	}
	l.logFinished(ctx, "/sessionauth.v1.SessionAuthority/CreateSession", time.Now(), status.Error(codes.Unavailable, "session store unavailable"))
	if out := logs.String(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, "grpc.code=Unavailable") || !strings.Contains(out, "CreateSession") {
		t.Fatalf("an Unavailable call logged as %q", out)
	}
}
