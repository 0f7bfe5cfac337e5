// Package server implements the sessionauth.v1.SessionAuthority gRPC service:
// it validates requests, calls the session store and maps the store's errors
// to gRPC status codes. It knows nothing about Redis.
package server

import (
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/server/store"
)

// Store is what the service needs from the session store; *store.Store is the
// implementation.
type Store interface {
	Create(ctx context.Context, ns store.NewSession) (*store.Created, error)
	Get(ctx context.Context, token string) (*store.Session, error)
	TouchDue(sess *store.Session) bool
	Touch(ctx context.Context, sess *store.Session) (*store.Session, error)
	RevokeTokenEvent(ctx context.Context, token string) (*store.Revocation, error)
	RevokeEvent(ctx context.Context, sessionID string) (*store.Revocation, error)
	RevokeUserEvent(ctx context.Context, userID, exceptID string) (*store.Revocation, error)
	Rotate(ctx context.Context, token string) (*store.Created, error)
	ListUser(ctx context.Context, userID string, limit int, cursor string) ([]*store.Session, string, error)
	WatchRevocations(ctx context.Context, ready func(), onEvent func(store.Revocation)) error
	Ping(ctx context.Context) error
}

// Config is the service's policy.
type Config struct {
	// DefaultTTL is the absolute lifetime of a session whose request sets none.
	DefaultTTL time.Duration
	// MaxTTL is the longest lifetime a request may ask for.
	MaxTTL time.Duration
	// DefaultIdleTimeout applies when a request sets none; 0 means sessions
	// have no idle timeout unless the request sets one.
	DefaultIdleTimeout time.Duration
	// RequestTimeout bounds the time one call may wait for the store, whatever
	// the caller's deadline; past it the call fails with Unavailable.
	RequestTimeout time.Duration
	// CreateLimit limits CreateSession calls per caller (see RateLimit);
	// over it a call fails with ResourceExhausted. Zero: no limit.
	CreateLimit RateLimit
	// FailedValidationLimit limits, per caller, the validations
	// (ValidateSession, ext_authz Check) of a token that is not a live
	// session's; successful validations spend nothing. A caller over it gets
	// ResourceExhausted (ext_authz: HTTP 429) for every validation, good
	// token or not, until its bucket refills. Zero: no limit.
	FailedValidationLimit RateLimit
	// RateLimitKeys caps the callers each limit tracks; 0 means
	// DefaultRateLimitKeys.
	RateLimitKeys int
	// Audit, if not nil, receives the audit events (see audit.go); nil:
	// no audit log.
	Audit *slog.Logger
}

// DefaultConfig is the configuration sessiond starts with.
var DefaultConfig = Config{
	DefaultTTL:         24 * time.Hour,
	MaxTTL:             30 * 24 * time.Hour,
	DefaultIdleTimeout: time.Hour,
	RequestTimeout:     5 * time.Second,
}

// Server is the SessionAuthority service.
type Server struct {
	sessionauthv1.UnimplementedSessionAuthorityServer
	store       Store
	cfg         Config
	log         *slog.Logger
	revocations revocations
	now         func() time.Time
	// createLimit and failedValidations are nil when not limited.
	createLimit, failedValidations *limiter
	metrics                        *Metrics // nil: not measured (metrics.go)
}

// New returns the service over st. It does no I/O.
func New(st Store, cfg Config, log *slog.Logger, opts ...Option) *Server {
	o := defaultOptions
	for _, opt := range opts {
		opt(&o)
	}
	s := &Server{store: o.metrics.InstrumentStore(st), cfg: cfg, log: log, now: o.clock, metrics: o.metrics,
		createLimit:       newLimiter("CreateSession calls", cfg.CreateLimit, cfg.RateLimitKeys, o.clock),
		failedValidations: newLimiter("failed validations", cfg.FailedValidationLimit, cfg.RateLimitKeys, o.clock),
	}
	s.revocations.metrics = o.metrics
	return s
}

