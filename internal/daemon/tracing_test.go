package daemon

import (
	"context"
	"log/slog"
	"strings"
	"testing"
)

func TestTracingEnabled(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env     map[string]string
		on      bool
		wantErr string
	}{
		{env: nil, on: false},
		{env: map[string]string{"OTEL_SERVICE_NAME": "x", "OTEL_RESOURCE_ATTRIBUTES": "a=b"}, on: false},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}, on: true},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4317"}, on: true},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, on: true},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}, on: false},
		{env: map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}, on: false},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, wantErr: "OTEL_TRACES_EXPORTER"},
	} {
		getenv := func(k string) string { return tc.env[k] }
		on, err := tracingEnabled(getenv)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%v: %v, want an error about %s", tc.env, err, tc.wantErr)
			}
			continue
		}
		if err != nil || on != tc.on {
			t.Errorf("%v: tracing on = %v, %v; want %v", tc.env, on, err, tc.on)
		}
	}

	// Off: no provider, no stats handler, no Redis hook.
	tr, err := newTracing(context.Background(), noEnv, slog.New(slog.DiscardHandler))
	if err != nil || tr.tp != nil || tr.serverOptions() != nil || tr.instrumentRedis(nil) != nil {
		t.Fatalf("tracing without OTEL_ variables: %+v, %v", tr, err)
	}
	tr.shutdown(slog.New(slog.DiscardHandler))

	_, err = newTracing(context.Background(), func(k string) string {
		return map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}[k]
	}, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "OTEL_EXPORTER_OTLP_PROTOCOL") {
		t.Fatalf("OTLP over HTTP: %v, want an error", err)
	}
}
func noEnv(string) string { return "" }
