// Package sessiondtest runs a real sessiond, on a real redis-server, inside
// tests (of the client and the examples): the same wiring as cmd/sessiond, on loopback
// ports, all stopped when the test ends.
package sessiondtest

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"

	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/internal/testutil"
	"github.com/sessiond/sessiond/server"
	"github.com/sessiond/sessiond/server/store"
)

// Sessiond is one sessiond started by a test.
type Sessiond struct {
	// Addr is sessiond's gRPC address (127.0.0.1:port).
	Addr string
	// Conn is a connection to sessiond, closed at the end of the test.
	Conn *grpc.ClientConn
	// Redis is the redis-server sessiond stores its sessions in.
	Redis *redistest.Server
	// RDB is a client of Redis, to look at the keys.
	RDB *redis.Client
	// Logs is what sessiond logged.
	Logs *testutil.SyncBuffer

	gs      *grpc.Server
	stopped chan struct{}
	once    sync.Once
}

// Start starts a redis-server and sessiond on it, and registers their
// shutdown with t.Cleanup.
func Start(t *testing.T) *Sessiond {
	t.Helper()
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{
		Addr: srv.Addr(), ContextTimeoutEnabled: true,
		DialTimeout: 200 * time.Millisecond, ReadTimeout: time.Second, WriteTimeout: time.Second, MaxRetries: 1,
	})
	t.Cleanup(func() { _ = rdb.Close() })
	d := StartOn(t, rdb, store.Config{MaxSessionsPerUser: 100, TouchInterval: time.Minute})
	d.Redis, d.RDB = srv, srv.Client(t)
	return d
}

// StartOn starts sessiond in-process on any Redis deployment (a Cluster or
// Sentinel client, say) with the store configuration cfg. Redis and RDB are
// left nil: the caller owns rdb.
func StartOn(t *testing.T, rdb redis.UniversalClient, cfg store.Config) *Sessiond {
	t.Helper()
	return StartWith(t, rdb, Options{Store: cfg})
}

// Options configure StartWith.
type Options struct {
	// Store is the store configuration.
	Store store.Config
	// Server is the service configuration (RequestTimeout, lifetimes); the
	// zero value means server.DefaultConfig.
	Server server.Config
	// HealthInterval is how often the health service pings Redis; 0 means
	// 50ms.
	HealthInterval time.Duration
}

// StartWith is StartOn with the service's configuration and health interval
// chosen too (fault tests shorten the request timeout).
func StartWith(t *testing.T, rdb redis.UniversalClient, opts Options) *Sessiond {
	t.Helper()
	if opts.Server == (server.Config{}) {
		opts.Server = server.DefaultConfig
	}
	if opts.HealthInterval <= 0 {
		opts.HealthInterval = 50 * time.Millisecond
	}
	d := &Sessiond{Logs: &testutil.SyncBuffer{}, stopped: make(chan struct{})}
	st := store.New(rdb, opts.Store)
	log := slog.New(slog.NewTextHandler(d.Logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	svc := server.New(st, opts.Server, log)
	hs := health.NewServer()
	d.gs = server.NewGRPCServer(svc, hs, server.GRPCOptions{})

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { server.WatchHealth(ctx, st, hs, opts.HealthInterval, log) })
	wg.Go(func() { svc.RunRevocations(ctx) })

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d.Addr = lis.Addr().String()
	wg.Go(func() { _ = d.gs.Serve(lis); close(d.stopped) })
	d.Conn, err = grpc.NewClient(d.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = d.Conn.Close()
		d.Stop()
		cancel()
		wg.Wait()
	})
	return d
}

// Stop stops sessiond's gRPC server at once (as a crash would, for the
// clients): every later call to it fails with Unavailable. Redis keeps
// running. Stopping twice does nothing.
func (d *Sessiond) Stop() {
	d.once.Do(func() {
		d.gs.Stop()
		<-d.stopped
	})
}
