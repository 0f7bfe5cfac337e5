package client_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sessiond/sessiond/client"
	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/internal/credential"
)

// validatingConn stands for sessiond in the fuzz targets: it records the
// token of every ValidateSession call and answers that it is not a live
// session's.
type validatingConn struct {
	mu     sync.Mutex
	tokens []string
}

func (c *validatingConn) Invoke(_ context.Context, method string, args, _ any, _ ...grpc.CallOption) error {
	if req, ok := args.(*sessionauthv1.ValidateSessionRequest); ok {
		c.mu.Lock()
		c.tokens = append(c.tokens, req.GetToken())
		c.mu.Unlock()
		return status.Error(codes.Unauthenticated, "session token is invalid or expired")
	}
	return status.Errorf(codes.Unimplemented, "%s", method)
}

func (c *validatingConn) NewStream(context.Context, *grpc.StreamDesc, string, ...grpc.CallOption) (grpc.ClientStream, error) {
	return nil, status.Error(codes.Unimplemented, "no streams")
}

func (c *validatingConn) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.tokens
	c.tokens = nil
	return t
}

// authValues returns the first n%3 of a and b: zero, one or two header lines.
func authValues(a, b string, n uint8) []string { return []string{a, b}[:n%3] }

// FuzzTokenFromRequest checks the HTTP extraction, client.TokenFromRequest,
// and the middleware that uses it, on fuzzed Authorization lines (none, one
// or two), a Cookie header, the scheme and the cookie name:
//   - a token is never empty; one Authorization line in the scheme wins;
//     two lines never give a token (an ambiguous request picks neither);
//     otherwise the token is the named cookie's value as net/http parses it
//     (printable ASCII, no ';', '"' or '\');
//   - the middleware validates exactly that token, once, or none without a
//     call to sessiond, and answers the fixed 401 whatever the token was.
func FuzzTokenFromRequest(f *testing.F) {
	conn := &validatingConn{}
	sessions := client.New(conn)
	f.Fuzz(func(t *testing.T, auth1, auth2 string, nAuth uint8, cookie, scheme, cookieName string) {
		if !credential.ValidCookieName(cookieName) {
			cookieName = "session"
		}
		opts := []client.HTTPAuthOption{client.WithScheme(scheme), client.WithCookieName(cookieName)}
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		auths := authValues(auth1, auth2, nAuth)
		for _, v := range auths {
			r.Header.Add("Authorization", v)
		}
		if cookie != "" {
			r.Header.Add("Cookie", cookie)
		}

		tok, ok := client.TokenFromRequest(r, opts...)
		if ok != (tok != "") {
			t.Fatalf("TokenFromRequest = %q, %v", tok, ok)
		}
		bearer, fromHeader := "", false
		if len(auths) == 1 {
			bearer, fromHeader = credential.FromAuthorization(auths[0], scheme)
		}
		switch {
		case fromHeader:
			if tok != bearer {
				t.Fatalf("token %q, want the Authorization one %q", tok, bearer)
			}
		case ok:
			ck, err := r.Cookie(cookieName)
			if err != nil || ck.Value != tok {
				t.Fatalf("token %q is not the %s cookie (%v, %v)", tok, cookieName, ck, err)
			}
			for i := range len(tok) {
				if c := tok[i]; c < 0x20 || c >= 0x7f || c == ';' || c == '"' || c == '\\' {
					t.Fatalf("cookie token %q holds byte %q", tok, c)
				}
			}
		}

		conn.take()
		w := httptest.NewRecorder()
		reached := false
		client.HTTPMiddleware(sessions, opts...)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached = true })).ServeHTTP(w, r)
		calls := conn.take()
		switch {
		case reached:
			t.Fatal("the handler was reached without a live session")
		case ok && !slices.Equal(calls, []string{tok}):
			t.Fatalf("validated %q, want exactly %q", calls, tok)
		case !ok && len(calls) != 0:
			t.Fatalf("validated %q without a token", calls)
		case w.Code != http.StatusUnauthorized || w.Body.String() != "401 Unauthorized: no valid session\n":
			t.Fatalf("answer %d %q", w.Code, w.Body)
		}
		for k, vs := range w.Header() {
			if k != "Content-Type" && k != "X-Content-Type-Options" && k != "Www-Authenticate" {
				t.Fatalf("401 with header %s: %q", k, vs)
			}
		}
	})
}

// FuzzAuthFuncMetadata checks the gRPC extraction (AuthFunc, which the
// server interceptors use) on fuzzed metadata: one "authorization" value in
// the scheme is validated, exactly as FromAuthorization reads it; none, two,
// or one in another scheme are "no session token" without a call to
// sessiond; the errors are the fixed Unauthenticated ones, never the token.
func FuzzAuthFuncMetadata(f *testing.F) {
	conn := &validatingConn{}
	sessions := client.New(conn)
	f.Fuzz(func(t *testing.T, v1, v2 string, n uint8, scheme string) {
		md := metadata.MD{}
		vals := authValues(v1, v2, n)
		if len(vals) > 0 {
			md["authorization"] = vals
		}
		ctx := metadata.NewIncomingContext(context.Background(), md)
		conn.take()
		_, err := sessions.AuthFunc(client.WithScheme(scheme))(ctx)
		calls := conn.take()

		want, ok := "", false
		if len(vals) == 1 {
			want, ok = credential.FromAuthorization(vals[0], scheme)
		}
		st := status.Convert(err)
		if st.Code() != codes.Unauthenticated || len(st.Details()) != 0 {
			t.Fatalf("AuthFunc: %v", err)
		}
		if ok {
			if !slices.Equal(calls, []string{want}) || st.Message() != "session token is invalid or expired" {
				t.Fatalf("validated %q (%q), want exactly %q", calls, st.Message(), want)
			}
		} else if len(calls) != 0 || st.Message() != "no session token" {
			t.Fatalf("validated %q (%q) without a token in %q", calls, st.Message(), vals)
		}
		if strings.Contains(st.Message(), want) && len(want) > 3 {
			t.Fatalf("the error %q carries the token", st.Message())
		}
	})
}