// CreateSession implements SessionAuthority.CreateSession.
func (s *Server) CreateSession(ctx context.Context, req *sessionauthv1.CreateSessionRequest) (*sessionauthv1.CreateSessionResponse, error) {
	if err := s.createLimit.take(rateLimitKey(ctx)); err != nil {
		return nil, s.toStatus(ctx, err)
	}
	var v invalid
	v.text("user_id", req.GetUserId(), maxUserIDBytes, true)
	v.text("email", req.GetEmail(), maxEmailBytes, false)
	v.text("user_agent", req.GetUserAgent(), maxUserAgentBytes, false)
	ip := v.clientIP(req.GetClientIp())
	v.attributes(req.GetAttributes())
	ttl := v.lifetime("ttl", req.GetTtl(), s.cfg.DefaultTTL, s.cfg.MaxTTL)
	idle := v.lifetime("idle_timeout", req.GetIdleTimeout(), s.cfg.DefaultIdleTimeout, s.cfg.MaxTTL)
	if err := v.err(); err != nil {
		return nil, err
	}
	created, err := s.store.Create(ctx, store.NewSession{
		UserID:      req.GetUserId(),
		Email:       req.GetEmail(),
		ClientIP:    ip,
		UserAgent:   req.GetUserAgent(),
		Attributes:  req.GetAttributes(),
		TTL:         ttl,
		IdleTimeout: idle,
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
	if err := v.err(); err != nil {
		return nil, err
	}
	sess, err := s.validate(ctx, func() string { return rateLimitKey(ctx) }, req.GetToken())
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	return &sessionauthv1.ValidateSessionResponse{Session: toProto(sess)}, nil
}

// validate is the one validation path (ValidateSession and ext_authz Check):
// one read, and a touch when one is due. A failed validation is counted
// against key (see Config.FailedValidationLimit); over the limit, a call is
// refused before the read, whatever its token: answering a good guess would
// defeat the limit.
//
// key is computed only when a limit needs it (someone has failed recently, or
// this call failed): on the hot path it would cost a parse of the peer
// address for nothing.
func (s *Server) validate(ctx context.Context, key func() string, token string) (*store.Session, error) {
	if s.failedValidations.tracking() {
		if err := s.failedValidations.check(key()); err != nil {
			return nil, err
		}
	}
	sess, err := s.store.Get(ctx, token)
	if errors.Is(err, store.ErrNotFound) && s.failedValidations != nil {
		s.failedValidations.charge(key())
	}
	if err != nil {
		return nil, err
	}
	if s.store.TouchDue(sess) {
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

// RotateSession implements SessionAuthority.RotateSession.
func (s *Server) RotateSession(ctx context.Context, req *sessionauthv1.RotateSessionRequest) (*sessionauthv1.RotateSessionResponse, error) {
	var v invalid
	v.token(req.GetToken())
	if err := v.err(); err != nil {
		return nil, err
	}
	// A rotation answers whether a token is live (and hands out a new one if
	// it is): failed rotations count against the same limit as failed
	// validations, or it would be a way around that limit.
	key := rateLimitKey(ctx)
	if err := s.failedValidations.check(key); err != nil {
		return nil, s.toStatus(ctx, err)
	}
	rotated, err := s.store.Rotate(ctx, req.GetToken())
	if errors.Is(err, store.ErrNotFound) {
		s.failedValidations.charge(key)
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
		revoked, err = s.store.RevokeTokenEvent(ctx, t.Token)
	case *sessionauthv1.RevokeSessionRequest_SessionId:
		if t.SessionId == "" {
			v.add("session_id", "is required")
			return nil, v.err()
		}
		revoked, err = s.store.RevokeEvent(ctx, t.SessionId)
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
	size := int(req.GetPageSize())
	switch {
	case size < 0:
		v.add("page_size", "must not be negative")
	case size == 0:
		size = defaultPageSize
	case size > maxPageSize:
		v.add("page_size", "%d exceeds the maximum of %d", size, maxPageSize)
	}
	cursor, ok := decodePageToken(req.GetPageToken())
	if !ok {
		v.add("page_token", "is not a next_page_token returned by ListUserSessions")
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	sessions, next, err := s.store.ListUser(ctx, req.GetUserId(), size, cursor)
	if errors.Is(err, store.ErrMalformedCursor) {
		v.add("page_token", "is not a next_page_token returned by ListUserSessions for this user")
		return nil, v.err()
	}
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	resp := &sessionauthv1.ListUserSessionsResponse{NextPageToken: encodePageToken(next)}
	for _, sess := range sessions {
		resp.Sessions = append(resp.Sessions, toProto(sess))
	}
	return resp, nil
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
	revoked, err := s.store.RevokeUserEvent(ctx, req.GetUserId(), req.GetExceptSessionId())
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
	return &sessionauthv1.Session{
		SessionId:     s.ID,
		UserId:        s.UserID,
		Email:         s.Email,
		CreatedAt:     timestamppb.New(s.CreatedAt),
		ExpiresAt:     timestamppb.New(s.ExpiresAt),
		IdleExpiresAt: timestamppb.New(s.IdleExpiresAt()),
		LastSeenAt:    timestamppb.New(s.LastSeenAt),
		ClientIp:      s.ClientIP,
		UserAgent:     s.UserAgent,
		Attributes:    s.Attributes,
	}
}

// A page token is the id of the last session of the previous page, wrapped so
// that callers treat it as opaque.
func encodePageToken(cursor string) string {
	if cursor == "" {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString([]byte(pageTokenPrefix + cursor))
}

func decodePageToken(tok string) (string, bool) {
	if tok == "" {
		return "", true
	}
	if len(tok) > maxPageTokenBytes {
		return "", false
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(tok)
	if err != nil {
		return "", false
	}
	cursor, ok := strings.CutPrefix(string(b), pageTokenPrefix)
	return cursor, ok && cursor != ""
}
