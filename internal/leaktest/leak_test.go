// Package leaktest proves that sessiond does not leak credentials: a full
// workload against a real sessiond (in process, real redis-server, logging at
// debug level) after which no issued token, nor its SHA-256 in any spelling,
// nor an API key, appears in any log line, audit event, error or response
// other than CreateSession's and RotateSession's own token field.
package leaktest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/internal/daemon"
	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/internal/sessiondtest"
	"github.com/sessiond/sessiond/internal/testutil"
	"github.com/sessiond/sessiond/server"
	"github.com/sessiond/sessiond/server/access"
	"github.com/sessiond/sessiond/server/store"
)

const (
	adminKey   = "sk_leaktest_admin_3f1d9c0b7a5e42d8b6c1f0e9a8d7c6b5"
	guesserKey = "sk_leaktest_guesser_9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b"
)

// observed is what callers saw: responses, statuses and metadata, each as
// the bytes that crossed (or would cross) the wire and as text.
type observed struct {
	mu    sync.Mutex
	items []item
}

type item struct {
	where string
	data  []byte
}

func (o *observed) add(where string, data []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.items = append(o.items, item{where, data})
}

func (o *observed) message(where string, m proto.Message) {
	if m == nil {
		return
	}
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err) // a message that does not marshal is a bug in the test
	}
	o.add(where+" (wire)", b)
	o.add(where+" (json)", []byte(protojson.Format(m)))
}

func (o *observed) err(where string, err error) {
	if err == nil {
		return
	}
	st := status.Convert(err)
	o.add(where+" error message", []byte(st.Message()))
	o.add(where+" error (text)", []byte(err.Error()))
	o.message(where+" error status", st.Proto())
}

func (o *observed) md(where string, mds ...metadata.MD) {
	for _, md := range mds {
		o.add(where+" metadata", fmt.Appendf(nil, "%v", md))
	}
}

// call makes one unary call, recording its response (the token field of
// CreateSession and RotateSession cleared first: it is the one place a token
// may be), its error and its header and trailer metadata.
func call[Resp proto.Message](ctx context.Context, o *observed, where string, f func(context.Context, ...grpc.CallOption) (Resp, error)) (Resp, error) {
	var header, trailer metadata.MD
	resp, err := f(ctx, grpc.Header(&header), grpc.Trailer(&trailer))
	o.md(where, header, trailer)
	o.err(where, err)
	if err == nil {
		m := proto.Clone(resp)
		switch r := m.(type) {
		case *sessionauthv1.CreateSessionResponse:
			r.Token = ""
		case *sessionauthv1.RotateSessionResponse:
			r.Token = ""
		}
		o.message(where+" response", m)
	}
	return resp, err
}

// needle is one form of a secret that must not appear.
type needle struct {
	what string
	b    []byte
}

// tokenNeedles are the forms of an issued token that must appear nowhere:
// the token, every 16-character run of its secret part (so a truncated or
// re-wrapped token is caught too), the raw bytes and their hex, and the
// SHA-256 (of the raw token, which Redis holds, and of its text) in hex,
// base64 and raw.
func tokenNeedles(i int, tok string) []needle {
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(tok) != 72 {
		panic(fmt.Sprintf("token %d %q is not 72 characters of base64url", i, tok))
	}
	name := func(form string) string { return fmt.Sprintf("token #%d %s", i, form) }
	ns := []needle{{name("itself"), []byte(tok)}}
	secret := tok[28:] // characters 28+ encode bytes 21+: the 264 random bits
	for j := 0; j+16 <= len(secret); j++ {
		ns = append(ns, needle{name(fmt.Sprintf("secret characters %d-%d", 28+j, 44+j)), []byte(secret[j : j+16])})
	}
	ns = append(ns,
		needle{name("raw secret bytes"), raw[21:]},
		needle{name("raw bytes in hex"), []byte(hex.EncodeToString(raw))},
		needle{name("raw secret in hex"), []byte(hex.EncodeToString(raw[21:]))},
	)
	for _, h := range []struct {
		what string
		sum  [sha256.Size]byte
	}{{"SHA-256 of the raw token", sha256.Sum256(raw)}, {"SHA-256 of the token text", sha256.Sum256([]byte(tok))}} {
		ns = append(ns, hashNeedles(name(h.what), h.sum)...)
	}
	return ns
}

