package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"

	"github.com/sessiond/sessiond/internal/daemon"
	"github.com/sessiond/sessiond/server"
	"github.com/sessiond/sessiond/server/store"
)

// benchEnv is what a run measures: a Redis, a sessiond, and the in-process
// servers of the floors and the interceptor workloads.
type benchEnv struct {
	rdb             redis.UniversalClient
	sessiondAddr    string
	forwardAuthAddr string // "" for none: no forward-auth workload
	floorAddr       string
	cleanups        []func()
}

func (e *benchEnv) close() {
	for i := len(e.cleanups) - 1; i >= 0; i-- {
		e.cleanups[i]()
	}
}

// startRedis starts a redis-server with no persistence on a free loopback
// port; it is killed when the bench ends (and with this process).
func startRedis(e *benchEnv) (string, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", errors.New("redis-server not found: install it (apt-get install -y redis-server) or pass --redis-url")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	dir, err := os.MkdirTemp("", "sessionbench-redis-")
	if err != nil {
		return "", err
	}
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir, "--logfile", "")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	e.cleanups = append(e.cleanups, func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); _ = os.RemoveAll(dir) })
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c.Ping(context.Background()).Err() == nil {
			return "redis://" + addr, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("redis-server on %s did not answer", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func serve(e *benchEnv, gs *grpc.Server) (string, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go func() { _ = gs.Serve(lis) }()
	e.cleanups = append(e.cleanups, gs.Stop)
	return lis.Addr().String(), nil
}

// newEnv connects to (or starts) Redis and sessiond, and starts the floors.
func newEnv(cfg *benchConfig) (*benchEnv, error) {
	e := &benchEnv{}
	redisURL := cfg.redisURL
	if redisURL == "" {
		u, err := startRedis(e)
		if err != nil {
			return nil, err
		}
		redisURL = u
	}
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		return nil, fmt.Errorf("--redis-url: %w", err)
	}
	// The same client settings as sessiond's, for like-for-like floors.
	opts.ContextTimeoutEnabled = true
	opts.PoolSize = cfg.poolSize
	rdb := redis.NewClient(opts)
	e.rdb = rdb
	e.cleanups = append(e.cleanups, func() { _ = rdb.Close() })

	e.sessiondAddr, e.forwardAuthAddr = cfg.target, cfg.faTarget
	if e.sessiondAddr == "" {
		if e.sessiondAddr, e.forwardAuthAddr, err = startSessiond(e, redisURL, cfg.poolSize); err != nil {
			return nil, err
		}
	}
	gs := grpc.NewServer()
	registerFloor(gs, &floor{rdb: rdb})
	if e.floorAddr, err = serve(e, gs); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range floorKeys {
		if err := rdb.HSet(ctx, floorKey(i), floorRecord(i)).Err(); err != nil {
			return nil, fmt.Errorf("preparing the floor keys: %w", err)
		}
	}
	return e, nil
}

const floorKeys = 1000

// startSessiond runs sessiond in-process through daemon.Run, the wiring of
// cmd/sessiond, with cmd/sessiond's defaults (metrics on an admin listener,
// logging at info, rate limits, ext_authz, reflection) on its own Redis pool,
// with a forward-auth listener. The rate limits are raised so far that the
// one load generator is never refused; their bookkeeping still runs on every
// call. It returns the gRPC and the forward-auth listeners' addresses.
func startSessiond(e *benchEnv, redisURL string, poolSize int) (grpcAddr, forwardAuthAddr string, err error) {
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan daemon.Addrs, 1)
	done := make(chan error, 1)
	unlimited := server.RateLimit{PerSecond: 1e9, Burst: 1e9}
	cfg := daemon.Config{
		Listen:      "127.0.0.1:0",
		AdminListen: "127.0.0.1:0",
		Reflection:  true,
		ExtAuthz:    true,
		ForwardAuth: daemon.ForwardAuthConfig{Listen: "127.0.0.1:0"},
		Redis:       daemon.RedisConfig{URL: redisURL, PoolSize: poolSize},
		Store:       store.Config{MaxSessionsPerUser: 100, TouchInterval: time.Minute},
		Service:     server.Config{CreateLimit: unlimited, FailedValidationLimit: unlimited},
		Log:         daemon.LogConfig{Output: io.Discard},
		AuditLog:    "", // with the operational log: discarded, but written
		Started:     func(a daemon.Addrs) { started <- a },
	}
	go func() { done <- daemon.Run(ctx, cfg) }()
	select {
	case a := <-started:
		e.cleanups = append(e.cleanups, func() { cancel(); <-done })
		if a.ForwardAuth == nil {
			return a.GRPC.String(), "", nil
		}
		return a.GRPC.String(), a.ForwardAuth.String(), nil
	case err := <-done:
		cancel()
		return "", "", fmt.Errorf("sessiond: %w", err)
	}
}
