// Package server implements the sessionauth.v1.SessionAuthority gRPC service:
// it validates requests, calls the session store and maps the store's errors
// to gRPC status codes. It knows nothing about Redis.
package server

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/internal/assurance"
	"github.com/sessiond/sessiond/server/access"
	"github.com/sessiond/sessiond/server/store"
)

// Store is what the service needs from the session store; *store.Store is the
// implementation.
type Store interface {
	Create(ctx context.Context, ns store.NewSession) (*store.Created, error)
	Get(ctx context.Context, token string) (*store.Session, error)
	Touch(ctx context.Context, sess *store.Session) (*store.Session, error)
	RevokeToken(ctx context.Context, token string) (*store.Revocation, error)
	Revoke(ctx context.Context, sessionID string) (*store.Revocation, error)
	RevokeUser(ctx context.Context, userID, exceptID string) (*store.Revocation, error)
	Rotate(ctx context.Context, token string, step store.Step) (*store.Created, error)
	ListUser(ctx context.Context, userID string, limit int, cursor string) ([]*store.Session, string, error)
	GetByID(ctx context.Context, sessionID string) (*store.Session, error)
	Update(ctx context.Context, ref store.Ref, ch store.AttributeChange) (*store.Session, error)
	Extend(ctx context.Context, sessionID string, ttl time.Duration) (*store.Session, error)
	List(ctx context.Context, limit int, cursor string) ([]*store.Session, string, error)
	RevokeAll(ctx context.Context, before time.Time) (time.Time, *store.Revocation, error)
	PageKey(ctx context.Context) ([]byte, error)
	CurrentPageKey(ctx context.Context, reread bool) ([]byte, error)
	WatchRevocations(ctx context.Context, ready func(), onEvent func(store.Revocation)) error
	Ping(ctx context.Context) error
}

// The defaults of Config's lifetimes and timeout.
const (
	DefaultTTL            = 24 * time.Hour
	DefaultMaxTTL         = 30 * 24 * time.Hour
	DefaultIdleTimeout    = time.Hour
	DefaultRequestTimeout = 5 * time.Second
)

// Config is the service's policy and instrumentation. The zero value is a
// working service: each field's zero value means the default written on it.
type Config struct {
	// DefaultTTL is the absolute lifetime of a session whose request sets
	// none; 0 means DefaultTTL (24h).
	DefaultTTL time.Duration
	// MaxTTL is the longest lifetime a request may ask for; 0 means
	// DefaultMaxTTL (30 days), or DefaultTTL if that is longer.
	MaxTTL time.Duration
	// DefaultIdleTimeout applies when a request sets none; 0 means
	// DefaultIdleTimeout (1h), and a negative value no idle timeout unless
	// the request sets one.
	DefaultIdleTimeout time.Duration
	// RequestTimeout bounds the time one call may wait for the store,
	// whatever the caller's deadline; past it the call fails with
	// Unavailable (see UnaryDeadlineInterceptor). 0 means
	// DefaultRequestTimeout (5s); a negative value sets no bound.
	RequestTimeout time.Duration
	// CreateLimit limits CreateSession calls per caller (see RateLimit);
	// over it a call fails with ResourceExhausted. Zero: no limit.
	CreateLimit RateLimit
	// FailedValidationLimit limits, per caller, the answers that tell a
	// guesser a token is not live: failed validations (ValidateSession,
	// ValidateToken), failed rotations, and revocations by token that
	// revoked nothing. A live session's token is never refused: over the
	// limit, only the failures are answered ResourceExhausted instead of
	// Unauthenticated (revoked=false), until the bucket refills. Zero: no
	// limit.
	FailedValidationLimit RateLimit
	// FailedValidationPerClientLimit is each end user's share of a caller's
	// failed validations (the end user the caller names, access.Caller's
	// EndUser; for ext_authz the request's source address), within
	// FailedValidationLimit: one end user sending bad tokens through a
	// service is throttled before the service's own budget runs out. Zero:
	// no per end user limit.
	FailedValidationPerClientLimit RateLimit
	// Logger is the operational log; nil means none.
	Logger *slog.Logger
	// Audit, if not nil, receives the audit events (see audit.go); nil:
	// no audit log.
	Audit *slog.Logger
	// Metrics, if not nil, measures the store's operations and the
	// revocation streams (and, through its interceptors, the gRPC calls).
	// nil: no metrics.
	Metrics *Metrics
	// Clock is the time of the rate limits and the audit events; nil means
	// time.Now.
	Clock func() time.Time
}

