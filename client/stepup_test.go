package client_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sessiond/sessiond/client"
	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/internal/sessiondtest"
	"github.com/sessiond/sessiond/internal/testutil"
)

// recordingConn dials addr with an interceptor that records the
// ValidateSession requests.
func recordingConn(t *testing.T, addr string) (*grpc.ClientConn, func() []*sessionauthv1.ValidateSessionRequest) {
	t.Helper()
	var (
		mu   sync.Mutex
		reqs []*sessionauthv1.ValidateSessionRequest
	)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			if r, ok := req.(*sessionauthv1.ValidateSessionRequest); ok {
				mu.Lock()
				reqs = append(reqs, proto.Clone(r).(*sessionauthv1.ValidateSessionRequest))
				mu.Unlock()
			}
			return invoker(ctx, method, req, reply, cc, opts...)
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn, func() []*sessionauthv1.ValidateSessionRequest {
		mu.Lock()
		defer mu.Unlock()
		out := reqs
		reqs = nil
		return out
	}
}

// clients returns a plain and a caching client of sd, each over a
// connection that records its ValidateSession requests.
func clients(t *testing.T, sd *sessiondtest.Sessiond) map[string]struct {
	c    *client.Client
	reqs func() []*sessionauthv1.ValidateSessionRequest
} {
	t.Helper()
	out := map[string]struct {
		c    *client.Client
		reqs func() []*sessionauthv1.ValidateSessionRequest
	}{}
	for _, name := range []string{"plain", "cached"} {
		conn, reqs := recordingConn(t, sd.Addr)
		var opts []client.Option
		if name == "cached" {
			opts = append(opts, client.WithCache(100, time.Minute))
		}
		c := client.New(conn, opts...)
		t.Cleanup(func() { _ = c.Close() })
		if name == "cached" {
			waitFor(t, "the cache to go live", func() bool { return c.CacheStats().Live })
		}
		out[name] = struct {
			c    *client.Client
			reqs func() []*sessionauthv1.ValidateSessionRequest
		}{c, reqs}
	}
	return out
}

// denial is what a step-up denial says, to compare two of them.
type denial struct {
	Code     codes.Code
	Reason   string
	Metadata map[string]string
}

func denialOf(err error) denial {
	d := denial{Code: status.Code(err)}
	if info, ok := client.StepUpDenial(err); ok {
		d.Reason, d.Metadata = info.GetReason(), info.GetMetadata()
	}
	return d
}

