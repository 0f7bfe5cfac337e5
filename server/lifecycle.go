package server

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/server/access"
	"github.com/sessiond/sessiond/server/store"
)

// The RPCs of a session's life after its creation: change it, look it up,
// extend it, walk every session, and cut every session off.

// errNoSuchSession is the NOT_FOUND of the RPCs that name a session by id.
var errNoSuchSession = status.Error(codes.NotFound, "no live session with this session_id")

// UpdateSession implements SessionAuthority.UpdateSession.
func (s *Server) UpdateSession(ctx context.Context, req *sessionauthv1.UpdateSessionRequest) (*sessionauthv1.UpdateSessionResponse, error) {
	var (
		v   invalid
		ref store.Ref
	)
	switch t := req.GetTarget().(type) {
	case *sessionauthv1.UpdateSessionRequest_Token:
		v.token(t.Token)
		ref.Token = t.Token
	case *sessionauthv1.UpdateSessionRequest_SessionId:
		v.sessionID("session_id", t.SessionId)
		ref.ID = t.SessionId
	default:
		v.add("target", "set one of token or session_id")
	}
	set, remove := req.GetSetAttributes(), req.GetRemoveAttributes()
	if len(set) == 0 && len(remove) == 0 {
		v.add("set_attributes", "nothing to change: set set_attributes or remove_attributes")
	}
	v.attributes(set)
	if len(remove) > maxRemoveAttrs {
		v.add("remove_attributes", "has %d keys; the limit is %d", len(remove), maxRemoveAttrs)
	} else {
		for _, k := range remove {
			v.text("remove_attributes", k, maxAttrKeyBytes, true)
		}
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	sess, err := s.store.Update(ctx, ref, store.AttributeChange{Set: set, Remove: remove, Check: attributeResult("set_attributes")})
	switch {
	case err == nil:
	case status.Code(err) == codes.InvalidArgument:
		return nil, err // the result is over a limit
	case errors.Is(err, store.ErrMalformedSessionID):
		v.add("session_id", "is not a session id issued by sessiond")
		return nil, v.err()
	case errors.Is(err, store.ErrNotFound) && ref.ID != "":
		return nil, errNoSuchSession
	case errors.Is(err, store.ErrNotFound):
		// Like a rotation, an update by token tells whether it is live.
		return nil, s.toStatus(ctx, s.failed(ctx, func() string { return access.CallerFromContext(ctx).EndUser }, err))
	default:
		return nil, s.toStatus(ctx, err)
	}
	s.log.DebugContext(ctx, "session updated", sessionAttrs(sess.ID, sess.UserID)...)
	s.auditEvent(ctx, auditUpdated, slog.String("change", "attributes"), slog.String("session_id", sess.ID), slog.String("user_id", sess.UserID),
		slog.Any("set_attributes", sortedKeys(set)), slog.Any("remove_attributes", remove))
	return &sessionauthv1.UpdateSessionResponse{Session: toProto(sess)}, nil
}

// GetSession implements SessionAuthority.GetSession.
func (s *Server) GetSession(ctx context.Context, req *sessionauthv1.GetSessionRequest) (*sessionauthv1.GetSessionResponse, error) {
	var v invalid
	v.sessionID("session_id", req.GetSessionId())
	if err := v.err(); err != nil {
		return nil, err
	}
	sess, err := s.store.GetByID(ctx, req.GetSessionId())
	if err != nil {
		return nil, s.byIDStatus(ctx, err)
	}
	return &sessionauthv1.GetSessionResponse{Session: toProto(sess)}, nil
}

// ExtendSession implements SessionAuthority.ExtendSession.
func (s *Server) ExtendSession(ctx context.Context, req *sessionauthv1.ExtendSessionRequest) (*sessionauthv1.ExtendSessionResponse, error) {
	var v invalid
	v.sessionID("session_id", req.GetSessionId())
	ttl := v.lifetime("ttl", req.GetTtl(), s.cfg.DefaultTTL, s.cfg.MaxTTL)
	if err := v.err(); err != nil {
		return nil, err
	}
	sess, err := s.store.Extend(ctx, req.GetSessionId(), ttl)
	if err != nil {
		return nil, s.byIDStatus(ctx, err)
	}
	s.log.DebugContext(ctx, "session extended", append(sessionAttrs(sess.ID, sess.UserID), "expires_at", sess.ExpiresAt)...)
	s.auditEvent(ctx, auditUpdated, slog.String("change", "expiry"), slog.String("session_id", sess.ID), slog.String("user_id", sess.UserID),
		slog.Time("expires_at", sess.ExpiresAt))
	return &sessionauthv1.ExtendSessionResponse{Session: toProto(sess)}, nil
}

// byIDStatus maps the errors of an RPC that names a session by id.
func (s *Server) byIDStatus(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, store.ErrMalformedSessionID):
		var v invalid
		v.add("session_id", "is not a session id issued by sessiond")
		return v.err()
	case errors.Is(err, store.ErrNotFound):
		return errNoSuchSession
	}
	return s.toStatus(ctx, err)
}

