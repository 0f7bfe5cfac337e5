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
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
)

// Session is a live session. It never holds the token.
type Session = sessionauthv1.Session

// Client calls sessiond. It is safe for concurrent use.
type Client struct {
	rpc sessionauthv1.SessionAuthorityClient
}

// New returns a client that calls sessiond over conn.
func New(conn grpc.ClientConnInterface) *Client {
	return &Client{rpc: sessionauthv1.NewSessionAuthorityClient(conn)}
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
func (c *Client) Validate(ctx context.Context, token string) (*Session, error) {
	resp, err := c.rpc.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: token})
	if err != nil {
		return nil, err
	}
	return resp.GetSession(), nil
}

// Revoke ends the session the token belongs to (logout). It reports whether
// a live session was ended; revoking what is already gone is not an error.
func (c *Client) Revoke(ctx context.Context, token string) (bool, error) {
	resp, err := c.rpc.RevokeSession(ctx, &sessionauthv1.RevokeSessionRequest{Target: &sessionauthv1.RevokeSessionRequest_Token{Token: token}})
	return resp.GetRevoked(), err
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
