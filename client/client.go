// Package client is the Go client of sessiond, the session authority.
//
// The caller owns the connection: dial sessiond with grpc.NewClient (with the
// credentials, load balancing and interceptors of its choice) and pass the
// connection to New.
//
// Errors are gRPC status errors, with the codes documented on each RPC in
// proto/sessionauth/v1: use status.Code(err). In short, codes.Unauthenticated
// means the token is not (or no longer) a live session, codes.Unavailable that
// sessiond could not reach Redis (retry; never treat it as valid),
// codes.InvalidArgument a bad request, with the field in the message, and
// codes.PermissionDenied, when a caller demanded a strong or recent enough
// authentication (WithMinAssuranceLevel, WithMaxAuthAge), a live session
// that falls short: see StepUpDenial and StepUp.
package client

import (
	"context"
	"iter"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/internal/assurance"
)

// Session is a live session. It never holds the token.
type Session = sessionauthv1.Session

// Client calls sessiond. It is safe for concurrent use.
type Client struct {
	rpc   sessionauthv1.SessionAuthorityClient
	opts  options
	cache *cache // nil without WithCache

	stopWatch context.CancelFunc
	watchDone chan struct{}
}

// Option configures a Client.
type Option func(*options)

type options struct {
	cacheSize  int
	cacheTTL   time.Duration
	logger     *slog.Logger
	minBackoff time.Duration
	maxBackoff time.Duration
}

var defaultOptions = options{
	logger:     discardLogger,
	minBackoff: 100 * time.Millisecond,
	maxBackoff: 5 * time.Second,
}

// WithCache turns on a cache of validated sessions: at most size sessions,
// each kept at most ttl and never past its own absolute or idle expiry. It is
// off by default: every Validate asks sessiond.
//
// The cache is safe against revocation: the client keeps a WatchRevocations
// stream open, evicts a session as soon as sessiond reports it revoked
// (typically within milliseconds of the RevokeSession call returning, from
// any sessiond instance on the same Redis), and drops the whole cache and
// stops using it whenever the stream is down, until it is back. The same
// stream keeps cached data fresh: a session whose attributes or expiry
// changed (UpdateSession, ExtendSession) is evicted, and read again at its
// next validation, typically within milliseconds (target: 100ms) of the
// update returning; a RevokeAllSessions cutoff evicts every session created
// before it, and the client refuses those sessions from then on. Cached
// Sessions are shared: do not modify them. Call Close to stop the stream.
func WithCache(size int, ttl time.Duration) Option {
	return func(o *options) { o.cacheSize, o.cacheTTL = size, ttl }
}

// WithLogger sets where the client logs the state of its revocation stream.
// Default: nowhere.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// WithReconnectBackoff sets the bounds of the jittered exponential backoff
// between reconnections of the revocation stream. Default 100ms to 5s.
func WithReconnectBackoff(min, max time.Duration) Option {
	return func(o *options) { o.minBackoff, o.maxBackoff = min, max }
}

// New returns a client that calls sessiond over conn. With WithCache it
// starts a goroutine that keeps the revocation stream open; Close stops it.
func New(conn grpc.ClientConnInterface, opts ...Option) *Client {
	c := &Client{rpc: sessionauthv1.NewSessionAuthorityClient(conn), opts: defaultOptions}
	for _, o := range opts {
		o(&c.opts)
	}
	if c.opts.cacheSize > 0 && c.opts.cacheTTL > 0 {
		c.cache = newCache(c.opts.cacheSize, c.opts.cacheTTL)
		ctx, cancel := context.WithCancel(context.Background())
		c.stopWatch, c.watchDone = cancel, make(chan struct{})
		go func() {
			defer close(c.watchDone)
			c.watchRevocations(ctx)
		}()
	}
	return c
}

// Close stops the revocation stream of a caching client and empties its
// cache. It does not close the connection, which the caller owns.
func (c *Client) Close() error {
	if c.stopWatch != nil {
		c.stopWatch()
		<-c.watchDone
	}
	return nil
}

// CacheStats reports what the cache has done since New (see CacheStats);
// without WithCache it returns the zero CacheStats. It is cheap enough to
// call on every metrics scrape: package clientmetrics exports it to
// Prometheus.
func (c *Client) CacheStats() CacheStats {
	if c.cache == nil {
		return CacheStats{}
	}
	return c.cache.stats()
}

