package server

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// grpcMetrics are the gRPC server metrics, under the names and labels of
// go-grpc-middleware's Prometheus provider (grpc_server_started_total,
// grpc_server_handled_total, grpc_server_handling_seconds,
// grpc_server_msg_received_total, grpc_server_msg_sent_total), so that its
// dashboards and alerts apply. Its interceptors look every series up by its
// label values on every call (three to four hashed lookups under a lock);
// these resolve a method's series once and keep them, which matters on
// sessiond's hot path.
type grpcMetrics struct {
	started, handled, received, sent *prometheus.CounterVec
	handling                         *prometheus.HistogramVec
	methods                          sync.Map // full method name → *methodMetrics
}

// methodMetrics are one method's series.
type methodMetrics struct {
	started, received, sent prometheus.Counter
	handled                 [numCodes]prometheus.Counter // by code
	handling                prometheus.Observer
	typ, service, method    string
}

// numCodes is the number of gRPC codes (OK to Unauthenticated).
const numCodes = int(codes.Unauthenticated) + 1

func newGRPCMetrics() *grpcMetrics {
	labels := []string{"grpc_type", "grpc_service", "grpc_method"}
	return &grpcMetrics{
		started: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_started_total", Help: "Total number of RPCs started on the server.",
		}, labels),
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_handled_total", Help: "Total number of RPCs completed on the server, regardless of success or failure.",
		}, append(labels, "grpc_code")),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_msg_received_total", Help: "Total number of RPC stream messages received on the server.",
		}, labels),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_msg_sent_total", Help: "Total number of gRPC stream messages sent by the server.",
		}, labels),
		handling: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "grpc_server_handling_seconds",
			Help:    "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
			Buckets: latencyBuckets,
		}, labels),
	}
}

func (g *grpcMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{g.started, g.handled, g.received, g.sent, g.handling}
}

// of returns the series of fullMethod ("/pkg.Service/Method"), of type typ
// ("unary", "server_stream", "client_stream", "bidi_stream").
func (g *grpcMetrics) of(fullMethod, typ string) *methodMetrics {
	if m, ok := g.methods.Load(fullMethod); ok {
		return m.(*methodMetrics)
	}
	service, method, _ := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	m := &methodMetrics{typ: typ, service: service, method: method,
		started:  g.started.WithLabelValues(typ, service, method),
		received: g.received.WithLabelValues(typ, service, method),
		sent:     g.sent.WithLabelValues(typ, service, method),
		handling: g.handling.WithLabelValues(typ, service, method),
	}
	for c := range numCodes {
		m.handled[c] = g.handled.WithLabelValues(typ, service, method, codes.Code(c).String())
	}
	actual, _ := g.methods.LoadOrStore(fullMethod, m)
	return actual.(*methodMetrics)
}

// initialize resolves the series of every method of gs: each exported at
// 0 from the start.
func (g *grpcMetrics) initialize(gs *grpc.Server) {
	for service, info := range gs.GetServiceInfo() {
		for _, mi := range info.Methods {
			g.of("/"+service+"/"+mi.Name, methodType(mi.IsClientStream, mi.IsServerStream))
		}
	}
}

func methodType(clientStream, serverStream bool) string {
	switch {
	case clientStream && serverStream:
		return "bidi_stream"
	case clientStream:
		return "client_stream"
	case serverStream:
		return "server_stream"
	}
	return "unary"
}

// finish records a call's end.
func (m *methodMetrics) finish(start time.Time, err error) {
	code := codeOf(err)
	if int(code) < numCodes {
		m.handled[code].Inc()
	}
	m.handling.Observe(time.Since(start).Seconds())
}

// codeOf is the code the gRPC server sends for a handler's error (a
// context error becomes its status, as the server does).
func codeOf(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	if st, ok := status.FromError(err); ok {
		return st.Code()
	}
	return status.FromContextError(err).Code()
}

func (g *grpcMetrics) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	call := g.startUnary(info.FullMethod)
	resp, err := handler(ctx, req)
	call.Finish(err)
	return resp, err
}

func (g *grpcMetrics) startUnary(fullMethod string) UnaryCall {
	m := g.of(fullMethod, "unary")
	m.started.Inc()
	m.received.Inc()
	return UnaryCall{m: m, start: time.Now()}
}

func (g *grpcMetrics) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	m := g.of(info.FullMethod, methodType(info.IsClientStream, info.IsServerStream))
	m.started.Inc()
	start := time.Now()
	err := handler(srv, &countedStream{ServerStream: ss, m: m})
	m.finish(start, err)
	return err
}

// countedStream counts a stream's messages.
type countedStream struct {
	grpc.ServerStream
	m *methodMetrics
}

func (s *countedStream) SendMsg(msg any) error {
	err := s.ServerStream.SendMsg(msg)
	if err == nil {
		s.m.sent.Inc()
	}
	return err
}

func (s *countedStream) RecvMsg(msg any) error {
	err := s.ServerStream.RecvMsg(msg)
	if err == nil {
		s.m.received.Inc()
	}
	return err
}
