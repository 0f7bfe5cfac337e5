package daemon

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
)

// TestWatchHealthReportsEveryService: every served service has a status;
// those that need the store follow its pings, the others and "" stay
// SERVING; Shutdown turns them all NOT_SERVING; a service not served stays
// unknown.
func TestWatchHealthReportsEveryService(t *testing.T) {
	t.Parallel()
	const (
		serving    = healthpb.HealthCheckResponse_SERVING
		notServing = healthpb.HealthCheckResponse_NOT_SERVING
	)
	needStore := []string{sessionauthv1.SessionAuthority_ServiceDesc.ServiceName, authv3.Authorization_ServiceDesc.ServiceName}
	free := []string{"", healthpb.Health_ServiceDesc.ServiceName,
		reflectionv1.ServerReflection_ServiceDesc.ServiceName, reflectionv1alpha.ServerReflection_ServiceDesc.ServiceName}
	services := map[string]grpc.ServiceInfo{}
	for _, name := range slices.Concat(needStore, free[1:]) {
		services[name] = grpc.ServiceInfo{}
	}
	var down atomic.Bool
	ping := func(context.Context) error {
		if down.Load() {
			return errors.New("redis down")
		}
		return nil
	}
	hs := health.NewServer()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		watchHealth(ctx, ping, hs, services, 5*time.Millisecond, 5*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)))
	})
	defer func() { cancel(); wg.Wait() }()

	check := func(name string) (healthpb.HealthCheckResponse_ServingStatus, error) {
		r, err := hs.Check(context.Background(), &healthpb.HealthCheckRequest{Service: name})
		return r.GetStatus(), err
	}
	// waitFor waits until every one of names has status want.
	waitFor := func(want healthpb.HealthCheckResponse_ServingStatus, names ...string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for _, name := range names {
			for {
				got, err := check(name)
				if err == nil && got == want {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("health of %q = %v, %v; want %v", name, got, err, want)
				}
				time.Sleep(time.Millisecond)
			}
		}
	}
	waitFor(serving, slices.Concat(needStore, free)...)

	down.Store(true)
	waitFor(notServing, needStore...)
	waitFor(serving, free...) // unchanged: they do not need Redis
	down.Store(false)
	waitFor(serving, needStore...)

	if _, err := check("grpc.testing.NotServed"); err == nil {
		t.Fatal("a service that is not served has a health status")
	}
	hs.Shutdown()
	waitFor(notServing, slices.Concat(needStore, free)...)
}
