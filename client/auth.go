package client

import (
	"context"
	"net/http"
	"strings"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sessiond/sessiond/internal/credential"
)

// AuthOption configures the interceptors and the HTTP middleware.
type AuthOption func(*authOptions)

type authOptions struct {
	metadataKey string
	scheme      string
	cookieName  string
	public      []string
}

var defaultAuthOptions = authOptions{
	metadataKey: "authorization",
	scheme:      "Bearer",
	cookieName:  "session",
	public:      []string{"/grpc.health.v1.Health/"},
}

// WithMetadataKey sets the gRPC metadata key that carries the token (server
// interceptors read it, client interceptors write it). Default
// "authorization".
func WithMetadataKey(key string) AuthOption {
	return func(o *authOptions) { o.metadataKey = strings.ToLower(key) }
}

// WithScheme sets the scheme before the token in the metadata value and the
// HTTP Authorization header ("Bearer <token>"). Default "Bearer"; "" means
// the value is the bare token.
func WithScheme(scheme string) AuthOption {
	return func(o *authOptions) { o.scheme = scheme }
}

// WithCookieName sets the cookie that carries the token for the HTTP
// middleware, tried when the request has no Authorization header in the
// scheme. Default "session".
func WithCookieName(name string) AuthOption {
	return func(o *authOptions) { o.cookieName = name }
}

// WithPublicMethods lists the gRPC methods the server interceptors let
// through without a session: full method names ("/pkg.Service/Method"), or a
// service prefix ending in "/" ("/pkg.Service/") for all its methods. It
// replaces the default, which is the health service only
// ("/grpc.health.v1.Health/"), so include that to keep probes working. For
// reflection add "/grpc.reflection.v1.ServerReflection/" and
// "/grpc.reflection.v1alpha.ServerReflection/".
func WithPublicMethods(methods ...string) AuthOption {
	return func(o *authOptions) { o.public = methods }
}

func buildAuthOptions(opts []AuthOption) authOptions {
	o := defaultAuthOptions
	o.public = append([]string(nil), o.public...)
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

func (o *authOptions) isPublic(fullMethod string) bool {
	for _, m := range o.public {
		if m == fullMethod || (strings.HasSuffix(m, "/") && strings.HasPrefix(fullMethod, m)) {
			return true
		}
	}
	return false
}

type sessionCtxKey struct{}

type tokenCtxKey struct{}

// SessionFromContext returns the session that an interceptor or the HTTP
// middleware of this package validated for the current call.
func SessionFromContext(ctx context.Context) (*Session, bool) {
	s, ok := ctx.Value(sessionCtxKey{}).(*Session)
	return s, ok
}

// ContextWithToken returns a context whose outgoing calls through
// UnaryClientInterceptor and StreamClientInterceptor carry token. The server
// interceptors and the HTTP middleware do this for the token they validated,
// so that a service calls downstream services as its caller.
func ContextWithToken(ctx context.Context, token string) context.Context {
	return context.WithValue(ctx, tokenCtxKey{}, token)
}

func withSession(ctx context.Context, s *Session, token string) context.Context {
	return context.WithValue(ContextWithToken(ctx, token), sessionCtxKey{}, s)
}

// The messages callers of a protected service see. They never say why a
// token failed.
const (
	msgNoToken     = "no session token"
	msgInvalid     = "session token is invalid or expired"
	msgUnavailable = "session service unavailable; retry later"
	msgRateLimited = "too many failed session checks; retry later"
)

// authenticate validates token and maps the outcome for the caller of a
// protected service: Unauthenticated for a bad token, Unavailable whenever
// sessiond could not say (fail closed), the caller's own context error if it
// went away.
func (c *Client) authenticate(ctx context.Context, token string) (*Session, error) {
	if token == "" {
		return nil, status.Error(codes.Unauthenticated, msgNoToken)
	}
	s, err := c.Validate(ctx, token)
	if err == nil {
		return s, nil
	}
	if ctx.Err() != nil {
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	switch status.Code(err) {
	case codes.Unauthenticated, codes.InvalidArgument:
		return nil, status.Error(codes.Unauthenticated, msgInvalid)
	case codes.ResourceExhausted:
		// sessiond rate-limits this service's failed validations: too many
		// bad tokens came through it. Not a verdict on this token.
		return nil, status.Error(codes.ResourceExhausted, msgRateLimited)
	default:
		return nil, status.Error(codes.Unavailable, msgUnavailable)
	}
}

// AuthFunc returns a go-grpc-middleware auth.AuthFunc that validates the
// token in the incoming metadata and puts the Session in the context, for
// services that already chain auth.UnaryServerInterceptor (combine it with a
// selector for public methods; WithPublicMethods does not apply here).
func (c *Client) AuthFunc(opts ...AuthOption) auth.AuthFunc {
	o := buildAuthOptions(opts)
	return func(ctx context.Context) (context.Context, error) {
		token := ""
		if vals := metadata.ValueFromIncomingContext(ctx, o.metadataKey); len(vals) == 1 {
			token, _ = credential.FromAuthorization(vals[0], o.scheme)
		}
		s, err := c.authenticate(ctx, token)
		if err != nil {
			return nil, err
		}
		return withSession(ctx, s, token), nil
	}
}

func (o *authOptions) matcher() selector.Matcher {
	return selector.MatchFunc(func(_ context.Context, meta interceptors.CallMeta) bool {
		return !o.isPublic(meta.FullMethod())
	})
}

// UnaryServerInterceptor protects a gRPC service with sessiond: every call
// but the public methods (WithPublicMethods; by default the health service)
// must carry a live session's token in its metadata ("authorization: Bearer
// <token>" by default), or fails with Unauthenticated; when sessiond cannot
// answer, it fails with Unavailable, never letting the call through. The
// handler finds the Session with SessionFromContext.
func UnaryServerInterceptor(c *Client, opts ...AuthOption) grpc.UnaryServerInterceptor {
	o := buildAuthOptions(opts)
	return selector.UnaryServerInterceptor(auth.UnaryServerInterceptor(c.AuthFunc(opts...)), o.matcher())
}

// StreamServerInterceptor is UnaryServerInterceptor for streaming calls: the
// session is checked once, when the stream opens.
func StreamServerInterceptor(c *Client, opts ...AuthOption) grpc.StreamServerInterceptor {
	o := buildAuthOptions(opts)
	return selector.StreamServerInterceptor(auth.StreamServerInterceptor(c.AuthFunc(opts...)), o.matcher())
}

// outgoing adds the context's token (ContextWithToken, or the one a server
// interceptor validated) to the outgoing metadata, unless the call already
// carries that key.
func (o *authOptions) outgoing(ctx context.Context) context.Context {
	token, _ := ctx.Value(tokenCtxKey{}).(string)
	if token == "" {
		return ctx
	}
	if md, ok := metadata.FromOutgoingContext(ctx); ok && len(md.Get(o.metadataKey)) > 0 {
		return ctx
	}
	v := token
	if o.scheme != "" {
		v = o.scheme + " " + token
	}
	return metadata.AppendToOutgoingContext(ctx, o.metadataKey, v)
}

// UnaryClientInterceptor forwards the caller's token to downstream calls: a
// service protected by UnaryServerInterceptor that calls another protected
// service with this interceptor calls it as its own caller.
func UnaryClientInterceptor(opts ...AuthOption) grpc.UnaryClientInterceptor {
	o := buildAuthOptions(opts)
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, callOpts ...grpc.CallOption) error {
		return invoker(o.outgoing(ctx), method, req, reply, cc, callOpts...)
	}
}

// StreamClientInterceptor is UnaryClientInterceptor for streaming calls.
func StreamClientInterceptor(opts ...AuthOption) grpc.StreamClientInterceptor {
	o := buildAuthOptions(opts)
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, callOpts ...grpc.CallOption) (grpc.ClientStream, error) {
		return streamer(o.outgoing(ctx), desc, cc, method, callOpts...)
	}
}