// ListSessions implements SessionAuthority.ListSessions.
func (s *Server) ListSessions(ctx context.Context, req *sessionauthv1.ListSessionsRequest) (*sessionauthv1.ListSessionsResponse, error) {
	var v invalid
	size := v.pageSize(req.GetPageSize())
	cursor, mac, ok := pageTokenForm(listTokenPrefix, req.GetPageToken())
	if !ok {
		v.add("page_token", "is not a next_page_token returned by ListSessions")
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	sessions, next, err := s.page(ctx, &v, listTokenPrefix, "", "is not a next_page_token returned by ListSessions",
		cursor, mac, func(cursor string) ([]*store.Session, string, error) {
			return s.store.List(ctx, size, cursor)
		})
	if err != nil {
		return nil, err
	}
	return &sessionauthv1.ListSessionsResponse{Sessions: sessions, NextPageToken: next}, nil
}

// RevokeAllSessions implements SessionAuthority.RevokeAllSessions.
func (s *Server) RevokeAllSessions(ctx context.Context, req *sessionauthv1.RevokeAllSessionsRequest) (*sessionauthv1.RevokeAllSessionsResponse, error) {
	var v invalid
	now := s.now()
	before := now
	if ts := req.GetIssuedBefore(); ts != nil {
		if err := ts.CheckValid(); err != nil {
			v.add("issued_before", "is not a valid timestamp")
		} else if before = ts.AsTime(); before.After(now) {
			v.add("issued_before", "%s is in the future (now is %s); a cutoff applies to sessions already issued",
				before.UTC().Format("2006-01-02T15:04:05.000Z"), now.UTC().Format("2006-01-02T15:04:05.000Z"))
		}
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	inForce, ev, err := s.store.RevokeAll(ctx, before)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	if ev != nil {
		s.log.WarnContext(ctx, "every session created before the cutoff revoked", "issued_before", inForce, "caller", access.CallerFromContext(ctx))
		s.auditEvent(ctx, auditRevoked, slog.String("reason", auditReason(ev.Reason)), slog.Time("issued_before", inForce))
	}
	return &sessionauthv1.RevokeAllSessionsResponse{IssuedBefore: timestamppb.New(inForce)}, nil
}

// reused logs and audits a rotated-away token presented again (err of the
// store's Get or Rotate); any other err it ignores.
func (s *Server) reused(ctx context.Context, err error) {
	if err == nil {
		return // the hot path: no allocation for errors.As
	}
	var reuse *store.ReuseError
	if !errors.As(err, &reuse) {
		return
	}
	attrs := []any{"reused_session_id", reuse.ReusedID, "caller", access.CallerFromContext(ctx)}
	s.metrics.reuse(reuse.Revocation != nil)
	if reuse.Revocation == nil {
		s.log.WarnContext(ctx, "rotated-away token presented again after the rotation grace; no session of its chain was live", attrs...)
		return
	}
	s.log.WarnContext(ctx, "rotated-away token presented again after the rotation grace: its successor revoked",
		append(attrs, "session_ids", reuse.Revocation.SessionIDs, "user_id", reuse.Revocation.UserID)...)
	s.auditRevoke(ctx, reuse.Revocation, "")
}
