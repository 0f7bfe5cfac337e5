package main

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/internal/testutil"
)

var adminAddrRE = regexp.MustCompile(`admin_listen=(\S*)`)

// adminAddr reads the admin listener's address from the "sessiond serving"
// log line ("" when it is off).
func adminAddr(t *testing.T, logs *testutil.SyncBuffer) string {
	t.Helper()
	m := adminAddrRE.FindStringSubmatch(logs.String())
	if m == nil {
		t.Fatalf("no admin_listen in the log:\n%s", logs)
	}
	return strings.Trim(m[1], `"`)
}

// get fetches an admin URL and returns its status and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// waitStatus polls url until it answers want.
func waitStatus(t *testing.T, url string, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := get(t, url)
		if code == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s = %d %q, want %d", url, code, body, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAdminEndpoints runs sessiond on a real redis-server and checks what
// its admin listener serves: the metrics of the calls made, liveness, and
// readiness following Redis down and back.
func TestAdminEndpoints(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	conn, logs, _ := startRun(t, []string{"--redis-url=" + srv.URL(), "--health-interval=50ms", "--request-timeout=500ms", "--rotation-grace=0"}, noEnv)
	base := "http://" + adminAddr(t, logs)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if code, body := get(t, base+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz = %d %q", code, body)
	}
	waitStatus(t, base+"/readyz", http.StatusOK)

	c := sessionauthv1.NewSessionAuthorityClient(conn)
	// A revocation stream, open until the end of the test (once the
	// subscription is live).
	var stream grpc.ServerStreamingClient[sessionauthv1.RevocationEvent]
	attempts := 0 // each is a started WatchRevocations: sessiond answers Unavailable until it has subscribed
	for deadline := time.Now().Add(10 * time.Second); ; {
		var err error
		attempts++
		if stream, err = c.WatchRevocations(ctx, &sessionauthv1.WatchRevocationsRequest{}); err != nil {
			t.Fatal(err)
		}
		md, err := stream.Header()
		if err == nil && len(md.Get("sessiond-revocations")) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no revocation stream: %v, %v", md, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	created, err := c.CreateSession(ctx, &sessionauthv1.CreateSessionRequest{UserId: "metrics-user"})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := c.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: created.GetToken()}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: "not-a-token"}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("a bad token: %v", err)
	}
	if _, err := c.RevokeSession(ctx, &sessionauthv1.RevokeSessionRequest{Target: &sessionauthv1.RevokeSessionRequest_SessionId{SessionId: created.GetSession().GetSessionId()}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("the revocation event: %v", err)
	}

	code, metrics := get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{
		`grpc_server_handled_total{grpc_code="OK",grpc_method="ValidateSession",grpc_service="sessionauth.v1.SessionAuthority",grpc_type="unary"} 3`,
		`grpc_server_handled_total{grpc_code="Unauthenticated",grpc_method="ValidateSession",grpc_service="sessionauth.v1.SessionAuthority",grpc_type="unary"} 1`,
		`grpc_server_handled_total{grpc_code="OK",grpc_method="CreateSession",grpc_service="sessionauth.v1.SessionAuthority",grpc_type="unary"} 1`,
		// a zero series for every method, called or not
		`grpc_server_handled_total{grpc_code="OK",grpc_method="ListUserSessions",grpc_service="sessionauth.v1.SessionAuthority",grpc_type="unary"} 0`,
		`grpc_server_handling_seconds_count{grpc_method="ValidateSession",grpc_service="sessionauth.v1.SessionAuthority",grpc_type="unary"} 4`,
		`grpc_server_handling_seconds_bucket{grpc_method="ValidateSession",grpc_service="sessionauth.v1.SessionAuthority",grpc_type="unary",le="0.001"}`,
		`sessiond_store_operation_duration_seconds_count{operation="get",outcome="ok"} 3`,
		`sessiond_store_operation_duration_seconds_count{operation="get",outcome="not_found"} 1`,
		`sessiond_store_operation_duration_seconds_count{operation="create",outcome="ok"} 1`,
		`sessiond_store_operation_duration_seconds_count{operation="revoke",outcome="ok"} 1`,
		`sessiond_store_operation_duration_seconds_bucket{operation="get",outcome="ok",le="0.005"}`,
		`sessiond_store_operation_duration_seconds_count{operation="ping",outcome="ok"}`,
		`sessiond_redis_pool_hits_total{pool="main"}`,
		`sessiond_redis_pool_misses_total{pool="main"}`,
		`sessiond_redis_pool_timeouts_total{pool="main"} 0`,
		`sessiond_redis_pool_connections{pool="main"}`,
		`sessiond_redis_pool_idle_connections{pool="main"}`,
		`sessiond_redis_pool_stale_connections_total{pool="main"}`,
		// One caller at a time: every validation's read went on its own.
		`sessiond_store_validation_reads_total{path="direct"} 3`,
		`sessiond_store_validation_reads_total{path="pipelined"} 0`,
		"sessiond_store_validation_read_pipelines_total 0",
		"sessiond_revocation_watchers 1",
		"sessiond_revocation_subscription_up 1",
		"sessiond_revocation_events_total 1",
		"sessiond_revocation_watchers_lagged_total 0",
		"go_goroutines ",
		"process_cpu_seconds_total ",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// The stream was started once per attempt; a retry is not a fault.
	started := regexp.MustCompile(`grpc_server_started_total\{grpc_method="WatchRevocations",grpc_service="sessionauth.v1.SessionAuthority",grpc_type="server_stream"\} (\d+)`).FindStringSubmatch(metrics)
	if started == nil {
		t.Error("/metrics lacks grpc_server_started_total of WatchRevocations")
	} else if n, _ := strconv.Atoi(started[1]); n < 1 || n > attempts {
		t.Errorf("/metrics: WatchRevocations started %d times, want 1 to %d (the attempts made)", n, attempts)
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", metrics)
	}
	if strings.Contains(metrics, created.GetToken()) {
		t.Error("/metrics holds a token")
	}

	// A rotated-away token presented again (no grace here) is counted.
	reused, err := c.CreateSession(ctx, &sessionauthv1.CreateSessionRequest{UserId: "metrics-user"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.RotateSession(ctx, &sessionauthv1.RotateSessionRequest{Token: reused.GetToken()}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: reused.GetToken()}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("a rotated-away token: %v", err)
	}
	if _, metrics := get(t, base+"/metrics"); !strings.Contains(metrics, `sessiond_reuse_detected_total{outcome="revoked"} 1`) {
		t.Errorf("/metrics does not count the reuse detection:\n%s", metrics)
	}

	// Readiness follows Redis: down, then back. Liveness does not.
	srv.Stop()
	waitStatus(t, base+"/readyz", http.StatusServiceUnavailable)
	if code, _ := get(t, base+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz with Redis down = %d, want 200", code)
	}
	// Readiness and the subscription are watched apart: poll until both are
	// reported gone.
	for deadline := time.Now().Add(10 * time.Second); ; {
		_, body := get(t, base+"/metrics")
		if strings.Contains(body, "sessiond_revocation_subscription_up 0") && strings.Contains(body, "sessiond_revocation_watchers 0") {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("with Redis down, the subscription and watchers are not reported gone within 10s")
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	srv.Restart()
	waitStatus(t, base+"/readyz", http.StatusOK)
}

// TestAdminListenEmptyDisablesIt: --admin-listen "" serves no admin
// listener, and gRPC works without metrics.
func TestAdminListenEmptyDisablesIt(t *testing.T) {
	t.Parallel()
	conn, logs, _ := startRun(t, []string{"--admin-listen="}, noEnv)
	if addr := adminAddr(t, logs); addr != "" {
		t.Fatalf("admin listener on %q with --admin-listen empty", addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := sessionauthv1.NewSessionAuthorityClient(conn).CreateSession(ctx, &sessionauthv1.CreateSessionRequest{UserId: "u"}); err != nil {
		t.Fatal(err)
	}
}

// TestAdminConfig: --admin-listen and its variable, and the admin listener
// stops with the process.
func TestAdminConfig(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"9090", "localhost"} {
		err := run(context.Background(), []string{"--admin-listen=" + bad}, noEnv, io.Discard, nil)
		if err == nil || !strings.Contains(err.Error(), "--admin-listen") {
			t.Errorf("--admin-listen=%s: %v, want an error about --admin-listen", bad, err)
		}
	}
	cfg, err := parseConfig(nil, func(k string) string {
		return map[string]string{"SESSIOND_ADMIN_LISTEN": "127.0.0.1:9999"}[k]
	}, io.Discard)
	if err != nil || cfg.AdminListen != "127.0.0.1:9999" {
		t.Fatalf("SESSIOND_ADMIN_LISTEN: %v, %+v", err, cfg)
	}
	if cfg, _ := parseConfig(nil, noEnv, io.Discard); cfg.AdminListen != "127.0.0.1:9090" {
		t.Fatalf("default --admin-listen %q", cfg.AdminListen)
	}

	// After the process stops, so does its admin listener.
	_, logs, stop := startRun(t, nil, noEnv)
	base := "http://" + adminAddr(t, logs)
	waitStatus(t, base+"/readyz", http.StatusOK)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if resp, err := http.Get(base + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatalf("the admin listener outlived sessiond: %s", resp.Status)
	}
}
