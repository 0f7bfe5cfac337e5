package main

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The floors sessiond is compared against, measured in the same run on the
// same Redis: a bare gRPC service whose Get does exactly one HGETALL (the
// least any gRPC session check with one Redis round trip can cost), whose
// Create runs the raw create transaction (no WATCH, no read), and whose Echo
// does nothing (gRPC's own cost).
const floorService = "sessionbench.v1.Floor"

type floor struct {
	rdb redis.UniversalClient
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
