package client_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/health"

	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/server"
	"github.com/sessiond/sessiond/server/store"
)

// sessiondAddr is the address of the sessiond the examples talk to: in your
// code, wherever sessiond runs ("127.0.0.1:50051" for `make run`).
var sessiondAddr string

// TestMain runs one sessiond, on a real redis-server, for the examples.
func TestMain(m *testing.M) {
	os.Exit(runWithSessiond(m))
}

func runWithSessiond(m *testing.M) int {
	rs, err := redistest.Launch()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer rs.Stop()
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr(), ContextTimeoutEnabled: true})
	defer rdb.Close()
	svc := server.New(store.New(rdb, store.Config{}), server.DefaultConfig, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	revocations := make(chan struct{})
	go func() { svc.RunRevocations(ctx); close(revocations) }()
	defer func() { cancel(); <-revocations }()
	gs := server.NewGRPCServer(svc, health.NewServer(), server.GRPCOptions{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go func() { _ = gs.Serve(lis) }()
	defer gs.Stop()
	sessiondAddr = lis.Addr().String()
	return m.Run()
}