func hashNeedles(what string, sum [sha256.Size]byte) []needle {
	return []needle{
		{what + " (raw)", sum[:]},
		{what + " (hex)", []byte(hex.EncodeToString(sum[:]))},
		{what + " (HEX)", []byte(strings.ToUpper(hex.EncodeToString(sum[:])))},
		{what + " (base64)", []byte(base64.RawStdEncoding.EncodeToString(sum[:]))},
		{what + " (base64url)", []byte(base64.RawURLEncoding.EncodeToString(sum[:]))},
	}
}

func TestNoTokenInLogsErrorsOrResponses(t *testing.T) {
	t.Parallel()
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			checkNoLeaks(t, format == "json")
		})
	}
}

func checkNoLeaks(t *testing.T, jsonLogs bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// sessiond (daemon.Run, the wiring of cmd/sessiond) on a real Redis:
	// debug logs in text or JSON, the audit log, API keys with the policy
	// enforced, a failed-validation rate limit, ext_authz.
	rs := redistest.Start(t)
	dir := t.TempDir()
	keysFile := filepath.Join(dir, "keys")
	if err := os.WriteFile(keysFile, fmt.Appendf(nil, "admin %x admin\nguesser %x validator\n",
		sha256.Sum256([]byte(adminKey)), sha256.Sum256([]byte(guesserKey))), 0o600); err != nil {
		t.Fatal(err)
	}
	auditFile := filepath.Join(dir, "audit.log")
	logs := &testutil.SyncBuffer{}
	clock := testutil.NewClock()
	d := sessiondtest.Run(t, daemon.Config{
		AdminListen: "127.0.0.1:0",
		ExtAuthz:    true,
		Redis:       daemon.RedisConfig{URL: "redis://" + rs.Addr(), DialTimeout: 200 * time.Millisecond},
		Store:       store.Config{MaxSessionsPerUser: 3, TouchInterval: time.Minute},
		Service: server.Config{
			RequestTimeout:        2 * time.Second,
			FailedValidationLimit: server.RateLimit{PerSecond: 0.01, Burst: 30},
		},
		Security:       daemon.SecurityConfig{APIKeysFile: keysFile},
		ForwardAuth:    daemon.ForwardAuthConfig{Listen: "127.0.0.1:0", LoginURL: "https://login.example.com/"},
		HealthInterval: 50 * time.Millisecond,
		Log:            daemon.LogConfig{Output: logs, Level: slog.LevelDebug, JSON: jsonLogs},
		AuditLog:       auditFile,
		Clock:          clock.Now,
	})
	audit := sessiondtest.AuditLog(auditFile)
	conn := d.Conn
	c := sessionauthv1.NewSessionAuthorityClient(conn)
	authz := authv3.NewAuthorizationClient(conn)
	admin := metadata.AppendToOutgoingContext(ctx, access.DefaultAPIKeyHeader, adminKey)
	guesser := metadata.AppendToOutgoingContext(ctx, access.DefaultAPIKeyHeader, guesserKey)

	o := &observed{}
	var tokens []string // every token sessiond issued
	create := func(user string) (string, *sessionauthv1.Session) {
		t.Helper()
		resp, err := call(admin, o, "CreateSession", func(ctx context.Context, opts ...grpc.CallOption) (*sessionauthv1.CreateSessionResponse, error) {
			return c.CreateSession(ctx, &sessionauthv1.CreateSessionRequest{
				UserId: user, Email: user + "@example.com", ClientIp: "203.0.113.7", UserAgent: "Firefox/140",
				Attributes: map[string]string{"tenant": "acme"}, Ttl: durationpb.New(2 * time.Hour), IdleTimeout: durationpb.New(30 * time.Minute),
			}, opts...)
		})
		if err != nil {
			t.Fatalf("CreateSession: %v", err)
		}
		tokens = append(tokens, resp.GetToken())
		return resp.GetToken(), resp.GetSession()
	}
	validate := func(ctx context.Context, tok string) (*sessionauthv1.ValidateSessionResponse, error) {
		return call(ctx, o, "ValidateSession", func(ctx context.Context, opts ...grpc.CallOption) (*sessionauthv1.ValidateSessionResponse, error) {
			return c.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: tok}, opts...)
		})
	}
	rotate := func(tok string) (*sessionauthv1.RotateSessionResponse, error) {
		resp, err := call(admin, o, "RotateSession", func(ctx context.Context, opts ...grpc.CallOption) (*sessionauthv1.RotateSessionResponse, error) {
			return c.RotateSession(ctx, &sessionauthv1.RotateSessionRequest{Token: tok}, opts...)
		})
		if err == nil {
			tokens = append(tokens, resp.GetToken())
		}
		return resp, err
	}
	revoke := func(req *sessionauthv1.RevokeSessionRequest) (*sessionauthv1.RevokeSessionResponse, error) {
		return call(admin, o, "RevokeSession", func(ctx context.Context, opts ...grpc.CallOption) (*sessionauthv1.RevokeSessionResponse, error) {
			return c.RevokeSession(ctx, req, opts...)
		})
	}
	list := func(user, page string) (*sessionauthv1.ListUserSessionsResponse, error) {
		return call(admin, o, "ListUserSessions", func(ctx context.Context, opts ...grpc.CallOption) (*sessionauthv1.ListUserSessionsResponse, error) {
			return c.ListUserSessions(ctx, &sessionauthv1.ListUserSessionsRequest{UserId: user, PageSize: 1, PageToken: page}, opts...)
		})
	}
	revokeUser := func(user, except string) (*sessionauthv1.RevokeUserSessionsResponse, error) {
		return call(admin, o, "RevokeUserSessions", func(ctx context.Context, opts ...grpc.CallOption) (*sessionauthv1.RevokeUserSessionsResponse, error) {
			return c.RevokeUserSessions(ctx, &sessionauthv1.RevokeUserSessionsRequest{UserId: user, ExceptSessionId: except}, opts...)
		})
	}
	check := func(headers map[string]string, raw ...string) *authv3.CheckResponse {
		t.Helper()
		httpReq := &authv3.AttributeContext_HttpRequest{Id: "req-1", Method: "GET", Path: "/", Headers: headers}
		if len(raw) > 0 {
			httpReq.HeaderMap = &corev3.HeaderMap{}
			for i := 0; i+1 < len(raw); i += 2 {
				httpReq.HeaderMap.Headers = append(httpReq.HeaderMap.Headers, &corev3.HeaderValue{Key: raw[i], RawValue: []byte(raw[i+1])})
			}
		}
		resp, err := call(admin, o, "ext_authz Check", func(ctx context.Context, opts ...grpc.CallOption) (*authv3.CheckResponse, error) {
			return authz.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: httpReq}}}, opts...)
		})
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		return resp
	}
	wantCode := func(err error, code codes.Code, what string) {
		t.Helper()
		if got := status.Code(err); got != code {
			t.Fatalf("%s: %v, want %v", what, err, code)
		}
	}

	// The revocation stream, watched throughout.
	var err error
	var events []*sessionauthv1.RevocationEvent
	var eventsMu sync.Mutex
	var streamHeader metadata.MD
	var stream grpc.ServerStreamingClient[sessionauthv1.RevocationEvent]
	for { // until sessiond's Redis subscription is live
		stream, err = c.WatchRevocations(admin, &sessionauthv1.WatchRevocationsRequest{})
		if err == nil {
			streamHeader, err = stream.Header()
		}
		if err != nil {
			t.Fatalf("WatchRevocations: %v", err)
		}
		o.md("WatchRevocations", streamHeader)
		if len(streamHeader.Get(server.WatchReadyHeader)) > 0 {
			break
		}
		_, err = stream.Recv()
		o.err("WatchRevocations", err)
		if ctx.Err() != nil {
			t.Fatalf("WatchRevocations never became ready: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var watching sync.WaitGroup
	watching.Go(func() {
		for {
			ev, err := stream.Recv()
			if err != nil {
				o.err("WatchRevocations", err)
				o.md("WatchRevocations", stream.Trailer())
				return
			}
			o.message("WatchRevocations event", ev)
			eventsMu.Lock()
			events = append(events, ev)
			eventsMu.Unlock()
		}
	})

	// Create: four sessions of a (the cap of 3 evicts the first), two of b.
	evicted, _ := create("user-a")
	a1, sa1 := create("user-a")
	a2, _ := create("user-a")
	a3, sa3 := create("user-a")
	b1, sb1 := create("user-b")
	b2, sb2 := create("user-b")

	// Validate good and bad tokens, directly and through ext_authz.
	for _, tok := range []string{a1, a2, a3, b1, b2} {
		if _, err := validate(admin, tok); err != nil {
			t.Fatalf("ValidateSession of a live token: %v", err)
		}
	}
	clock.Advance(2 * time.Minute) // the next validations touch (write) the sessions
	for _, tok := range []string{a1, b1} {
		if _, err := validate(admin, tok); err != nil {
			t.Fatalf("ValidateSession after a touch interval: %v", err)
		}
	}
	for _, bad := range []string{evicted, testutil.Tampered(a1), a1 + "=", "Bearer " + a1, strings.ToUpper(a1), a1[1:], a1 + a1} {
		_, err := validate(admin, bad)
		wantCode(err, codes.Unauthenticated, "ValidateSession of a bad token")
	}
	for _, bad := range []string{"", strings.Repeat(a1, 15)} {
		_, err := validate(admin, bad)
		wantCode(err, codes.InvalidArgument, "ValidateSession of an empty or oversized token")
	}
	_, err = validate(ctx, a1) // no API key
	wantCode(err, codes.Unauthenticated, "ValidateSession without an API key")
	_, err = validate(metadata.AppendToOutgoingContext(ctx, access.DefaultAPIKeyHeader, adminKey+"x"), a1)
	wantCode(err, codes.Unauthenticated, "ValidateSession with a wrong API key")
	for range 35 { // over the failed-validation limit: failures are throttled, a good token passes
		_, _ = validate(guesser, testutil.Tampered(b1))
	}
	_, err = validate(guesser, testutil.Tampered(b1))
	wantCode(err, codes.ResourceExhausted, "ValidateSession over the failed-validation limit")
	_, err = validate(guesser, b1)
	wantCode(err, codes.OK, "ValidateSession of a live token over the failed-validation limit")
	_, err = call(guesser, o, "CreateSession", func(ctx context.Context, opts ...grpc.CallOption) (*sessionauthv1.CreateSessionResponse, error) {
		return c.CreateSession(ctx, &sessionauthv1.CreateSessionRequest{UserId: "user-c"}, opts...)
	})
	wantCode(err, codes.PermissionDenied, "CreateSession by a validator")

	if r := check(map[string]string{"authorization": "Bearer " + a1, "cookie": "theme=dark"}); r.GetOkResponse() == nil {
		t.Fatalf("Check with a Bearer token: %v", r)
	}
	if r := check(nil, "cookie", "theme=dark; __Host-session="+b1+"; lang=en", "cookie", "x=1"); r.GetOkResponse() == nil {
		t.Fatalf("Check with the session cookie: %v", r)
	}
	for _, h := range []map[string]string{
		{"authorization": "Bearer " + evicted},
		{"cookie": "__Host-session=" + testutil.Tampered(a1)},
		{"authorization": "Bearer " + a1 + ",Bearer " + b1},
		{"authorization": "Basic " + a1},
		{},
	} {
		if r := check(h); r.GetDeniedResponse() == nil {
			t.Fatalf("Check of %v allowed", h)
		}
	}

	// The gateways' HTTP endpoints: allowed, denied, redirected.
	forward := func(path string, h map[string]string) int {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.ForwardAuthAddr+path, nil)
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatalf("forward auth %s: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var hdr bytes.Buffer
		_ = resp.Header.Write(&hdr)
		o.add("forward auth "+path+" response", append(hdr.Bytes(), body...))
		return resp.StatusCode
	}
	browser := map[string]string{"Accept": "text/html", "X-Forwarded-Host": "app.example.com", "X-Forwarded-Uri": "/orders?page=2"}
	for _, tc := range []struct {
		path string
		h    map[string]string
		want int
	}{
		{"/authz/auth-request", map[string]string{"Authorization": "Bearer " + a1}, 200},
		{"/authz/forward-auth", map[string]string{"Cookie": "__Host-session=" + b1}, 200},
		{"/authz/ext-authz/orders", map[string]string{"Authorization": "Bearer " + testutil.Tampered(a1)}, 401},
		{"/authz/forward-auth", map[string]string{"Cookie": "__Host-session=" + evicted}, 401},
		{"/authz/forward-auth", browser, 302},
	} {
		if got := forward(tc.path, tc.h); got != tc.want {
			t.Fatalf("forward auth %s %v: %d, want %d", tc.path, tc.h, got, tc.want)
		}
	}

	// Rotate: the old token dies, the new one lives.
	rotated, err := rotate(a2)
	if err != nil {
		t.Fatalf("RotateSession: %v", err)
	}
	_, err = validate(admin, a2)
	wantCode(err, codes.Unauthenticated, "ValidateSession of a rotated-away token")
	if _, err := validate(admin, rotated.GetToken()); err != nil {
		t.Fatalf("ValidateSession of the rotated token: %v", err)
	}
	_, err = rotate(a2)
	wantCode(err, codes.Unauthenticated, "RotateSession of a rotated-away token")
	_, err = rotate(testutil.Tampered(a2))
	wantCode(err, codes.Unauthenticated, "RotateSession of a malformed token")

	// The rest of the lifecycle, on a user of its own: a step-up rotation,
	// a demand the session falls short of, updates, the operator's lookups
	// and the walk, and a stolen rotated-away token presented after the
	// rotation grace (which revokes the session it was rotated into).
	c1, _ := create("user-c")
	stepped, err := call(admin, o, "RotateSession", func(ctx context.Context, opts ...grpc.CallOption) (*sessionauthv1.RotateSessionResponse, error) {
		return c.RotateSession(ctx, &sessionauthv1.RotateSessionRequest{Token: c1, AssuranceLevel: 2, AddAuthMethods: []string{"totp"}, Reauthenticated: true}, opts...)
	})
	if err != nil {
		t.Fatalf("RotateSession with a step-up: %v", err)
	}
	c2 := stepped.GetToken()
	tokens = append(tokens, c2)
	_, err = call(admin, o, "ValidateSession", func(ctx context.Context, opts ...grpc.CallOption) (*sessionauthv1.ValidateSessionResponse, error) {
		return c.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: c2, MinAssuranceLevel: 3}, opts...)
	})
	wantCode(err, codes.PermissionDenied, "ValidateSession demanding more than the session has")
	for _, tc := range []struct {
		tok  string
		want codes.Code
	}{{c2, codes.OK}, {testutil.Tampered(c2), codes.Unauthenticated}, {c1, codes.Unauthenticated}} {
		_, err = call(admin, o, "UpdateSession", func(ctx context.Context, opts ...grpc.CallOption) (*sessionauthv1.UpdateSessionResponse, error) {
			return c.UpdateSession(ctx, &sessionauthv1.UpdateSessionRequest{Target: &sessionauthv1.UpdateSessionRequest_Token{Token: tc.tok}, SetAttributes: map[string]string{"cart": "3"}}, opts...)
		})
		wantCode(err, tc.want, "UpdateSession by token")
	}
	sc2 := stepped.GetSession().GetSessionId()
	if _, err := call(admin, o, "GetSession", func(ctx context.Context, opts ...grpc.CallOption) (*sessionauthv1.GetSessionResponse, error) {
		return c.GetSession(ctx, &sessionauthv1.GetSessionRequest{SessionId: sc2}, opts...)
	}); err != nil {
		t.Fatalf("GetSession: %v", err)
	}
	_, err = call(admin, o, "GetSession", func(ctx context.Context, opts ...grpc.CallOption) (*sessionauthv1.GetSessionResponse, error) {
		return c.GetSession(ctx, &sessionauthv1.GetSessionRequest{SessionId: c2}, opts...)
	})
	wantCode(err, codes.InvalidArgument, "GetSession with a token as the session id")
	if _, err := call(admin, o, "ExtendSession", func(ctx context.Context, opts ...grpc.CallOption) (*sessionauthv1.ExtendSessionResponse, error) {
		return c.ExtendSession(ctx, &sessionauthv1.ExtendSessionRequest{SessionId: sc2, Ttl: durationpb.New(3 * time.Hour)}, opts...)
	}); err != nil {
		t.Fatalf("ExtendSession: %v", err)
	}
	for page, pages := "", 0; pages == 0 || page != ""; pages++ {
		resp, err := call(admin, o, "ListSessions", func(ctx context.Context, opts ...grpc.CallOption) (*sessionauthv1.ListSessionsResponse, error) {
			return c.ListSessions(ctx, &sessionauthv1.ListSessionsRequest{PageSize: 2, PageToken: page}, opts...)
		})
		if err != nil || pages > 50 {
			t.Fatalf("ListSessions page %d: %v", pages, err)
		}
		page = resp.GetNextPageToken()
	}
	clock.Advance(store.DefaultRotationGrace + time.Second)
	_, err = validate(admin, c1)
	wantCode(err, codes.Unauthenticated, "ValidateSession of a stolen rotated-away token after the grace")
	_, err = validate(admin, c2)
	wantCode(err, codes.Unauthenticated, "ValidateSession of the session a reused token was rotated into")

	// List, page by page.
	page, n := "", 0
	for {
		resp, err := list("user-a", page)
		if err != nil {
			t.Fatalf("ListUserSessions: %v", err)
		}
		n += len(resp.GetSessions())
		if page = resp.GetNextPageToken(); page == "" {
			break
		}
	}
	if n != 3 {
		t.Fatalf("listed %d sessions of user-a, want 3", n)
	}
	_, err = list("user-b", base64.RawURLEncoding.EncodeToString([]byte("p1:"+sa1.GetSessionId())))
	wantCode(err, codes.InvalidArgument, "ListUserSessions with another user's page token")

	// Revoke by token, by id, and a user's sessions.
	if r, err := revoke(&sessionauthv1.RevokeSessionRequest{Target: &sessionauthv1.RevokeSessionRequest_Token{Token: b1}}); err != nil || !r.GetRevoked() {
		t.Fatalf("RevokeSession by token: %v, %v", r, err)
	}
	if r, err := revoke(&sessionauthv1.RevokeSessionRequest{Target: &sessionauthv1.RevokeSessionRequest_Token{Token: b1}}); err != nil || r.GetRevoked() {
		t.Fatalf("RevokeSession by token, again: %v, %v", r, err)
	}
	if r, err := revoke(&sessionauthv1.RevokeSessionRequest{Target: &sessionauthv1.RevokeSessionRequest_SessionId{SessionId: sb2.GetSessionId()}}); err != nil || !r.GetRevoked() {
		t.Fatalf("RevokeSession by id: %v, %v", r, err)
	}
	_, err = revoke(&sessionauthv1.RevokeSessionRequest{Target: &sessionauthv1.RevokeSessionRequest_SessionId{SessionId: b2}})
	wantCode(err, codes.InvalidArgument, "RevokeSession with a token as the session id")
	_, err = revoke(&sessionauthv1.RevokeSessionRequest{Target: &sessionauthv1.RevokeSessionRequest_Token{Token: strings.Repeat(b2, 15)}})
	wantCode(err, codes.InvalidArgument, "RevokeSession of an oversized token")
	_, err = revokeUser("user-a", sb1.GetSessionId())
	wantCode(err, codes.InvalidArgument, "RevokeUserSessions keeping another user's session")
	_, err = revokeUser("user-a", a3)
	wantCode(err, codes.InvalidArgument, "RevokeUserSessions with a token as except_session_id")
	if r, err := revokeUser("user-a", sa3.GetSessionId()); err != nil || r.GetRevokedCount() != 2 {
		t.Fatalf("RevokeUserSessions: %v, %v", r, err)
	}

	// Every revocation reaches the stream.
	want := map[string]bool{sb1.GetSessionId(): true, sb2.GetSessionId(): true, sa1.GetSessionId(): true, rotated.GetSession().GetSessionId(): true}
	deadline := time.Now().Add(5 * time.Second)
	for {
		eventsMu.Lock()
		seen := map[string]bool{}
		for _, ev := range events {
			for _, id := range ev.GetSessionIds() {
				seen[id] = true
			}
		}
		eventsMu.Unlock()
		missing := 0
		for id := range want {
			if !seen[id] {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			o.mu.Lock()
			var streamLog []string
			for _, it := range o.items {
				if strings.HasPrefix(it.where, "WatchRevocations") {
					streamLog = append(streamLog, it.where+": "+string(it.data))
				}
			}
			o.mu.Unlock()
			t.Fatalf("%d revocations did not reach WatchRevocations (stream: %q)", missing, streamLog)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// The incident button, last: every session above is cut off.
	if _, err := call(admin, o, "RevokeAllSessions", func(ctx context.Context, opts ...grpc.CallOption) (*sessionauthv1.RevokeAllSessionsResponse, error) {
		return c.RevokeAllSessions(ctx, &sessionauthv1.RevokeAllSessionsRequest{}, opts...)
	}); err != nil {
		t.Fatalf("RevokeAllSessions: %v", err)
	}
	_, err = validate(admin, a3)
	wantCode(err, codes.Unauthenticated, "ValidateSession of a session created before the cutoff")

	// Redis goes away: every RPC fails, closed, and says why in the log.
	rs.Stop()
	_, err = validate(admin, a3)
	wantCode(err, codes.Unavailable, "ValidateSession with Redis down")
	_, err = rotate(a3)
	wantCode(err, codes.Unavailable, "RotateSession with Redis down")
	_, err = call(admin, o, "CreateSession", func(ctx context.Context, opts ...grpc.CallOption) (*sessionauthv1.CreateSessionResponse, error) {
		return c.CreateSession(ctx, &sessionauthv1.CreateSessionRequest{UserId: "user-a"}, opts...)
	})
	wantCode(err, codes.Unavailable, "CreateSession with Redis down")
	_, err = revoke(&sessionauthv1.RevokeSessionRequest{Target: &sessionauthv1.RevokeSessionRequest_Token{Token: a3}})
	wantCode(err, codes.Unavailable, "RevokeSession by token with Redis down")
	_, err = revoke(&sessionauthv1.RevokeSessionRequest{Target: &sessionauthv1.RevokeSessionRequest_SessionId{SessionId: sa3.GetSessionId()}})
	wantCode(err, codes.Unavailable, "RevokeSession by id with Redis down")
	_, err = list("user-a", "")
	wantCode(err, codes.Unavailable, "ListUserSessions with Redis down")
	_, err = revokeUser("user-a", "")
	wantCode(err, codes.Unavailable, "RevokeUserSessions with Redis down")
	if r := check(map[string]string{"authorization": "Bearer " + a3}); r.GetDeniedResponse().GetStatus().GetCode() != 503 {
		t.Fatalf("Check with Redis down: %v", r)
	}
	watching.Wait() // the stream ends when its subscription does
	for !strings.Contains(logs.String(), "session store unreachable") {
		if ctx.Err() != nil {
			t.Fatal("the health check never logged Redis unreachable")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// The evidence that the paths ran and were logged.
	logText := logs.String()
	debugLine := "level=DEBUG"
	if jsonLogs {
		debugLine = `"level":"DEBUG"`
	}
	for _, s := range []string{"session created", "session rotated", "session updated", "session extended", "rotated-away token presented again",
		"every session created before the cutoff revoked", "ext_authz allowed", "ext_authz denied", "session store unavailable", debugLine} {
		if !strings.Contains(logText, s) {
			t.Fatalf("the logs lack %q:\n%s", s, logText)
		}
	}
	if audit.String() == "" {
		t.Fatal("the audit log is empty")
	}
	if len(tokens) != 9 {
		t.Fatalf("%d tokens issued, want 9", len(tokens))
	}

	// Not one form of any token, or of an API key, anywhere.
	var needles []needle
	for i, tok := range tokens {
		needles = append(needles, tokenNeedles(i, tok)...)
	}
	for name, key := range map[string]string{"admin API key": adminKey, "guesser API key": guesserKey} {
		needles = append(needles, needle{name, []byte(key)})
		needles = append(needles, hashNeedles("SHA-256 of the "+name, sha256.Sum256([]byte(key)))...)
	}
	// Positive control: the needles do find a token, and its hash, where
	// they are.
	raw, _ := base64.RawURLEncoding.DecodeString(tokens[0])
	sum := sha256.Sum256(raw)
	control, _ := proto.Marshal(&sessionauthv1.CreateSessionResponse{Token: tokens[0]})
	for _, hay := range [][]byte{control, fmt.Appendf(nil, "h=%x", sum), []byte(tokens[0][30:60])} {
		found := false
		for _, n := range needles {
			found = found || bytes.Contains(hay, n.b)
		}
		if !found {
			t.Fatalf("the needles miss a token form in %q", hay)
		}
	}

	o.mu.Lock()
	haystacks := append([]item{{"the log", []byte(logText)}, {"the audit log", []byte(audit.String())}}, o.items...)
	o.mu.Unlock()
	leaks := 0
	for _, h := range haystacks {
		for _, n := range needles {
			if i := bytes.Index(h.data, n.b); i >= 0 {
				leaks++
				t.Errorf("%s holds the %s: …%q…", h.where, n.what, h.data[max(0, i-80):min(len(h.data), i+len(n.b)+20)])
				break
			}
		}
	}
	t.Logf("checked %d forms of %d tokens and 2 API keys in %d log bytes, %d audit bytes and %d responses, errors and metadata: %d leaks",
		len(needles), len(tokens), len(logText), len(audit.String()), len(haystacks)-2, leaks)
}
