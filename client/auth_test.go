package client_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sessiond/sessiond/client"
	"github.com/sessiond/sessiond/internal/sessiondtest"
	"github.com/sessiond/sessiond/internal/testutil"
)

// countingConn dials addr with an interceptor that counts ValidateSession calls.
func countingConn(t *testing.T, addr string) (*grpc.ClientConn, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			if strings.HasSuffix(method, "/ValidateSession") {
				n.Add(1)
			}
			return invoker(ctx, method, req, reply, cc, opts...)
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn, &n
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// call runs a unary server interceptor the way grpc-go does, and returns
// what the handler saw.
func call(ctx context.Context, icpt grpc.UnaryServerInterceptor, method string, md metadata.MD) (*client.Session, bool, error) {
	var seen *client.Session
	called := false
	_, err := icpt(metadata.NewIncomingContext(ctx, md), "req", &grpc.UnaryServerInfo{FullMethod: method},
		func(ctx context.Context, req any) (any, error) {
			called = true
			seen, _ = client.SessionFromContext(ctx)
			return "resp", nil
		})
	return seen, called, err
}

func TestUnaryServerInterceptor(t *testing.T) {
	t.Parallel()
	sd := sessiondtest.Start(t)
	c := client.New(sd.Conn)
	ctx := ctxT(t)
	token, s, err := c.Create(ctx, client.NewSession{UserID: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	icpt := client.UnaryServerInterceptor(c, client.WithPublicMethods("/grpc.health.v1.Health/", "/app.v1.App/Login"))

	got, called, err := call(ctx, icpt, "/app.v1.App/Get", metadata.Pairs("authorization", "Bearer "+token))
	if err != nil || !called || got.GetSessionId() != s.GetSessionId() {
		t.Fatalf("with a live token: session %v, called %v, err %v", got, called, err)
	}
	for name, md := range map[string]metadata.MD{
		"no metadata":  nil,
		"other scheme": metadata.Pairs("authorization", "Basic "+token),
		"bad token":    metadata.Pairs("authorization", "Bearer nope"),
		"two values":   metadata.Pairs("authorization", "Bearer "+token, "authorization", "Bearer "+token),
	} {
		if _, called, err := call(ctx, icpt, "/app.v1.App/Get", md); called || status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s: called %v, err %v; want Unauthenticated", name, called, err)
		}
	}
	for _, public := range []string{"/app.v1.App/Login", "/grpc.health.v1.Health/Check"} {
		if got, called, err := call(ctx, icpt, public, nil); err != nil || !called || got != nil {
			t.Errorf("public %s: called %v, err %v", public, called, err)
		}
	}

	// Custom key and scheme.
	custom := client.UnaryServerInterceptor(c, client.WithMetadataKey("X-Session"), client.WithScheme(""))
	if _, called, err := call(ctx, custom, "/app.v1.App/Get", metadata.Pairs("x-session", token)); err != nil || !called {
		t.Fatalf("custom key: called %v, err %v", called, err)
	}

	// Fail closed: sessiond gone means Unavailable, never the handler.
	sd.Stop()
	if _, called, err := call(ctx, icpt, "/app.v1.App/Get", metadata.Pairs("authorization", "Bearer "+token)); called || status.Code(err) != codes.Unavailable {
		t.Fatalf("sessiond down: called %v, err %v; want Unavailable", called, err)
	}
}

func TestClientInterceptorForwardsToken(t *testing.T) {
	t.Parallel()
	sd := sessiondtest.Start(t)
	c := client.New(sd.Conn)
	ctx := ctxT(t)
	token, _, err := c.Create(ctx, client.NewSession{UserID: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	var forwarded []string
	_, err = client.UnaryServerInterceptor(c)(metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer "+token)), nil,
		&grpc.UnaryServerInfo{FullMethod: "/a.A/B"},
		func(ctx context.Context, _ any) (any, error) {
			// The handler calls a downstream service.
			err := client.UnaryClientInterceptor()(ctx, "/down.D/E", nil, nil, nil,
				func(ctx context.Context, _ string, _, _ any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
					md, _ := metadata.FromOutgoingContext(ctx)
					forwarded = md.Get("authorization")
					return nil
				})
			return nil, err
		})
	if err != nil || len(forwarded) != 1 || forwarded[0] != "Bearer "+token {
		t.Fatalf("forwarded %v, err %v; want the caller's bearer token", forwarded, err)
	}
	// A call that sets its own credential keeps it.
	ctx2 := metadata.AppendToOutgoingContext(client.ContextWithToken(ctx, token), "authorization", "Bearer service-token")
	_ = client.UnaryClientInterceptor()(ctx2, "/down.D/E", nil, nil, nil,
		func(ctx context.Context, _ string, _, _ any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
			md, _ := metadata.FromOutgoingContext(ctx)
			forwarded = md.Get("authorization")
			return nil
		})
	if len(forwarded) != 1 || forwarded[0] != "Bearer service-token" {
		t.Fatalf("forwarded %v over the call's own credential", forwarded)
	}
}

func TestHTTPMiddleware(t *testing.T) {
	t.Parallel()
	sd := sessiondtest.Start(t)
	c := client.New(sd.Conn)
	ctx := ctxT(t)
	token, s, err := c.Create(ctx, client.NewSession{UserID: "carol"})
	if err != nil {
		t.Fatal(err)
	}
	h := client.HTTPMiddleware(c, client.WithCookieName("sid"))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := client.SessionFromContext(r.Context())
		if !ok {
			t.Error("handler ran without a session")
		}
		_, _ = w.Write([]byte(got.GetUserId()))
	}))
	do := func(setup func(*http.Request)) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, "/me", nil).WithContext(ctx)
		setup(r)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	if w := do(func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }); w.Code != 200 || w.Body.String() != "carol" {
		t.Fatalf("bearer: %d %q", w.Code, w.Body)
	}
	if w := do(func(r *http.Request) { r.AddCookie(&http.Cookie{Name: "sid", Value: token}) }); w.Code != 200 {
		t.Fatalf("cookie: %d %q", w.Code, w.Body)
	}
	for name, setup := range map[string]func(*http.Request){
		"nothing":      func(*http.Request) {},
		"wrong cookie": func(r *http.Request) { r.AddCookie(&http.Cookie{Name: "session", Value: token}) },
		"bad token":    func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+testutil.Tampered(token)) },
	} {
		w := do(setup)
		if w.Code != http.StatusUnauthorized || w.Header().Get("WWW-Authenticate") != `Bearer realm="sessiond"` {
			t.Errorf("%s: %d, WWW-Authenticate %q", name, w.Code, w.Header().Get("WWW-Authenticate"))
		}
		if strings.Contains(w.Body.String(), "carol") {
			t.Errorf("%s: the handler ran", name)
		}
	}
	if _, err := c.Revoke(ctx, token); err != nil {
		t.Fatal(err)
	}
	if w := do(func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }); w.Code != http.StatusUnauthorized {
		t.Fatalf("revoked %s: %d", s.GetSessionId(), w.Code)
	}
	sd.Stop()
	if w := do(func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }); w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Fatalf("sessiond down: %d, Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}
}

