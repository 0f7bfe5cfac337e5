package server

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sessiond/sessiond/server/store"
)

// errStoreTimeout is the cause of the context deadline the server sets on
// every call (Config.RequestTimeout), to tell it from the caller's own.
var errStoreTimeout = errors.New("session store did not answer in time")

// errClass is what an error from the store (or a rate limit) means for the
// caller. classify is the one place that decides it: toStatus turns it into
// the gRPC status, and the metrics into an operation's outcome.
type errClass int

const (
	classOK          errClass = iota
	classRateLimited          // a limit refused the call: its own status
	classNotFound             // no live session: unknown, expired, revoked
	classMalformed            // an id or cursor sessiond cannot have issued
	classTimeout              // a deadline passed (ours or the caller's)
	classCanceled             // the caller went away
	classUnavailable          // Redis cannot be reached or cannot serve now
	classConflict             // lost the WATCH race too often
	classInternal             // anything else: a fault in sessiond
)

func classify(err error) errClass {
	var limited *rateLimitedError
	switch {
	case err == nil:
		return classOK
	case errors.As(err, &limited):
		return classRateLimited
	case errors.Is(err, store.ErrNotFound):
		return classNotFound
	case errors.Is(err, context.DeadlineExceeded):
		return classTimeout
	case errors.Is(err, context.Canceled):
		return classCanceled
	case errors.Is(err, store.ErrUnavailable):
		return classUnavailable
	case errors.Is(err, store.ErrConflict):
		return classConflict
	case errors.Is(err, store.ErrMalformedSessionID), errors.Is(err, store.ErrForeignSession), errors.Is(err, store.ErrMalformedCursor),
		status.Code(err) == codes.InvalidArgument: // a limit the store checked for the handler (Update, Rotate)
		return classMalformed
	}
	return classInternal
}

// toStatus maps an error from the store to the status the caller sees. It is
// the only place where that happens. Redis error text never reaches the wire:
// what is not the caller's to know is logged and answered with a generic
// message. (The handlers answer malformed ids and cursors themselves, naming
// the field.)
func (s *Server) toStatus(ctx context.Context, err error) error {
	switch classify(err) {
	case classOK:
		return nil
	case classRateLimited:
		var limited *rateLimitedError
		errors.As(err, &limited)
		return limited.st.Err()
	case classNotFound:
		return status.Error(codes.Unauthenticated, invalidTokenReason)
	case classMalformed:
		return status.Error(codes.InvalidArgument, "not an id issued by sessiond")
	case classTimeout, classCanceled:
		if errors.Is(context.Cause(ctx), errStoreTimeout) {
			s.log.WarnContext(ctx, "session store timed out", "timeout", s.cfg.RequestTimeout)
			return status.Error(codes.Unavailable, "session store did not answer in time; retry later")
		}
		return status.FromContextError(err).Err()
	case classUnavailable:
		s.log.WarnContext(ctx, "session store unavailable", "error", err)
		var refused *store.RefusedError
		switch {
		case errors.As(err, &refused):
			return status.Error(codes.Unavailable, "the session store refuses writes ("+refused.Reason+"); nothing was written: retry later, and tell its operator")
		case errors.Is(err, store.ErrNotReplicated):
			return status.Error(codes.Unavailable, "the write reached the Redis master but not enough of its replicas in time: it may or may not survive a failover; retry (revocations are idempotent)")
		}
		return status.Error(codes.Unavailable, "session store unavailable; retry later")
	case classConflict:
		return status.Error(codes.Aborted, "too many concurrent changes to this user's sessions; retry")
	default:
		s.log.ErrorContext(ctx, "internal error", "error", err)
		return status.Error(codes.Internal, "internal error")
	}
}

// WithRequestTimeout bounds how long ctx's call may wait for the store: a
// hung Redis gives Unavailable after Config.RequestTimeout, whatever
// deadline (or none) the caller set. The caller's own deadline is kept
// when it comes first. Call release when the call ends. The gRPC calls get
// it from UnaryDeadlineInterceptor; the forward-auth endpoints call it.
func (s *Server) WithRequestTimeout(ctx context.Context) (_ context.Context, release context.CancelFunc) {
	if s.cfg.RequestTimeout <= 0 {
		return ctx, func() {}
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= s.cfg.RequestTimeout {
		// The caller's deadline comes first: no timer of our own (the hot
		// path is cheaper without it), and its expiry is DeadlineExceeded.
		return ctx, func() {}
	}
	return context.WithTimeoutCause(ctx, s.cfg.RequestTimeout, errStoreTimeout)
}

// UnaryDeadlineInterceptor bounds how long a call waits for the store
// (WithRequestTimeout).
func (s *Server) UnaryDeadlineInterceptor(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, release := s.WithRequestTimeout(ctx)
	defer release()
	return handler(ctx, req)
}

// sessionAttrs are safe to log for a session: never the token.
func sessionAttrs(id, userID string) []any {
	return []any{slog.String("session_id", id), slog.String("user_id", userID)}
}