// TestValidateRequirement: Validate with a requirement gives sessiond's
// answer, whether sessiond checks it (a plain client: the requirement is
// sent) or the client checks a cached session itself (a caching client: a
// miss asks sessiond plainly and caches the session, a hit asks nothing).
func TestValidateRequirement(t *testing.T) {
	t.Parallel()
	sd := sessiondtest.Start(t)
	cs := clients(t, sd)
	ctx := ctxT(t)
	tok1, _ := createSession(t, cs["plain"].c, "aal1")
	tok2, _, err := cs["plain"].c.Create(ctx, client.NewSession{UserID: "aal2", AuthMethods: []string{"password", "totp"}, AssuranceLevel: 2})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		token  string
		level  int
		age    time.Duration
		reason string // "" for valid
	}{
		{"no requirement", tok1, 0, 0, ""},
		{"level 1 of level 1", tok1, 1, 0, ""},
		{"level 2 of level 1", tok1, 2, 0, client.ReasonAssuranceLevelTooLow},
		{"level 3 of level 2", tok2, 3, 0, client.ReasonAssuranceLevelTooLow},
		{"level 2 of level 2", tok2, 2, 0, ""},
		{"an hour's age", tok1, 0, time.Hour, ""},
		{"a microsecond's age", tok2, 0, time.Microsecond, client.ReasonReauthenticationRequired},
		{"both: the level first", tok1, 2, time.Microsecond, client.ReasonAssuranceLevelTooLow},
		{"both met", tok2, 2, time.Hour, ""},
	} {
		var opts []client.ValidateOption
		if tc.level != 0 {
			opts = append(opts, client.WithMinAssuranceLevel(tc.level))
		}
		if tc.age != 0 {
			opts = append(opts, client.WithMaxAuthAge(tc.age))
		}
		answers := map[string]denial{}
		for name, cl := range cs {
			cl.reqs()
			// Twice: for the caching client, a miss then a hit.
			for i := range 2 {
				s, err := cl.c.Validate(ctx, tc.token, opts...)
				d := denialOf(err)
				if tc.reason == "" && (err != nil || s == nil) {
					t.Errorf("%s, %s client: %v, want valid", tc.name, name, err)
				}
				if tc.reason != "" && (d.Code != codes.PermissionDenied || d.Reason != tc.reason || s != nil) {
					t.Errorf("%s, %s client: %v (%+v), want PermissionDenied %s", tc.name, name, err, d, tc.reason)
				}
				if i == 0 {
					answers[name] = d
				} else if !equalDenial(d, answers[name]) {
					t.Errorf("%s, %s client: the second answer %+v differs from the first %+v", tc.name, name, d, answers[name])
				}
			}
			reqs := cl.reqs()
			switch name {
			case "plain": // sessiond checks: the requirement is sent
				for _, r := range reqs {
					if r.GetMinAssuranceLevel() != int32(tc.level) || r.GetMaxAuthAge().AsDuration() != tc.age {
						t.Errorf("%s, plain client: sent level %d, age %v", tc.name, r.GetMinAssuranceLevel(), r.GetMaxAuthAge().AsDuration())
					}
				}
			case "cached": // a miss asks plainly, then the cache answers
				for _, r := range reqs {
					if r.GetMinAssuranceLevel() != 0 || r.GetMaxAuthAge() != nil {
						t.Errorf("%s, caching client: sent level %d, age %v; want a plain validation", tc.name, r.GetMinAssuranceLevel(), r.GetMaxAuthAge().AsDuration())
					}
				}
			}
		}
		if !equalDenial(answers["plain"], answers["cached"]) {
			t.Errorf("%s: sessiond answered %+v, the caching client %+v", tc.name, answers["plain"], answers["cached"])
		}
	}
	// Once the session is cached, a denial costs no call.
	cached := cs["cached"]
	waitFor(t, "a denial answered from the cache", func() bool {
		cached.reqs()
		_, err := cached.c.Validate(ctx, tok1, client.WithMinAssuranceLevel(2))
		return denialOf(err).Reason == client.ReasonAssuranceLevelTooLow && len(cached.reqs()) == 0
	})
	// A bad requirement is refused before asking sessiond.
	for name, cl := range cs {
		cl.reqs()
		for _, opt := range []client.ValidateOption{client.WithMinAssuranceLevel(4), client.WithMinAssuranceLevel(-1), client.WithMaxAuthAge(-time.Second)} {
			if _, err := cl.c.Validate(ctx, tok1, opt); status.Code(err) != codes.InvalidArgument {
				t.Errorf("%s client, a bad requirement: %v, want InvalidArgument", name, err)
			}
		}
		if n := len(cl.reqs()); n != 0 {
			t.Errorf("%s client: a bad requirement made %d calls", name, n)
		}
	}
}

// equalDenial compares two denials: the code, the reason and the ErrorInfo
// metadata (not the message, whose age is rounded to the second).
func equalDenial(a, b denial) bool {
	if a.Code != b.Code || a.Reason != b.Reason || len(a.Metadata) != len(b.Metadata) {
		return false
	}
	for k, v := range a.Metadata {
		if b.Metadata[k] != v {
			return false
		}
	}
	return true
}

// openStream opens shop.v1.Orders/Watch with token, and returns a channel
// that gets the error the stream ends with, and a count of the ticks
// received so far.
func openStream(t *testing.T, shop *grpc.ClientConn, token string) (<-chan error, func() int64) {
	t.Helper()
	ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token))
	t.Cleanup(cancel)
	stream, err := watchOrders(ctx, shop)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		ticks int64
	)
	ended := make(chan error, 1)
	go func() {
		for {
			if err := stream.RecvMsg(new(wrapperspb.StringValue)); err != nil {
				ended <- err
				return
			}
			mu.Lock()
			ticks++
			mu.Unlock()
		}
	}()
	return ended, func() int64 {
		mu.Lock()
		defer mu.Unlock()
		return ticks
	}
}

// waitTicks waits until a stream has received n more ticks than now, and
// fails if it ends first.
func waitTicks(t *testing.T, what string, ended <-chan error, ticks func() int64, n int64) {
	t.Helper()
	want := ticks() + n
	deadline := time.Now().Add(5 * time.Second)
	for ticks() < want {
		select {
		case err := <-ended:
			t.Fatalf("%s: the stream ended: %v", what, err)
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %d ticks within 5s", what, n)
		}
	}
}

