package clienttest_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sessiond/sessiond/client"
	"github.com/sessiond/sessiond/client/clienttest"
	"github.com/sessiond/sessiond/internal/testutil"
)

var (
	callCtx  = testutil.CallCtx
	wantCode = testutil.WantCode
)

func TestSessionsAndRevocations(t *testing.T) {
	t.Parallel()
	d := clienttest.Start(t)
	ctx := callCtx(t)
	if !strings.HasPrefix(d.Addr, "127.0.0.1:") || strings.HasSuffix(d.Addr, ":0") {
		t.Fatalf("Addr %q, want a loopback port", d.Addr)
	}
	sessions := client.New(d.Conn()) // the service under test's client

	before := time.Now()
	token, s := d.CreateSession(t, "user-42")
	got, err := sessions.Validate(ctx, token)
	if err != nil || got.GetSessionId() != s.GetSessionId() || got.GetUserId() != "user-42" {
		t.Fatalf("Validate = %v, %v; want the session of user-42", got, err)
	}
	// cmd/sessiond's defaults: 24h, idle 1h.
	if exp := s.GetExpiresAt().AsTime(); exp.Before(before.Add(clienttest.DefaultTTL-time.Minute)) || exp.After(time.Now().Add(clienttest.DefaultTTL)) {
		t.Errorf("expires at %v, want in %v", exp, clienttest.DefaultTTL)
	}
	if idle := s.GetIdleExpiresAt().AsTime(); idle.After(time.Now().Add(clienttest.DefaultIdleTimeout)) || idle.Before(before.Add(clienttest.DefaultIdleTimeout-time.Minute)) {
		t.Errorf("idle expiry %v, want in %v", idle, clienttest.DefaultIdleTimeout)
	}

	full, fs := d.Create(t, client.NewSession{UserID: "user-42", Email: "ada@example.com", TTL: time.Hour})
	if fs.GetEmail() != "ada@example.com" || fs.GetExpiresAt().AsTime().After(time.Now().Add(time.Hour)) {
		t.Fatalf("Create = %v, want the email and a 1h lifetime", fs)
	}
	other, _ := d.CreateSession(t, "user-7")

	if !d.Revoke(t, token) {
		t.Fatal("Revoke of a live session = false")
	}
	_, err = sessions.Validate(ctx, token)
	wantCode(t, err, codes.Unauthenticated, "Validate after Revoke")
	if d.Revoke(t, token) {
		t.Fatal("Revoke twice = true")
	}
	if n := d.RevokeUser(t, "user-42"); n != 1 {
		t.Fatalf("RevokeUser = %d, want 1 (the session left)", n)
	}
	_, err = d.Client().Validate(ctx, full)
	wantCode(t, err, codes.Unauthenticated, "Validate after RevokeUser")
	if _, err := d.Client().Validate(ctx, other); err != nil {
		t.Fatalf("another user's session after RevokeUser: %v", err)
	}

	// Down: the service's calls fail with Unavailable; Conn stays open.
	d.Stop()
	_, err = sessions.Validate(ctx, other)
	wantCode(t, err, codes.Unavailable, "Validate with sessiond stopped")
	d.Stop() // twice: nothing
}

func TestOptions(t *testing.T) {
	t.Parallel()
	logs := &testutil.SyncBuffer{}
	d := clienttest.Start(t,
		clienttest.WithMaxSessionsPerUser(2),
		clienttest.WithDefaultTTL(2*time.Hour),
		clienttest.WithIdleTimeout(0),
		clienttest.WithLogOutput(logs))
	ctx := callCtx(t)

	oldest, s := d.CreateSession(t, "user-42")
	if exp := s.GetExpiresAt().AsTime(); exp.After(time.Now().Add(2*time.Hour)) || exp.Before(time.Now().Add(2*time.Hour-time.Minute)) {
		t.Errorf("expires at %v, want in 2h", exp)
	}
	if !s.GetIdleExpiresAt().AsTime().Equal(s.GetExpiresAt().AsTime()) {
		t.Errorf("idle expiry %v, want none (the absolute expiry %v)", s.GetIdleExpiresAt().AsTime(), s.GetExpiresAt().AsTime())
	}
	d.CreateSession(t, "user-42")
	d.CreateSession(t, "user-42") // over the cap of 2: the oldest goes
	_, err := d.Client().Validate(ctx, oldest)
	wantCode(t, err, codes.Unauthenticated, "the oldest session over the cap")

	if !strings.Contains(logs.String(), "sessiond serving") || strings.Contains(logs.String(), oldest) {
		t.Fatalf("log %q: want sessiond's lines, and no token", logs)
	}
}