// DialOptions are the dial options this package recommends for a
// connection to sessiond, to add to the caller's credentials:
//
//   - reconnection backoff capped at 1s (gRPC's default grows to 2 minutes,
//     so a service would answer 503 long after sessiond is back);
//   - keepalive pings every 30s, also while idle, which sessiond's
//     enforcement policy (at most one per 10s) permits, so that a dead
//     connection is noticed without waiting for a call to time out;
//   - round-robin over every address the name resolves to: dial
//     "dns:///sessiond.example.internal:50051" to spread calls over several
//     replicas;
//   - fixed HTTP/2 flow-control windows (1 MiB per call, 4 MiB per
//     connection). gRPC's default estimates the bandwidth-delay product
//     instead, sending a PING whenever response data arrives and none is
//     out: with a call or a few in flight, one more frame each way, and a
//     read and a write more on both sides, per call. sessiond's answers are
//     small; the estimate pays off only for bulk transfers.
//
// For example: grpc.NewClient(target, append(client.DialOptions(),
// grpc.WithTransportCredentials(creds))...).
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: time.Second,
		}),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig": [{"round_robin": {}}]}`),
		grpc.WithStaticStreamWindowSize(1 << 20),
		grpc.WithStaticConnWindowSize(4 << 20),
	}
}

// RPC returns the generated client, for call options or fields this package
// does not wrap.
func (c *Client) RPC() sessionauthv1.SessionAuthorityClient { return c.rpc }

// NewSession describes a session to create. Zero TTL and IdleTimeout mean
// the server's defaults.
type NewSession struct {
	UserID      string // required
	Email       string
	ClientIP    string
	UserAgent   string
	Attributes  map[string]string
	TTL         time.Duration
	IdleTimeout time.Duration
	// AuthMethods are the authentication methods the user completed to log
	// in ("password", "totp", "webauthn"): at most 16, each 1 to 64 ASCII
	// letters, digits, '.', '_', ':' or '-'; duplicates are dropped.
	AuthMethods []string
	// AssuranceLevel is what the login amounts to, 1 to 3 (NIST SP 800-63B
	// AAL1: one factor; AAL2: two; AAL3: a hardware-bound,
	// phishing-resistant authenticator). 0 means 1. sessiond does not judge
	// the methods: the login backend says what they amount to.
	AssuranceLevel int
}

// Create starts a session for a user whose credentials the caller has
// checked, and returns its bearer token (to hand to the user agent, and
// never to log) with the session. The session's AuthenticatedAt is its
// creation time.
func (c *Client) Create(ctx context.Context, ns NewSession) (token string, s *Session, err error) {
	req := &sessionauthv1.CreateSessionRequest{
		UserId:         ns.UserID,
		Email:          ns.Email,
		ClientIp:       ns.ClientIP,
		UserAgent:      ns.UserAgent,
		Attributes:     ns.Attributes,
		AuthMethods:    ns.AuthMethods,
		AssuranceLevel: int32(ns.AssuranceLevel),
	}
	if ns.TTL != 0 {
		req.Ttl = durationpb.New(ns.TTL)
	}
	if ns.IdleTimeout != 0 {
		req.IdleTimeout = durationpb.New(ns.IdleTimeout)
	}
	resp, err := c.rpc.CreateSession(ctx, req)
	if err != nil {
		return "", nil, err
	}
	return resp.GetToken(), resp.GetSession(), nil
}

// Validate returns the live session the token belongs to. An unknown,
// malformed, expired or revoked token gives codes.Unauthenticated.
//
// With WithMinAssuranceLevel or WithMaxAuthAge, a live session that falls
// short gives codes.PermissionDenied with the ErrorInfo that says why (see
// StepUpDenial); an out-of-range level or a negative age gives
// codes.InvalidArgument, without asking sessiond.
//
// With WithCache, a session validated before is answered from the cache
// while the revocation stream is established; otherwise sessiond is asked
// without the requirement, the session is cached, and the requirement is
// checked here, by the check sessiond makes (so one cached session serves
// every requirement, and a denied one costs no further call). A session
// created before a RevokeAllSessions cutoff the client has heard of gives
// codes.Unauthenticated even from a sessiond that has not heard of it yet.
// Without WithCache, sessiond checks the requirement.
func (c *Client) Validate(ctx context.Context, token string, opts ...ValidateOption) (*Session, error) {
	var need assurance.Requirement
	for _, o := range opts {
		o.applyValidate(&need)
	}
	if err := requirementError(need); err != nil {
		return nil, err
	}
	return c.validate(ctx, token, need)
}

// validate is Validate with a requirement known to be valid.
func (c *Client) validate(ctx context.Context, token string, need assurance.Requirement) (*Session, error) {
	if s, ok, err := c.fromCache(token, need); ok {
		return s, err
	}
	return c.validateRemote(ctx, token, need)
}

