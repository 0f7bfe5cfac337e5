package client

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/sessiond/sessiond/internal/assurance"
	"github.com/sessiond/sessiond/internal/credential"
	"github.com/sessiond/sessiond/internal/retryafter"
)

// DefaultCookieName is the cookie that carries the token, here and in
// sessiond's gateways (--authz-cookie-name). The __Host- prefix makes the
// browser refuse the cookie unless it is Secure, host-only and for Path=/,
// so a subdomain or a plain-HTTP page cannot plant or overwrite a session
// cookie; browsers treat http://localhost as secure, so it works in
// development too.
const DefaultCookieName = "__Host-session"

// DefaultValidationTimeout is how long the interceptors and the middleware
// wait for sessiond before answering Unavailable (503).
const DefaultValidationTimeout = 2 * time.Second

// EndUserMetadataKey is the metadata key in which validations name the end
// user's IP address, so that sessiond limits failed validations per end user
// rather than per service (see WithClientIPHeader).
const EndUserMetadataKey = "x-sessiond-end-user"

// GRPCAuthOption configures the gRPC interceptors and AuthFunc.
type GRPCAuthOption interface{ applyGRPC(*authOptions) }

// HTTPAuthOption configures HTTPMiddleware and TokenFromRequest.
type HTTPAuthOption interface{ applyHTTP(*authOptions) }

// AuthOption configures both the gRPC interceptors and the HTTP middleware.
// Options that make sense for one of them only are a GRPCAuthOption or an
// HTTPAuthOption, so that none compiles where it would do nothing.
type AuthOption interface {
	GRPCAuthOption
	HTTPAuthOption
}

type authOptions struct {
	metadataKey  string
	scheme       string
	cookieName   string
	public       []string // method patterns
	publicPaths  []string // path patterns
	timeout      time.Duration
	clientIPFrom string // trusted header (HTTP) or metadata key (gRPC); "" means the peer
	onError      func(http.ResponseWriter, *http.Request, error)
	endStreams   bool
	require      assurance.Requirement // WithMinAssuranceLevel, WithMaxAuthAge
}

var defaultAuthOptions = authOptions{
	metadataKey: "authorization",
	scheme:      "Bearer",
	cookieName:  DefaultCookieName,
	timeout:     DefaultValidationTimeout,
	endStreams:  true,
}

// healthPattern is always public: probes carry no session.
const healthPattern = "/grpc.health.v1.Health/*"

type bothOption func(*authOptions)

func (f bothOption) applyGRPC(o *authOptions) { f(o) }
func (f bothOption) applyHTTP(o *authOptions) { f(o) }

type grpcOption func(*authOptions)

func (f grpcOption) applyGRPC(o *authOptions) { f(o) }

type httpOption func(*authOptions)

func (f httpOption) applyHTTP(o *authOptions) { f(o) }

// WithScheme sets the scheme before the token in the metadata value and the
// HTTP Authorization header ("Bearer <token>"). Default "Bearer"; "" means
// the value is the bare token.
func WithScheme(scheme string) AuthOption {
	return bothOption(func(o *authOptions) { o.scheme = scheme })
}

// WithValidationTimeout bounds how long a validation waits for sessiond;
// past it the answer is Unavailable (HTTP 503), as when sessiond is down. A
// caller's own shorter deadline wins. Default DefaultValidationTimeout (2s).
func WithValidationTimeout(d time.Duration) AuthOption {
	return bothOption(func(o *authOptions) {
		if d > 0 {
			o.timeout = d
		}
	})
}

// WithClientIPHeader names the header (HTTP) or metadata key (gRPC) that a
// trusted proxy in front of the service sets to the end user's address
// ("X-Forwarded-For", "X-Real-IP"); its last comma-separated value, the one
// the nearest proxy saw, is taken. Default: none, the end user is the TCP
// peer. Validations forward the end user's address to sessiond
// (EndUserMetadataKey), which limits failed validations per end user, so
// that one client sending bad tokens does not get the service's other users
// refused. Set it only behind a proxy that overwrites the header: a client
// can write any value into it.
func WithClientIPHeader(name string) AuthOption {
	return bothOption(func(o *authOptions) { o.clientIPFrom = name })
}

