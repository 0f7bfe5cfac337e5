package client_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/sessiond/sessiond/client"
	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/internal/sessiondtest"
	"github.com/sessiond/sessiond/internal/testutil"
	"github.com/sessiond/sessiond/server"
)

// limitedSessiond is a sessiond with cmd/sessiond's default failed-validation
// limits: 50/s (burst 200) per caller, 5/s (burst 20) per end user.
func limitedSessiond(t *testing.T) *sessiondtest.Sessiond {
	t.Helper()
	cfg := sessiondtest.Config(redistest.Start(t).Addr())
	cfg.Service = server.Config{
		FailedValidationLimit:          server.RateLimit{PerSecond: 50, Burst: 200},
		FailedValidationPerClientLimit: server.RateLimit{PerSecond: 5, Burst: 20},
	}
	return sessiondtest.Run(t, cfg)
}

// TestFloodLocksNobodyOut: one attacker floods revoked and unknown tokens
// far past the limits through a protected gRPC service, a protected HTTP
// service and ext_authz, while another user's valid token keeps validating
// through each: not one refusal. The attacker's failures are throttled
// (429 / ResourceExhausted); another end user's bad token is still told 401,
// not 429: the end user's address reaches sessiond.
func TestFloodLocksNobodyOut(t *testing.T) {
	t.Parallel()
	sd := limitedSessiond(t)
	c := client.New(sd.Conn)
	// Longer than the flood's 20s, so that the checks after it have time
	// on a loaded machine.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	good, _, err := c.Create(ctx, client.NewSession{UserID: "victim"})
	if err != nil {
		t.Fatal(err)
	}
	revoked, _, err := c.Create(ctx, client.NewSession{UserID: "attacker"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Revoke(ctx, revoked); err != nil {
		t.Fatal(err)
	}
	unknown := testutil.Tampered(revoked) // well formed, no session's

	// The three ways in, each with an attacker and a victim end user
	// (X-Forwarded-For, from a proxy the services trust).
	shop, _ := serveOrders(t,
		grpc.ChainUnaryInterceptor(client.UnaryServerInterceptor(c, client.WithClientIPHeader("x-forwarded-for"))))
	grpcCall := func(ip, tok string) codes.Code {
		ctx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok, "x-forwarded-for", ip)
		_, err := listOrders(ctx, shop)
		return status.Code(err)
	}
	web := client.HTTPMiddleware(c, client.WithClientIPHeader("X-Forwarded-For"))(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	httpCall := func(ip, tok string) int {
		r := httptest.NewRequest(http.MethodGet, "/me", nil).WithContext(ctx)
		r.Header.Set("Authorization", "Bearer "+tok)
		r.Header.Set("X-Forwarded-For", ip)
		w := httptest.NewRecorder()
		web.ServeHTTP(w, r)
		return w.Code
	}
	authz := authv3.NewAuthorizationClient(sd.Conn)
	checkCall := func(ip, tok string) int {
		req := testutil.CheckRequest(map[string]string{"authorization": "Bearer " + tok})
		req.Attributes.Source = &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}}}}}
		resp, err := authz.Check(ctx, req)
		if err != nil {
			return 0
		}
		if resp.GetOkResponse() != nil {
			return http.StatusOK
		}
		return int(resp.GetDeniedResponse().GetStatus().GetCode())
	}

	const attacker, victim, bystander = "198.51.100.66", "203.0.113.5", "203.0.113.6"
	var (
		mu                sync.Mutex
		refused, throttle int
		wg                sync.WaitGroup
	)
	deadline := time.Now().Add(20 * time.Second)
	for _, flood := range []func(int){
		func(i int) {
			if code := grpcCall(attacker, []string{revoked, unknown}[i%2]); code == codes.ResourceExhausted {
				mu.Lock()
				throttle++
				mu.Unlock()
			}
		},
		func(i int) {
			if code := httpCall(attacker, []string{revoked, unknown}[i%2]); code == http.StatusTooManyRequests {
				mu.Lock()
				throttle++
				mu.Unlock()
			}
		},
		func(i int) {
			if code := checkCall(attacker, []string{revoked, unknown}[i%2]); code == http.StatusTooManyRequests {
				mu.Lock()
				throttle++
				mu.Unlock()
			}
		},
	} {
		wg.Go(func() {
			for i := 0; i < 400 && time.Now().Before(deadline); i++ {
				flood(i)
			}
		})
	}
	wg.Go(func() {
		for i := 0; i < 150 && time.Now().Before(deadline); i++ {
			ok := true
			switch i % 3 {
			case 0:
				ok = grpcCall(victim, good) == codes.OK
			case 1:
				ok = httpCall(victim, good) == http.StatusOK
			case 2:
				ok = checkCall(victim, good) == http.StatusOK
			}
			if !ok {
				mu.Lock()
				refused++
				mu.Unlock()
			}
		}
	})
	wg.Wait()
	if refused != 0 {
		t.Errorf("the victim's valid token was refused %d times during the flood", refused)
	}
	if throttle == 0 {
		t.Error("the flood was never throttled: are the limits on?")
	}
	// Another end user's expired token: 401, not 429, on every way in.
	if code := grpcCall(bystander, unknown); code != codes.Unauthenticated {
		t.Errorf("a bystander's bad token through the gRPC service: %v, want Unauthenticated", code)
	}
	if code := httpCall(bystander, unknown); code != http.StatusUnauthorized {
		t.Errorf("a bystander's bad token through the HTTP service: %d, want 401", code)
	}
	if code := checkCall(bystander, unknown); code != http.StatusUnauthorized {
		t.Errorf("a bystander's bad token through ext_authz: %d, want 401", code)
	}
	t.Logf("flood: %d throttled answers to the attacker, %d refusals of the victim", throttle, refused)
}

