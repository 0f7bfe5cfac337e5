package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// The store's errors. Callers test them with errors.Is; nothing above the store
// needs to know about Redis.
var (
	// ErrNotFound: no live session matches. The token or id is unknown,
	// malformed, expired or revoked; the store does not say which.
	ErrNotFound = errors.New("session not found")
	// ErrUnavailable: Redis could not be reached or did not answer in time,
	// or answered that it cannot serve now (loading, read-only replica,
	// cluster down). Nothing can be said about any session: fail closed.
	ErrUnavailable = errors.New("session store unavailable")
	// ErrConflict: a write lost the optimistic-locking race for a user's index
	// more times than the store retries. Nothing was written.
	ErrConflict = errors.New("too many concurrent writes for one user")
	// ErrForeignSession: a session id given as belonging to a user carries
	// another user's routing tag.
	ErrForeignSession = errors.New("session id belongs to another user")
	// ErrMalformedSessionID: a session id that sessiond cannot have issued.
	ErrMalformedSessionID = errors.New("malformed session id")
	// ErrMalformedCursor: a list cursor that ListUser or List cannot have
	// produced.
	ErrMalformedCursor = errors.New("malformed list cursor")
	// ErrNotReplicated: a write was applied by the master but fewer replicas
	// than Config.MinReplicaAcks acknowledged it within the timeout; it may
	// or may not survive a failover. Always wrapped with ErrUnavailable.
	ErrNotReplicated = errors.New("write not acknowledged by enough replicas")
	// ErrWritesRefused: Redis answers but refuses writes (out of memory
	// with noeviction, a read-only replica, a failed RDB save, too few
	// replicas for min-replicas-to-write); the error is a *RefusedError.
	// Always wrapped with ErrUnavailable.
	ErrWritesRefused = errors.New("session store refuses writes")
)

// RefusedError is a write Redis refused, with why.
type RefusedError struct {
	// Reason says why, in words an operator can act on.
	Reason string
	err    error // Redis' reply
}

func (e *RefusedError) Error() string { return e.Reason + ": " + e.err.Error() }

// Is makes a RefusedError ErrWritesRefused and ErrUnavailable.
func (e *RefusedError) Is(target error) bool {
	return target == ErrWritesRefused || target == ErrUnavailable
}

// refusals are the replies with which Redis refuses a write it could
// otherwise make, and what they mean.
var refusals = []struct{ prefix, reason string }{
	{"OOM", "out of memory: Redis reached maxmemory and its policy (noeviction) evicts nothing"},
	{"READONLY", "read-only: sessiond reached a replica, not the master"},
	{"MISCONF", "the last RDB save failed and Redis stops writes (stop-writes-on-bgsave-error)"},
	{"NOREPLICAS", "too few replicas for Redis' own min-replicas-to-write"},
}

// refusedBy returns the RefusedError of a reply that refuses a write, or nil.
func refusedBy(err error) error {
	var rerr redis.Error
	if err == nil || !errors.As(err, &rerr) {
		return nil
	}
	for _, r := range refusals {
		if redis.HasErrorPrefix(err, r.prefix) {
			return &RefusedError{Reason: r.reason, err: err}
		}
	}
	return nil
}

// transientPrefixes are Redis error replies that mean "this node cannot serve
// now", as opposed to a bug in the command sent. MOVED and ASK reach the
// store only when a Cluster's slots moved more often than go-redis follows
// redirections (a failover in progress), and EXECABORT when a command queued
// in a MULTI was refused for one of these reasons.
var transientPrefixes = []string{"LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "BUSY", "NOREPLICAS", "OOM", "MOVED", "ASK", "EXECABORT"}

// wrapErr classifies an error from go-redis. Context errors are returned as
// they are (wrapped), so the caller can tell its own deadline from Redis'.
func wrapErr(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("%s: %w", op, ctxErr)
	}
	if errors.Is(err, redis.TxFailedErr) {
		return fmt.Errorf("%s: %w", op, ErrConflict)
	}
	if errors.Is(err, ErrWritesRefused) || errors.Is(err, ErrNotReplicated) {
		return fmt.Errorf("%s: %w", op, err)
	}
	if r := refusedBy(err); r != nil {
		return fmt.Errorf("%s: %w", op, r)
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		for _, p := range transientPrefixes {
			if redis.HasErrorPrefix(err, p) {
				return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
			}
		}
		// A reply error that is not transient is a fault in sessiond (or an
		// incompatible server): not the caller's to retry.
		return fmt.Errorf("%s: %w", op, err)
	}
	// Everything else is transport: refused, reset, timed out, pool exhausted,
	// client closed.
	return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
}
