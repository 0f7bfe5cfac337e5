package server

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
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/internal/testutil"
)

// testCallerHeader names, in the tests, the Caller a call is made as: what
// the authentication interceptor does for real callers.
const testCallerHeader = "x-test-caller"

// callerFromMetadata is a test authentication interceptor: a call with
// x-test-caller: <name> is made as Caller{Name: name}.
func callerFromMetadata() grpc.ServerOption {
	return grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if v := metadata.ValueFromIncomingContext(ctx, testCallerHeader); len(v) > 0 {
			c := Caller{Name: v[0], Roles: []string{"test"}}
			if p, ok := peer.FromContext(ctx); ok {
				c.Addr = p.Addr.String()
			}
			ctx = ContextWithCaller(ctx, c)
		}
		return handler(ctx, req)
	})
}

// as returns a call context that callerFromMetadata makes a call of name.
func as(t *testing.T, name string) context.Context {
	return metadata.AppendToOutgoingContext(callCtx(t), testCallerHeader, name)
}

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
	cfg := DefaultConfig
	cfg.CreateLimit = RateLimit{PerSecond: 0.5, Burst: 2}
	e := newEnv(t, envOptions{cfg: cfg, grpcOpts: []grpc.ServerOption{callerFromMetadata()}})
	req := &sessionauthv1.CreateSessionRequest{UserId: "user-1"}

	for i := range 2 {
		if _, err := e.client.CreateSession(as(t, "issuer-a"), req); err != nil {
			t.Fatalf("A's create %d within the burst: %v", i, err)
		}
	}
	_, err := e.client.CreateSession(as(t, "issuer-a"), req)
	if d := wantRetryInfo(t, err, "A's third create"); d != 2*time.Second {
		t.Errorf("retry delay %v, want 2s (one token at 0.5/s)", d)
	}
	// Rejected calls spend nothing, and write nothing.
	_, err = e.client.CreateSession(as(t, "issuer-a"), &sessionauthv1.CreateSessionRequest{UserId: "user-1", Ttl: nil})
	wantCode(t, err, codes.ResourceExhausted, "A again")
	if n, _ := e.rdb.ZCard(callCtx(t), firstIndexKey(t, e)).Result(); n != 2 {
		t.Errorf("user-1 has %d sessions, want the 2 created", n)
	}

	// B is another caller: a bucket of its own.
	for i := range 2 {
		if _, err := e.client.CreateSession(as(t, "issuer-b"), req); err != nil {
			t.Fatalf("B's create %d while A is limited: %v", i, err)
		}
	}
	wantCode(t, errOf(e.client.CreateSession(as(t, "issuer-b"), req)), codes.ResourceExhausted, "B's third create")

	// The bucket refills at 0.5/s on the injected clock.
	e.clock.Advance(1999 * time.Millisecond)
	wantCode(t, errOf(e.client.CreateSession(as(t, "issuer-a"), req)), codes.ResourceExhausted, "A after 1.999s")
	e.clock.Advance(time.Millisecond)
	if _, err := e.client.CreateSession(as(t, "issuer-a"), req); err != nil {
		t.Fatalf("A after 2s: %v", err)
	}
	wantCode(t, errOf(e.client.CreateSession(as(t, "issuer-a"), req)), codes.ResourceExhausted, "A once more")
	e.clock.Advance(time.Hour) // refills to the burst, not beyond
	for i := range 2 {
		if _, err := e.client.CreateSession(as(t, "issuer-a"), req); err != nil {
			t.Fatalf("A's create %d after an hour: %v", i, err)
		}
	}
	wantCode(t, errOf(e.client.CreateSession(as(t, "issuer-a"), req)), codes.ResourceExhausted, "A past the burst after an hour")

	// Other RPCs are not limited.
	if _, err := e.client.ListUserSessions(as(t, "issuer-a"), &sessionauthv1.ListUserSessionsRequest{UserId: "user-1"}); err != nil {
		t.Fatalf("ListUserSessions of a limited caller: %v", err)
	}
}

func errOf[T any](_ T, err error) error { return err }

// firstIndexKey is user-1's index key.
func firstIndexKey(t *testing.T, e *env) string {
	t.Helper()
	keys, err := e.rdb.Keys(callCtx(t), "*:u:user-1").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("index keys of user-1: %v, %v", keys, err)
	}
	return keys[0]
}