// fromCache answers validate from the cache alone when it holds token's
// session (ok): the session, or the requirement's denial. Not ok: ask
// sessiond (validateRemote), which counts no second miss.
func (c *Client) fromCache(token string, need assurance.Requirement) (s *Session, ok bool, err error) {
	if c.cache == nil {
		return nil, false, nil
	}
	if s, ok = c.cache.get(token); !ok {
		return nil, false, nil
	}
	if err := checkSession(need, s, c.cache.now()); err != nil {
		return nil, true, err
	}
	return s, true, nil
}

// validateRemote is validate asking sessiond, after fromCache found nothing.
func (c *Client) validateRemote(ctx context.Context, token string, need assurance.Requirement) (*Session, error) {
	if c.cache == nil {
		resp, err := c.rpc.ValidateSession(ctx, validateRequest(token, need))
		if err != nil {
			return nil, err
		}
		if err := recheck(need, resp.GetSession()); err != nil {
			return nil, err
		}
		return resp.GetSession(), nil
	}
	start := c.cache.begin()
	resp, err := c.rpc.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: token})
	if err != nil {
		return nil, err
	}
	s := resp.GetSession()
	if !c.cache.add(token, s, start) {
		return nil, status.Error(codes.Unauthenticated, msgCutOff)
	}
	if err := checkSession(need, s, c.cache.now()); err != nil {
		return nil, err
	}
	return s, nil
}

// msgCutOff is Validate's answer for a session that a RevokeAllSessions
// cutoff revoked, which a lagging sessiond still validated: sessiond's own
// message for a token that is not live.
const msgCutOff = "session token is invalid or expired"

// Revoke ends the session the token belongs to (logout). It reports whether
// a live session was ended; revoking what is already gone is not an error.
func (c *Client) Revoke(ctx context.Context, token string) (bool, error) {
	if c.cache != nil {
		c.cache.forget(token)
	}
	resp, err := c.rpc.RevokeSession(ctx, &sessionauthv1.RevokeSessionRequest{Target: &sessionauthv1.RevokeSessionRequest_Token{Token: token}})
	return resp.GetRevoked(), err
}

// Rotate replaces the session of token by a new one with the same data, a
// new session id and a new token (on a privilege change: OWASP ASVS 7.2.4),
// and revokes the old one. Hand the new token to the user agent in place of
// the old. Of concurrent rotations of one token exactly one succeeds; the
// others get codes.Unauthenticated.
func (c *Client) Rotate(ctx context.Context, token string) (newToken string, s *Session, err error) {
	if c.cache != nil {
		c.cache.forget(token)
	}
	resp, err := c.rpc.RotateSession(ctx, &sessionauthv1.RotateSessionRequest{Token: token})
	if err != nil {
		return "", nil, err
	}
	return resp.GetToken(), resp.GetSession(), nil
}

// Reauthentication is what the user has just proved to the login backend,
// for StepUp.
type Reauthentication struct {
	// Methods are the authentication methods the user has just completed
	// ("password", "totp", "webauthn"), added to the session's AuthMethods
	// (duplicates dropped); the limits of NewSession.AuthMethods apply to
	// the result. May be empty.
	Methods []string
	// AssuranceLevel is what the session's authentication now amounts to, 1
	// to 3 (see NewSession.AssuranceLevel). 0 keeps the session's level.
	AssuranceLevel int
}

// StepUp is Rotate after the user has proved who they are again (a
// password, a second factor), typically in answer to a step-up denial (see
// StepUpDenial): the new session's AuthenticatedAt is now, its AuthMethods
// gain r.Methods, and its AssuranceLevel becomes r.AssuranceLevel (0: kept).
// Hand the new token to the user agent in place of the old, which no longer
// validates. The errors are Rotate's, and codes.InvalidArgument for a level
// outside 0 to 3 or a malformed method.
//
// Streams opened with the old token end (StreamServerInterceptor), as on
// any rotation. To change the level or methods without recording an
// authentication, call RotateSession through RPC.
func (c *Client) StepUp(ctx context.Context, token string, r Reauthentication) (newToken string, s *Session, err error) {
	if c.cache != nil {
		c.cache.forget(token)
	}
	resp, err := c.rpc.RotateSession(ctx, &sessionauthv1.RotateSessionRequest{
		Token:           token,
		AssuranceLevel:  int32(r.AssuranceLevel),
		AddAuthMethods:  r.Methods,
		Reauthenticated: true,
	})
	if err != nil {
		return "", nil, err
	}
	return resp.GetToken(), resp.GetSession(), nil
}

