// Package client is the Go client of sessiond, the session authority.
//
// The caller owns the connection: dial sessiond with grpc.NewClient (with the
// credentials, load balancing and interceptors of its choice) and pass the
// connection to New.
//
// Errors are gRPC status errors, with the codes documented on each RPC in
// proto/sessionauth/v1: use status.Code(err). In short, codes.Unauthenticated
// means the token is not (or no longer) a live session, codes.Unavailable that
// sessiond could not reach Redis (retry; never treat it as valid), and
// codes.InvalidArgument a bad request, with the field in the message.
package client

import (
	"context"
	"iter"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/types/known/durationpb"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
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
// stops using it whenever the stream is down, until it is back. Cached
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
//     replicas.
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
}

// Create starts a session for a user whose credentials the caller has
// checked, and returns its bearer token (to hand to the user agent, and
// never to log) with the session.
func (c *Client) Create(ctx context.Context, ns NewSession) (token string, s *Session, err error) {
	req := &sessionauthv1.CreateSessionRequest{
		UserId:     ns.UserID,
		Email:      ns.Email,
		ClientIp:   ns.ClientIP,
		UserAgent:  ns.UserAgent,
		Attributes: ns.Attributes,
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
// With WithCache, a session validated before is answered from the cache
// while the revocation stream is established; otherwise sessiond is asked.
func (c *Client) Validate(ctx context.Context, token string) (*Session, error) {
	if c.cache == nil {
		resp, err := c.rpc.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: token})
		return resp.GetSession(), err
	}
	if s, ok := c.cache.get(token); ok {
		return s, nil
	}
	start := c.cache.begin()
	resp, err := c.rpc.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: token})
	if err != nil {
		return nil, err
	}
	c.cache.add(token, resp.GetSession(), start)
	return resp.GetSession(), nil
}

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

// RevokeByID ends the session with this public id ("sign out that device").
// The caller must have checked that the session is one it may end.
func (c *Client) RevokeByID(ctx context.Context, sessionID string) (bool, error) {
	resp, err := c.rpc.RevokeSession(ctx, &sessionauthv1.RevokeSessionRequest{Target: &sessionauthv1.RevokeSessionRequest_SessionId{SessionId: sessionID}})
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
	return func(yield func(*Session, error) bool) {
		token := ""
		for {
			resp, err := c.rpc.ListUserSessions(ctx, &sessionauthv1.ListUserSessionsRequest{UserId: userID, PageSize: int32(pageSize), PageToken: token})
			if err != nil {
				yield(nil, err)
				return
			}
			for _, s := range resp.GetSessions() {
				if !yield(s, nil) {
					return
				}
			}
			if token = resp.GetNextPageToken(); token == "" {
				return
			}
		}
	}
}

// RevocationEvent reports sessions revoked together (see WatchRevocations in
// the proto).
type RevocationEvent = sessionauthv1.RevocationEvent

// Revocations streams every revocation made through any sessiond on the same
// Redis from the moment the stream is established, until ctx ends or the
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
