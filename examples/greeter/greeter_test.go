package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sessiond/sessiond/client"
	"github.com/sessiond/sessiond/client/clienttest"
	"github.com/sessiond/sessiond/internal/testutil"
)

// sayHello calls greeter.v1.Greeter/SayHello as a client without generated
// code does: conn.Invoke, with the token in the metadata.
func sayHello(ctx context.Context, conn grpc.ClientConnInterface, token string) (string, error) {
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	out := new(wrapperspb.StringValue)
	if err := conn.Invoke(ctx, sayHelloMethod, wrapperspb.String("Mallory"), out); err != nil {
		return "", err
	}
	return out.GetValue(), nil
}

// env is the greeter in front of a real sessiond (clienttest: in process, on
// its embedded store).
type env struct {
	sessiond  *clienttest.Sessiond
	sessions  *client.Client // the greeter's client
	authority *client.Client // another client of sessiond: the login backend's
	conn      *grpc.ClientConn
}

func newEnv(t *testing.T, cache bool) *env {
	t.Helper()
	d := clienttest.Start(t)
	var opts []client.Option
	if cache {
		opts = append(opts, client.WithCache(10000, 30*time.Second), client.WithReconnectBackoff(10*time.Millisecond, 100*time.Millisecond))
	}
	e := &env{sessiond: d, sessions: client.New(d.Conn(), opts...), authority: d.Client()}
	t.Cleanup(func() { _ = e.sessions.Close() })
	e.conn = testutil.Serve(t, newServer(e.sessions))
	if cache { // so that the calls below go through the cache
		eventually(t, "the cache is live", func() bool { return e.sessions.CacheStats().Live })
	}
	return e
}

func (e *env) login(t *testing.T, userID string) (token, sessionID string) {
	t.Helper()
	token, s := e.sessiond.CreateSession(t, userID)
	return token, s.GetSessionId()
}

// eventually polls cond for at most 2s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 2s: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var (
	callCtx  = testutil.CallCtx
	wantCode = testutil.WantCode
)

func TestSayHello(t *testing.T) {
	t.Parallel()
	for _, cache := range []bool{false, true} {
		name := map[bool]string{false: "no cache", true: "cache"}[cache]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, cache)
			ctx := callCtx(t)
			_, err := sayHello(ctx, e.conn, "")
			wantCode(t, err, codes.Unauthenticated, "without a token")
			_, err = sayHello(ctx, e.conn, "not-a-token")
			wantCode(t, err, codes.Unauthenticated, "with a made-up token")
			other, _ := e.login(t, "user-7")
			md := metadata.AppendToOutgoingContext(ctx, "authorization", "Basic "+other)
			wantCode(t, e.conn.Invoke(md, sayHelloMethod, wrapperspb.String(""), new(wrapperspb.StringValue)), codes.Unauthenticated, "with another scheme")

			token, id := e.login(t, "user-42")
			for range 3 { // with the cache, the first validates and the others hit it
				got, err := sayHello(ctx, e.conn, token)
				if err != nil || got != "Hello, user-42!" {
					t.Fatalf("SayHello = %q, %v; want Hello, user-42!", got, err)
				}
			}
			if got, err := sayHello(ctx, e.conn, other); err != nil || got != "Hello, user-7!" {
				t.Fatalf("SayHello as user-7 = %q, %v", got, err)
			}

			// Revoked through another client of sessiond, as a logout on
			// the login backend would.
			if revoked, err := e.authority.RevokeByID(ctx, id); err != nil || !revoked {
				t.Fatalf("RevokeByID = %v, %v", revoked, err)
			}
			if !cache {
				_, err := sayHello(ctx, e.conn, token)
				wantCode(t, err, codes.Unauthenticated, "right after the revocation")
			} else {
				// The revocation stream evicts it, typically within milliseconds.
				eventually(t, "the revoked session is refused", func() bool {
					_, err := sayHello(ctx, e.conn, token)
					return status.Code(err) == codes.Unauthenticated
				})
			}
			if got, err := sayHello(ctx, e.conn, other); err != nil || got != "Hello, user-7!" {
				t.Fatalf("SayHello as user-7 after another user's logout = %q, %v", got, err)
			}
		})
	}
}

func TestHealthNeedsNoToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	ctx := callCtx(t)
	health := healthpb.NewHealthClient(e.conn)
	for _, svc := range []string{"", serviceName} {
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("Check(%q) = %v, %v; want SERVING", svc, resp, err)
		}
	}
	// A stream: the stream interceptor leaves the health service public too.
	stream, err := health.Watch(ctx, &healthpb.HealthCheckRequest{Service: serviceName})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := stream.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch = %v, %v; want SERVING", resp, err)
	}
}

// With sessiond down, nothing is let through, cached sessions included: the
// caller gets Unavailable (retry), never Unauthenticated (logged out).
func TestSessiondDown(t *testing.T) {
	t.Parallel()
	for _, cache := range []bool{false, true} {
		name := map[bool]string{false: "no cache", true: "cache"}[cache]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, cache)
			ctx := callCtx(t)
			token, _ := e.login(t, "user-42")
			if _, err := sayHello(ctx, e.conn, token); err != nil {
				t.Fatal(err)
			}
			e.sessiond.Stop()
			var last error
			eventually(t, "SayHello fails with Unavailable", func() bool {
				_, last = sayHello(ctx, e.conn, token)
				return status.Code(last) == codes.Unavailable
			})
			if strings.Contains(last.Error(), token) {
				t.Fatal("the error holds the token")
			}
			if cache && e.sessions.CacheStats().Live {
				t.Fatal("the cache is still in use with its revocation stream down")
			}
			_, err := sayHello(ctx, e.conn, "")
			wantCode(t, err, codes.Unauthenticated, "without a token, sessiond down") // no need to ask sessiond
			// The greeter itself is alive.
			resp, err := healthpb.NewHealthClient(e.conn).Check(ctx, &healthpb.HealthCheckRequest{})
			if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Fatalf("health with sessiond down = %v, %v", resp, err)
			}
		})
	}
}
