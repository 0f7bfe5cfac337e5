package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/server"
)

func TestRateLimitAndAuditFlags(t *testing.T) {
	t.Parallel()
	cfg, err := parseConfig(nil, noEnv, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if want := (server.RateLimit{PerSecond: 100, Burst: 200}); cfg.Service.CreateLimit != want {
		t.Errorf("default create limit %+v, want %+v", cfg.Service.CreateLimit, want)
	}
	if want := (server.RateLimit{PerSecond: 50, Burst: 200}); cfg.Service.FailedValidationLimit != want {
		t.Errorf("default failed-validation limit %+v, want %+v", cfg.Service.FailedValidationLimit, want)
	}
	if cfg.AuditLog != "" {
		t.Errorf("default --audit-log %q, want empty (stderr)", cfg.AuditLog)
	}

	env := map[string]string{"SESSIOND_RATE_LIMIT_CREATE": "2.5", "SESSIOND_RATE_LIMIT_FAILED_VALIDATIONS": "0",
		"SESSIOND_RATE_LIMIT_FAILED_VALIDATIONS_BURST": "0", "SESSIOND_AUDIT_LOG": "/var/log/sessiond-audit.log"}
	cfg, err = parseConfig([]string{"--rate-limit-create-burst=7"}, func(k string) string { return env[k] }, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if want := (server.RateLimit{PerSecond: 2.5, Burst: 7}); cfg.Service.CreateLimit != want {
		t.Errorf("create limit %+v, want %+v", cfg.Service.CreateLimit, want)
	}
	if cfg.Service.FailedValidationLimit.PerSecond != 0 || cfg.AuditLog != "/var/log/sessiond-audit.log" {
		t.Errorf("from the environment: %+v, %q", cfg.Service.FailedValidationLimit, cfg.AuditLog)
	}

	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--rate-limit-create=-1"}, nil, "--rate-limit-create -1: want a number of calls per second"},
		{[]string{"--rate-limit-create=NaN"}, nil, "--rate-limit-create NaN"},
		{[]string{"--rate-limit-failed-validations=+Inf"}, nil, "--rate-limit-failed-validations +Inf"},
		{[]string{"--rate-limit-create=ten"}, nil, "rate-limit-create"},
		{[]string{"--rate-limit-create-burst=0"}, nil, "--rate-limit-create-burst 0: must be at least 1"},
		{[]string{"--rate-limit-failed-validations-burst=-3"}, nil, "--rate-limit-failed-validations-burst -3"},
		{[]string{"--rate-limit-failed-validations-burst=1.5"}, nil, "rate-limit-failed-validations-burst"},
		{nil, map[string]string{"SESSIOND_RATE_LIMIT_CREATE": "lots"}, "SESSIOND_RATE_LIMIT_CREATE"},
		{nil, map[string]string{"SESSIOND_RATE_LIMIT_FAILED_VALIDATIONS_BURST": "x"}, "SESSIOND_RATE_LIMIT_FAILED_VALIDATIONS_BURST"},
		{[]string{"--audit-log=" + t.TempDir()}, nil, "--audit-log"},
		{[]string{"--audit-log=/nonexistent/dir/audit.log"}, nil, "--audit-log"},
	} {
		getenv := func(k string) string { return tc.env[k] }
		err := run(context.Background(), tc.args, getenv, &bytes.Buffer{}, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run(%v, %v) = %v, want an error about %s", tc.args, tc.env, err, tc.want)
		}
	}
}

// TestRunAuditLogAndRateLimit runs sessiond on a real redis-server with an
// audit log file and a create limit.
func TestRunAuditLogAndRateLimit(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, []byte("{\"earlier\":true}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	conn, logs, stop := startRun(t, []string{"--redis-url=" + srv.URL(), "--audit-log=" + path,
		"--rate-limit-create=0.001", "--rate-limit-create-burst=2"}, noEnv)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := sessionauthv1.NewSessionAuthorityClient(conn)
	var tokens []string
	for range 2 {
		resp, err := c.CreateSession(ctx, &sessionauthv1.CreateSessionRequest{UserId: "u"})
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, resp.GetToken())
	}
	if _, err := c.CreateSession(ctx, &sessionauthv1.CreateSessionRequest{UserId: "u"}); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("third create: %v, want ResourceExhausted", err)
	}
	if _, err := c.RevokeSession(ctx, &sessionauthv1.RevokeSessionRequest{Target: &sessionauthv1.RevokeSessionRequest_Token{Token: tokens[0]}}); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 4 || lines[0] != `{"earlier":true}` {
		t.Fatalf("audit log, want the earlier line and 3 events appended:\n%s", b)
	}
	for i, want := range []string{`"msg":"session.created"`, `"msg":"session.created"`, `"msg":"session.revoked"`} {
		if l := lines[i+1]; !strings.Contains(l, want) || !strings.Contains(l, `"log_type":"audit"`) || !strings.Contains(l, `"caller":{"name":"anonymous","addr":"127.0.0.1:`) {
			t.Errorf("audit line %d %s: want %s, log_type and the caller", i+1, l, want)
		}
	}
	for _, tok := range tokens {
		if strings.Contains(string(b), tok) || strings.Contains(logs.String(), tok) {
			t.Fatal("a token in the logs")
		}
	}
	if strings.Contains(logs.String(), "session.created") {
		t.Errorf("audit events in the operational log:\n%s", logs)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("audit log mode %v (%v), want 0600", fi.Mode(), err)
	}
}

// TestRunAuditLogOnStderr: by default the audit events go to stderr, next to
// the operational log, told apart by log_type; a new file is created 0600.
func TestRunAuditLogOnStderr(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	conn, logs, stop := startRun(t, []string{"--redis-url=" + srv.URL()}, noEnv)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := sessionauthv1.NewSessionAuthorityClient(conn).CreateSession(ctx, &sessionauthv1.CreateSessionRequest{UserId: "u"}); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	var audit int
	for l := range strings.SplitSeq(logs.String(), "\n") {
		if strings.Contains(l, `"log_type":"audit"`) {
			audit++
			if !strings.Contains(l, `"msg":"session.created"`) {
				t.Errorf("audit line %s", l)
			}
		}
	}
	if audit != 1 {
		t.Errorf("%d audit lines on stderr, want 1:\n%s", audit, logs)
	}

	path := filepath.Join(t.TempDir(), "new-audit.log")
	_, _, stop = startRun(t, []string{"--redis-url=" + srv.URL(), "--audit-log=" + path}, noEnv)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("new audit log: %v, %v; want mode 0600", fi, err)
	}
}