// TestStepUpGRPC: a requirement on one method only (a second interceptor
// behind a selector) denies a weak session with sessiond's ErrorInfo, over
// the wire, while the other methods take it; after StepUp the new token
// passes. A requirement on a stream is checked when it opens. A bad
// requirement fails every call with Internal.
func TestStepUpGRPC(t *testing.T) {
	t.Parallel()
	sd := sessiondtest.Start(t)
	for name, cl := range clients(t, sd) {
		c := cl.c
		stepUpList := selector.MatchFunc(func(_ context.Context, m interceptors.CallMeta) bool {
			return m.FullMethod() == "/shop.v1.Orders/List"
		})
		shop, _ := serveOrders(t,
			grpc.ChainUnaryInterceptor(
				client.UnaryServerInterceptor(c),
				selector.UnaryServerInterceptor(client.UnaryServerInterceptor(c, client.WithMinAssuranceLevel(2)), stepUpList),
			),
			grpc.ChainStreamInterceptor(client.StreamServerInterceptor(c)),
		)
		ctx := ctxT(t)
		token, _, err := c.Create(ctx, client.NewSession{UserID: "eve", AuthMethods: []string{"password"}})
		if err != nil {
			t.Fatal(err)
		}
		with := func(tok string) context.Context {
			return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
		}
		_, err = listOrders(with(token), shop)
		info, ok := client.StepUpDenial(err)
		if status.Code(err) != codes.PermissionDenied || !ok || info.GetReason() != client.ReasonAssuranceLevelTooLow ||
			info.GetMetadata()["required_assurance_level"] != "2" || info.GetMetadata()["assurance_level"] != "1" {
			t.Fatalf("%s: a level-1 session on the level-2 method: %v (%v)", name, err, info)
		}
		ended, ticks := openStream(t, shop, token)
		waitTicks(t, name+": a level-1 session on a method without requirement", ended, ticks, 2)

		newToken, _, err := c.StepUp(ctx, token, client.Reauthentication{Methods: []string{"totp"}, AssuranceLevel: 2})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := listOrders(with(newToken), shop); err != nil || got != "orders of eve" {
			t.Fatalf("%s: after StepUp: %q, %v", name, got, err)
		}
		if c.CacheStats().Enabled {
			// The stream opened with the rotated-away token ends with it.
			select {
			case err := <-ended:
				if status.Code(err) != codes.Unauthenticated {
					t.Errorf("%s: the stream of the stepped-up session ended with %v, want Unauthenticated", name, err)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("%s: the stream of the rotated-away session is still open", name)
			}
		}

		// A stream demanding a recent authentication: checked when it opens.
		recent, _ := serveOrders(t, grpc.ChainStreamInterceptor(client.StreamServerInterceptor(c, client.WithMaxAuthAge(time.Microsecond))))
		ended, _ = openStream(t, recent, newToken)
		select {
		case err := <-ended:
			if info, ok := client.StepUpDenial(err); !ok || info.GetReason() != client.ReasonReauthenticationRequired {
				t.Errorf("%s: a stream demanding a recent authentication: %v, want %s", name, err, client.ReasonReauthenticationRequired)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: a stream that demands a more recent authentication opened", name)
		}

		// A requirement sessiond would refuse: Internal, never the handler.
		for _, opt := range []client.GRPCAuthOption{client.WithMinAssuranceLevel(4), client.WithMaxAuthAge(-time.Minute)} {
			_, called, err := call(ctx, client.UnaryServerInterceptor(c, opt), "/app.v1.App/Get", metadata.Pairs("authorization", "Bearer "+newToken))
			if called || status.Code(err) != codes.Internal {
				t.Errorf("%s: a bad requirement: called %v, %v; want Internal", name, called, err)
			}
		}
		// AuthFunc takes the requirement too.
		if _, err := c.AuthFunc(client.WithMinAssuranceLevel(3))(metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer "+newToken))); status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s: AuthFunc with level 3 of a level-2 session: %v, want PermissionDenied", name, err)
		}
	}
}

// TestStepUpHTTP: a route that demands more is wrapped in a middleware of
// its own, inside the site's middleware or beside it: a weak session gets
// 403 with the reason and sessiond's JSON body there, and 200 elsewhere;
// WithErrorHandler gets the denial; after StepUp the route answers 200.
func TestStepUpHTTP(t *testing.T) {
	t.Parallel()
	sd := sessiondtest.Start(t)
	for name, cl := range clients(t, sd) {
		c := cl.c
		hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s, _ := client.SessionFromContext(r.Context())
			_, _ = w.Write([]byte("hello " + s.GetUserId()))
		})
		stepUp := []client.HTTPAuthOption{client.WithMinAssuranceLevel(2), client.WithMaxAuthAge(5 * time.Minute)}
		nested := http.NewServeMux()
		nested.Handle("/account", hello)
		nested.Handle("/account/delete", client.HTTPMiddleware(c, stepUp...)(hello))
		beside := http.NewServeMux()
		beside.Handle("/account", client.HTTPMiddleware(c)(hello))
		beside.Handle("/account/delete", client.HTTPMiddleware(c, stepUp...)(hello))
		var handled []error
		beside.Handle("/account/recent", client.HTTPMiddleware(c, client.WithMaxAuthAge(time.Microsecond),
			client.WithErrorHandler(func(w http.ResponseWriter, r *http.Request, err error) {
				handled = append(handled, err)
				if w.Header().Get(client.StepUpReasonHeader) == "" {
					t.Errorf("the error handler ran before %s was set", client.StepUpReasonHeader)
				}
				http.Redirect(w, r, "/login?step_up=1", http.StatusFound)
			}))(hello))
		beside.Handle("/broken", client.HTTPMiddleware(c, client.WithMinAssuranceLevel(9))(hello))
		sites := map[string]http.Handler{"nested": client.HTTPMiddleware(c)(nested), "beside": beside}

		ctx := ctxT(t)
		token, _, err := c.Create(ctx, client.NewSession{UserID: "mallory", AuthMethods: []string{"password"}})
		if err != nil {
			t.Fatal(err)
		}
		get := func(site http.Handler, path, tok string) *httptest.ResponseRecorder {
			r := httptest.NewRequest(http.MethodGet, path, nil).WithContext(ctx)
			r.Header.Set("Authorization", "Bearer "+tok)
			w := httptest.NewRecorder()
			site.ServeHTTP(w, r)
			return w
		}
		for site, h := range sites {
			if w := get(h, "/account", token); w.Code != http.StatusOK {
				t.Errorf("%s, %s: /account: %d %s", name, site, w.Code, w.Body)
			}
			w := get(h, "/account/delete", token)
			var body struct {
				Error, Message string
				Metadata       map[string]string
			}
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || w.Code != http.StatusForbidden ||
				w.Header().Get(client.StepUpReasonHeader) != client.ReasonAssuranceLevelTooLow || w.Header().Get("Content-Type") != "application/json" ||
				body.Error != client.ReasonAssuranceLevelTooLow || body.Metadata["required_assurance_level"] != "2" || body.Message == "" {
				t.Errorf("%s, %s: /account/delete at level 1: %d %v %s", name, site, w.Code, w.Header(), w.Body)
			}
		}
		if w := get(beside, "/account/recent", token); w.Code != http.StatusFound || len(handled) != 1 {
			t.Errorf("%s: /account/recent with an error handler: %d, handled %v", name, w.Code, handled)
		} else if info, ok := client.StepUpDenial(handled[0]); !ok || info.GetReason() != client.ReasonReauthenticationRequired {
			t.Errorf("%s: the error handler got %v", name, handled[0])
		}
		if w := get(beside, "/broken", token); w.Code != http.StatusInternalServerError || strings.Contains(w.Body.String(), "hello") {
			t.Errorf("%s: a misconfigured route: %d %s, want 500", name, w.Code, w.Body)
		}

		newToken, _, err := c.StepUp(ctx, token, client.Reauthentication{Methods: []string{"webauthn"}, AssuranceLevel: 2})
		if err != nil {
			t.Fatal(err)
		}
		for site, h := range sites {
			if w := get(h, "/account/delete", newToken); w.Code != http.StatusOK || w.Body.String() != "hello mallory" {
				t.Errorf("%s, %s: /account/delete after StepUp: %d %s", name, site, w.Code, w.Body)
			}
			if w := get(h, "/account/delete", token); w.Code != http.StatusUnauthorized {
				t.Errorf("%s, %s: the rotated-away token: %d, want 401", name, site, w.Code)
			}
		}
	}
}