// WithMetadataKey sets the gRPC metadata key that carries the token (server
// interceptors read it, client interceptors write it). Default
// "authorization".
func WithMetadataKey(key string) GRPCAuthOption {
	return grpcOption(func(o *authOptions) { o.metadataKey = strings.ToLower(key) })
}

// WithPublicMethods adds gRPC methods that the server interceptors and
// AuthFunc let through without a session, in the syntax of sessiond's
// policy file: "pkg.Service/Method", or "pkg.Service/*" for all of a
// service's methods (a leading "/" is allowed). The health service
// (grpc.health.v1.Health/*) is always public. For reflection add
// "grpc.reflection.v1.ServerReflection/*" and
// "grpc.reflection.v1alpha.ServerReflection/*".
func WithPublicMethods(patterns ...string) GRPCAuthOption {
	return grpcOption(func(o *authOptions) {
		for _, p := range patterns {
			o.public = append(o.public, methodPattern(p))
		}
	})
}

// WithStreamRevocation sets whether StreamServerInterceptor ends a stream
// when its session is revoked: the handler's context is cancelled and the
// stream ends with Unauthenticated ("session revoked"), within milliseconds
// of the revocation. It needs the revocation stream of a Client built with
// WithCache; without it, a stream is checked only when it opens. Default
// true.
func WithStreamRevocation(on bool) GRPCAuthOption {
	return grpcOption(func(o *authOptions) { o.endStreams = on })
}

// WithCookieName sets the cookie that carries the token for the HTTP
// middleware, tried when the request has no Authorization header in the
// scheme. Default DefaultCookieName ("__Host-session").
func WithCookieName(name string) HTTPAuthOption {
	return httpOption(func(o *authOptions) { o.cookieName = name })
}

// WithPublicPaths lets requests for these paths through HTTPMiddleware
// without a session (and without SessionFromContext): an exact path
// ("/healthz"), or a prefix ending in "/*" ("/static/*").
func WithPublicPaths(patterns ...string) HTTPAuthOption {
	return httpOption(func(o *authOptions) { o.publicPaths = append(o.publicPaths, patterns...) })
}

// WithErrorHandler replaces the answers of HTTPMiddleware when a request
// cannot go on. err is a gRPC status error: codes.Unauthenticated (401),
// codes.PermissionDenied (403: a step-up denial, see StepUpDenial),
// codes.ResourceExhausted (429), codes.Unavailable (503) or, for a
// misconfigured WithMinAssuranceLevel or WithMaxAuthAge, codes.Internal
// (500). The WWW-Authenticate, StepUpReasonHeader or Retry-After header is
// already set when h is called; h writes the status and body (JSON, say, or
// a redirect to a login or step-up page). Default: plain-text answers, and
// for a step-up denial the JSON body of sessiond's gateways.
func WithErrorHandler(h func(w http.ResponseWriter, r *http.Request, err error)) HTTPAuthOption {
	return httpOption(func(o *authOptions) { o.onError = h })
}

func grpcAuthOptions(opts []GRPCAuthOption) authOptions {
	o := defaultAuthOptions
	o.public = []string{healthPattern}
	for _, opt := range opts {
		opt.applyGRPC(&o)
	}
	return o
}

func httpAuthOptions(opts []HTTPAuthOption) authOptions {
	o := defaultAuthOptions
	for _, opt := range opts {
		opt.applyHTTP(&o)
	}
	return o
}

// methodPattern normalizes a method pattern to "/pkg.Service/Method" or
// "/pkg.Service/*"; the older "/pkg.Service/" means the latter.
func methodPattern(p string) string {
	p = "/" + strings.TrimPrefix(p, "/")
	if strings.HasSuffix(p, "/") {
		p += "*"
	}
	return p
}

// matchPattern matches s against an exact pattern or a prefix ending in "*".
func matchPattern(pattern, s string) bool {
	if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
		return strings.HasPrefix(s, prefix)
	}
	return pattern == s
}

func (o *authOptions) isPublic(fullMethod string) bool {
	for _, p := range o.public {
		if matchPattern(p, fullMethod) {
			return true
		}
	}
	return false
}