// TestAnonymousCallersAreLimitedByIP: with no authentication, two peers on
// different loopback addresses have different buckets.
func TestAnonymousCallersAreLimitedByIP(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig
	cfg.CreateLimit = RateLimit{PerSecond: 1, Burst: 1}
	e := newEnv(t, envOptions{cfg: cfg})
	from2 := dialFrom(t, e.addr, "127.0.0.2")
	req := &sessionauthv1.CreateSessionRequest{UserId: "user-1"}

	if _, err := e.client.CreateSession(callCtx(t), req); err != nil {
		t.Fatalf("127.0.0.1's first create: %v", err)
	}
	wantCode(t, errOf(e.client.CreateSession(callCtx(t), req)), codes.ResourceExhausted, "127.0.0.1's second create")
	if _, err := from2.CreateSession(callCtx(t), req); err != nil {
		t.Fatalf("127.0.0.2's first create while 127.0.0.1 is limited: %v", err)
	}
	wantCode(t, errOf(from2.CreateSession(callCtx(t), req)), codes.ResourceExhausted, "127.0.0.2's second create")

	// A second connection from the same IP (another port) shares the bucket.
	again := dialFrom(t, e.addr, "127.0.0.1")
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
	cfg := DefaultConfig
	cfg.FailedValidationLimit = RateLimit{PerSecond: 1, Burst: 3}
	e := newEnv(t, envOptions{cfg: cfg, extAuthz: &ExtAuthzConfig{}, grpcOpts: []grpc.ServerOption{callerFromMetadata()}})
	good := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "user-1"}).GetToken()
	forged := forgedToken(good)
	validate := func(caller, tok string) error {
		_, err := e.client.ValidateSession(as(t, caller), &sessionauthv1.ValidateSessionRequest{Token: tok})
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
		resp, err := e.authz.Check(as(t, caller), checkReq(bearer(tok)))
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		return resp.GetDeniedResponse().GetStatus()
	}
	resp, err := e.authz.Check(as(t, "svc-a"), checkReq(bearer(good)))
	if err != nil {
		t.Fatal(err)
	}
	wantDenied(t, resp, codes.ResourceExhausted, typev3.StatusCode_TooManyRequests, "retry-after", "1", "ext_authz Check of a limited caller")
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
		resp, err := e.authz.Check(as(t, "svc-c"), checkReq(map[string]string{}))
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
		req := checkReq(bearer(tok))
		req.Attributes.Source = &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 51000}}}}}
		resp, err := e.authz.Check(as(t, "gateway"), req)
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
	e.clock.Advance(time.Second)
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

func TestLimiterRefillsAndCharges(t *testing.T) {
	t.Parallel()
	clock := testutil.NewClock()
	l := newLimiter("calls", RateLimit{PerSecond: 2, Burst: 4}, 0, clock.Now)
	for i := range 4 {
		if err := l.take("k"); err != nil {
			t.Fatalf("take %d: %v", i, err)
		}
	}
	if err := l.take("k"); err == nil {
		t.Fatal("take past the burst succeeded")
	}
	clock.Advance(500 * time.Millisecond)
	if err := l.take("k"); err != nil {
		t.Fatalf("take after 500ms at 2/s: %v", err)
	}

	// check never spends; charge always does, past zero when calls raced.
	if err := l.check("other"); err != nil {
		t.Fatal(err)
	}
	if l.size() != 1 {
		t.Fatalf("check of an unknown key made a bucket: %d buckets", l.size())
	}
	for range 10 {
		l.charge("c")
	}
	if err := l.check("c"); err == nil {
		t.Fatal("check after 10 charges allowed")
	}
	// 10 charges from 4: -4 at most (one burst of debt); 1 token takes 2.5s.
	clock.Advance(2499 * time.Millisecond)
	if err := l.check("c"); err == nil {
		t.Fatal("allowed after 2.499s, want 2.5s")
	}
	clock.Advance(time.Millisecond)
	if err := l.check("c"); err != nil {
		t.Fatalf("after 2.5s: %v", err)
	}

	// A clock that goes back refills nothing and breaks nothing.
	for range 3 {
		_ = l.take("back")
	}
	clock.Advance(-time.Hour)
	if err := l.take("back"); err != nil {
		t.Fatalf("take with the clock gone back: %v", err)
	}
	if err := l.take("back"); err == nil {
		t.Fatal("a clock gone back refilled the bucket")
	}

	var nilLimiter *limiter
	if nilLimiter.take("x") != nil || nilLimiter.check("x") != nil {
		t.Fatal("the nil limiter limits")
	}
	nilLimiter.charge("x")
	for _, rl := range []RateLimit{{}, {PerSecond: -1, Burst: 5}, {Burst: 10}} {
		if newLimiter("x", rl, 0, clock.Now) != nil {
			t.Errorf("%+v is a limit, want none", rl)
		}
	}
	if b := (RateLimit{PerSecond: 2.5}).burst(); b != 3 {
		t.Errorf("default burst of 2.5/s = %v, want 3", b)
	}
	if b := (RateLimit{PerSecond: 0.1}).burst(); b != 1 {
		t.Errorf("default burst of 0.1/s = %v, want 1", b)
	}
}

