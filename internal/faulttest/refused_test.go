package faulttest

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/internal/sessiondtest"
)

func readiness(ctx context.Context, hc healthpb.HealthClient) healthpb.HealthCheckResponse_ServingStatus {
	r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "sessionauth.v1.SessionAuthority"})
	if err != nil {
		return healthpb.HealthCheckResponse_UNKNOWN
	}
	return r.GetStatus()
}

func scrape(t *testing.T, adminAddr string) string {
	t.Helper()
	resp, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestRedisRefusingWrites: a Redis that answers but refuses writes (out of
// memory under maxmemory with noeviction, which SECURITY.md recommends; or a
// read-only replica sessiond was pointed at) makes every write Unavailable
// with a message that says why, counted as refused in the store's metrics,
// while validations go on; readiness turns NOT_SERVING (the health check
// writes a probe), and both come back when Redis takes writes again.
func TestRedisRefusingWrites(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, want string
		refuse     func(t *testing.T, ctx context.Context, srv *redistest.Server)
		accept     func(t *testing.T, ctx context.Context, srv *redistest.Server)
	}{
		{
			name: "out-of-memory", want: "out of memory",
			refuse: func(t *testing.T, ctx context.Context, srv *redistest.Server) {
				c := srv.Client(t)
				if err := c.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
					t.Fatal(err)
				}
				if err := c.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
					t.Fatal(err)
				}
			},
			accept: func(t *testing.T, ctx context.Context, srv *redistest.Server) {
				if err := srv.Client(t).ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "read-only-replica", want: "read-only",
			refuse: func(t *testing.T, ctx context.Context, srv *redistest.Server) {
				// sessiond's Redis becomes the replica of another.
				other := redistest.Start(t)
				if err := srv.Client(t).Do(ctx, "REPLICAOF", "127.0.0.1", other.Port()).Err(); err != nil {
					t.Fatal(err)
				}
			},
			accept: func(t *testing.T, ctx context.Context, srv *redistest.Server) {
				if err := srv.Client(t).Do(ctx, "REPLICAOF", "NO", "ONE").Err(); err != nil {
					t.Fatal(err)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := redistest.Start(t)
			d := sessiondtest.Run(t, sessiondtest.Config(srv.Addr()))
			c := sessionauthv1.NewSessionAuthorityClient(d.Conn)
			hc := healthpb.NewHealthClient(d.Conn)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			live, err := create(ctx, c, "refused")
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, 10*time.Second, "SERVING", func() bool { return readiness(ctx, hc) == healthpb.HealthCheckResponse_SERVING })

			tc.refuse(t, ctx, srv)
			if tc.name == "read-only-replica" {
				// The replica's resync empties it: a session created now
				// is the one to check reads with.
				waitFor(t, 10*time.Second, "the replica in sync", func() bool {
					return srv.Info(t, "replication", "master_link_status") == "up"
				})
			}
			waitFor(t, 10*time.Second, "NOT_SERVING", func() bool { return readiness(ctx, hc) == healthpb.HealthCheckResponse_NOT_SERVING })
			_, err = create(ctx, c, "refused")
			if st := status.Convert(err); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "refuses writes ("+tc.want) {
				t.Fatalf("CreateSession while Redis refuses writes: %v, want Unavailable saying %q", err, tc.want)
			}
			err = revokeToken(ctx, c, live.GetToken())
			if tc.name == "out-of-memory" {
				if st := status.Convert(err); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), tc.want) {
					t.Fatalf("RevokeSession while Redis refuses writes: %v, want Unavailable saying %q", err, tc.want)
				}
				// Reads go on: the session it could not revoke still validates.
				if code := validate(ctx, c, live.GetToken()); code != codes.OK {
					t.Fatalf("ValidateSession while Redis refuses writes: %v", code)
				}
			}
			if m := scrape(t, d.AdminAddr); !strings.Contains(m, `sessiond_store_operation_duration_seconds_count{operation="create",outcome="refused"} 1`) {
				t.Errorf("/metrics does not count the refused create")
			}

			tc.accept(t, ctx, srv)
			waitFor(t, 10*time.Second, "SERVING again", func() bool { return readiness(ctx, hc) == healthpb.HealthCheckResponse_SERVING })
			if _, err := create(ctx, c, "refused"); err != nil {
				t.Fatalf("CreateSession once Redis takes writes again: %v", err)
			}
		})
	}
}
