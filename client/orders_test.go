package client_test

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sessiond/sessiond/client"
)

// orders is a protected service for the tests and examples: shop.v1.Orders
// with List (unary: whose orders) and Watch (a server stream that sends
// "tick" every 10ms until its context ends).
type orders struct{}

func (orders) list(ctx context.Context) (*wrapperspb.StringValue, error) {
	s, _ := client.SessionFromContext(ctx)
	return wrapperspb.String("orders of " + s.GetUserId()), nil
}

func (orders) watch(stream grpc.ServerStream) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stream.Context().Done():
			return stream.Context().Err()
		case <-t.C:
			if err := stream.SendMsg(wrapperspb.String("tick")); err != nil {
				return err
			}
		}
	}
}

var ordersDesc = grpc.ServiceDesc{
	ServiceName: "shop.v1.Orders",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{MethodName: "List", Handler: func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
		if err := dec(new(emptypb.Empty)); err != nil {
			return nil, err
		}
		info := &grpc.UnaryServerInfo{Server: srv, FullMethod: "/shop.v1.Orders/List"}
		h := func(ctx context.Context, _ any) (any, error) { return srv.(orders).list(ctx) }
		if icpt == nil {
			return h(ctx, nil)
		}
		return icpt(ctx, new(emptypb.Empty), info, h)
	}}},
	Streams: []grpc.StreamDesc{{StreamName: "Watch", ServerStreams: true, Handler: func(srv any, stream grpc.ServerStream) error {
		if err := stream.RecvMsg(new(emptypb.Empty)); err != nil {
			return err
		}
		return srv.(orders).watch(stream)
	}}},
}

// serveOrders serves orders behind opts on a loopback port and returns a
// connection to it; both are stopped at the end of the test (or, without a
// test, by the returned function).
func serveOrders(tb testing.TB, opts ...grpc.ServerOption) (*grpc.ClientConn, func()) {
	srv := grpc.NewServer(opts...)
	srv.RegisterService(&ordersDesc, orders{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go func() { _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		panic(err)
	}
	stop := func() { _ = conn.Close(); srv.Stop() }
	if tb != nil {
		tb.Cleanup(stop)
	}
	return conn, stop
}

func listOrders(ctx context.Context, conn *grpc.ClientConn) (string, error) {
	out := new(wrapperspb.StringValue)
	err := conn.Invoke(ctx, "/shop.v1.Orders/List", new(emptypb.Empty), out)
	return out.GetValue(), err
}

func watchOrders(ctx context.Context, conn *grpc.ClientConn) (grpc.ClientStream, error) {
	stream, err := conn.NewStream(ctx, &ordersDesc.Streams[0], "/shop.v1.Orders/Watch")
	if err != nil {
		return nil, err
	}
	if err := stream.SendMsg(new(emptypb.Empty)); err != nil {
		return nil, err
	}
	return stream, stream.CloseSend()
}
