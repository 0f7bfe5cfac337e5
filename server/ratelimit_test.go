package server_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/internal/sessiondtest"
	"github.com/sessiond/sessiond/internal/testutil"
	"github.com/sessiond/sessiond/server"
	"github.com/sessiond/sessiond/server/extauthz"
)

// as returns a call context for a call made as the caller name.
func as(t *testing.T, name string) context.Context { return sessiondtest.As(callCtx(t), name) }

func wantRetryInfo(t *testing.T, err error, what string) time.Duration {
	t.Helper()
	st := wantCode(t, err, codes.ResourceExhausted, what)
	if !strings.Contains(st.Message(), "rate limit exceeded") {
		t.Errorf("%s: message %q does not say a rate limit was exceeded", what, st.Message())
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	t.Fatalf("%s: no RetryInfo detail in %v", what, st.Details())
	return 0
}

func TestCreateRateLimitPerCaller(t *testing.T) {
	t.Parallel()
	cfg := server.Config{}
	cfg.CreateLimit = server.RateLimit{PerSecond: 0.5, Burst: 2}
	e := newEnv(t, envOptions{Service: cfg})
	req := &sessionauthv1.CreateSessionRequest{UserId: "user-1"}

	for i := range 2 {
		if _, err := e.Client.CreateSession(as(t, "issuer-a"), req); err != nil {
			t.Fatalf("A's create %d within the burst: %v", i, err)
		}
	}
	_, err := e.Client.CreateSession(as(t, "issuer-a"), req)
	if d := wantRetryInfo(t, err, "A's third create"); d != 2*time.Second {
		t.Errorf("retry delay %v, want 2s (one token at 0.5/s)", d)
	}
	// Rejected calls spend nothing, and write nothing.
	_, err = e.Client.CreateSession(as(t, "issuer-a"), &sessionauthv1.CreateSessionRequest{UserId: "user-1", Ttl: nil})
	wantCode(t, err, codes.ResourceExhausted, "A again")
	if n, _ := e.RDB.ZCard(callCtx(t), firstIndexKey(t, e)).Result(); n != 2 {
		t.Errorf("user-1 has %d sessions, want the 2 created", n)
	}

	// B is another caller: a bucket of its own.
	for i := range 2 {
		if _, err := e.Client.CreateSession(as(t, "issuer-b"), req); err != nil {
			t.Fatalf("B's create %d while A is limited: %v", i, err)
		}
	}
	wantCode(t, errOf(e.Client.CreateSession(as(t, "issuer-b"), req)), codes.ResourceExhausted, "B's third create")

	// The bucket refills at 0.5/s on the injected clock.
	e.Clock.Advance(1999 * time.Millisecond)
	wantCode(t, errOf(e.Client.CreateSession(as(t, "issuer-a"), req)), codes.ResourceExhausted, "A after 1.999s")
	e.Clock.Advance(time.Millisecond)
	if _, err := e.Client.CreateSession(as(t, "issuer-a"), req); err != nil {
		t.Fatalf("A after 2s: %v", err)
	}
	wantCode(t, errOf(e.Client.CreateSession(as(t, "issuer-a"), req)), codes.ResourceExhausted, "A once more")
	e.Clock.Advance(time.Hour) // refills to the burst, not beyond
	for i := range 2 {
		if _, err := e.Client.CreateSession(as(t, "issuer-a"), req); err != nil {
			t.Fatalf("A's create %d after an hour: %v", i, err)
		}
	}
	wantCode(t, errOf(e.Client.CreateSession(as(t, "issuer-a"), req)), codes.ResourceExhausted, "A past the burst after an hour")

	// Other RPCs are not limited.
	if _, err := e.Client.ListUserSessions(as(t, "issuer-a"), &sessionauthv1.ListUserSessionsRequest{UserId: "user-1"}); err != nil {
		t.Fatalf("ListUserSessions of a limited caller: %v", err)
	}
}

func errOf[T any](_ T, err error) error { return err }

// firstIndexKey is user-1's index key.
func firstIndexKey(t *testing.T, e *env) string {
	t.Helper()
	keys, err := e.RDB.Keys(callCtx(t), "*:u:user-1").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("index keys of user-1: %v, %v", keys, err)
	}
	return keys[0]
}

