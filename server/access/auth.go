package access

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// DefaultAPIKeyHeader is the metadata key that carries an API key unless
// Config.APIKeyHeader says otherwise.
const DefaultAPIKeyHeader = "x-api-key"

// healthServicePrefix starts the methods of the health service, which every
// caller may call (probes have no identity) and whose credentials, if any,
// are not checked.
var healthServicePrefix = "/" + healthpb.Health_ServiceDesc.ServiceName + "/"

// Config configures Auth. The zero value establishes callers and authorizes
// every call.
type Config struct {
	// APIKeyHeader is the metadata key that carries an API key; "" means
	// DefaultAPIKeyHeader ("x-api-key").
	APIKeyHeader string
	// Enforce turns authorization on: every call but the health service's
	// must be allowed by the policy (the built-in roles when there is no
	// policy). When false, every caller may call every RPC, and Auth only
	// establishes who is calling.
	Enforce bool
	// Keys are the API keys accepted; nil means none (SetAPIKeys replaces
	// them).
	Keys *APIKeys
	// Policy is the policy; nil means the built-in roles only (SetPolicy
	// replaces it).
	Policy *Policy
	// Logger receives the refusals; nil means no log.
	Logger *slog.Logger
}

// Auth authenticates callers and authorizes their calls. Its two pairs of
// interceptors go into the server's chain:
//
//   - the authentication interceptors, first in the chain, establish the
//     Caller (CallerFromContext) from the verified client certificate or the
//     API key, and never fail the call themselves, so that the interceptors
//     after them (logging, rate limits, the audit log) see the caller and
//     the outcome;
//   - the authorization interceptors, after those, reject a call with a bad
//     API key (Unauthenticated) and ask the policy whether the caller may
//     make the call: no identity where the policy wants one is
//     Unauthenticated, a known caller the policy does not allow is
//     PermissionDenied.
//
// The keys and the policy can be replaced while serving (SetAPIKeys,
// SetPolicy). All methods may be called on a nil *Auth: its interceptors
// then let every call through, as anonymous.
type Auth struct {
	cfg    Config
	log    *slog.Logger
	keys   atomic.Pointer[APIKeys]
	policy atomic.Pointer[Policy]
}

// New returns an Auth for cfg. It does no I/O.
func New(cfg Config) *Auth {
	if cfg.APIKeyHeader == "" {
		cfg.APIKeyHeader = DefaultAPIKeyHeader
	}
	cfg.APIKeyHeader = strings.ToLower(cfg.APIKeyHeader)
	a := &Auth{cfg: cfg, log: cfg.Logger}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	a.SetAPIKeys(cfg.Keys)
	a.SetPolicy(cfg.Policy)
	return a
}

// SetAPIKeys replaces the API keys (nil: none); calls that start afterwards
// use them.
func (a *Auth) SetAPIKeys(keys *APIKeys) {
	if keys == nil {
		keys = &APIKeys{}
	}
	a.keys.Store(keys)
}

// SetPolicy replaces the policy (nil: the built-in roles only); calls that
// start afterwards use it.
func (a *Auth) SetPolicy(p *Policy) {
	if p == nil {
		p = builtinPolicy()
	}
	a.policy.Store(p)
}

var errBadAPIKey = errors.New("invalid API key")

type authErrKey struct{}

// authenticate establishes the caller of the call in ctx and returns ctx
// carrying it (ContextWithCaller), and without the API key in its metadata.
// A credential that does not check out leaves the caller anonymous and is
// remembered for authorize.
func (a *Auth) authenticate(ctx context.Context, method string) context.Context {
	if a == nil {
		return ctx
	}
	c, err := a.identify(ctx)
	if err != nil && strings.HasPrefix(method, healthServicePrefix) {
		err = nil // probes' calls are never refused
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get(a.cfg.APIKeyHeader)) > 0 {
		md = md.Copy()
		delete(md, a.cfg.APIKeyHeader) // a credential: nothing after this needs it
		ctx = metadata.NewIncomingContext(ctx, md)
	}
	if err != nil {
		ctx = context.WithValue(ctx, authErrKey{}, err)
	} else if !a.cfg.Enforce || slices.Contains(c.Roles, RoleEndUserProxy) {
		c.EndUser = endUser(ctx)
	}
	return ContextWithCaller(ctx, c)
}

