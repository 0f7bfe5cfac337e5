package server_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"os"
	"path/filepath"
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
	"google.golang.org/grpc/status"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/internal/daemon"
	"github.com/sessiond/sessiond/internal/sessiondtest"
	"github.com/sessiond/sessiond/internal/testutil"
	"github.com/sessiond/sessiond/server"
	"github.com/sessiond/sessiond/server/access"
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
	// Three failures fit the burst, the fourth is answered ResourceExhausted;
	// a live session's token still validates: other requests' failures never
	// refuse it.
	for i, tok := range []string{forged, "garbage", strings.Repeat("A", 72)} {
		wantCode(t, validate("svc-a", tok), codes.Unauthenticated, fmt.Sprintf("failure %d", i))
	}
	if d := wantRetryInfo(t, validate("svc-a", forged), "fourth failure"); d != time.Second {
		t.Errorf("retry delay %v, want 1s", d)
	}
	for i := range 5 {
		if err := validate("svc-a", good); err != nil {
			t.Fatalf("a good token while the caller is limited (%d): %v", i, err)
		}
	}

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
	if s := check("svc-a", good); s != nil {
		t.Fatalf("ext_authz Check of a good token for a limited caller: denied with HTTP %v", s.GetCode())
	}
	resp, err := e.Authz.Check(as(t, "svc-a"), testutil.CheckRequest(bearer(forged)))
	if err != nil {
		t.Fatal(err)
	}
	testutil.WantDenied(t, resp, codes.ResourceExhausted, typev3.StatusCode_TooManyRequests, "retry-after", "1", "ext_authz Check failing for a limited caller")
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

	// A's bucket refills at 1/s on the injected clock: one more failure.
	e.Clock.Advance(time.Second)
	wantCode(t, validate("svc-a", forged), codes.Unauthenticated, "failure after the refill")
	wantCode(t, validate("svc-a", forged), codes.ResourceExhausted, "second failure after the refill")
}

// TestFailedValidationsPerEndUser: failures count per end user under the
// caller's own budget. One end user flooding bad tokens through a service
// (the interceptors' x-sessiond-end-user, ext_authz's source address) is
// throttled alone, and spends none of the budget of the service's other
// users; a caller naming a fresh end user each time stays within its own
// budget: the claim can only narrow the limit, never widen it.
func TestFailedValidationsPerEndUser(t *testing.T) {
	t.Parallel()
	cfg := server.Config{
		FailedValidationLimit:          server.RateLimit{PerSecond: 1, Burst: 6},
		FailedValidationPerClientLimit: server.RateLimit{PerSecond: 1, Burst: 2},
	}
	e := newEnv(t, envOptions{Service: cfg, ExtAuthz: &extauthz.Config{}})
	good := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "user-1"}).GetToken()
	forged := forgedToken(good)
	validate := func(endUser, tok string) error {
		ctx := metadata.AppendToOutgoingContext(as(t, "app"), access.EndUserHeader, endUser)
		_, err := e.Client.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: tok})
		return err
	}
	// The attacker's share: two failures, then ResourceExhausted, however
	// many more it sends; a good token from the same address still passes.
	wantCode(t, validate("198.51.100.1", forged), codes.Unauthenticated, "attacker's first failure")
	wantCode(t, validate("198.51.100.1", forged), codes.Unauthenticated, "attacker's second failure")
	for i := range 50 {
		wantCode(t, validate("198.51.100.1", forged), codes.ResourceExhausted, fmt.Sprintf("attacker's failure %d over its share", i))
	}
	if err := validate("198.51.100.1", good); err != nil {
		t.Fatalf("a good token from the throttled address: %v", err)
	}
	// The service's budget was charged twice, not 52 times: another user's
	// expired cookie is still told 401.
	wantCode(t, validate("198.51.100.2", forged), codes.Unauthenticated, "another end user's failure")

	// A caller rotating the end user it names is held by its own budget (6
	// in all, 3 spent above).
	codesSeen := map[codes.Code]int{}
	for i := range 10 {
		codesSeen[status.Code(validate(fmt.Sprintf("203.0.113.%d", i+10), forged))]++
	}
	if codesSeen[codes.Unauthenticated] != 3 || codesSeen[codes.ResourceExhausted] != 7 {
		t.Fatalf("rotating end users: %v, want 3 Unauthenticated then ResourceExhausted (the caller's budget)", codesSeen)
	}

	// ext_authz: the same, per source address, under the gateway's budget.
	check := func(ip, tok string) *typev3.HttpStatus {
		req := testutil.CheckRequest(map[string]string{"authorization": "Bearer " + tok})
		req.Attributes.Source = &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 51000}}}}}
		resp, err := e.Authz.Check(as(t, "gateway"), req)
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		return resp.GetDeniedResponse().GetStatus()
	}
	for range 2 {
		if s := check("203.0.113.7", forged); s.GetCode() != typev3.StatusCode_Unauthorized {
			t.Fatalf("client .7's failure: HTTP %v, want 401", s.GetCode())
		}
	}
	if s := check("203.0.113.7", forged); s.GetCode() != typev3.StatusCode_TooManyRequests {
		t.Fatalf("client .7 over its share: HTTP %v, want 429", s.GetCode())
	}
	if s := check("203.0.113.7", good); s != nil {
		t.Fatalf("client .7 with a good token: denied with HTTP %v", s.GetCode())
	}
	if s := check("203.0.113.8", forged); s.GetCode() != typev3.StatusCode_Unauthorized {
		t.Fatalf("client .8's failure behind the same gateway: HTTP %v, want 401", s.GetCode())
	}
	n429 := 0
	for i := range 10 {
		if check(fmt.Sprintf("192.0.2.%d", i+1), forged).GetCode() == typev3.StatusCode_TooManyRequests {
			n429++
		}
	}
	if n429 != 7 {
		t.Fatalf("a gateway rotating source addresses: %d of 10 fresh addresses got 429, want 7 (its budget of 6, 3 spent)", n429)
	}
}