// RevokeByID ends the session with this public id ("sign out that device").
// The caller must have checked that the session is one it may end.
func (c *Client) RevokeByID(ctx context.Context, sessionID string) (bool, error) {
	resp, err := c.rpc.RevokeSession(ctx, &sessionauthv1.RevokeSessionRequest{Target: &sessionauthv1.RevokeSessionRequest_SessionId{SessionId: sessionID}})
	if c.cache != nil && resp.GetRevoked() {
		c.cache.revoke([]string{sessionID})
	}
	return resp.GetRevoked(), err
}

// RevokeUser ends every live session of the user but exceptSessionID (when
// not empty), and returns how many it ended ("log out everywhere").
func (c *Client) RevokeUser(ctx context.Context, userID, exceptSessionID string) (int, error) {
	resp, err := c.rpc.RevokeUserSessions(ctx, &sessionauthv1.RevokeUserSessionsRequest{UserId: userID, ExceptSessionId: exceptSessionID})
	return int(resp.GetRevokedCount()), err
}

// UserSessions iterates over the user's live sessions, newest first, reading
// pages of pageSize (0: the server default) as it goes. It stops at the
// first error, which it yields.
func (c *Client) UserSessions(ctx context.Context, userID string, pageSize int) iter.Seq2[*Session, error] {
	return pages(func(token string) ([]*Session, string, error) {
		resp, err := c.rpc.ListUserSessions(ctx, &sessionauthv1.ListUserSessionsRequest{UserId: userID, PageSize: int32(pageSize), PageToken: token})
		return resp.GetSessions(), resp.GetNextPageToken(), err
	})
}

// pages iterates over the sessions of the pages fetch reads, from the
// first (token "") to the last (next ""), stopping at the first error,
// which it yields.
func pages(fetch func(token string) (sessions []*Session, next string, err error)) iter.Seq2[*Session, error] {
	return func(yield func(*Session, error) bool) {
		token := ""
		for {
			sessions, next, err := fetch(token)
			if err != nil {
				yield(nil, err)
				return
			}
			for _, s := range sessions {
				if !yield(s, nil) {
					return
				}
			}
			if token = next; token == "" {
				return
			}
		}
	}
}

// AttributeChange is a change to a session's attributes (Update,
// UpdateByID): Set adds or replaces attributes, Remove deletes keys (a key
// in both is set; a key the session lacks is ignored). The result must
// respect NewSession.Attributes' limits: at most 32 entries, keys 1 to 64
// bytes, values at most 1024, 8192 in all.
type AttributeChange struct {
	Set    map[string]string
	Remove []string
}

// Update changes the attributes of the live session the token belongs to,
// in one transaction, and returns the session as updated; concurrent
// updates of different attributes all land. The session stays live; every
// caching client drops its copy (REASON_UPDATED on the revocation stream),
// this one before Update returns. Errors: codes.Unauthenticated (no such
// live session), codes.InvalidArgument (nothing to change, or over a
// limit), codes.ResourceExhausted (in place of Unauthenticated while
// failures are throttled, as for Rotate), codes.Unavailable or
// codes.Aborted (retry).
func (c *Client) Update(ctx context.Context, token string, change AttributeChange) (*Session, error) {
	resp, err := c.rpc.UpdateSession(ctx, &sessionauthv1.UpdateSessionRequest{
		Target:        &sessionauthv1.UpdateSessionRequest_Token{Token: token},
		SetAttributes: change.Set, RemoveAttributes: change.Remove,
	})
	if c.cache != nil {
		if err != nil {
			c.cache.forgetUpdated(token) // it may have been applied
		} else {
			c.cache.update([]string{resp.GetSession().GetSessionId()})
		}
	}
	if err != nil {
		return nil, err
	}
	return resp.GetSession(), nil
}

// UpdateByID is Update for the session with this public id (an operator, a
// backend); no such live session is codes.NotFound.
func (c *Client) UpdateByID(ctx context.Context, sessionID string, change AttributeChange) (*Session, error) {
	resp, err := c.rpc.UpdateSession(ctx, &sessionauthv1.UpdateSessionRequest{
		Target:        &sessionauthv1.UpdateSessionRequest_SessionId{SessionId: sessionID},
		SetAttributes: change.Set, RemoveAttributes: change.Remove,
	})
	if c.cache != nil {
		c.cache.update([]string{sessionID})
	}
	if err != nil {
		return nil, err
	}
	return resp.GetSession(), nil
}

