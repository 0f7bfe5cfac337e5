// Package sessiondtest runs a real sessiond, on a real redis-server, inside
// tests: daemon.Run, the wiring of cmd/sessiond, on loopback ports, stopped
// when the test ends.
package sessiondtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sessiond/sessiond/internal/daemon"
	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/internal/testutil"
	"github.com/sessiond/sessiond/server"
	"github.com/sessiond/sessiond/server/store"
)

// Sessiond is one sessiond started by a test.
type Sessiond struct {
	// Addr is sessiond's gRPC address (127.0.0.1:port).
	Addr string
	// AdminAddr is its admin HTTP address (/metrics, /healthz, /readyz).
	AdminAddr string
	// ForwardAuthAddr is its forward-auth HTTP address, when configured.
	ForwardAuthAddr string
	// Conn is a connection to sessiond, closed at the end of the test.
	Conn *grpc.ClientConn
	// Redis is the redis-server sessiond stores its sessions in (Start only).
	Redis *redistest.Server
	// RDB is a client of Redis, to look at the keys (Start only).
	RDB *redis.Client
	// Logs is what sessiond logged (text, debug level), unless the
	// configuration sent its log elsewhere.
	Logs *testutil.SyncBuffer

	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// Options configure StartWith.
type Options struct {
	// Store is the store configuration.
	Store store.Config
	// Server is the service configuration (RequestTimeout, lifetimes).
	Server server.Config
	// HealthInterval is how often the health service pings Redis; 0 means
	// 50ms.
	HealthInterval time.Duration
}

// Start starts a redis-server and sessiond on it (a cap of 100 sessions per
// user, a touch interval of a minute, no rate limits), and registers their
// shutdown with t.Cleanup.
func Start(t testing.TB) *Sessiond {
	t.Helper()
	srv := redistest.Start(t)
	cfg := Config(srv.Addr())
	d := Run(t, cfg)
	d.Redis, d.RDB = srv, srv.Client(t)
	return d
}

// StartOn starts sessiond in-process on any Redis deployment (a Cluster or
// Sentinel client, say) with the store configuration cfg. Redis and RDB are
// left nil: the caller owns rdb.
func StartOn(t testing.TB, rdb redis.UniversalClient, cfg store.Config) *Sessiond {
	t.Helper()
	return StartWith(t, rdb, Options{Store: cfg})
}

// StartWith is StartOn with the service's configuration and health interval
// chosen too (fault tests shorten the request timeout).
func StartWith(t testing.TB, rdb redis.UniversalClient, opts Options) *Sessiond {
	t.Helper()
	if opts.HealthInterval <= 0 {
		opts.HealthInterval = 50 * time.Millisecond
	}
	return Run(t, daemon.Config{
		Redis:          daemon.RedisConfig{Client: rdb},
		Store:          opts.Store,
		Service:        opts.Server,
		HealthInterval: opts.HealthInterval,
	})
}

// Config is the configuration Start runs on the Redis at addr: cmd/sessiond's
// services (ext_authz, reflection, an admin listener with metrics) on
// loopback ports, a cap of 100 sessions per user, a touch interval of a
// minute, and no rate limits.
func Config(redisAddr string) daemon.Config {
	return daemon.Config{
		AdminListen: "127.0.0.1:0",
		Reflection:  true,
		ExtAuthz:    true,
		Redis: daemon.RedisConfig{
			URL: "redis://" + redisAddr, DialTimeout: 200 * time.Millisecond,
		},
		Store:          store.Config{MaxSessionsPerUser: 100, TouchInterval: time.Minute},
		HealthInterval: 50 * time.Millisecond,
	}
}

// Run runs daemon.Run with cfg until the test ends, and waits until it
// serves. An empty cfg.Listen is a free loopback port; an unset log goes to
// Logs at debug level; ShutdownTimeout 0 is 200ms.
func Run(t testing.TB, cfg daemon.Config) *Sessiond {
	t.Helper()
	d, err := Launch(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.Stop()
		_ = d.Conn.Close()
	})
	return d
}

// Launch is Run for a TestMain, which has no testing.TB: the caller stops
// the sessiond with Stop (and closes Conn).
func Launch(cfg daemon.Config) (*Sessiond, error) {
	d := &Sessiond{done: make(chan error, 1)}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.Log.Output == nil {
		d.Logs = &testutil.SyncBuffer{}
		cfg.Log = daemon.LogConfig{Output: d.Logs, Level: slog.LevelDebug}
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 200 * time.Millisecond
	}
	started := make(chan daemon.Addrs, 1)
	cfg.Started = func(a daemon.Addrs) { started <- a }
	var ctx context.Context
	ctx, d.cancel = context.WithCancel(context.Background())
	go func() { d.done <- daemon.Run(ctx, cfg) }()
	select {
	case a := <-started:
		d.Addr = a.GRPC.String()
		if a.Admin != nil {
			d.AdminAddr = a.Admin.String()
		}
		if a.ForwardAuth != nil {
			d.ForwardAuthAddr = a.ForwardAuth.String()
		}
	case err := <-d.done:
		d.cancel()
		d.done <- err
		return nil, fmt.Errorf("sessiond did not start: %w\n%s", err, d.Logs)
	case <-time.After(10 * time.Second):
		d.Stop()
		return nil, errors.New("sessiond did not serve within 10s")
	}
	var err error
	if d.Conn, err = grpc.NewClient(d.Addr, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		d.Stop()
		return nil, err
	}
	return d, nil
}

// Stop stops sessiond as its SIGTERM would, with the configuration's
// shutdown timeout (200ms unless set): every later call to it fails with
// Unavailable. Redis keeps running, and Conn stays open (it reconnects if
// another sessiond takes the address). Stopping twice does nothing.
func (d *Sessiond) Stop() {
	d.once.Do(func() {
		d.cancel()
		<-d.done
	})
}