// TokenFromRequest returns the session token of an HTTP request: from its
// Authorization header in the configured scheme, else from the configured
// cookie.
func TokenFromRequest(r *http.Request, opts ...AuthOption) (string, bool) {
	o := buildAuthOptions(opts)
	return o.tokenFromRequest(r)
}

func (o *authOptions) tokenFromRequest(r *http.Request) (string, bool) {
	if vals := r.Header.Values("Authorization"); len(vals) == 1 {
		if tok, ok := credential.FromAuthorization(vals[0], o.scheme); ok {
			return tok, true
		}
	}
	if ck, err := r.Cookie(o.cookieName); err == nil && ck.Value != "" {
		return ck.Value, true
	}
	return "", false
}

// HTTPMiddleware protects an http.Handler with sessiond: the token comes from
// the Authorization header ("Bearer <token>") or the session cookie
// (WithCookieName; default "session"). A request without a live session gets
// 401 with a WWW-Authenticate challenge; when sessiond cannot answer, 503
// with Retry-After, and when sessiond rate-limits this service's failed
// checks, 429 with Retry-After: never the handler. The handler finds the Session with
// SessionFromContext(r.Context()).
func HTTPMiddleware(c *Client, opts ...AuthOption) func(http.Handler) http.Handler {
	o := buildAuthOptions(opts)
	challenge := o.scheme
	if challenge == "" {
		challenge = "Bearer"
	}
	challenge += ` realm="sessiond"`
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			token, _ := o.tokenFromRequest(r)
			s, err := c.authenticate(r.Context(), token)
			switch status.Code(err) {
			case codes.OK:
				next.ServeHTTP(w, r.WithContext(withSession(r.Context(), s, token)))
			case codes.Unauthenticated:
				w.Header().Set("WWW-Authenticate", challenge)
				http.Error(w, "401 Unauthorized: no valid session", http.StatusUnauthorized)
			case codes.ResourceExhausted:
				w.Header().Set("Retry-After", "1")
				http.Error(w, "429 Too Many Requests: too many failed session checks; retry later", http.StatusTooManyRequests)
			case codes.Canceled:
				// The client went away; nobody reads the answer.
			default:
				w.Header().Set("Retry-After", "1")
				http.Error(w, "503 Service Unavailable: the session service is unavailable; retry later", http.StatusServiceUnavailable)
			}
		})
	}
}