// TestThrottledAnswersCarryTheDelay: the middleware's 429 says when to come
// back, from sessiond's RetryInfo, and WithErrorHandler writes its own body.
func TestThrottledAnswersCarryTheDelay(t *testing.T) {
	t.Parallel()
	cfg := sessiondtest.Config(redistest.Start(t).Addr())
	cfg.Service = server.Config{FailedValidationPerClientLimit: server.RateLimit{PerSecond: 0.1, Burst: 1}}
	sd := sessiondtest.Run(t, cfg)
	c := client.New(sd.Conn)
	var handled []error
	h := client.HTTPMiddleware(c, client.WithErrorHandler(func(w http.ResponseWriter, _ *http.Request, err error) {
		handled = append(handled, err)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(map[codes.Code]int{codes.Unauthenticated: 401, codes.ResourceExhausted: 429}[status.Code(err)])
		fmt.Fprintf(w, `{"error":%q}`, status.Code(err).String())
	}))(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	do := func() *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, "/me", nil).WithContext(ctxT(t))
		r.Header.Set("Authorization", "Bearer "+strconv.Itoa(1e9)+"garbage-token-that-is-not-live")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	if w := do(); w.Code != 401 || w.Body.String() != `{"error":"Unauthenticated"}` {
		t.Fatalf("first failure: %d %s", w.Code, w.Body)
	}
	w := do()
	if w.Code != 429 || w.Body.String() != `{"error":"ResourceExhausted"}` {
		t.Fatalf("second failure: %d %s", w.Code, w.Body)
	}
	// The bucket refills at 0.1/s: sessiond asks for 10s, not the old fixed 1.
	if got := w.Header().Get("Retry-After"); got != "10" {
		t.Errorf("Retry-After %q, want 10 (from sessiond's RetryInfo)", got)
	}
	if len(handled) != 2 {
		t.Errorf("the error handler ran %d times, want 2", len(handled))
	}
}

// blackHole accepts connections and never answers, as a sessiond frozen by
// SIGSTOP does.
func blackHole(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = lis.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return lis.Addr().String()
}

