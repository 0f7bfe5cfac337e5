package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sessiond/sessiond/client"
	"github.com/sessiond/sessiond/internal/autopipe"
)

// The floors sessiond is compared against, measured in the same run on the
// same Redis: a bare gRPC service whose Get does exactly one HGETALL (the
// least any gRPC session check with one Redis round trip can cost), whose
// GetBatched is the same handler reading through internal/autopipe (the
// reads of concurrent calls share pipelines, as sessiond's validations'
// do: how close sessiond's own overhead is to zero), whose Create runs the
// raw create transaction (no WATCH, no read), and whose Echo does nothing
// (gRPC's own cost).
const floorService = "sessionbench.v1.Floor"

type floor struct {
	rdb   redis.UniversalClient
	reads *autopipe.Reader // over rdb, running for the server's life
}

// floorRecord is a hash shaped like a session's.
func floorRecord(i int) map[string]any {
	now := time.Now().UnixMilli()
	return map[string]any{
		"h": string(make([]byte, 32)), "u": fmt.Sprint("floor-user-", i%1000), "e": "user@example.com",
		"ua": "Mozilla/5.0 (X11; Linux x86_64) Firefox/140", "c": now, "x": now + 3600_000, "i": 1800_000, "l": now,
	}
}

func floorKey(i int) string { return fmt.Sprintf("sessionbench:{f%d}:s:%d", i%1000, i) }

// rawCreate is the create transaction without what makes it safe under
// concurrency (the WATCH and the read of the user's index).
func rawCreate(ctx context.Context, rdb redis.UniversalClient, i int) error {
	key, idx := floorKey(i), fmt.Sprintf("sessionbench:{f%d}:u", i%1000)
	exp := time.Now().Add(10 * time.Minute)
	_, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, key, floorRecord(i))
		p.PExpireAt(ctx, key, exp)
		p.ZRemRangeByScore(ctx, idx, "-inf", fmt.Sprint(time.Now().UnixMilli()))
		p.ZAdd(ctx, idx, redis.Z{Score: float64(exp.UnixMilli()), Member: key})
		p.PExpireAt(ctx, idx, exp)
		return nil
	})
	return err
}

func (f *floor) get(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	_, err := f.rdb.HGetAll(ctx, in.GetValue()).Result()
	return &wrapperspb.StringValue{}, err
}

func (f *floor) getBatched(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	_, err := f.reads.HGetAll(ctx, in.GetValue())
	return &wrapperspb.StringValue{}, err
}

func (f *floor) create(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	var i int
	_, _ = fmt.Sscan(in.GetValue(), &i)
	return &wrapperspb.StringValue{}, rawCreate(ctx, f.rdb, i)
}

func echo(_ context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	return in, nil
}

// stringMethod registers a unary method over StringValue, as generated code
// would.
func stringMethod(service, name string, fn func(context.Context, *wrapperspb.StringValue) (*wrapperspb.StringValue, error)) grpc.MethodDesc {
	full := "/" + service + "/" + name
	return grpc.MethodDesc{MethodName: name, Handler: func(_ any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
		in := new(wrapperspb.StringValue)
		if err := dec(in); err != nil {
			return nil, err
		}
		if icpt == nil {
			return fn(ctx, in)
		}
		return icpt(ctx, in, &grpc.UnaryServerInfo{FullMethod: full}, func(ctx context.Context, req any) (any, error) {
			return fn(ctx, req.(*wrapperspb.StringValue))
		})
	}}
}

func registerFloor(gs *grpc.Server, f *floor) {
	gs.RegisterService(&grpc.ServiceDesc{
		ServiceName: floorService,
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{
			stringMethod(floorService, "Get", f.get),
			stringMethod(floorService, "GetBatched", f.getBatched),
			stringMethod(floorService, "Create", f.create),
			stringMethod(floorService, "Echo", echo),
		},
	}, f)
}

// The protected service of the interceptor workloads: Echo behind (or not)
// sessiond's interceptor.
const appService = "sessionbench.v1.App"

