package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"
)

// tracingShutdownTimeout bounds how long sessiond waits at exit for the
// last spans to reach the collector.
const tracingShutdownTimeout = 5 * time.Second

// tracing is OpenTelemetry tracing: off (a nil provider) unless the standard
// OTEL_ variables ask for traces (see tracingEnabled). When on, every gRPC
// call gets a server span (otelgrpc, health checks excepted) and every Redis
// command a client span below it (redisotel), exported over OTLP/gRPC.
//
// No span holds a token: otelgrpc records the method, the status code and
// the peer, never a message, and the Redis spans are recorded without the
// command's arguments (WithDBStatement(false)), which hold session data.
type tracing struct {
	tp *sdktrace.TracerProvider // nil: tracing is off
}

// tracingEnabled reports whether the OpenTelemetry environment asks for
// traces: OTEL_TRACES_EXPORTER=otlp, or an OTLP endpoint
// (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT) with
// OTEL_TRACES_EXPORTER unset. OTEL_SDK_DISABLED=true and
// OTEL_TRACES_EXPORTER=none turn it off.
func tracingEnabled(getenv func(string) string) (bool, error) {
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return false, nil
	}
	switch exp := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")); exp {
	case "none":
		return false, nil
	case "otlp":
		return true, nil
	case "":
		return getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "", nil
	default:
		return false, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: sessiond exports traces with otlp only (or none)", exp)
	}
}

// newTracing starts tracing if the environment asks for it. The exporter
// reads the other standard variables itself (OTEL_EXPORTER_OTLP_HEADERS,
// _CERTIFICATE, _TIMEOUT, _COMPRESSION...) and the SDK its sampler
// (OTEL_TRACES_SAMPLER, default parentbased_always_on) and
// OTEL_RESOURCE_ATTRIBUTES.
func newTracing(ctx context.Context, getenv func(string) string, log *slog.Logger) (*tracing, error) {
	on, err := tracingEnabled(getenv)
	if err != nil || !on {
		return &tracing{}, err
	}
	for _, v := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if p := getenv(v); p != "" {
			if p != "grpc" {
				return nil, fmt.Errorf("%s=%q: sessiond exports traces over OTLP/gRPC only (grpc, port 4317)", v, p)
			}
			break
		}
	}
	var opts []otlptracegrpc.Option
	// The endpoint variables are read here too, so that run's getenv (and
	// not only the process environment) decides where spans go.
	endpoint := getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	if endpoint == "" {
		endpoint = getenv("OTEL_EXPORTER_OTLP_ENDPOINT")
	}
	switch {
	case strings.Contains(endpoint, "://"):
		opts = append(opts, otlptracegrpc.WithEndpointURL(endpoint)) // http:// means no TLS
	case endpoint != "":
		opts = append(opts, otlptracegrpc.WithEndpoint(endpoint))
	}
	for _, v := range []string{"OTEL_EXPORTER_OTLP_TRACES_INSECURE", "OTEL_EXPORTER_OTLP_INSECURE"} {
		if strings.EqualFold(getenv(v), "true") {
			opts = append(opts, otlptracegrpc.WithInsecure())
			break
		}
	}
	exp, err := otlptracegrpc.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	res, err := tracingResource(ctx, getenv)
	if err != nil {
		_ = exp.Shutdown(ctx)
		return nil, err
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	log.Info("tracing on: exporting spans over OTLP/gRPC", "endpoint", endpoint)
	return &tracing{tp: tp}, nil
}

// tracingResource describes the process: service.name is sessiond unless
// OTEL_SERVICE_NAME (or service.name in OTEL_RESOURCE_ATTRIBUTES) says
// otherwise.
func tracingResource(ctx context.Context, getenv func(string) string) (*resource.Resource, error) {
	opts := []resource.Option{
		resource.WithAttributes(attribute.String("service.name", "sessiond")),
		resource.WithFromEnv(), // OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithProcessPID(),
	}
	if name := getenv("OTEL_SERVICE_NAME"); name != "" {
		opts = append(opts, resource.WithAttributes(attribute.String("service.name", name)))
	}
	res, err := resource.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	return res, nil
}

// serverOptions returns the gRPC server's stats handler, or nothing when
// tracing is off.
func (t *tracing) serverOptions() []grpc.ServerOption {
	if t.tp == nil {
		return nil
	}
	return []grpc.ServerOption{grpc.StatsHandler(otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(t.tp),
		otelgrpc.WithPropagators(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})),
		otelgrpc.WithFilter(filters.Not(filters.HealthCheck())), // probes would be most of the spans
	))}
}

// instrumentRedis adds a span per Redis command (and pipeline) to rdb. The
// health pings are left out: they would each start a trace of their own.
func (t *tracing) instrumentRedis(rdb redis.UniversalClient) error {
	if t.tp == nil {
		return nil
	}
	err := redisotel.InstrumentTracing(rdb,
		redisotel.WithTracerProvider(t.tp),
		redisotel.WithDBStatement(false), // the arguments hold session data and token hashes
		redisotel.WithCallerEnabled(false),
		redisotel.WithDialFilter(true),
		redisotel.WithCommandFilter(func(cmd redis.Cmder) bool {
			return redisotel.DefaultCommandFilter(cmd) || strings.EqualFold(cmd.Name(), "ping")
		}),
	)
	if err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	return nil
}

// shutdown flushes the spans not yet exported and stops the exporter.
func (t *tracing) shutdown(log *slog.Logger) {
	if t.tp == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), tracingShutdownTimeout)
	defer cancel()
	if err := t.tp.Shutdown(ctx); err != nil {
		log.Warn("tracing: flushing the last spans failed", "error", err)
	}
}
