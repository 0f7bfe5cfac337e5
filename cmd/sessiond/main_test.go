package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"net"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/internal/daemon"
	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/internal/testutil"
)

func noEnv(string) string { return "" }

// startRun runs sessiond in-process until the test ends, and returns a
// connection to it.
func startRun(t *testing.T, args []string, getenv func(string) string) (*grpc.ClientConn, *testutil.SyncBuffer, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	logs := &testutil.SyncBuffer{}
	go func() {
		done <- run(ctx, append([]string{"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--forward-auth-listen", "127.0.0.1:0", "--shutdown-drain-delay=0"}, args...), getenv, logs, notify(ready))
	}()
	var addr net.Addr
	select {
	case addr = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("run ended at start: %v\n%s", err, logs)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("sessiond did not start within 10s")
	}
	conn, err := grpc.NewClient(addr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		_ = conn.Close()
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(15 * time.Second):
			t.Fatal("sessiond did not stop within 15s")
			return nil
		}
	}
	t.Cleanup(func() { _ = stop() })
	return conn, logs, stop
}

// TestRunEmbedded is `make run`: no Redis configured, the embedded store, a
// warning that says so, every service reachable, and a clean stop with no
// goroutine left behind.
func TestRunEmbedded(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	defer func() {
		// Goroutines of the stopped server may take a moment to end on a
		// busy machine: give them up to 3s before checking.
		for deadline := time.Now().Add(3 * time.Second); goleak.Find(ignore) != nil && time.Now().Before(deadline); {
			time.Sleep(100 * time.Millisecond)
		}
		goleak.VerifyNone(t, ignore)
	}()
	conn, logs, stop := startRun(t, nil, noEnv)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := sessionauthv1.NewSessionAuthorityClient(conn)
	// The TTL leaves time to validate on a busy machine before it ends.
	created, err := c.CreateSession(ctx, &sessionauthv1.CreateSessionRequest{UserId: "dev", Ttl: durationpb.New(3 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: created.GetToken()}); err != nil {
		t.Fatal(err)
	}
	// Sessions expire in the embedded store as on Redis.
	time.Sleep(time.Until(created.GetSession().GetExpiresAt().AsTime()) + 50*time.Millisecond)
	if _, err := c.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: created.GetToken()}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("after its ttl: %v, want Unauthenticated", err)
	}
	list, err := c.ListUserSessions(ctx, &sessionauthv1.ListUserSessionsRequest{UserId: "dev"})
	if err != nil || len(list.GetSessions()) != 0 {
		t.Fatalf("list after expiry = %v, %v", list, err)
	}

	deadline := time.Now().Add(5 * time.Second)
	for {
		r, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "sessionauth.v1.SessionAuthority"})
		if err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health = %v, %v", r, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil || !strings.Contains(resp.String(), "sessionauth.v1.SessionAuthority") {
		t.Fatalf("reflection list = %v, %v", resp, err)
	}
	_ = stream.CloseSend()

	if err := stop(); err != nil {
		t.Fatalf("run returned %v", err)
	}
	out := logs.String()
	for _, want := range []string{"embedded in-memory store", "development only", "sessiond stopped"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, created.GetToken()) {
		t.Error("the log holds a token")
	}
}

