package faulttest

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/internal/testutil"
)

// inFlight reads how many calls of method a sessiond has started and not
// finished, from its /metrics (-1 if it cannot).
func inFlight(adminAddr, method string) int {
	resp, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return -1
	}
	sum := func(metric string) int {
		n := 0
		for line := range strings.Lines(string(body)) {
			if strings.HasPrefix(line, metric+"{") && strings.Contains(line, `grpc_method="`+method+`"`) {
				f := strings.Fields(line)
				v, _ := strconv.ParseFloat(f[len(f)-1], 64)
				n += int(v)
			}
		}
		return n
	}
	return sum("grpc_server_started_total") - sum("grpc_server_handled_total")
}

// TestSIGTERMDrains sends SIGTERM to a sessiond (the real binary) with 1,000
// calls in flight (waiting on a paused Redis) and checks the drain: readiness
// turns NOT_SERVING at once while the listener still takes new connections
// for --shutdown-drain-delay, then the listener closes and new calls are
// refused with Unavailable, and every call that was in flight completes
// with sessiond's own answer (OK, or Unavailable when it waited too long for
// a Redis connection): none is cut off by the shutdown.
func TestSIGTERMDrains(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	bin := testutil.BuildSessiond(t)
	const drain = time.Second
	p := testutil.StartSessiond(t, bin, "--redis-url="+srv.URL(), "--request-timeout=20s", "--shutdown-timeout=20s",
		"--shutdown-drain-delay="+drain.String(), "--health-interval=50ms", "--rate-limit-failed-validations=0")
	dial := func() *grpc.ClientConn {
		conn, err := grpc.NewClient(p.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return conn
	}
	conns := []*grpc.ClientConn{dial(), dial()}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := sessionauthv1.NewSessionAuthorityClient(conns[0])
	created, err := c.CreateSession(ctx, &sessionauthv1.CreateSessionRequest{UserId: "drain"})
	if err != nil {
		t.Fatal(err)
	}
	health := healthpb.NewHealthClient(conns[0])
	waitFor(t, 10*time.Second, "SERVING", func() bool {
		r, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: "sessionauth.v1.SessionAuthority"})
		return err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING
	})

	// 1,000 validations in flight, waiting on Redis, paused for a while.
	const calls = 1000
	rdb := srv.Client(t)
	if err := rdb.Do(ctx, "CLIENT", "PAUSE", 1500, "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		results = map[codes.Code]int{}
		cut     []string // answers that are not sessiond's: the call was cut off
	)
	for i := range calls {
		wg.Go(func() {
			cl := sessionauthv1.NewSessionAuthorityClient(conns[i%2])
			_, err := cl.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: created.GetToken()})
			mu.Lock()
			defer mu.Unlock()
			results[status.Code(err)]++
			if err != nil && status.Convert(err).Message() != "session store unavailable; retry later" {
				cut = append(cut, err.Error())
			}
		})
	}
	waitFor(t, 10*time.Second, "1,000 calls in flight", func() bool { return inFlight(p.AdminAddr, "ValidateSession") >= calls })

	term := time.Now()
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Readiness turns NOT_SERVING while new connections are still served.
	var notServing time.Duration
	waitFor(t, 5*time.Second, "NOT_SERVING after SIGTERM", func() bool {
		r, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: "sessionauth.v1.SessionAuthority"})
		notServing = time.Since(term)
		return err == nil && r.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING
	})
	fresh := healthpb.NewHealthClient(dial())
	if _, err := fresh.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil && time.Since(term) < drain/2 {
		t.Fatalf("a new connection %v after SIGTERM, during the drain delay: %v", time.Since(term), err)
	}
	// Then the listener closes: new calls are refused, Unavailable.
	var refusedAfter time.Duration
	waitFor(t, 10*time.Second, "new calls refused", func() bool {
		cctx, ccancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer ccancel()
		conn := dial()
		_, err := sessionauthv1.NewSessionAuthorityClient(conn).ValidateSession(cctx, &sessionauthv1.ValidateSessionRequest{Token: created.GetToken()}, grpc.WaitForReady(false))
		_ = conn.Close()
		refusedAfter = time.Since(term)
		return status.Code(err) == codes.Unavailable
	})
	if refusedAfter < drain {
		t.Errorf("new calls refused %v after SIGTERM, before the drain delay of %v ended", refusedAfter, drain)
	}
	wg.Wait()
	done := time.Since(term)
	select {
	case <-p.Exited():
	case <-time.After(20 * time.Second):
		t.Fatal("sessiond did not exit 20s after SIGTERM")
	}
	if len(cut) > 0 || results[codes.OK] < calls/2 {
		t.Fatalf("of %d calls in flight at SIGTERM: %v; %d cut off (e.g. %q)", calls, results, len(cut), cut[:min(len(cut), 3)])
	}
	t.Logf("SIGTERM with %d calls in flight: NOT_SERVING %v after it; new connections served during the %v drain delay, new calls refused (Unavailable) %v after it; "+
		"every call in flight answered by sessiond (%v), none cut off, the last %v after SIGTERM (Redis paused for 1.5s from before the calls)",
		calls, notServing.Round(time.Millisecond), drain, refusedAfter.Round(time.Millisecond), results, done.Round(time.Millisecond))
}