// endUser is the end user's address in the call's EndUserHeader: an IP
// address, or "" when there is none or it is not one.
func endUser(ctx context.Context) string {
	v := metadata.ValueFromIncomingContext(ctx, EndUserHeader)
	if len(v) != 1 {
		return ""
	}
	host := v[0]
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.Zone() != "" {
		return ""
	}
	return ip.Unmap().String()
}

// identify returns the caller: the identity of its verified client
// certificate if it presented one (an API key is then ignored), else its API
// key's name, else Anonymous; with its roles.
func (a *Auth) identify(ctx context.Context) (Caller, error) {
	c := Caller{Name: Anonymous}
	p, _ := peer.FromContext(ctx)
	if p != nil && p.Addr != nil {
		c.Addr = p.Addr.String()
	}
	policy := a.policy.Load()
	if name := certIdentity(p); name != "" {
		c.Name = name
		c.Roles = policy.rolesOf(name, nil)
		return c, nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	presented := md.Get(a.cfg.APIKeyHeader)
	switch {
	case len(presented) == 0:
		return c, nil
	case len(presented) > 1:
		return c, errBadAPIKey
	}
	key, ok := a.keys.Load().lookup(presented[0])
	if !ok {
		return c, errBadAPIKey
	}
	c.Name = key.name
	c.Roles = policy.rolesOf(key.name, key.roles)
	return c, nil
}

// certIdentity is the identity in the peer's verified client certificate:
// its first SPIFFE ID (URI SAN spiffe://...), else its first DNS SAN, else
// its subject's CN; "" when there is no verified certificate.
func certIdentity(p *peer.Peer) string {
	if p == nil {
		return ""
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.PeerCertificates) == 0 {
		return ""
	}
	cert := info.State.PeerCertificates[0]
	for _, u := range cert.URIs {
		if strings.EqualFold(u.Scheme, "spiffe") {
			return u.String()
		}
	}
	if len(cert.DNSNames) > 0 {
		return cert.DNSNames[0]
	}
	return cert.Subject.CommonName
}

// authorize decides whether the call in ctx, which went through
// authenticate, may go on.
func (a *Auth) authorize(ctx context.Context, method string) error {
	if a == nil || strings.HasPrefix(method, healthServicePrefix) {
		return nil
	}
	if err, _ := ctx.Value(authErrKey{}).(error); err != nil {
		a.log.DebugContext(ctx, "call refused: bad credential", "method", method, "caller", CallerFromContext(ctx), "reason", err)
		return status.Errorf(codes.Unauthenticated, "%v (metadata %q)", err, a.cfg.APIKeyHeader)
	}
	c := CallerFromContext(ctx)
	if !a.cfg.Enforce || a.policy.Load().allows(c, method) {
		return nil
	}
	if c.Name == Anonymous {
		a.log.DebugContext(ctx, "call refused: no caller identity", "method", method, "caller", c)
		return status.Errorf(codes.Unauthenticated, "%s needs a caller identity: a client certificate or an API key (metadata %q)", method, a.cfg.APIKeyHeader)
	}
	a.log.WarnContext(ctx, "call refused by the policy", "method", method, "caller", c, "roles", c.Roles)
	return status.Errorf(codes.PermissionDenied, "caller %q may not call %s", c.Name, method)
}

// AuthenticateUnary is the unary authentication interceptor. It never fails
// a call.
func (a *Auth) AuthenticateUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	return handler(a.authenticate(ctx, info.FullMethod), req)
}

// AuthenticateStream is the stream authentication interceptor. It never
// fails a call.
func (a *Auth) AuthenticateStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if a == nil {
		return handler(srv, ss)
	}
	return handler(srv, &contextStream{ServerStream: ss, ctx: a.authenticate(ss.Context(), info.FullMethod)})
}

// AuthorizeUnary is the unary authorization interceptor.
func (a *Auth) AuthorizeUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := a.authorize(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// AuthorizeStream is the stream authorization interceptor.
func (a *Auth) AuthorizeStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := a.authorize(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return handler(srv, ss)
}

// contextStream is ss with another context.
type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *contextStream) Context() context.Context { return s.ctx }