// TestRunRealRedisFromEnv configures sessiond through SESSIOND_ variables
// against a real redis-server, and checks that the settings took effect.
func TestRunRealRedisFromEnv(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	env := map[string]string{
		"SESSIOND_REDIS_URL":             srv.URL(),
		"SESSIOND_KEY_PREFIX":            "envtest",
		"SESSIOND_MAX_SESSIONS_PER_USER": "2",
		"SESSIOND_DEFAULT_TTL":           "90m",
		"SESSIOND_LOG_FORMAT":            "json",
	}
	conn, logs, _ := startRun(t, []string{"--default-ttl=2h"}, func(k string) string { return env[k] })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := sessionauthv1.NewSessionAuthorityClient(conn)
	var last *sessionauthv1.CreateSessionResponse
	for range 3 {
		var err error
		if last, err = c.CreateSession(ctx, &sessionauthv1.CreateSessionRequest{UserId: "u"}); err != nil {
			t.Fatal(err)
		}
	}
	// A flag wins over the environment.
	if d := last.GetSession().GetExpiresAt().AsTime().Sub(last.GetSession().GetCreatedAt().AsTime()); d != 2*time.Hour {
		t.Fatalf("ttl %v, want the flag's 2h over the environment's 90m", d)
	}
	rdb := srv.Client(t)
	keys := rdb.Keys(ctx, "*").Val()
	if len(keys) != 3 { // 2 sessions (the cap) and the index
		t.Fatalf("keys %v, want 2 sessions and 1 index", keys)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, "envtest:v1:{") {
			t.Fatalf("key %q lacks the configured prefix", k)
		}
	}
	if !strings.Contains(logs.String(), `"msg":"sessiond serving"`) {
		t.Fatalf("log is not JSON:\n%s", logs)
	}
	if strings.Contains(logs.String(), "embedded") {
		t.Fatal("the embedded store was used although a Redis URL was set")
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--max-ttl=1h", "--default-ttl=2h"}, nil, "--max-ttl"},
		{[]string{"--idle-timeout=10m", "--touch-interval=10m"}, nil, "--touch-interval"},
		{[]string{"--key-prefix={x}"}, nil, "--key-prefix"},
		{[]string{"--log-format=xml"}, nil, "--log-format"},
		{[]string{"--log-level=loud"}, nil, "--log-level"},
		{[]string{"--listen=50051"}, nil, "--listen"},
		{[]string{"--max-sessions-per-user=-1"}, nil, "--max-sessions-per-user"},
		{[]string{"--request-timeout=0s"}, nil, "--request-timeout"},
		{[]string{"stray"}, nil, "unexpected argument"},
		{nil, map[string]string{"SESSIOND_DEFAULT_TTL": "soon"}, "SESSIOND_DEFAULT_TTL"},
		{[]string{"--redis-url=http://u:hunter2@host"}, nil, "--redis-url"},
		{[]string{"--redis-url=redis://h:1", "--redis-cluster-addrs=h:2"}, nil, "exactly one of"},
		{nil, map[string]string{"SESSIOND_REDIS_CLUSTER_ADDRS": "h:1", "SESSIOND_REDIS_SENTINEL_ADDRS": "h:2"}, "exactly one of"},
		{[]string{"--redis-sentinel-addrs=h:1"}, nil, "--redis-sentinel-master"},
		{[]string{"--redis-sentinel-master=m"}, nil, "--redis-sentinel-addrs"},
		{[]string{"--redis-cluster-addrs=nohost"}, nil, "host:port"},
		{[]string{"--redis-password=hunter2"}, nil, "without a Redis"},
		{[]string{"--redis-url=redis://h:1", "--redis-tls-cert-file=c.pem"}, nil, "go together"},
		{[]string{"--redis-url=rediss://h:1", "--redis-tls-ca-file=/nonexistent/ca.pem"}, nil, "--redis-tls-ca-file"},
		{[]string{"--authz-cookie-name=a b"}, nil, "--authz-cookie-name"},
		{[]string{"--authz-session-id-header=X-Session-Id"}, nil, "--authz-session-id-header"},
		{nil, map[string]string{"SESSIOND_AUTHZ_USER_ID_HEADER": "authorization"}, "--authz-user-id-header"},
		{[]string{"--authz-user-id-header=x-session-id"}, nil, "must differ from --authz-session-id-header"},
		{[]string{"--forward-auth-listen=9091"}, nil, "--forward-auth-listen"},
		{[]string{"--forward-auth-listen=0.0.0.0:9091"}, nil, "refusing to serve forward auth on 0.0.0.0:9091 without TLS"},
		{[]string{"--forward-auth-login-url=/login"}, nil, "--forward-auth-login-url"},
		{[]string{"--forward-auth-trusted-proxies=10.0.0.0/33"}, nil, "--forward-auth-trusted-proxies"},
	} {
		getenv := func(k string) string { return tc.env[k] }
		var out bytes.Buffer
		err := run(context.Background(), tc.args, getenv, &out, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run(%v, %v) = %v, want an error about %s", tc.args, tc.env, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("the Redis password is in the error: %v", err)
		}
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-h"}, noEnv, &out, nil); !errors.Is(err, flag.ErrHelp) || !strings.Contains(out.String(), "SESSIOND_REDIS_URL") {
		t.Fatalf("-h = %v, usage:\n%s", err, out.String())
	}
}

// TestRunServesExtAuthz: the Check API is on by default, with the header
// names from the flags, and --ext-authz=false turns it off.
func TestRunServesExtAuthz(t *testing.T) {
	t.Parallel()
	conn, _, _ := startRun(t, []string{"--authz-user-id-header=x-auth-user"}, noEnv)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	created, err := sessionauthv1.NewSessionAuthorityClient(conn).CreateSession(ctx, &sessionauthv1.CreateSessionRequest{UserId: "u-1"})
	if err != nil {
		t.Fatal(err)
	}
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Headers: map[string]string{"authorization": "Bearer " + created.GetToken()}},
	}}}
	resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, req)
	if err != nil || codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Fatalf("Check = %v, %v; want allowed", resp, err)
	}
	if !strings.Contains(resp.GetOkResponse().String(), "x-auth-user") {
		t.Fatalf("the allowed response does not set --authz-user-id-header: %v", resp.GetOkResponse())
	}

	off, _, _ := startRun(t, []string{"--ext-authz=false"}, noEnv)
	if _, err := authv3.NewAuthorizationClient(off).Check(ctx, req); status.Code(err) != codes.Unimplemented {
		t.Fatalf("Check with --ext-authz=false: %v, want Unimplemented", err)
	}
}

// notify has run send sessiond's gRPC address to ready once it serves.
func notify(ready chan<- net.Addr) func(*daemon.Config) {
	return func(c *daemon.Config) { c.Started = func(a daemon.Addrs) { ready <- a.GRPC } }
}

func TestGCPercent(t *testing.T) {
	for _, tc := range []struct {
		gogc string
		pct  int
		set  bool
	}{
		{"", defaultGCPercent, true},
		{"100", 0, false},
		{"off", 0, false},
	} {
		pct, set := gcPercent(func(k string) string {
			if k == "GOGC" {
				return tc.gogc
			}
			return ""
		})
		if pct != tc.pct || set != tc.set {
			t.Errorf("GOGC=%q: gcPercent = %d, %v; want %d, %v", tc.gogc, pct, set, tc.pct, tc.set)
		}
	}
}