func (o *authOptions) isPublicPath(path string) bool {
	for _, p := range o.publicPaths {
		if matchPattern(p, path) {
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

// withSession returns ctx carrying the session an interceptor validated and
// its token, as SessionFromContext and ContextWithToken's do.
func withSession(ctx context.Context, s *Session, token string) context.Context {
	return &sessionContext{Context: ctx, session: s, token: token}
}

// sessionContext is withSession's context: one value node for both the
// session and the token, where context.WithValue would need two and a copy
// of the token as an interface (three allocations on every protected call).
type sessionContext struct {
	context.Context
	session *Session
	token   string
}

func (c *sessionContext) Value(key any) any {
	switch key.(type) {
	case sessionCtxKey:
		return c.session
	case tokenCtxKey:
		return c.token
	}
	return c.Context.Value(key)
}

// The messages callers of a protected service see. They never say why a
// token failed.
const (
	msgNoToken     = "no session token"
	msgInvalid     = "session token is invalid or expired"
	msgUnavailable = "session service unavailable; retry later"
	msgRateLimited = "too many failed session checks; retry later"
	msgRevoked     = "session revoked"
	msgMisconfig   = "the service's session check is misconfigured"
)

var errValidationTimeout = errors.New("sessiond did not answer within the validation timeout")

// authenticate validates token for the end user at the address endUser
// returns ("" when unknown; asked only when sessiond is asked) against the
// options' requirement and maps the outcome for the caller of a protected
// service: Unauthenticated for a bad token, PermissionDenied (with
// sessiond's ErrorInfo) for a live session that falls short of the
// requirement, Unavailable whenever sessiond could not say in time (fail
// closed), ResourceExhausted (with sessiond's RetryInfo) when sessiond
// throttles failures, Internal for a requirement sessiond would refuse, the
// caller's own context error if it went away.
func (c *Client) authenticate(ctx context.Context, o *authOptions, token string, endUser func() string) (*Session, error) {
	if err := requirementError(o.require); err != nil {
		c.opts.logger.ErrorContext(ctx, "sessiond client: a protected route's requirement is invalid; refusing every request", "error", err)
		return nil, status.Error(codes.Internal, msgMisconfig)
	}
	if token == "" {
		return nil, status.Error(codes.Unauthenticated, msgNoToken)
	}
	// A cache hit needs no deadline and no end user: those are for sessiond.
	if s, ok, err := c.fromCache(token, o.require); ok {
		return s, err // nil, or the requirement's denial
	}
	vctx, cancel := context.WithTimeoutCause(ctx, o.timeout, errValidationTimeout)
	defer cancel()
	if endUser := endUser(); endUser != "" {
		vctx = metadata.AppendToOutgoingContext(vctx, EndUserMetadataKey, endUser)
	}
	s, err := c.validateRemote(vctx, token, o.require)
	if err == nil {
		return s, nil
	}
	if ctx.Err() != nil {
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	if _, ok := assurance.Denial(err); ok {
		return nil, err // sessiond's answer, or the same made here
	}
	st := status.Convert(err)
	switch st.Code() {
	case codes.Unauthenticated, codes.InvalidArgument:
		return nil, status.Error(codes.Unauthenticated, msgInvalid)
	case codes.ResourceExhausted:
		// sessiond throttles the failures of this end user (or of this
		// service): not a verdict on this token. Its RetryInfo says when.
		return nil, status.FromProto(&spb.Status{Code: int32(codes.ResourceExhausted), Message: msgRateLimited, Details: st.Proto().GetDetails()}).Err()
	default:
		return nil, status.Error(codes.Unavailable, msgUnavailable)
	}
}

// AuthFunc returns a go-grpc-middleware auth.AuthFunc that validates the
// token in the incoming metadata and puts the Session in the context, for
// services that already chain auth.UnaryServerInterceptor. Public methods
// (WithPublicMethods, the health service) pass without a session.
func (c *Client) AuthFunc(opts ...GRPCAuthOption) auth.AuthFunc {
	o := grpcAuthOptions(opts)
	return func(ctx context.Context) (context.Context, error) {
		if m, ok := grpc.Method(ctx); ok && o.isPublic(m) {
			return ctx, nil
		}
		return c.authGRPC(ctx, &o)
	}
}

// authGRPC validates the token of an incoming gRPC call.
func (c *Client) authGRPC(ctx context.Context, o *authOptions) (context.Context, error) {
	token := ""
	if vals := metadata.ValueFromIncomingContext(ctx, o.metadataKey); len(vals) == 1 {
		token, _ = credential.FromAuthorization(vals[0], o.scheme)
	}
	s, err := c.authenticate(ctx, o, token, func() string { return o.grpcEndUser(ctx) })
	if err != nil {
		return nil, err
	}
	return withSession(ctx, s, token), nil
}

// grpcEndUser is the address of the end user of an incoming call.
func (o *authOptions) grpcEndUser(ctx context.Context) string {
	if o.clientIPFrom != "" {
		if v := metadata.ValueFromIncomingContext(ctx, strings.ToLower(o.clientIPFrom)); len(v) > 0 {
			return lastAddr(v[len(v)-1])
		}
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return hostOf(p.Addr.String())
	}
	return ""
}

// lastAddr is the last address of a comma-separated list (X-Forwarded-For).
func lastAddr(list string) string {
	if i := strings.LastIndexByte(list, ','); i >= 0 {
		list = list[i+1:]
	}
	return hostOf(strings.TrimSpace(list))
}

func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// UnaryServerInterceptor protects a gRPC service with sessiond: every call
// but the public methods (the health service and WithPublicMethods) must
// carry a live session's token in its metadata ("authorization: Bearer
// <token>" by default), or fails with Unauthenticated; when sessiond cannot
// answer within the validation timeout, it fails with Unavailable, never
// letting the call through. The handler finds the Session with
// SessionFromContext.
//
// With WithMinAssuranceLevel or WithMaxAuthAge, a live session that falls
// short fails with PermissionDenied and sessiond's ErrorInfo (see
// StepUpDenial). For a requirement on some methods only, chain a second
// interceptor with the requirement behind a selector (go-grpc-middleware's
// interceptors/selector): see docs/client.md.
func UnaryServerInterceptor(c *Client, opts ...GRPCAuthOption) grpc.UnaryServerInterceptor {
	o := grpcAuthOptions(opts)
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if o.isPublic(info.FullMethod) {
			return handler(ctx, req)
		}
		ctx, err := c.authGRPC(ctx, &o)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamServerInterceptor is UnaryServerInterceptor for streaming calls: the
// session (and the requirement, if any) is checked when the stream opens
// and, with a caching Client (see WithStreamRevocation), the stream ends
// with Unauthenticated when the session is revoked (including by a
// RevokeAllSessions cutoff, or by a rotation such as StepUp); an update of
// the session's data does not end it.
func StreamServerInterceptor(c *Client, opts ...GRPCAuthOption) grpc.StreamServerInterceptor {
	o := grpcAuthOptions(opts)
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if o.isPublic(info.FullMethod) {
			return handler(srv, ss)
		}
		watch := c.cache != nil && o.endStreams
		var since uint64
		if watch {
			since = c.cache.begin() // revocations from here on end the stream
		}
		ctx, err := c.authGRPC(ss.Context(), &o)
		if err != nil {
			return err
		}
		if !watch {
			return handler(srv, &contextStream{ServerStream: ss, ctx: ctx})
		}
		s, _ := SessionFromContext(ctx)
		ctx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		stop := c.cache.onRevoke(s.GetSessionId(), s.GetCreatedAt().AsTime(), since, func() { cancel(errSessionRevoked) })
		defer stop()
		err = handler(srv, &contextStream{ServerStream: ss, ctx: ctx})
		if errors.Is(context.Cause(ctx), errSessionRevoked) {
			return status.Error(codes.Unauthenticated, msgRevoked)
		}
		return err
	}
}

var errSessionRevoked = errors.New(msgRevoked)

// contextStream is ss with another context.
type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *contextStream) Context() context.Context { return s.ctx }

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
func UnaryClientInterceptor(opts ...GRPCAuthOption) grpc.UnaryClientInterceptor {
	o := grpcAuthOptions(opts)
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, callOpts ...grpc.CallOption) error {
		return invoker(o.outgoing(ctx), method, req, reply, cc, callOpts...)
	}
}

// StreamClientInterceptor is UnaryClientInterceptor for streaming calls.
func StreamClientInterceptor(opts ...GRPCAuthOption) grpc.StreamClientInterceptor {
	o := grpcAuthOptions(opts)
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, callOpts ...grpc.CallOption) (grpc.ClientStream, error) {
		return streamer(o.outgoing(ctx), desc, cc, method, callOpts...)
	}
}

// TokenFromRequest returns the session token of an HTTP request: from its
// Authorization header in the configured scheme, else from the configured
// cookie.
func TokenFromRequest(r *http.Request, opts ...HTTPAuthOption) (string, bool) {
	o := httpAuthOptions(opts)
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

// httpEndUser is the address of the end user of an HTTP request.
func (o *authOptions) httpEndUser(r *http.Request) string {
	if o.clientIPFrom != "" {
		if v := r.Header.Values(o.clientIPFrom); len(v) > 0 {
			return lastAddr(v[len(v)-1])
		}
	}
	return hostOf(r.RemoteAddr)
}

// HTTPMiddleware protects an http.Handler with sessiond: the token comes from
// the Authorization header ("Bearer <token>") or the session cookie
// (WithCookieName; default DefaultCookieName). A request without a live
// session gets 401 with a WWW-Authenticate challenge; when sessiond cannot
// answer within the validation timeout, 503 with Retry-After; when sessiond
// throttles the failed checks of this end user, 429 with the Retry-After
// sessiond asked for: never the handler (WithErrorHandler writes other
// bodies). Public paths (WithPublicPaths) pass without a session. The
// handler finds the Session with SessionFromContext(r.Context()).
//
// With WithMinAssuranceLevel or WithMaxAuthAge, a live session that falls
// short gets 403 with the reason in the Sessiond-Reason header
// (StepUpReasonHeader) and a JSON body {"error": reason, "message": ...,
// "metadata": {...}}, as from sessiond's gateways. For a requirement on
// some routes only, wrap those routes' handlers in a middleware of their
// own with the requirement (see docs/client.md).
func HTTPMiddleware(c *Client, opts ...HTTPAuthOption) func(http.Handler) http.Handler {
	o := httpAuthOptions(opts)
	challenge := o.scheme
	if challenge == "" {
		challenge = "Bearer"
	}
	challenge += ` realm="sessiond"`
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if o.isPublicPath(r.URL.Path) {
				next.ServeHTTP(w, r)
				return
			}
			token, _ := o.tokenFromRequest(r)
			s, err := c.authenticate(r.Context(), &o, token, func() string { return o.httpEndUser(r) })
			st := status.Convert(err)
			switch st.Code() {
			case codes.OK:
				next.ServeHTTP(w, r.WithContext(withSession(r.Context(), s, token)))
				return
			case codes.Canceled:
				return // the client went away; nobody reads the answer
			case codes.Unauthenticated:
				w.Header().Set("WWW-Authenticate", challenge)
			case codes.ResourceExhausted:
				w.Header().Set("Retry-After", retryafter.Header(st))
			case codes.PermissionDenied: // a step-up denial (authenticate)
				if o.onError == nil {
					assurance.WriteHTTP(w, err)
					return
				}
				info, _ := assurance.Denial(err)
				w.Header().Set(assurance.HTTPHeader, info.GetReason())
			case codes.Internal: // a misconfigured requirement
			default:
				err = status.Error(codes.Unavailable, msgUnavailable)
				w.Header().Set("Retry-After", "1")
			}
			if o.onError != nil {
				o.onError(w, r, err)
				return
			}
			writeHTTPError(w, status.Code(err))
		})
	}
}

// writeHTTPError is HTTPMiddleware's default answer for code.
func writeHTTPError(w http.ResponseWriter, code codes.Code) {
	switch code {
	case codes.Unauthenticated:
		http.Error(w, "401 Unauthorized: no valid session", http.StatusUnauthorized)
	case codes.ResourceExhausted:
		http.Error(w, "429 Too Many Requests: too many failed session checks; retry later", http.StatusTooManyRequests)
	case codes.Internal:
		http.Error(w, "500 Internal Server Error: "+msgMisconfig, http.StatusInternalServerError)
	default:
		http.Error(w, "503 Service Unavailable: the session service is unavailable; retry later", http.StatusServiceUnavailable)
	}
}