func registerApp(gs *grpc.Server) {
	gs.RegisterService(&grpc.ServiceDesc{
		ServiceName: appService,
		HandlerType: (*any)(nil),
		Methods:     []grpc.MethodDesc{stringMethod(appService, "Echo", echo)},
	}, struct{}{})
}

// serveFloorsCmd is the hidden subcommand the bench re-executes itself with
// to serve the floors and the protected service in a process of their own.
const serveFloorsCmd = "serve-floors"

// serveFloors is `sessionbench serve-floors`: the floor service on the
// given Redis (GetBatched's reads coalesced for the server's life) and, with
// --sessiond, the protected service three ways (no interceptor, sessiond's
// interceptor, the interceptor with the client cache), each on a loopback
// listener. Once they all accept calls (and the cache's revocation stream
// is up) it prints their addresses as one JSON line (floorAddrs) on stdout,
// and serves until ctx ends.
func serveFloors(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("sessionbench "+serveFloorsCmd, flag.ContinueOnError)
	redisURL := fs.String("redis-url", "", "single Redis")
	clusterAddrs := fs.String("redis-cluster-addrs", "", "Redis Cluster seed nodes, host:port,...")
	sessiondAddr := fs.String("sessiond", "", "sessiond's gRPC address, for the protected service (empty: none)")
	poolSize := fs.Int("redis-pool-size", 0, "go-redis pool size (0: 10 per CPU, as sessiond)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rt := redisTarget{url: *redisURL, clusterAddrs: splitList(*clusterAddrs)}
	if (rt.url == "") == (len(rt.clusterAddrs) == 0) {
		return errors.New("give exactly one of --redis-url and --redis-cluster-addrs")
	}
	rdb, err := newRedisClient(rt, *poolSize)
	if err != nil {
		return err
	}
	defer rdb.Close()
	// The coalesced reads run until the servers have stopped (deferred
	// calls run last to first).
	reads := autopipe.New(rdb, autopipe.Config{})
	readsCtx, stopReads := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() { reads.Run(readsCtx) })
	defer func() { stopReads(); wg.Wait() }()

	serveErr := make(chan error, 4)
	listen := func(gs *grpc.Server) (string, error) {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		go func() {
			if err := gs.Serve(lis); err != nil {
				serveErr <- err
			}
		}()
		return lis.Addr().String(), nil
	}
	var addrs floorAddrs
	fl := grpc.NewServer()
	defer fl.Stop()
	registerFloor(fl, &floor{rdb: rdb, reads: reads})
	if addrs.Floor, err = listen(fl); err != nil {
		return err
	}
	if *sessiondAddr != "" {
		conn, err := grpc.NewClient(*sessiondAddr, append(client.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
		if err != nil {
			return err
		}
		defer conn.Close()
		cached := client.New(conn, client.WithCache(100_000, time.Minute))
		defer cached.Close()
		for _, app := range []struct {
			addr *string
			opts []grpc.ServerOption
		}{
			{&addrs.Unprotected, nil},
			{&addrs.Protected, []grpc.ServerOption{grpc.UnaryInterceptor(client.UnaryServerInterceptor(client.New(conn)))}},
			{&addrs.Cached, []grpc.ServerOption{grpc.UnaryInterceptor(client.UnaryServerInterceptor(cached))}},
		} {
			gs := grpc.NewServer(app.opts...)
			defer gs.Stop()
			registerApp(gs)
			if *app.addr, err = listen(gs); err != nil {
				return err
			}
		}
		for deadline := time.Now().Add(10 * time.Second); !cached.CacheStats().Live; {
			if time.Now().After(deadline) {
				return errors.New("the client cache's revocation stream did not come up")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	line, _ := json.Marshal(addrs)
	if _, err := fmt.Fprintf(stdout, "%s\n", line); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-serveErr:
		return err
	}
}

func splitList(s string) []string {
	var out []string
	for a := range strings.SplitSeq(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}