// TestAnonymousCallersAreLimitedByIP: with no authentication, two peers on
// different loopback addresses have different buckets.
func TestAnonymousCallersAreLimitedByIP(t *testing.T) {
	t.Parallel()
	cfg := server.Config{}
	cfg.CreateLimit = server.RateLimit{PerSecond: 1, Burst: 1}
	e := newEnv(t, envOptions{Service: cfg})
	from2 := dialFrom(t, e.Addr, "127.0.0.2")
	req := &sessionauthv1.CreateSessionRequest{UserId: "user-1"}

	if _, err := e.Client.CreateSession(callCtx(t), req); err != nil {
		t.Fatalf("127.0.0.1's first create: %v", err)
	}
	wantCode(t, errOf(e.Client.CreateSession(callCtx(t), req)), codes.ResourceExhausted, "127.0.0.1's second create")
	if _, err := from2.CreateSession(callCtx(t), req); err != nil {
		t.Fatalf("127.0.0.2's first create while 127.0.0.1 is limited: %v", err)
	}
	wantCode(t, errOf(from2.CreateSession(callCtx(t), req)), codes.ResourceExhausted, "127.0.0.2's second create")

	// A second connection from the same IP (another port) shares the bucket.
	again := dialFrom(t, e.Addr, "127.0.0.1")
	wantCode(t, errOf(again.CreateSession(callCtx(t), req)), codes.ResourceExhausted, "127.0.0.1 on a new connection")
}

// dialFrom connects to addr from the local address ip.
func dialFrom(t *testing.T, addr, ip string) sessionauthv1.SessionAuthorityClient {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return d.DialContext(ctx, "tcp", a) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return sessionauthv1.NewSessionAuthorityClient(conn)
}