// Session returns the live session with this public id: an operator's
// lookup, never answered from the cache. Errors: codes.NotFound (no such
// live session), codes.InvalidArgument (not a session id), codes.Unavailable.
func (c *Client) Session(ctx context.Context, sessionID string) (*Session, error) {
	resp, err := c.rpc.GetSession(ctx, &sessionauthv1.GetSessionRequest{SessionId: sessionID})
	if err != nil {
		return nil, err
	}
	return resp.GetSession(), nil
}

// Extend sets the absolute expiry of the live session with this id to now +
// ttl (0: the server default, flag --default-ttl), longer or shorter than
// before; its idle timeout is unchanged. Caching clients drop their copy,
// as on Update. Errors: codes.NotFound (no such live session),
// codes.InvalidArgument (ttl under 1s or over the server maximum, flag
// --max-ttl), codes.Unavailable, codes.Aborted.
func (c *Client) Extend(ctx context.Context, sessionID string, ttl time.Duration) (*Session, error) {
	req := &sessionauthv1.ExtendSessionRequest{SessionId: sessionID}
	if ttl != 0 {
		req.Ttl = durationpb.New(ttl)
	}
	resp, err := c.rpc.ExtendSession(ctx, req)
	if c.cache != nil {
		c.cache.update([]string{sessionID})
	}
	if err != nil {
		return nil, err
	}
	return resp.GetSession(), nil
}

// AllSessions iterates over every live session of every user, reading pages
// of up to pageSize (0: the server default, 50; at most 200) as it goes: an
// operator's walk over the whole store, in no particular order. A page may
// be short or empty without the walk being over. A session live for the
// whole walk is yielded at least once, rarely twice (deduplicate by
// SessionId if that matters); one created or ended during the walk may or
// may not be. It stops at the first error, which it yields.
func (c *Client) AllSessions(ctx context.Context, pageSize int) iter.Seq2[*Session, error] {
	return pages(func(token string) ([]*Session, string, error) {
		resp, err := c.rpc.ListSessions(ctx, &sessionauthv1.ListSessionsRequest{PageSize: int32(pageSize), PageToken: token})
		return resp.GetSessions(), resp.GetNextPageToken(), err
	})
}

// RevokeAll is the incident button: every session created before
// issuedBefore (the zero time: now, by sessiond's clock), whoever its user,
// stops validating on every sessiond sharing the Redis within a second, and
// every caching client drops it at once (this one before RevokeAll
// returns). Sessions created at or after the cutoff are untouched.
// RevokeAll returns the cutoff in force: issuedBefore rounded up to the
// millisecond (creation times are kept to the millisecond, so a session
// created within that millisecond is cut off too), or a later cutoff set
// before (the cutoff only moves forward). Errors: codes.InvalidArgument
// (issuedBefore in the future), codes.Unavailable, codes.Aborted.
func (c *Client) RevokeAll(ctx context.Context, issuedBefore time.Time) (time.Time, error) {
	req := &sessionauthv1.RevokeAllSessionsRequest{}
	if !issuedBefore.IsZero() {
		req.IssuedBefore = timestamppb.New(issuedBefore)
	}
	resp, err := c.rpc.RevokeAllSessions(ctx, req)
	if err != nil {
		return time.Time{}, err
	}
	inForce := resp.GetIssuedBefore().AsTime()
	if c.cache != nil {
		c.cache.revokeBefore(inForce)
	}
	return inForce, nil
}

// RevocationEvent reports sessions revoked together, a session's data
// changed (REASON_UPDATED: not a revocation), or a RevokeAllSessions cutoff
// (REASON_ALL_REVOKED: issued_before set, session_ids empty). See
// WatchRevocations in the proto.
type RevocationEvent = sessionauthv1.RevocationEvent

// Revocations streams every revocation (and every change to a session's
// data) made through any sessiond on the same Redis from the moment the
// stream is established, until ctx ends or the
// stream breaks (it then yields the error: events may have been missed). A
// client built WithCache already does this for its cache; use it to keep
// your own derived state in step.
func (c *Client) Revocations(ctx context.Context) iter.Seq2[*RevocationEvent, error] {
	return func(yield func(*RevocationEvent, error) bool) {
		stream, err := c.rpc.WatchRevocations(ctx, &sessionauthv1.WatchRevocationsRequest{})
		if err != nil {
			yield(nil, err)
			return
		}
		for {
			ev, err := stream.Recv()
			if err != nil {
				yield(nil, err)
				return
			}
			if !yield(ev, nil) {
				return
			}
		}
	}
}
