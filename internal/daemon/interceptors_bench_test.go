package daemon

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/server"
	"github.com/sessiond/sessiond/server/access"
)

// BenchmarkUnaryInterceptors measures what the interceptors every call goes
// through cost a ValidateSession, around a handler that does nothing, in
// the context gRPC gives a call (its peer, its metadata, its cancellation):
// with no deadline from the caller, where the chain sets the request
// timeout's own, and with the 2 s that client's interceptors send
// (client.DefaultValidationTimeout), shorter than --request-timeout, where
// it sets none. The figures include the context gRPC makes for the call
// (a cancelable one; with a deadline, a timer too).
func BenchmarkUnaryInterceptors(b *testing.B) {
	cfg := Config{}
	cfg.Service.Metrics = server.NewMetrics()
	log := slog.New(slog.DiscardHandler)
	svc := server.New(nil, cfg.Service)
	auth := access.New(access.Config{Logger: log})
	intercept, _ := interceptors(cfg, svc, auth, newUndecodableMetric(), log)
	info := &grpc.UnaryServerInfo{FullMethod: sessionauthv1.SessionAuthority_ValidateSession_FullMethodName}
	req := &sessionauthv1.ValidateSessionRequest{Token: "x"}
	resp := &sessionauthv1.ValidateSessionResponse{}
	handler := func(context.Context, any) (any, error) { return resp, nil }
	base := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 41234}})
	base = metadata.NewIncomingContext(base, metadata.Pairs("content-type", "application/grpc", "user-agent", "grpc-go/1.85.0"))
	for _, bc := range []struct {
		name     string
		deadline time.Duration // 0: none
	}{{"no caller deadline", 0}, {"caller deadline 2s", 2 * time.Second}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					ctx, cancel := context.WithCancel(base) // gRPC's context of a call
					if bc.deadline > 0 {
						ctx, cancel = context.WithTimeout(base, bc.deadline)
					}
					if _, err := intercept(ctx, req, info, handler); err != nil {
						b.Error(err)
					}
					cancel()
				}
			})
		})
	}
}