// TestFrozenSessiondTimesOut: with a sessiond that accepts and never
// answers, the middleware answers 503 and the interceptors Unavailable after
// the validation timeout, not when the caller gives up; a caller's own
// shorter deadline wins.
func TestFrozenSessiondTimesOut(t *testing.T) {
	t.Parallel()
	// Each case gets a connection of its own: gRPC gives up connecting to
	// the black hole a second after the first call (DialOptions'
	// MinConnectTimeout) and then fails calls at once, which on a loaded
	// machine may come before a later case's call.
	frozen := func() *client.Client {
		conn, err := grpc.NewClient(blackHole(t), append(client.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return client.New(conn)
	}
	const timeout = 300 * time.Millisecond
	web := client.HTTPMiddleware(frozen(), client.WithValidationTimeout(timeout))(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	start := time.Now()
	r := httptest.NewRequest(http.MethodGet, "/me", nil)
	r.Header.Set("Authorization", "Bearer some-token")
	w := httptest.NewRecorder()
	web.ServeHTTP(w, r)
	if took := time.Since(start); w.Code != http.StatusServiceUnavailable || took < timeout || took > timeout+2*time.Second {
		t.Fatalf("HTTP with sessiond frozen: %d after %v, want 503 after the %v timeout", w.Code, took, timeout)
	}

	shop, _ := serveOrders(t, grpc.ChainUnaryInterceptor(client.UnaryServerInterceptor(frozen(), client.WithValidationTimeout(timeout))))
	md := metadata.Pairs("authorization", "Bearer some-token")
	start = time.Now()
	_, err := listOrders(metadata.NewOutgoingContext(context.Background(), md), shop)
	if took := time.Since(start); status.Code(err) != codes.Unavailable || took < timeout || took > timeout+2*time.Second {
		t.Fatalf("gRPC with sessiond frozen: %v after %v, want Unavailable after the %v timeout", err, took, timeout)
	}
	// The caller's 100ms deadline comes first: DeadlineExceeded, at 100ms.
	shop, _ = serveOrders(t, grpc.ChainUnaryInterceptor(client.UnaryServerInterceptor(frozen(), client.WithValidationTimeout(timeout))))
	ctx, cancel := context.WithTimeout(metadata.NewOutgoingContext(context.Background(), md), 100*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err = listOrders(ctx, shop)
	if took := time.Since(start); status.Code(err) != codes.DeadlineExceeded || took > timeout {
		t.Fatalf("with the caller's shorter deadline: %v after %v, want DeadlineExceeded before %v", err, took, timeout)
	}
}

// TestBackSoonAfterAnOutage: after a 20s outage of sessiond, a service
// dialled with DialOptions answers 200 again within 3s of sessiond's return:
// the backoff's cap (1s, +20% jitter) and a margin for a loaded machine.
// gRPC's default backoff (1s, growing 1.6 times an attempt) would be
// waiting about 10s between attempts by then.
func TestBackSoonAfterAnOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("a 20s outage")
	}
	t.Parallel()
	rs := redistest.Start(t)
	cfg := sessiondtest.Config(rs.Addr())
	first := sessiondtest.Run(t, cfg)
	addr := first.Addr
	conn, err := grpc.NewClient(addr, append(client.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c := client.New(conn)
	token, _, err := c.Create(ctxT(t), client.NewSession{UserID: "u"})
	if err != nil {
		t.Fatal(err)
	}
	web := httptest.NewServer(client.HTTPMiddleware(c, client.WithValidationTimeout(500*time.Millisecond))(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})))
	t.Cleanup(web.Close)
	get := func() int {
		req, _ := http.NewRequest(http.MethodGet, web.URL, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(); code != http.StatusOK {
		t.Fatalf("before the outage: %d", code)
	}
	first.Stop()
	outage := time.Now().Add(20 * time.Second)
	for time.Now().Before(outage) { // the service keeps being asked, as in production
		if code := get(); code != http.StatusServiceUnavailable {
			t.Fatalf("during the outage: %d, want 503", code)
		}
		time.Sleep(200 * time.Millisecond)
	}
	cfg.Listen = addr
	back, err := sessiondtest.Launch(cfg) // the same address: the first listener is closed
	if err != nil {
		t.Fatalf("restarting sessiond on %s: %v", addr, err)
	}
	t.Cleanup(func() { back.Stop(); _ = back.Conn.Close() })
	returned := time.Now()
	for get() != http.StatusOK {
		if time.Since(returned) > 5*time.Second {
			t.Fatalf("still not 200 %v after sessiond's return", time.Since(returned))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if took := time.Since(returned); took > 3*time.Second {
		t.Errorf("200 again %v after sessiond's return, want within 3s", took)
	} else {
		t.Logf("200 again %v after sessiond's return", took.Round(time.Millisecond))
	}
}

// TestStreamEndsWithTheSession: a long stream opened with a session ends,
// Unauthenticated, within 100ms of the session's revocation, when the client
// caches (its revocation stream tells); WithStreamRevocation(false) keeps
// it open.
func TestStreamEndsWithTheSession(t *testing.T) {
	t.Parallel()
	sd := sessiondtest.Start(t)
	cached := client.New(sd.Conn, client.WithCache(100, time.Minute))
	t.Cleanup(func() { _ = cached.Close() })
	waitFor(t, "the cache to go live", func() bool { return cached.CacheStats().Live })
	for _, endStreams := range []bool{true, false} {
		shop, _ := serveOrders(t, grpc.ChainStreamInterceptor(client.StreamServerInterceptor(cached, client.WithStreamRevocation(endStreams))))
		token, _, err := cached.Create(ctxT(t), client.NewSession{UserID: "streamer"})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Bearer "+token))
		stream, err := watchOrders(ctx, shop)
		if err != nil {
			t.Fatal(err)
		}
		// The first tick: the stream has passed the interceptor (on a loaded
		// machine that may take longer than any fixed sleep).
		if err := stream.RecvMsg(new(wrapperspb.StringValue)); err != nil {
			t.Fatalf("opening the stream: %v", err)
		}
		recv := make(chan error, 1)
		go func() {
			for {
				if err := stream.RecvMsg(new(wrapperspb.StringValue)); err != nil {
					recv <- err
					return
				}
			}
		}()
		revokedAt := time.Now()
		if _, err := client.New(sd.Conn).Revoke(ctxT(t), token); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-recv:
			took := time.Since(revokedAt)
			if !endStreams {
				t.Fatalf("WithStreamRevocation(false): the stream ended: %v", err)
			}
			if status.Code(err) != codes.Unauthenticated || took > 100*time.Millisecond {
				t.Errorf("the stream ended with %v %v after the revocation, want Unauthenticated within 100ms", err, took)
			}
			t.Logf("the stream ended %v after the revocation", took.Round(time.Microsecond))
		case <-time.After(500 * time.Millisecond):
			if endStreams {
				t.Fatal("the stream outlived its session by 500ms")
			}
		}
		cancel()
	}
}

// TestOptionsDoWhatTheySay: WithPublicMethods (in the policy file's syntax)
// holds for the interceptors and for AuthFunc alike, the health service
// stays public, and WithPublicPaths lets HTTP requests through without a
// session.
func TestOptionsDoWhatTheySay(t *testing.T) {
	t.Parallel()
	sd := sessiondtest.Start(t)
	c := client.New(sd.Conn)
	ctx := ctxT(t)
	icpt := client.UnaryServerInterceptor(c, client.WithPublicMethods("shop.v1.Auth/*", "/shop.v1.Orders/Count"))
	for method, public := range map[string]bool{
		"/grpc.health.v1.Health/Check": true,
		"/shop.v1.Auth/Login":          true,
		"/shop.v1.Orders/Count":        true,
		"/shop.v1.Orders/List":         false,
	} {
		_, called, err := call(ctx, icpt, method, nil)
		if called != public {
			t.Errorf("interceptor: %s without a session: called %v (%v), want public %v", method, called, err, public)
		}
	}
	authFunc := c.AuthFunc(client.WithPublicMethods("shop.v1.Auth/*"))
	shop, _ := serveOrders(t, grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		ctx, err := authFunc(ctx)
		if err != nil {
			return nil, err
		}
		return h(ctx, req)
	}))
	if _, err := listOrders(ctx, shop); status.Code(err) != codes.Unauthenticated {
		t.Errorf("AuthFunc on a protected method without a session: %v, want Unauthenticated", err)
	}
	publicShop, _ := serveOrders(t, grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		ctx, err := c.AuthFunc(client.WithPublicMethods("shop.v1.Orders/*"))(ctx)
		if err != nil {
			return nil, err
		}
		return h(ctx, req)
	}))
	if got, err := listOrders(ctx, publicShop); err != nil || got != "orders of " {
		t.Errorf("AuthFunc on a public method without a session: %q, %v; want the handler to run", got, err)
	}

	web := client.HTTPMiddleware(c, client.WithPublicPaths("/healthz", "/static/*"))(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	for path, want := range map[string]int{"/healthz": 200, "/static/app.css": 200, "/healthz/x": 401, "/me": 401} {
		w := httptest.NewRecorder()
		web.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil).WithContext(ctx))
		if w.Code != want {
			t.Errorf("HTTP %s without a session: %d, want %d", path, w.Code, want)
		}
	}
}