// TestEndUserNeedsTrust: with authorization on, only a caller holding the
// end-user-proxy role may name end users; another caller's claim is
// ignored, so its failures all count against its own budget.
func TestEndUserNeedsTrust(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		role    string
		trusted bool
	}{{"validator", false}, {"validator,end-user-proxy", true}} {
		t.Run(tc.role, func(t *testing.T) {
			t.Parallel()
			key := "sk_test_" + strings.ReplaceAll(tc.role, ",", "_")
			keys := filepath.Join(t.TempDir(), "keys")
			line := fmt.Sprintf("svc %x %s\nlogin %x issuer\n", sha256.Sum256([]byte(key)), tc.role, sha256.Sum256([]byte("sk_login")))
			if err := os.WriteFile(keys, []byte(line), 0o600); err != nil {
				t.Fatal(err)
			}
			d := sessiondtest.Run(t, daemon.Config{
				Service:  server.Config{FailedValidationLimit: server.RateLimit{PerSecond: 1, Burst: 4}, FailedValidationPerClientLimit: server.RateLimit{PerSecond: 1, Burst: 1}},
				Security: daemon.SecurityConfig{APIKeysFile: keys},
			})
			c := sessionauthv1.NewSessionAuthorityClient(d.Conn)
			login := metadata.AppendToOutgoingContext(callCtx(t), access.DefaultAPIKeyHeader, "sk_login")
			created, err := c.CreateSession(login, &sessionauthv1.CreateSessionRequest{UserId: "u"})
			if err != nil {
				t.Fatal(err)
			}
			forged := forgedToken(created.GetToken())
			// Two failures from one end user: with trust, the second is over
			// the end user's share of 1; without, both fit the caller's 4.
			var last error
			for range 2 {
				ctx := metadata.AppendToOutgoingContext(callCtx(t), access.DefaultAPIKeyHeader, key, access.EndUserHeader, "198.51.100.9")
				_, last = c.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: forged})
			}
			want := codes.Unauthenticated
			if tc.trusted {
				want = codes.ResourceExhausted
			}
			wantCode(t, last, want, "the second failure of one end user")
		})
	}
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
	rotate := func(caller, tok string) (string, error) {
		resp, err := e.Client.RotateSession(as(t, caller), &sessionauthv1.RotateSessionRequest{Token: tok})
		return resp.GetToken(), err
	}
	_, err := rotate("svc-a", forgedToken(good))
	wantCode(t, err, codes.Unauthenticated, "first failed rotation")
	_, err = e.Client.ValidateSession(as(t, "svc-a"), &sessionauthv1.ValidateSessionRequest{Token: "garbage"})
	wantCode(t, err, codes.Unauthenticated, "a failed validation")
	_, err = rotate("svc-a", forgedToken(good))
	wantRetryInfo(t, err, "a failed rotation over the shared limit")
	// A live session still rotates for the limited caller.
	if good, err = rotate("svc-a", good); err != nil {
		t.Fatalf("a good rotation while limited: %v", err)
	}
	if _, err := rotate("svc-b", good); err != nil {
		t.Fatalf("another caller's rotation: %v", err)
	}
}

// TestFailedRevokesByTokenShareTheValidationLimit: revoked=false tells a
// guesser that a token is not live, so a revocation by token that revokes
// nothing counts as a failed validation; a real logout is never refused.
func TestFailedRevokesByTokenShareTheValidationLimit(t *testing.T) {
	t.Parallel()
	cfg := server.Config{}
	cfg.FailedValidationLimit = server.RateLimit{PerSecond: 1, Burst: 3}
	e := newEnv(t, envOptions{Service: cfg})
	good := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "user-1"}).GetToken()
	revoke := func(tok string) (bool, error) {
		resp, err := e.Client.RevokeSession(as(t, "svc-a"), &sessionauthv1.RevokeSessionRequest{Target: &sessionauthv1.RevokeSessionRequest_Token{Token: tok}})
		return resp.GetRevoked(), err
	}
	for i, tok := range []string{forgedToken(good), "garbage", strings.Repeat("A", 72)} {
		if revoked, err := revoke(tok); err != nil || revoked {
			t.Fatalf("failed revoke %d: %v, %v; want revoked=false", i, revoked, err)
		}
	}
	for range 20 {
		_, err := revoke(forgedToken(good))
		wantRetryInfo(t, err, "a failed revoke over the limit")
	}
	if revoked, err := revoke(good); err != nil || !revoked {
		t.Fatalf("logout of a live session while limited: %v, %v; want revoked", revoked, err)
	}
	_, err := e.Client.ValidateSession(as(t, "svc-a"), &sessionauthv1.ValidateSessionRequest{Token: "garbage"})
	wantRetryInfo(t, err, "a failed validation: the budget is shared")
}