// TestLimiterMemoryIsBounded: a flood of distinct callers never holds more
// than maxKeys buckets, idle buckets go on their own, and the callers being
// limited are the last to be forgotten.
func TestLimiterMemoryIsBounded(t *testing.T) {
	t.Parallel()
	clock := testutil.NewClock()
	const maxKeys = 100
	l := newLimiter("calls", RateLimit{PerSecond: 1, Burst: 2}, maxKeys, clock.Now)
	// A caller at its limit.
	for range 3 {
		_ = l.take("limited")
	}
	for i := range 100_000 {
		key := fmt.Sprintf("k%d", i)
		if err := l.take(key); err != nil {
			t.Fatalf("a new caller %s was limited: %v", key, err)
		}
		if i%1000 == 0 {
			clock.Advance(time.Millisecond)
		}
		if n := l.size(); n > maxKeys {
			t.Fatalf("%d buckets after %d callers, want at most %d", n, i+1, maxKeys)
		}
	}
	if err := l.take("limited"); err == nil {
		t.Fatal("the limited caller was forgotten to make room for one-call callers")
	}

	// Past the sweep interval, refilled buckets are dropped.
	clock.Advance(rateLimitSweepEvery)
	_ = l.take("one-more")
	if n := l.size(); n != 1 {
		t.Fatalf("%d buckets after every other caller went idle, want 1", n)
	}
}

func TestRateLimitKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		caller Caller
		want   string
	}{
		{Caller{Name: "spiffe://example.org/login", Addr: "10.0.0.1:4000"}, "name:spiffe://example.org/login"},
		{Caller{Name: Anonymous, Addr: "10.0.0.1:4000"}, "ip:10.0.0.1"},
		{Caller{Name: Anonymous, Addr: "10.0.0.1:5000"}, "ip:10.0.0.1"},
		{Caller{Name: Anonymous, Addr: "[::ffff:10.0.0.1]:5000"}, "ip:10.0.0.1"},
		{Caller{Name: Anonymous, Addr: "[2001:db8:1:2:3:4:5:6]:443"}, "ip:2001:db8:1:2::/64"},
		{Caller{Name: Anonymous, Addr: "[2001:db8:1:2:ffff::1]:443"}, "ip:2001:db8:1:2::/64"},
		{Caller{Name: Anonymous, Addr: "@"}, "addr:@"},
		{Caller{Name: "", Addr: ""}, "addr:"},
	} {
		ctx := ContextWithCaller(context.Background(), tc.caller)
		if got := rateLimitKey(ctx); got != tc.want {
			t.Errorf("rateLimitKey(%+v) = %q, want %q", tc.caller, got, tc.want)
		}
	}
}

// A rotation tells whether a token is live and hands out a new one if it
// is: failed rotations share the failed-validation limit, or rotating would
// be a way around it.
func TestFailedRotationsShareTheValidationLimit(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig
	cfg.FailedValidationLimit = RateLimit{PerSecond: 1, Burst: 2}
	e := newEnv(t, envOptions{cfg: cfg, grpcOpts: []grpc.ServerOption{callerFromMetadata()}})
	good := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "user-1"}).GetToken()
	rotate := func(caller, tok string) error {
		_, err := e.client.RotateSession(as(t, caller), &sessionauthv1.RotateSessionRequest{Token: tok})
		return err
	}
	wantCode(t, rotate("svc-a", forgedToken(good)), codes.Unauthenticated, "first failed rotation")
	_, err := e.client.ValidateSession(as(t, "svc-a"), &sessionauthv1.ValidateSessionRequest{Token: "garbage"})
	wantCode(t, err, codes.Unauthenticated, "a failed validation")
	wantRetryInfo(t, rotate("svc-a", good), "a rotation over the shared limit")
	if err := rotate("svc-b", good); err != nil {
		t.Fatalf("another caller's rotation: %v", err)
	}
}