// WithDefaults returns c with its zero fields replaced by their defaults, as
// New applies them. Applying it twice changes nothing.
func (c Config) WithDefaults() Config {
	if c.DefaultTTL <= 0 {
		c.DefaultTTL = DefaultTTL
	}
	if c.MaxTTL <= 0 {
		c.MaxTTL = max(DefaultMaxTTL, c.DefaultTTL)
	}
	if c.DefaultIdleTimeout == 0 {
		c.DefaultIdleTimeout = DefaultIdleTimeout // negative stays: none
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	return c
}

// Server is the SessionAuthority service.
type Server struct {
	sessionauthv1.UnimplementedSessionAuthorityServer
	store       Store
	cfg         Config
	log         *slog.Logger
	revocations revocations
	now         func() time.Time
	// The limits, nil when not limited: CreateSession calls per caller, and
	// failed validations per caller and per end user of a caller.
	createLimit, failedValidations, failedPerClient *limiter
	metrics                                         *Metrics // nil: not measured (metrics.go)
}

// New returns the service over st. It does no I/O.
func New(st Store, cfg Config) *Server {
	cfg = cfg.WithDefaults()
	s := &Server{store: cfg.Metrics.instrumentStore(st), cfg: cfg, log: cfg.Logger, now: cfg.Clock, metrics: cfg.Metrics,
		createLimit:       newLimiter("CreateSession calls from this caller", cfg.CreateLimit, 0, cfg.Clock),
		failedValidations: newLimiter("failed validations from this caller", cfg.FailedValidationLimit, 0, cfg.Clock),
		failedPerClient:   newLimiter("failed validations for this end user", cfg.FailedValidationPerClientLimit, 0, cfg.Clock),
	}
	s.revocations.metrics = cfg.Metrics
	return s
}

// Ping checks that the store answers (measured as the ping operation).
func (s *Server) Ping(ctx context.Context) error { return s.store.Ping(ctx) }

// CreateSession implements SessionAuthority.CreateSession.
func (s *Server) CreateSession(ctx context.Context, req *sessionauthv1.CreateSessionRequest) (*sessionauthv1.CreateSessionResponse, error) {
	if err := s.createLimit.take(access.RateLimitKey(ctx)); err != nil {
		return nil, s.toStatus(ctx, err)
	}
	var v invalid
	v.text("user_id", req.GetUserId(), maxUserIDBytes, true)
	v.text("email", req.GetEmail(), maxEmailBytes, false)
	v.text("user_agent", req.GetUserAgent(), maxUserAgentBytes, false)
	ip := v.clientIP(req.GetClientIp())
	v.attributes(req.GetAttributes())
	ttl := v.lifetime("ttl", req.GetTtl(), s.cfg.DefaultTTL, s.cfg.MaxTTL)
	idle := v.lifetime("idle_timeout", req.GetIdleTimeout(), max(s.cfg.DefaultIdleTimeout, 0), s.cfg.MaxTTL)
	methods := v.authMethods("auth_methods", req.GetAuthMethods())
	level := v.level("assurance_level", req.GetAssuranceLevel())
	if err := v.err(); err != nil {
		return nil, err
	}
	created, err := s.store.Create(ctx, store.NewSession{
		UserID:         req.GetUserId(),
		Email:          req.GetEmail(),
		ClientIP:       ip,
		UserAgent:      req.GetUserAgent(),
		Attributes:     req.GetAttributes(),
		TTL:            ttl,
		IdleTimeout:    idle,
		AuthMethods:    methods,
		AssuranceLevel: level,
	})
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	s.log.DebugContext(ctx, "session created", sessionAttrs(created.Session.ID, created.Session.UserID)...)
	for _, id := range created.Evicted {
		s.log.InfoContext(ctx, "session revoked: over the per-user cap", sessionAttrs(id, created.Session.UserID)...)
	}
	s.auditCreate(ctx, created)
	return &sessionauthv1.CreateSessionResponse{Token: created.Token, Session: toProto(created.Session)}, nil
}

// ValidateSession implements SessionAuthority.ValidateSession.
func (s *Server) ValidateSession(ctx context.Context, req *sessionauthv1.ValidateSessionRequest) (*sessionauthv1.ValidateSessionResponse, error) {
	var v invalid
	v.token(req.GetToken())
	need := v.requirement(req.GetMinAssuranceLevel(), req.GetMaxAuthAge())
	if err := v.err(); err != nil {
		return nil, err
	}
	sess, err := s.ValidateToken(ctx, req.GetToken(), func() string { return access.CallerFromContext(ctx).EndUser })
	if err != nil {
		return nil, err
	}
	if err := s.Require(sess, need); err != nil {
		return nil, err
	}
	return &sessionauthv1.ValidateSessionResponse{Session: toProto(sess)}, nil
}

// Require checks a live session against a caller's demand for a strong or
// recent enough authentication: nil, or PERMISSION_DENIED with the
// google.rpc.ErrorInfo that says why (internal/assurance). The session is
// not revoked either way.
func (s *Server) Require(sess *store.Session, need assurance.Requirement) error {
	if need.IsZero() {
		return nil
	}
	return need.Check(sess.AssuranceLevel, sess.AuthenticatedAt, s.now())
}

// ValidateToken is the one validation path, of ValidateSession and of the
// gateways (ext_authz Check): one read, and a touch when one is due. Its
// error is the gRPC status ValidateSession would answer. A failure is
// charged to the caller's failed-validation budget and to the share of its
// end user at endUser() ("" for none), called only on a failure.
func (s *Server) ValidateToken(ctx context.Context, token string, endUser func() string) (*store.Session, error) {
	sess, err := s.store.Get(ctx, token)
	s.reused(ctx, err)
	if errors.Is(err, store.ErrNotFound) {
		err = s.failed(ctx, endUser, err)
	}
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	if sess.TouchDue() {
		// The read above has validated the session; a failed touch only delays
		// the idle expiry's slide to a later validation.
		if touched, err := s.store.Touch(ctx, sess); err != nil {
			s.log.WarnContext(ctx, "recording a validation failed", append(sessionAttrs(sess.ID, sess.UserID), "error", err)...)
		} else {
			sess = touched
		}
	}
	return sess, nil
}

// failed records an answer that tells a guesser a token is not live
// (notLive), and returns it; or, when the end user's share or the caller's
// budget is spent, the rate limit's error instead, charging nothing more.
// The end user's share is checked first: a throttled end user no longer
// spends the budget of the caller's other users.
func (s *Server) failed(ctx context.Context, endUser func() string, notLive error) error {
	if s.failedValidations == nil && s.failedPerClient == nil {
		return notLive
	}
	caller, client := access.RateLimitKey(ctx), ""
	if s.failedPerClient != nil {
		if addr := endUser(); addr != "" {
			client = access.EndUserKey(caller, addr)
			if err := s.failedPerClient.check(client); err != nil {
				return err
			}
		}
	}
	if err := s.failedValidations.check(caller); err != nil {
		return err
	}
	s.failedValidations.charge(caller)
	if client != "" {
		s.failedPerClient.charge(client)
	}
	return notLive
}

// RotateSession implements SessionAuthority.RotateSession.
func (s *Server) RotateSession(ctx context.Context, req *sessionauthv1.RotateSessionRequest) (*sessionauthv1.RotateSessionResponse, error) {
	var v invalid
	v.token(req.GetToken())
	level := v.level("assurance_level", req.GetAssuranceLevel())
	add := v.authMethods("add_auth_methods", req.GetAddAuthMethods())
	if err := v.err(); err != nil {
		return nil, err
	}
	// A rotation answers whether a token is live (and hands out a new one if
	// it is): failed rotations count against the same limit as failed
	// validations, or it would be a way around that limit.
	rotated, err := s.store.Rotate(ctx, req.GetToken(), store.Step{
		AssuranceLevel:  level,
		AddAuthMethods:  add,
		Reauthenticated: req.GetReauthenticated(),
		Check: func(methods []string) error {
			var v invalid
			v.authMethods("add_auth_methods", methods)
			return v.err()
		},
	})
	s.reused(ctx, err)
	if status.Code(err) == codes.InvalidArgument {
		return nil, err
	}
	if errors.Is(err, store.ErrNotFound) {
		err = s.failed(ctx, func() string { return access.CallerFromContext(ctx).EndUser }, err)
	}
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	s.log.DebugContext(ctx, "session rotated", sessionAttrs(rotated.Session.ID, rotated.Session.UserID)...)
	s.auditRotate(ctx, rotated)
	return &sessionauthv1.RotateSessionResponse{Token: rotated.Token, Session: toProto(rotated.Session)}, nil
}

// RevokeSession implements SessionAuthority.RevokeSession.
func (s *Server) RevokeSession(ctx context.Context, req *sessionauthv1.RevokeSessionRequest) (*sessionauthv1.RevokeSessionResponse, error) {
	var (
		revoked *store.Revocation
		err     error
		v       invalid
	)
	switch t := req.GetTarget().(type) {
	case *sessionauthv1.RevokeSessionRequest_Token:
		v.token(t.Token)
		if err := v.err(); err != nil {
			return nil, err
		}
		revoked, err = s.store.RevokeToken(ctx, t.Token)
		if err == nil && revoked == nil {
			// revoked=false tells a guesser the token is not live: a failed
			// validation, as far as the limit is concerned.
			err = s.failed(ctx, func() string { return access.CallerFromContext(ctx).EndUser }, nil)
		}
	case *sessionauthv1.RevokeSessionRequest_SessionId:
		if t.SessionId == "" {
			v.add("session_id", "is required")
			return nil, v.err()
		}
		revoked, err = s.store.Revoke(ctx, t.SessionId)
		if errors.Is(err, store.ErrMalformedSessionID) {
			v.add("session_id", "is not a session id issued by sessiond")
			return nil, v.err()
		}
	default:
		v.add("target", "set one of token or session_id")
		return nil, v.err()
	}
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	s.auditRevoke(ctx, revoked, "")
	return &sessionauthv1.RevokeSessionResponse{Revoked: revoked != nil}, nil
}

// ListUserSessions implements SessionAuthority.ListUserSessions.
func (s *Server) ListUserSessions(ctx context.Context, req *sessionauthv1.ListUserSessionsRequest) (*sessionauthv1.ListUserSessionsResponse, error) {
	var v invalid
	v.text("user_id", req.GetUserId(), maxUserIDBytes, true)
	size := v.pageSize(req.GetPageSize())
	cursor, mac, ok := pageTokenForm(pageTokenPrefix, req.GetPageToken())
	if !ok {
		v.add("page_token", "is not a next_page_token returned by ListUserSessions")
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	sessions, next, err := s.page(ctx, &v, pageTokenPrefix, req.GetUserId(), "is not a next_page_token returned by ListUserSessions for this user",
		cursor, mac, func(cursor string) ([]*store.Session, string, error) {
			return s.store.ListUser(ctx, req.GetUserId(), size, cursor)
		})
	if err != nil {
		return nil, err
	}
	return &sessionauthv1.ListUserSessionsResponse{Sessions: sessions, NextPageToken: next}, nil
}

// RevokeUserSessions implements SessionAuthority.RevokeUserSessions.
func (s *Server) RevokeUserSessions(ctx context.Context, req *sessionauthv1.RevokeUserSessionsRequest) (*sessionauthv1.RevokeUserSessionsResponse, error) {
	var v invalid
	v.text("user_id", req.GetUserId(), maxUserIDBytes, true)
	if len(req.GetExceptSessionId()) > maxSessionIDBytes {
		v.add("except_session_id", "is not a session id issued by sessiond")
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	revoked, err := s.store.RevokeUser(ctx, req.GetUserId(), req.GetExceptSessionId())
	switch {
	case errors.Is(err, store.ErrMalformedSessionID):
		v.add("except_session_id", "is not a session id issued by sessiond")
		return nil, v.err()
	case errors.Is(err, store.ErrForeignSession):
		v.add("except_session_id", "is a session of another user")
		return nil, v.err()
	case err != nil:
		return nil, s.toStatus(ctx, err)
	}
	n := 0
	if revoked != nil {
		n = len(revoked.SessionIDs)
	}
	if n > 0 {
		s.log.InfoContext(ctx, "user sessions revoked", "user_id", req.GetUserId(), "count", n)
	}
	s.auditRevoke(ctx, revoked, req.GetExceptSessionId())
	return &sessionauthv1.RevokeUserSessionsResponse{RevokedCount: int32(n)}, nil
}

func toProto(s *store.Session) *sessionauthv1.Session {
	// One allocation for the five timestamps (of the hot path's answer),
	// rather than one each.
	ts := new([5]timestamppb.Timestamp)
	at := func(i int, t time.Time) *timestamppb.Timestamp {
		ts[i].Seconds, ts[i].Nanos = t.Unix(), int32(t.Nanosecond())
		return &ts[i]
	}
	return &sessionauthv1.Session{
		SessionId:       s.ID,
		UserId:          s.UserID,
		Email:           s.Email,
		CreatedAt:       at(0, s.CreatedAt),
		ExpiresAt:       at(1, s.ExpiresAt),
		IdleExpiresAt:   at(2, s.IdleExpiresAt()),
		LastSeenAt:      at(3, s.LastSeenAt),
		ClientIp:        s.ClientIP,
		UserAgent:       s.UserAgent,
		Attributes:      s.Attributes,
		AuthenticatedAt: at(4, s.AuthenticatedAt),
		AuthMethods:     s.AuthMethods,
		AssuranceLevel:  int32(s.AssuranceLevel),
	}
}
