package access

import (
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
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
	addrs  addrTexts

	// streams are the open streams that authorization let through, checked
	// again whenever the keys or the policy change (recheck).
	mu      sync.Mutex
	streams map[*openStream]struct{}
}

// openStream is a stream authorized under the keys and policy of its start.
type openStream struct {
	method string
	caller Caller
	// key is the hash of the API key that identified the caller; nil for a
	// certificate (or no identity).
	key    *[sha256.Size]byte
	cancel context.CancelCauseFunc
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
	a.recheck()
}

// SetPolicy replaces the policy (nil: the built-in roles only); calls that
// start afterwards use it.
func (a *Auth) SetPolicy(p *Policy) {
	if p == nil {
		p = builtinPolicy()
	}
	a.policy.Store(p)
	a.recheck()
}

// errAccessWithdrawn is the cause of a stream's end when its caller's access
// is withdrawn while it is open.
var errAccessWithdrawn = errors.New("access withdrawn")

// recheck ends every open stream whose caller the current keys and policy
// no longer let make its call: a retired API key, or a role or grant taken
// away. A client certificate stays valid for the connection's life (the
// server's maximum connection age bounds it).
func (a *Auth) recheck() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for s := range a.streams {
		a.recheckLocked(s)
	}
}

// recheckLocked ends s if the current keys and policy no longer let its
// caller make its call (a.mu held).
func (a *Auth) recheckLocked(s *openStream) {
	keys, policy := a.keys.Load(), a.policy.Load()
	c := s.caller
	if s.key != nil {
		key, ok := keys.byHash(*s.key)
		if !ok {
			a.end(s, "its API key was removed from the keys file")
			return
		}
		c.Name, c.Roles = key.name, policy.rolesOf(key.name, key.roles)
	} else if c.Name != Anonymous {
		c.Roles = policy.rolesOf(c.Name, nil)
	}
	if !policy.allows(c, s.method) {
		a.end(s, "the policy no longer allows it")
	}
}

// end ends stream s (a.mu held).
func (a *Auth) end(s *openStream, why string) {
	a.log.Warn("open stream ended: access withdrawn", "method", s.method, "caller", s.caller, "reason", why)
	s.cancel(errAccessWithdrawn)
	delete(a.streams, s)
}

var errBadAPIKey = errors.New("invalid API key")

type authErrKey struct{}

// apiKeyHashKey is the context key of the hash of the API key that
// identified the caller (for recheck).
type apiKeyHashKey struct{}

// Authenticate establishes the caller of a call to method in ctx and
// returns ctx carrying it (ContextWithCaller), and without the API key in
// its metadata. It never fails: a credential that does not check out leaves
// the caller anonymous and is remembered for Authorize. It is the step of
// the authentication interceptors, for a server that runs its interceptors'
// steps in one function.
func (a *Auth) Authenticate(ctx context.Context, method string) context.Context {
	if a == nil {
		return ctx
	}
	c, key, err := a.identify(ctx)
	if err != nil && strings.HasPrefix(method, healthServicePrefix) {
		err = nil // probes' calls are never refused
	}
	if len(metadata.ValueFromIncomingContext(ctx, a.cfg.APIKeyHeader)) > 0 {
		md, _ := metadata.FromIncomingContext(ctx) // a copy
		delete(md, a.cfg.APIKeyHeader)             // a credential: nothing after this needs it
		ctx = metadata.NewIncomingContext(ctx, md)
	}
	if err != nil {
		ctx = context.WithValue(ctx, authErrKey{}, err)
	} else if !a.cfg.Enforce || slices.Contains(c.Roles, RoleEndUserProxy) {
		c.EndUser = endUser(ctx)
	}
	if key != nil {
		ctx = context.WithValue(ctx, apiKeyHashKey{}, key)
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
// key's name, else Anonymous; with its roles, and the hash of the API key
// that identified it (nil if none did).
func (a *Auth) identify(ctx context.Context) (Caller, *[sha256.Size]byte, error) {
	c := Caller{Name: Anonymous}
	p, _ := peer.FromContext(ctx)
	if p != nil && p.Addr != nil {
		c.Addr = a.addrs.of(p.Addr)
	}
	policy := a.policy.Load()
	if name := certIdentity(p); name != "" {
		c.Name = name
		c.Roles = policy.rolesOf(name, nil)
		return c, nil, nil
	}
	presented := metadata.ValueFromIncomingContext(ctx, a.cfg.APIKeyHeader)
	switch {
	case len(presented) == 0:
		return c, nil, nil
	case len(presented) > 1:
		return c, nil, errBadAPIKey
	}
	key, ok := a.keys.Load().lookup(presented[0])
	if !ok {
		return c, nil, errBadAPIKey
	}
	c.Name = key.name
	c.Roles = policy.rolesOf(key.name, key.roles)
	return c, &key.hash, nil
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

// Authorize decides whether the call to method in ctx, which went through
// Authenticate, may go on: nil, or the status that refuses it. It is the
// step of the authorization interceptors.
func (a *Auth) Authorize(ctx context.Context, method string) error {
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
	return handler(a.Authenticate(ctx, info.FullMethod), req)
}

// AuthenticateStream is the stream authentication interceptor. It never
// fails a call.
func (a *Auth) AuthenticateStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if a == nil {
		return handler(srv, ss)
	}
	return handler(srv, &contextStream{ServerStream: ss, ctx: a.Authenticate(ss.Context(), info.FullMethod)})
}

// AuthorizeUnary is the unary authorization interceptor.
func (a *Auth) AuthorizeUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := a.Authorize(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// AuthorizeStream is the stream authorization interceptor. With
// authorization on, the stream stays authorized only as long as its caller
// is: when the keys or the policy change so that the caller may no longer
// make the call (its API key removed, a grant withdrawn), the stream's
// context is cancelled and the stream ends with PermissionDenied.
func (a *Auth) AuthorizeStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := a.Authorize(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	if a == nil || !a.cfg.Enforce || strings.HasPrefix(info.FullMethod, healthServicePrefix) {
		return handler(srv, ss)
	}
	ctx, cancel := context.WithCancelCause(ss.Context())
	defer cancel(nil)
	key, _ := ctx.Value(apiKeyHashKey{}).(*[sha256.Size]byte)
	open := &openStream{method: info.FullMethod, caller: CallerFromContext(ctx), key: key, cancel: cancel}
	a.mu.Lock()
	if a.streams == nil {
		a.streams = map[*openStream]struct{}{}
	}
	a.streams[open] = struct{}{}
	a.recheckLocked(open) // the keys or policy may have changed since Authorize
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.streams, open)
		a.mu.Unlock()
	}()
	err := handler(srv, &contextStream{ServerStream: ss, ctx: ctx})
	if errors.Is(context.Cause(ctx), errAccessWithdrawn) {
		return status.Errorf(codes.PermissionDenied, "%s: the caller's access was withdrawn while the stream was open (API key removed or policy changed); reconnect with current credentials", info.FullMethod)
	}
	return err
}

// contextStream is ss with another context.
type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *contextStream) Context() context.Context { return s.ctx }
