package server

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sessiond/sessiond/server/store"
)

// errStoreTimeout is the cause of the context deadline the server sets on
// every call (Config.RequestTimeout), to tell it from the caller's own.
var errStoreTimeout = errors.New("session store did not answer in time")

// toStatus maps an error from the store to the status the caller sees. It is
// the only place where that happens. Redis error text never reaches the wire:
// what is not the caller's to know is logged and answered with a generic
// message.
func (s *Server) toStatus(ctx context.Context, err error) error {
	var limited *rateLimitedError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &limited):
		return limited.st.Err()
	case errors.Is(err, store.ErrNotFound):
		return status.Error(codes.Unauthenticated, invalidTokenReason)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		if errors.Is(context.Cause(ctx), errStoreTimeout) {
			s.log.WarnContext(ctx, "session store timed out", "timeout", s.cfg.RequestTimeout)
			return status.Error(codes.Unavailable, "session store did not answer in time; retry later")
		}
		return status.FromContextError(err).Err()
	case errors.Is(err, store.ErrUnavailable):
		s.log.WarnContext(ctx, "session store unavailable", "error", err)
		return status.Error(codes.Unavailable, "session store unavailable; retry later")
	case errors.Is(err, store.ErrConflict):
		return status.Error(codes.Aborted, "too many concurrent changes to this user's sessions; retry")
	default:
		s.log.ErrorContext(ctx, "internal error", "error", err)
		return status.Error(codes.Internal, "internal error")
	}
}

// logAttrs are safe to log for a session: never the token.
func sessionAttrs(id, userID string) []any {
	return []any{slog.String("session_id", id), slog.String("user_id", userID)}
}
