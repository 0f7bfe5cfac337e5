package main

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	collectortracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/internal/redistest"
)

// collector is an OTLP/gRPC trace collector that keeps what it receives.
type collector struct {
	collectortracepb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []*tracepb.ResourceSpans
}

func (c *collector) Export(_ context.Context, req *collectortracepb.ExportTraceServiceRequest) (*collectortracepb.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.spans = append(c.spans, req.GetResourceSpans()...)
	return &collectortracepb.ExportTraceServiceResponse{}, nil
}

func startCollector(t *testing.T) (*collector, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{}
	gs := grpc.NewServer()
	collectortracepb.RegisterTraceServiceServer(gs, c)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return c, lis.Addr().String()
}

func attrString(attrs []*commonpb.KeyValue, key string) string {
	for _, a := range attrs {
		if a.GetKey() == key {
			return a.GetValue().GetStringValue()
		}
	}
	return ""
}

// TestTracingExportsSpans: with OTEL_EXPORTER_OTLP_ENDPOINT set, a
// ValidateSession call gives a server span with a Redis span below it,
// exported to the collector by the time sessiond has stopped, and no span
// holds the token.
func TestTracingExportsSpans(t *testing.T) {
	t.Parallel()
	col, addr := startCollector(t)
	srv := redistest.Start(t)
	env := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + addr}
	conn, logs, stop := startRun(t, []string{"--redis-url=" + srv.URL()}, func(k string) string { return env[k] })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := sessionauthv1.NewSessionAuthorityClient(conn)
	created, err := c.CreateSession(ctx, &sessionauthv1.CreateSessionRequest{UserId: "traced", Email: "traced@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: created.GetToken()}); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil { // flushes the spans
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "tracing on") {
		t.Errorf("the log does not say tracing is on:\n%s", logs)
	}

	col.mu.Lock()
	defer col.mu.Unlock()
	var validate *tracepb.Span
	var all []*tracepb.Span
	for _, rs := range col.spans {
		if name := attrString(rs.GetResource().GetAttributes(), "service.name"); name != "sessiond" {
			t.Errorf("service.name = %q, want sessiond", name)
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				all = append(all, s)
				if s.GetName() == "sessionauth.v1.SessionAuthority/ValidateSession" && s.GetKind() == tracepb.Span_SPAN_KIND_SERVER {
					validate = s
				}
			}
		}
	}
	if validate == nil {
		t.Fatalf("no server span for ValidateSession among %d spans", len(all))
	}
	var redisChild *tracepb.Span
	for _, s := range all {
		if string(s.GetParentSpanId()) == string(validate.GetSpanId()) && s.GetKind() == tracepb.Span_SPAN_KIND_CLIENT &&
			attrString(s.GetAttributes(), "db.system") == "redis" {
			redisChild = s
		}
		// Nothing recorded may hold the token or session data.
		check := func(where string, attrs []*commonpb.KeyValue) {
			for _, a := range attrs {
				v := a.GetValue().String()
				if strings.Contains(v, created.GetToken()) || strings.Contains(v, "traced@example.com") {
					t.Errorf("span %q %s attribute %s holds a token or session data: %s", s.GetName(), where, a.GetKey(), v)
				}
			}
		}
		check("", s.GetAttributes())
		for _, ev := range s.GetEvents() {
			check("event "+ev.GetName(), ev.GetAttributes())
		}
		if strings.Contains(s.GetName(), created.GetToken()) {
			t.Errorf("a span name holds the token: %q", s.GetName())
		}
	}
	if redisChild == nil {
		names := make([]string, 0, len(all))
		for _, s := range all {
			names = append(names, s.GetName())
		}
		t.Fatalf("no Redis span below the ValidateSession span; spans: %v", names)
	}
	t.Logf("ValidateSession span with Redis child %q; %d spans in all", redisChild.GetName(), len(all))
}
