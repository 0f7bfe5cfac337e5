package main

import (
	"context"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/sessiond/sessiond/internal/redistest"
)

// TestHealthOfEveryService: the health service answers for every service
// sessiond serves (as reflection lists them), not only the SessionAuthority:
// those that need Redis (the SessionAuthority, ext_authz's Authorization)
// turn NOT_SERVING while Redis is down, the others (health, reflection) and
// "" stay SERVING; a service turned off is unknown.
func TestHealthOfEveryService(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	conn, _, _ := startRun(t, []string{"--redis-url", srv.URL(), "--health-interval=50ms"}, noEnv)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	needRedis := []string{"sessionauth.v1.SessionAuthority", "envoy.service.auth.v3.Authorization"}
	free := []string{"", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"}
	served := listServices(ctx, t, conn)
	if want := slices.Sorted(slices.Values(slices.Concat(needRedis, free[1:]))); !slices.Equal(slices.Sorted(slices.Values(served)), want) {
		t.Fatalf("reflection lists %v, want %v", served, want) // "" is no service
	}
	waitHealthOf(ctx, t, conn, healthpb.HealthCheckResponse_SERVING, append(served, "")...)

	srv.Stop()
	waitHealthOf(ctx, t, conn, healthpb.HealthCheckResponse_NOT_SERVING, needRedis...)
	waitHealthOf(ctx, t, conn, healthpb.HealthCheckResponse_SERVING, free...)
	srv.Restart()
	waitHealthOf(ctx, t, conn, healthpb.HealthCheckResponse_SERVING, needRedis...)

	// Turned off, a service has no health status.
	off, _, _ := startRun(t, []string{"--ext-authz=false", "--reflection=false"}, noEnv)
	waitHealthOf(ctx, t, off, healthpb.HealthCheckResponse_SERVING, "sessionauth.v1.SessionAuthority", "grpc.health.v1.Health")
	for _, name := range []string{"envoy.service.auth.v3.Authorization", "grpc.reflection.v1.ServerReflection"} {
		if r, err := healthpb.NewHealthClient(off).Check(ctx, &healthpb.HealthCheckRequest{Service: name}); status.Code(err) != codes.NotFound {
			t.Errorf("health of %s, turned off: %v, %v; want NotFound", name, r, err)
		}
	}
}

// listServices returns the services that reflection lists.
func listServices(ctx context.Context, t *testing.T, conn *grpc.ClientConn) []string {
	t.Helper()
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stream.CloseSend() }()
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	return names
}

// waitHealthOf waits until the health of every one of services is want.
func waitHealthOf(ctx context.Context, t *testing.T, conn *grpc.ClientConn, want healthpb.HealthCheckResponse_ServingStatus, services ...string) {
	t.Helper()
	hc := healthpb.NewHealthClient(conn)
	for _, name := range services {
		for {
			r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: name})
			if err == nil && r.GetStatus() == want {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("health of %q = %v, %v; want %v", name, r, err, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
