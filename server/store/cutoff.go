package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultCutoffMaxAge is Config.CutoffMaxAge's default.
const DefaultCutoffMaxAge = time.Second

// The revoke-all cutoff ("not before"): every session created before it is
// revoked, whoever its user. It is one key, sessiond:v1:cutoff (the Unix
// millisecond), that only moves forward and never expires, so that every
// sessiond sharing the Redis agrees on it.
//
// Reading the key on every validation would double the hot path's round
// trips, so each Store keeps the cutoff in memory and vouches for it only as
// long as Config.CutoffMaxAge after the read that it came from was sent:
//
//   - RevokeAll raises the local copy as soon as it commits, and publishes
//     the new cutoff on the revocation channel; WatchRevocations raises the
//     local copy of every Store that subscribes, within milliseconds.
//   - RefreshCutoff reads the key (the daemon calls it every quarter of
//     CutoffMaxAge, and the health check does); a read only ever raises the
//     local copy.
//   - Every operation that decides whether a session is live first checks
//     that the local copy is fresh (sent less than CutoffMaxAge ago), and
//     otherwise reads the key itself, once for all the calls waiting, failing
//     with ErrUnavailable if it cannot.
//
// A read sent after RevokeAll committed sees its cutoff (reads go to the
// master), so no session created before a cutoff validates more than
// CutoffMaxAge after RevokeAll returned, even if every event was lost.
type cutoff struct {
	at atomic.Int64 // the cutoff in Unix milliseconds; 0: none
	// sent is when the last successful read was sent, in nanoseconds since
	// base (monotonic); 0: never.
	sent   atomic.Int64
	base   time.Time
	maxAge time.Duration

	mu      sync.Mutex
	reading chan struct{} // closed when the read in progress ends; nil: none
	readErr error         // the outcome of the last read, for the calls that waited on it
}

func (s *Store) cutoffKey() string { return s.prefix + ":v1:cutoff" }

// raise moves the cutoff forward to ms, never back.
func (c *cutoff) raise(ms int64) {
	for {
		cur := c.at.Load()
		if ms <= cur || c.at.CompareAndSwap(cur, ms) {
			return
		}
	}
}

// excludes reports whether the cutoff revokes a session created at created.
func (c *cutoff) excludes(created time.Time) bool {
	return created.UnixMilli() < c.at.Load()
}

// Cutoff returns the revoke-all cutoff this Store knows (the zero time for
// none).
func (s *Store) Cutoff() time.Time {
	if ms := s.cutoff.at.Load(); ms != 0 {
		return time.UnixMilli(ms)
	}
	return time.Time{}
}

// fresh reports whether the local cutoff is recent enough to be trusted.
func (c *cutoff) fresh() bool {
	sent := c.sent.Load()
	return sent != 0 && time.Since(c.base)-time.Duration(sent) < c.maxAge
}

// ensureCutoff returns nil when the local cutoff can be trusted, reading it
// from Redis first if it is stale. Concurrent callers share one read.
func (s *Store) ensureCutoff(ctx context.Context) error {
	if s.cutoff.fresh() {
		return nil
	}
	return s.readCutoff(ctx, true)
}

// RefreshCutoff reads the revoke-all cutoff from Redis and raises the local
// copy. Calls made while a read is in progress wait for it (or for ctx) and
// share its outcome.
func (s *Store) RefreshCutoff(ctx context.Context) error { return s.readCutoff(ctx, false) }

// readCutoff is RefreshCutoff; ifStale (ensureCutoff's) reads nothing when
// the cutoff has become fresh since the caller found it stale (a read ended
// in between), so that the calls that find it stale together send one read.
func (s *Store) readCutoff(ctx context.Context, ifStale bool) error {
	c := &s.cutoff
	for {
		c.mu.Lock()
		wait := c.reading
		if wait == nil && ifStale && c.fresh() {
			c.mu.Unlock()
			return nil
		}
		if wait == nil {
			break // with c.mu held: this call reads
		}
		c.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return wrapErr(ctx, "read cutoff", ctx.Err())
		}
		c.mu.Lock()
		err := c.readErr
		c.mu.Unlock()
		// The reader's own deadline is not this call's: read again.
		if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
	}
	done := make(chan struct{})
	c.reading = done
	c.mu.Unlock()

	sent := time.Since(c.base)
	v, err := s.rdb.Get(ctx, s.cutoffKey()).Result()
	switch {
	case errors.Is(err, redis.Nil):
		err = nil
	case err == nil:
		var ms int64
		if ms, err = strconv.ParseInt(v, 10, 64); err == nil {
			c.raise(ms)
		} else {
			err = fmt.Errorf("read cutoff: %w: the value %q is not a Unix millisecond (RevokeAllSessions rewrites it)", ErrUnavailable, v)
		}
	default:
		err = wrapErr(ctx, "read cutoff", err)
	}
	if err == nil {
		for { // a slower concurrent read must not move it back
			prev := c.sent.Load()
			if int64(sent) <= prev || c.sent.CompareAndSwap(prev, max(int64(sent), 1)) {
				break
			}
		}
	}
	c.mu.Lock()
	c.reading, c.readErr = nil, err
	c.mu.Unlock()
	close(done)
	return err
}

// KeepCutoffFresh reads the cutoff every quarter of Config.CutoffMaxAge until
// ctx ends, so that validations never wait for the read themselves. Failed
// reads are left to the next tick (and to the operations, which fail closed
// once the cutoff is stale).
func (s *Store) KeepCutoffFresh(ctx context.Context) {
	t := time.NewTicker(s.cutoff.maxAge / 4)
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, s.cutoff.maxAge)
		_ = s.RefreshCutoff(rctx)
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// RevokeAll revokes every session created before before, whoever its user:
// it raises the cutoff to before (never lowers it) and publishes the event,
// in one transaction. It returns the cutoff in force afterwards, and the
// event it published (nil when a later cutoff was already in force).
//
// Creation times are kept to the millisecond, so the cutoff is before
// rounded up to the next millisecond: a session created in the same
// millisecond as before is cut off whether it came just before or just
// after (the safe side). Sessions created at or after the returned cutoff
// live.
func (s *Store) RevokeAll(ctx context.Context, before time.Time) (time.Time, *Revocation, error) {
	key := s.cutoffKey()
	ms := before.UnixMilli()
	if before.After(time.UnixMilli(ms)) {
		ms++
	}
	var (
		inForce int64
		event   *Revocation
	)
	err := s.watch(ctx, "revoke all", func(tx *redis.Tx) error {
		event = nil
		v, err := tx.Get(ctx, key).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		cur, _ := strconv.ParseInt(v, 10, 64)
		if cur >= ms {
			inForce = cur
			return nil
		}
		ev := Revocation{Reason: ReasonAllRevoked, IssuedBefore: time.UnixMilli(ms), At: s.now()}
		if err := s.commit(ctx, tx, func(p redis.Pipeliner) {
			p.Set(ctx, key, ms, 0)
			s.publishRevocation(ctx, p, ev)
		}); err != nil {
			return err
		}
		inForce, event = ms, &ev
		return nil
	}, key)
	if err != nil {
		return time.Time{}, nil, err
	}
	s.cutoff.raise(inForce)
	return time.UnixMilli(inForce), event, nil
}
