package server

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/server/store"
)

// benchService is the service on a real redis-server, without gRPC.
func benchService(b *testing.B) (*Server, []string) {
	b.Helper()
	srv := redistest.Start(b)
	// As the daemon dials (internal/daemon/redis.go, plainDialer): a
	// connection without SyscallConn, which go-redis does not peek at
	// before each command.
	dialer := &net.Dialer{Timeout: 2 * time.Second, KeepAlive: 5 * time.Minute}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true,
		Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return struct{ net.Conn }{c}, nil
		}})
	b.Cleanup(func() { _ = rdb.Close() })
	svc := New(store.New(rdb, store.Config{TouchInterval: time.Hour}), Config{})
	var tokens []string
	for i := range 100 {
		resp, err := svc.CreateSession(context.Background(), &sessionauthv1.CreateSessionRequest{
			UserId: "bench-user-" + string(rune('a'+i%26)), Email: "user@example.com", UserAgent: "Mozilla/5.0 (X11; Linux x86_64) Firefox/140",
		})
		if err != nil {
			b.Fatal(err)
		}
		tokens = append(tokens, resp.GetToken())
	}
	return svc, tokens
}

// BenchmarkValidateSession is the hot path without the network to the
// caller: request validation, one HGETALL, decoding, the response. Run with
// -benchmem: allocs/op is the figure to keep low.
func BenchmarkValidateSession(b *testing.B) {
	svc, tokens := benchService(b)
	ctx := context.Background()
	reqs := make([]*sessionauthv1.ValidateSessionRequest, len(tokens))
	for i, t := range tokens {
		reqs[i] = &sessionauthv1.ValidateSessionRequest{Token: t}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := svc.ValidateSession(ctx, reqs[i%len(reqs)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCreateSession is the create path without gRPC: validation, the
// WATCH, the read of the index, the MULTI/EXEC.
func BenchmarkCreateSession(b *testing.B) {
	svc, _ := benchService(b)
	ctx := context.Background()
	req := &sessionauthv1.CreateSessionRequest{UserId: "creator", UserAgent: "Mozilla/5.0 (X11; Linux x86_64) Firefox/140"}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := svc.CreateSession(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}