// oldSessiond answers ValidateSession as a sessiond that predates step-up:
// it ignores the requirement, and its sessions have no assurance level and
// no authenticated_at.
type oldSessiond struct {
	sessionauthv1.UnimplementedSessionAuthorityServer
}

func (oldSessiond) ValidateSession(context.Context, *sessionauthv1.ValidateSessionRequest) (*sessionauthv1.ValidateSessionResponse, error) {
	return &sessionauthv1.ValidateSessionResponse{Session: &sessionauthv1.Session{SessionId: "old", UserId: "u"}}, nil
}

// TestRequirementFailsClosedOnAnOldSessiond: a requirement that a sessiond
// predating step-up ignores still denies.
func TestRequirementFailsClosedOnAnOldSessiond(t *testing.T) {
	t.Parallel()
	gs := grpc.NewServer()
	sessionauthv1.RegisterSessionAuthorityServer(gs, oldSessiond{})
	c := client.New(testutil.Serve(t, gs))
	ctx := ctxT(t)
	if _, err := c.Validate(ctx, "tok"); err != nil {
		t.Fatalf("without a requirement: %v", err)
	}
	for _, tc := range []struct {
		opt    client.ValidateOption
		reason string
	}{
		{client.WithMinAssuranceLevel(1), client.ReasonAssuranceLevelTooLow},
		{client.WithMaxAuthAge(time.Hour), client.ReasonReauthenticationRequired},
	} {
		_, err := c.Validate(ctx, "tok", tc.opt)
		if info, ok := client.StepUpDenial(err); !ok || info.GetReason() != tc.reason {
			t.Errorf("an old sessiond's session: %v, want %s", err, tc.reason)
		}
	}
}
