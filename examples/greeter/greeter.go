package main

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sessiond/sessiond/client"
)

// serviceName is the service's full name, also its name in the health
// service.
const serviceName = "greeter.v1.Greeter"

// newServer returns the greeter's gRPC server: every call needs a live
// sessiond session, but the health service, which the interceptors leave
// public by default so that probes work.
func newServer(sessions *client.Client) *grpc.Server {
	gs := grpc.NewServer(
		grpc.ChainUnaryInterceptor(client.UnaryServerInterceptor(sessions)),
		grpc.ChainStreamInterceptor(client.StreamServerInterceptor(sessions)),
	)
	gs.RegisterService(&greeterServiceDesc, greeter{})
	hs := health.NewServer()
	hs.SetServingStatus(serviceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	return gs
}

// greeter implements greeter.v1.Greeter.
type greeter struct{}

// SayHello greets the user of the caller's session. The request's value is
// ignored: the name comes from sessiond, which the caller cannot forge.
func (greeter) SayHello(ctx context.Context, _ *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	s, ok := client.SessionFromContext(ctx)
	if !ok { // only if the interceptors were not installed: fail closed
		return nil, status.Error(codes.Unauthenticated, "no session")
	}
	return wrapperspb.String("Hello, " + s.GetUserId() + "!"), nil
}

// What protoc-gen-go-grpc would generate from greeter.proto, written by hand
// so that the example needs no code generation.

type greeterServer interface {
	SayHello(context.Context, *wrapperspb.StringValue) (*wrapperspb.StringValue, error)
}

const sayHelloMethod = "/" + serviceName + "/SayHello"

var greeterServiceDesc = grpc.ServiceDesc{
	ServiceName: serviceName,
	HandlerType: (*greeterServer)(nil),
	Methods:     []grpc.MethodDesc{{MethodName: "SayHello", Handler: sayHelloHandler}},
	Metadata:    "greeter.proto",
}

func sayHelloHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(wrapperspb.StringValue)
	if err := dec(in); err != nil {
		return nil, err
	}
	if interceptor == nil {
		return srv.(greeterServer).SayHello(ctx, in)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: sayHelloMethod}
	return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
		return srv.(greeterServer).SayHello(ctx, req.(*wrapperspb.StringValue))
	})
}