// TestCacheWarmMakesNoCalls and stays safe: revocation evicts, and a broken
// stream turns the cache off so nothing is answered from it.
func TestCache(t *testing.T) {
	t.Parallel()
	sd := sessiondtest.Start(t)
	conn, calls := countingConn(t, sd.Addr)
	cached := client.New(conn, client.WithCache(100, time.Minute), client.WithReconnectBackoff(10*time.Millisecond, 50*time.Millisecond))
	t.Cleanup(func() { _ = cached.Close() })
	plain := client.New(sd.Conn)
	ctx := ctxT(t)
	waitFor(t, "the cache to go live", func() bool { return cached.CacheStats().Live })

	token, _, err := plain.Create(ctx, client.NewSession{UserID: "dave"})
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		if _, err := cached.Validate(ctx, token); err != nil {
			t.Fatal(err)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("100 validations of one token made %d calls to sessiond, want 1", n)
	}
	// Revoked through another client: evicted by the event.
	if _, err := plain.Revoke(ctx, token); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the revoked token to be rejected", func() bool {
		_, err := cached.Validate(ctx, token)
		return status.Code(err) == codes.Unauthenticated
	})

	// A fresh session is cached again; then sessiond goes away: the stream
	// breaks, the cache is dropped, and the token no longer validates.
	token2, _, err := plain.Create(ctx, client.NewSession{UserID: "dave"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cached.Validate(ctx, token2); err != nil {
		t.Fatal(err)
	}
	sd.Stop()
	waitFor(t, "the cache to go off", func() bool { return !cached.CacheStats().Live })
	if _, err := cached.Validate(ctx, token2); status.Code(err) != codes.Unavailable {
		t.Fatalf("with sessiond down a cached token gave %v, want Unavailable", err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
