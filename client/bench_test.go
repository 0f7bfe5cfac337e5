package client_test

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/sessiond/sessiond/client"
	"github.com/sessiond/sessiond/internal/sessiondtest"
)

// BenchmarkInterceptorCacheHit measures what UnaryServerInterceptor costs a
// protected call whose session a caching Client holds: no call to sessiond,
// so this is the interceptor's own work on the common path.
//
//	go test -run '^$' -bench InterceptorCacheHit -benchmem ./client
func BenchmarkInterceptorCacheHit(b *testing.B) {
	sd := sessiondtest.Start(b)
	cached := client.New(sd.Conn, client.WithCache(100, time.Minute))
	b.Cleanup(func() { _ = cached.Close() })
	for deadline := time.Now().Add(5 * time.Second); !cached.CacheStats().Live; time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatal("the cache did not go live")
		}
	}
	ctx := context.Background()
	token, _, err := client.New(sd.Conn).Create(ctx, client.NewSession{UserID: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	intercept := client.UnaryServerInterceptor(cached)
	in := metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer "+token))
	in = peer.NewContext(in, &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 40000}})
	info := &grpc.UnaryServerInfo{FullMethod: "/example.Greeter/SayHello"}
	handler := func(ctx context.Context, req any) (any, error) {
		if _, ok := client.SessionFromContext(ctx); !ok {
			b.Fatal("the handler got no session")
		}
		return req, nil
	}
	if _, err := intercept(in, nil, info, handler); err != nil { // the miss that fills the cache
		b.Fatal(err)
	}
	misses := cached.CacheStats().Misses
	b.ReportAllocs()
	for b.Loop() {
		if _, err := intercept(in, nil, info, handler); err != nil {
			b.Fatal(err)
		}
	}
	if m := cached.CacheStats().Misses; m != misses {
		b.Fatalf("%d calls went to sessiond: the benchmark measured misses", m-misses)
	}
}
