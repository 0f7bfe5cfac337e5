package server_test

import (
	"context"
	"testing"
	"time"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/server/store"
)

// BenchmarkValidateSessionGRPC adds gRPC (client and server, loopback TCP)
// and sessiond's interceptors to BenchmarkValidateSession: daemon.Run, as
// cmd/sessiond runs it, with debug logging off.
func BenchmarkValidateSessionGRPC(b *testing.B) {
	e := newEnv(b, envOptions{Store: store.Config{TouchInterval: time.Hour}, InfoLogs: true})
	ctx := context.Background()
	var tokens []string
	for i := range 100 {
		resp, err := e.Client.CreateSession(ctx, &sessionauthv1.CreateSessionRequest{
			UserId: "bench-user-" + string(rune('a'+i%26)), Email: "user@example.com", UserAgent: "Mozilla/5.0 (X11; Linux x86_64) Firefox/140",
		})
		if err != nil {
			b.Fatal(err)
		}
		tokens = append(tokens, resp.GetToken())
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := e.Client.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: tokens[i%len(tokens)]}); err != nil {
			b.Fatal(err)
		}
	}
}
