package server

import (
	"context"
	"log/slog"
	"maps"
	"slices"

	"google.golang.org/grpc"

	"github.com/sessiond/sessiond/server/access"
	"github.com/sessiond/sessiond/server/store"
)

// The audit log is one event per change to the live sessions, made by a
// call: a session created, rotated, updated (attributes or expiry) or revoked
// (by token, by id, all of a user's, evicted over the per-user cap, for a
// reused rotated-away token, or every session before a cutoff). Sessions
// that simply expire make no event. Each event is one record on Config.Audit, separate from the
// operational log:
//
//	time       when it happened (the server's clock)
//	msg        the event: session.created, session.rotated, session.updated
//	           or session.revoked
//	log_type   "audit", always (to tell the events apart if the audit log and
//	           the operational log share a stream)
//	reason     session.revoked: logout (RevokeSession by token), revoked
//	           (RevokeSession by id), user_revoked (RevokeUserSessions) or
//	           evicted (over the per-user cap, by a CreateSession),
//	           reuse_detected (a rotated-away token presented after the
//	           rotation grace) or all_revoked (RevokeAllSessions);
//	           session.rotated: rotated
//	change     session.updated: attributes (UpdateSession: set_attributes
//	           and remove_attributes name the keys, never the values) or
//	           expiry (ExtendSession: expires_at)
//	session_id the session created, or the new session of a rotation
//	session_ids, count
//	           session.revoked: the sessions revoked, and how many
//	replaced_session_id
//	           session.rotated: the session the new one replaced (revoked)
//	except_session_id
//	           user_revoked: the session kept, if the call named one
//	reused_session_id
//	           reuse_detected: the session whose rotated-away token was
//	           presented
//	issued_before
//	           all_revoked: every session created before it is revoked
//	user_id    the sessions' user
//	caller     who called: {name, addr} (see access.Caller)
//	method     the gRPC method called
//
// An event never holds a token or a token's hash. Events are written after
// the change is committed; if the audit log cannot be written, the change
// stands and the failure is logged (at error level) in the operational log.
const (
	auditCreated = "session.created"
	auditRotated = "session.rotated"
	auditRevoked = "session.revoked"
	auditUpdated = "session.updated"
)

// auditLogType is the log_type of every audit event.
const auditLogType = "audit"

// auditReason names a revocation's reason in the audit log, as the API's
// RevocationEvent.Reason does (REASON_LOGOUT is "logout").
func auditReason(r store.Reason) string {
	switch r {
	case store.ReasonLogout:
		return "logout"
	case store.ReasonRevoked:
		return "revoked"
	case store.ReasonUserRevoked:
		return "user_revoked"
	case store.ReasonEvicted:
		return "evicted"
	case store.ReasonRotated:
		return "rotated"
	case store.ReasonReuseDetected:
		return "reuse_detected"
	case store.ReasonAllRevoked:
		return "all_revoked"
	default:
		return "unspecified"
	}
}

// auditEvent writes one audit event, if there is an audit log.
func (s *Server) auditEvent(ctx context.Context, event string, attrs ...slog.Attr) {
	if s.cfg.Audit == nil {
		return
	}
	h := s.cfg.Audit.Handler()
	if !h.Enabled(ctx, slog.LevelInfo) {
		return
	}
	r := slog.NewRecord(s.now(), slog.LevelInfo, event, 0)
	r.AddAttrs(slog.String("log_type", auditLogType))
	r.AddAttrs(attrs...)
	r.AddAttrs(slog.Any("caller", access.CallerFromContext(ctx)))
	if m, ok := grpc.Method(ctx); ok {
		r.AddAttrs(slog.String("method", m))
	}
	if err := h.Handle(ctx, r); err != nil {
		s.log.ErrorContext(ctx, "writing the audit log failed", "event", event, "error", err)
	}
}

// auditCreate records a session created, and the sessions it evicted.
func (s *Server) auditCreate(ctx context.Context, c *store.Created) {
	s.auditEvent(ctx, auditCreated, slog.String("session_id", c.Session.ID), slog.String("user_id", c.Session.UserID))
	if len(c.Evicted) > 0 {
		s.auditRevoke(ctx, &store.Revocation{SessionIDs: c.Evicted, UserID: c.Session.UserID, Reason: store.ReasonEvicted}, "")
	}
}

// auditRotate records a rotation: the new session and the one it replaced.
func (s *Server) auditRotate(ctx context.Context, c *store.Created) {
	s.auditEvent(ctx, auditRotated, slog.String("reason", auditReason(store.ReasonRotated)),
		slog.String("session_id", c.Session.ID), slog.String("replaced_session_id", c.Replaced),
		slog.String("user_id", c.Session.UserID))
}

// auditRevoke records a revocation; r nil (nothing revoked) records nothing.
func (s *Server) auditRevoke(ctx context.Context, r *store.Revocation, exceptID string) {
	if r == nil || len(r.SessionIDs) == 0 {
		return
	}
	attrs := []slog.Attr{
		slog.String("reason", auditReason(r.Reason)),
		slog.Any("session_ids", r.SessionIDs),
		slog.Int("count", len(r.SessionIDs)),
		slog.String("user_id", r.UserID),
	}
	if exceptID != "" {
		attrs = append(attrs, slog.String("except_session_id", exceptID))
	}
	if r.ReusedID != "" {
		attrs = append(attrs, slog.String("reused_session_id", r.ReusedID))
	}
	s.auditEvent(ctx, auditRevoked, attrs...)
}

// sortedKeys returns m's keys in order (for the audit log: never values).
func sortedKeys(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}
