package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/internal/testutil"
	"github.com/sessiond/sessiond/server/store"
)

// The tests here call the service's methods directly, without gRPC: what
// no configuration of sessiond reaches end to end.

func TestToStatusNeverUnknown(t *testing.T) {
	t.Parallel()
	logs := &testutil.SyncBuffer{}
	s := New(nil, Config{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	timedOut, cancel := context.WithTimeoutCause(context.Background(), 0, errStoreTimeout)
	defer cancel()
	callerGone, cancel2 := context.WithTimeout(context.Background(), 0)
	defer cancel2()
	canceled, cancel3 := context.WithCancel(context.Background())
	cancel3()
	secret := errors.New("ERR secret redis detail at 10.1.2.3:6379")
	for _, tc := range []struct {
		ctx  context.Context
		err  error
		want codes.Code
	}{
		{context.Background(), store.ErrNotFound, codes.Unauthenticated},
		{context.Background(), fmt.Errorf("get: %w: %w", store.ErrUnavailable, secret), codes.Unavailable},
		{context.Background(), fmt.Errorf("create: %w", store.ErrConflict), codes.Aborted},
		{timedOut, fmt.Errorf("get: %w", context.DeadlineExceeded), codes.Unavailable},
		{callerGone, fmt.Errorf("get: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{canceled, fmt.Errorf("get: %w", context.Canceled), codes.Canceled},
		{context.Background(), fmt.Errorf("revoke: %w", store.ErrMalformedSessionID), codes.InvalidArgument},
		{context.Background(), secret, codes.Internal},
	} {
		err := s.toStatus(tc.ctx, tc.err)
		st, _ := status.FromError(err)
		if st.Code() != tc.want {
			t.Errorf("toStatus(%v) = %v, want %v", tc.err, st.Code(), tc.want)
		}
		if strings.Contains(st.Message(), "secret") || strings.Contains(st.Message(), "10.1.2.3") {
			t.Errorf("toStatus(%v) leaks the error text: %q", tc.err, st.Message())
		}
	}
	if !strings.Contains(logs.String(), "secret redis detail") {
		t.Error("the internal error's detail was not logged")
	}
}

// TestNoAuditLog: with Config.Audit nil nothing is audited, and nothing
// breaks.
func TestNoAuditLog(t *testing.T) {
	t.Parallel()
	logs := &testutil.SyncBuffer{}
	srv := redistest.Start(t)
	s := New(store.New(srv.Client(t), store.Config{}), Config{Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	ctx := context.Background()
	resp, err := s.CreateSession(ctx, &sessionauthv1.CreateSessionRequest{UserId: "user-1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeSession(ctx, &sessionauthv1.RevokeSessionRequest{
		Target: &sessionauthv1.RevokeSessionRequest_Token{Token: resp.GetToken()}}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), `"log_type":"audit"`) {
		t.Error("audit events without an audit log")
	}
	if !strings.Contains(logs.String(), "session created") {
		t.Errorf("the service did not log:\n%s", logs)
	}
}

// A zero Config is a working service: every create used to fail with
// Internal when DefaultTTL was 0.
func TestZeroConfigWorks(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	s := New(store.New(srv.Client(t), store.Config{}), Config{})
	ctx := context.Background()
	resp, err := s.CreateSession(ctx, &sessionauthv1.CreateSessionRequest{UserId: "user-1"})
	if err != nil {
		t.Fatalf("CreateSession with a zero Config: %v", err)
	}
	sess := resp.GetSession()
	if got := sess.GetExpiresAt().AsTime().Sub(sess.GetCreatedAt().AsTime()); got != DefaultTTL {
		t.Errorf("lifetime %v, want DefaultTTL %v", got, DefaultTTL)
	}
	if got := sess.GetIdleExpiresAt().AsTime().Sub(sess.GetCreatedAt().AsTime()); got != DefaultIdleTimeout {
		t.Errorf("idle timeout %v, want DefaultIdleTimeout %v", got, DefaultIdleTimeout)
	}
	if _, err := s.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: resp.GetToken()}); err != nil {
		t.Fatal(err)
	}
	// A negative DefaultIdleTimeout is none; WithDefaults twice changes nothing.
	cfg := Config{DefaultIdleTimeout: -1}.WithDefaults().WithDefaults()
	if cfg.DefaultIdleTimeout >= 0 || cfg.DefaultTTL != DefaultTTL || cfg.MaxTTL != DefaultMaxTTL || cfg.RequestTimeout != DefaultRequestTimeout {
		t.Errorf("WithDefaults twice: %+v", cfg)
	}
}