func TestShortIdleTimeoutSlides(t *testing.T) {
	t.Parallel()
	const idle = time.Second
	d := clienttest.Start(t, clienttest.WithIdleTimeout(idle))
	ctx := callCtx(t)
	// Validations every 100ms keep it alive past the idle timeout (touched
	// at most every 100ms)... Should a loaded machine stall the test for
	// half the idle timeout between two validations, that premise no longer
	// holds: start again with a new session, a few times at most.
	var token string
	for attempt := 1; token == ""; attempt++ {
		tok, _ := d.CreateSession(t, "user-42")
		created := time.Now()
		last := created
		for time.Since(created) < 2*idle {
			time.Sleep(100 * time.Millisecond)
			sent := time.Now()
			_, err := d.Client().Validate(ctx, tok)
			if err != nil && sent.Sub(last) < idle/2 {
				t.Fatalf("validated %v after the previous validation: %v", sent.Sub(last), err)
			}
			if err != nil {
				tok = "" // stalled: try again
				break
			}
			last = sent
		}
		token = tok
		if token == "" && attempt == 5 {
			t.Fatal("the test was stalled for half the idle timeout in each of 5 attempts")
		}
	}
	// ...and idle, it ends.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := d.Client().Validate(ctx, token)
		if status.Code(err) == codes.Unauthenticated {
			break
		}
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("idle for 5s: %v, want Unauthenticated", err)
		}
		time.Sleep(1500 * time.Millisecond) // more than the idle timeout, without a validation
	}
}

func TestInvalidOptions(t *testing.T) {
	t.Parallel()
	for name, opt := range map[string]clienttest.Option{
		"negative cap":  clienttest.WithMaxSessionsPerUser(-1),
		"TTL under 1s":  clienttest.WithDefaultTTL(time.Millisecond),
		"zero TTL":      clienttest.WithDefaultTTL(0),
		"idle under 1s": clienttest.WithIdleTimeout(500 * time.Millisecond),
		"negative idle": clienttest.WithIdleTimeout(-time.Second),
	} {
		if d, err := clienttest.New(opt); err == nil || !strings.Contains(err.Error(), "clienttest: With") {
			if d != nil {
				_ = d.Close()
			}
			t.Errorf("%s: New = %v, want an error naming the option", name, err)
		}
	}
}

func TestNewAndClose(t *testing.T) {
	t.Parallel()
	d, err := clienttest.New()
	if err != nil {
		t.Fatal(err)
	}
	token, _, err := d.Client().Create(callCtx(t), client.NewSession{UserID: "user-42"})
	if err != nil || token == "" {
		t.Fatalf("Create = %q, %v", token, err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("Close twice: %v", err)
	}
}

// A failed test gets sessiond's log; a passing one does not.
func TestLogOnFailure(t *testing.T) {
	t.Parallel()
	for _, failed := range []bool{false, true} {
		tb := &recordingTB{TB: t, failed: failed}
		d := clienttest.Start(tb)
		d.CreateSession(tb, "user-42")
		tb.cleanup()
		logged := strings.Join(tb.logs, "\n")
		if got := strings.Contains(logged, "sessiond serving"); got != failed {
			t.Errorf("failed %v: the test's log holds sessiond's: %v, want %v\n%s", failed, got, failed, logged)
		}
		if len(tb.errors) != 0 {
			t.Errorf("failed %v: cleanup reported %v", failed, tb.errors)
		}
	}
}

// recordingTB is a test whose failure is chosen, and whose cleanups run
// when told.
type recordingTB struct {
	testing.TB
	failed   bool
	logs     []string
	errors   []string
	cleanups []func()
}

func (r *recordingTB) Helper()          {}
func (r *recordingTB) Failed() bool     { return r.failed }
func (r *recordingTB) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }
func (r *recordingTB) Logf(format string, args ...any) {
	r.logs = append(r.logs, strings.TrimSpace(fmt.Sprintf(format, args...)))
}
func (r *recordingTB) Error(args ...any) { r.errors = append(r.errors, fmt.Sprint(args...)) }

func (r *recordingTB) cleanup() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}