func TestFailedValidationLimit(t *testing.T) {
	t.Parallel()
	cfg := server.Config{}
	cfg.FailedValidationLimit = server.RateLimit{PerSecond: 1, Burst: 3}
	e := newEnv(t, envOptions{Service: cfg, ExtAuthz: &extauthz.Config{}})
	good := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "user-1"}).GetToken()
	forged := forgedToken(good)
	validate := func(caller, tok string) error {
		_, err := e.Client.ValidateSession(as(t, caller), &sessionauthv1.ValidateSessionRequest{Token: tok})
		return err
	}

	// Successful validations spend nothing.
	for i := range 20 {
		if err := validate("svc-a", good); err != nil {
			t.Fatalf("good validation %d: %v", i, err)
		}
	}
	// Nor do requests rejected as malformed before any check (no token).
	for range 5 {
		wantCode(t, validate("svc-a", ""), codes.InvalidArgument, "empty token")
	}
	// Three failures fit the burst, the fourth call is refused, and so is a
	// good token now: answering it would tell a guesser it guessed right.
	for i, tok := range []string{forged, "garbage", strings.Repeat("A", 72)} {
		wantCode(t, validate("svc-a", tok), codes.Unauthenticated, fmt.Sprintf("failure %d", i))
	}
	if d := wantRetryInfo(t, validate("svc-a", forged), "fourth failure"); d != time.Second {
		t.Errorf("retry delay %v, want 1s", d)
	}
	wantRetryInfo(t, validate("svc-a", good), "a good token while limited")

	// Another caller is unaffected; and the limit is shared, per caller, with
	// ext_authz Check: one mechanism.
	wantCode(t, validate("svc-b", forged), codes.Unauthenticated, "B's failure")
	if err := validate("svc-b", good); err != nil {
		t.Fatalf("B's good validation: %v", err)
	}
	bearer := func(tok string) map[string]string { return map[string]string{"authorization": "Bearer " + tok} }
	check := func(caller, tok string) *typev3.HttpStatus {
		resp, err := e.Authz.Check(as(t, caller), testutil.CheckRequest(bearer(tok)))
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		return resp.GetDeniedResponse().GetStatus()
	}
	resp, err := e.Authz.Check(as(t, "svc-a"), testutil.CheckRequest(bearer(good)))
	if err != nil {
		t.Fatal(err)
	}
	testutil.WantDenied(t, resp, codes.ResourceExhausted, typev3.StatusCode_TooManyRequests, "retry-after", "1", "ext_authz Check of a limited caller")
	if !strings.Contains(resp.GetStatus().GetMessage(), "rate limit exceeded") {
		t.Errorf("Check's status message %q does not say why", resp.GetStatus().GetMessage())
	}
	if s := check("svc-b", forged); s.GetCode() != typev3.StatusCode_Unauthorized {
		t.Fatalf("B's second failure via Check: HTTP %v, want 401", s.GetCode())
	}
	if s := check("svc-b", forged); s.GetCode() != typev3.StatusCode_Unauthorized {
		t.Fatalf("B's third failure via Check: HTTP %v, want 401", s.GetCode())
	}
	if s := check("svc-b", forged); s.GetCode() != typev3.StatusCode_TooManyRequests {
		t.Fatalf("B's fourth failure via Check: HTTP %v, want 429", s.GetCode())
	}
	// A request with no credential at all is not a guess.
	for range 5 {
		resp, err := e.Authz.Check(as(t, "svc-c"), testutil.CheckRequest(map[string]string{}))
		if err != nil || resp.GetDeniedResponse().GetStatus().GetCode() != typev3.StatusCode_Unauthorized {
			t.Fatalf("Check without a token: %v, %v; want 401", resp, err)
		}
	}
	if s := check("svc-c", forged); s.GetCode() != typev3.StatusCode_Unauthorized {
		t.Fatalf("C's first failure after 5 tokenless checks: HTTP %v, want 401", s.GetCode())
	}

	// Behind a gateway, failures count per downstream client the gateway
	// reports: one client sending bad cookies does not lock out the others.
	from := func(ip, tok string) *typev3.HttpStatus {
		req := testutil.CheckRequest(bearer(tok))
		req.Attributes.Source = &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 51000}}}}}
		resp, err := e.Authz.Check(as(t, "gateway"), req)
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		return resp.GetDeniedResponse().GetStatus()
	}
	for range 3 {
		if s := from("203.0.113.7", forged); s.GetCode() != typev3.StatusCode_Unauthorized {
			t.Fatalf("client .7's failure: HTTP %v, want 401", s.GetCode())
		}
	}
	if s := from("203.0.113.7", good); s.GetCode() != typev3.StatusCode_TooManyRequests {
		t.Fatalf("client .7 over the limit: HTTP %v, want 429", s.GetCode())
	}
	if s := from("203.0.113.8", good); s != nil {
		t.Fatalf("client .8 with a good token behind the same gateway: denied with HTTP %v", s.GetCode())
	}
	if s := from("203.0.113.8", forged); s.GetCode() != typev3.StatusCode_Unauthorized {
		t.Fatalf("client .8's failure: HTTP %v, want 401", s.GetCode())
	}

	// A's bucket refills at 1/s on the injected clock: one more failure.
	e.Clock.Advance(time.Second)
	if err := validate("svc-a", good); err != nil {
		t.Fatalf("good validation after the refill: %v", err)
	}
	wantCode(t, validate("svc-a", forged), codes.Unauthenticated, "failure after the refill")
	wantCode(t, validate("svc-a", forged), codes.ResourceExhausted, "second failure after the refill")
}

// forgedToken is a well-formed token for tok's session with other random
// bytes: it reaches Redis, and fails there.
func forgedToken(tok string) string {
	b := []byte(tok)
	if b[len(b)-2] == 'A' {
		b[len(b)-2] = 'B'
	} else {
		b[len(b)-2] = 'A'
	}
	return string(b)
}

// A rotation tells whether a token is live and hands out a new one if it
// is: failed rotations share the failed-validation limit, or rotating would
// be a way around it.
func TestFailedRotationsShareTheValidationLimit(t *testing.T) {
	t.Parallel()
	cfg := server.Config{}
	cfg.FailedValidationLimit = server.RateLimit{PerSecond: 1, Burst: 2}
	e := newEnv(t, envOptions{Service: cfg})
	good := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "user-1"}).GetToken()
	rotate := func(caller, tok string) error {
		_, err := e.Client.RotateSession(as(t, caller), &sessionauthv1.RotateSessionRequest{Token: tok})
		return err
	}
	wantCode(t, rotate("svc-a", forgedToken(good)), codes.Unauthenticated, "first failed rotation")
	_, err := e.Client.ValidateSession(as(t, "svc-a"), &sessionauthv1.ValidateSessionRequest{Token: "garbage"})
	wantCode(t, err, codes.Unauthenticated, "a failed validation")
	wantRetryInfo(t, rotate("svc-a", good), "a rotation over the shared limit")
	if err := rotate("svc-b", good); err != nil {
		t.Fatalf("another caller's rotation: %v", err)
	}
}
