package store

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// Rotated-token reuse detection (SuperTokens' refresh-token theft detection).
//
// Rotate leaves a marker behind the token it replaced, and points its
// rotation chain (the sessions rotated one from another, named by the
// first one's UUID) at the new session:
//
//	sessiond:v1:{<tag>}:r:<old uuid>   hash: h  the old token's SHA-256
//	                                         n  the successor's UUID
//	                                         t  when it was rotated (Unix ms)
//	                                         rf the UUID the old session was
//	                                            itself rotated from, if any
//	                                         f  the chain's first UUID, when
//	                                            it is not the old one's
//	                                         l  (the chain's first marker
//	                                            only) the UUID of the chain's
//	                                            newest session
//
// expiring with the successor's absolute expiry (Extend moves the chain's
// first marker and newest ones with it), so that they live as long as the
// successor can. When a token
// that matches a marker is presented to Get or Rotate after the rotation
// grace, the token was used after a newer one replaced it: either a stolen
// copy or a very late retry. The family's newest session (however many
// rotations on: one read, whoever rotated it since) is revoked with
// ReasonReuseDetected. Within the grace (two tabs racing to rotate, a retry)
// the token is just not found.

// DefaultRotationGrace is Config.RotationGrace's default.
const DefaultRotationGrace = 10 * time.Second

// maxRotationChain bounds the markers of a chain whose expiry Extend moves
// (the newest ones): a token rotated away more than that many rotations
// before an Extend is forgotten at the chain's former expiry.
const maxRotationChain = 32

const (
	markerFieldNext      = "n"
	markerFieldRotatedAt = "t"
	markerFieldNewest    = "l"
)

// marker is a rotated-away token.
type marker struct {
	tokenHash string
	next      string // the successor's UUID
	rotatedAt time.Time
	prev      string // the UUID of the session the old one was rotated from
	family    string // the UUID of the first session of the chain
}

func (s *Store) markerKey(t tag, member string) string { return s.keyBase(t) + "r:" + member }

// fields are the hash fields of the marker of the session member.
func (m marker) fields(member string) map[string]any {
	f := map[string]any{fieldTokenHash: m.tokenHash, markerFieldNext: m.next, markerFieldRotatedAt: m.rotatedAt.UnixMilli()}
	if m.prev != "" {
		f[fieldRotatedFrom] = m.prev
	}
	if m.family != member {
		f[fieldFamily] = m.family
	}
	return f
}

// decodeMarker reads the marker of the session member.
func decodeMarker(member string, f map[string]string) (marker, bool) {
	at, err := strconv.ParseInt(f[markerFieldRotatedAt], 10, 64)
	m := marker{tokenHash: f[fieldTokenHash], next: f[markerFieldNext], rotatedAt: time.UnixMilli(at), prev: f[fieldRotatedFrom], family: f[fieldFamily]}
	if m.family == "" {
		m.family = member // the chain's first marker
	}
	if _, uerr := uuid.Parse(m.next); err != nil || uerr != nil || m.tokenHash == "" {
		return marker{}, false
	}
	return m, true
}

// ReuseError is the error of Get and Rotate for a rotated-away token
// presented after the rotation grace. It is ErrNotFound (errors.Is), for the
// token is not live.
type ReuseError struct {
	// ReusedID is the session whose rotated-away token was presented.
	ReusedID string
	// Revocation is the event of the session revoked for it: the newest
	// session of its rotation chain. Nil when that one was not live.
	Revocation *Revocation
}

func (e *ReuseError) Error() string {
	return "rotated-away token presented again: " + ErrNotFound.Error()
}

// Is makes a ReuseError ErrNotFound.
func (e *ReuseError) Is(target error) bool { return target == ErrNotFound }

// checkReuse is the verdict on a well-formed token whose session key does not
// exist: ErrNotFound, or a *ReuseError when it was rotated away more than the
// grace ago (and then its chain's live session has been revoked).
func (s *Store) checkReuse(ctx context.Context, pt parsedToken) error {
	f, err := s.rdb.HGetAll(ctx, s.markerKey(pt.id.tag, pt.id.uuid.String())).Result()
	if err != nil {
		return wrapErr(ctx, "get", err)
	}
	m, ok := decodeMarker(pt.id.uuid.String(), f)
	if !ok || !pt.matches(m.tokenHash) || s.withinGrace(m.rotatedAt) {
		return ErrNotFound
	}
	ev, err := s.revokeChain(ctx, pt.id, m)
	if err != nil {
		return err
	}
	return &ReuseError{ReusedID: pt.id.String(), Revocation: ev}
}

// withinGrace reports whether a token rotated away at rotatedAt is, now,
// within the rotation grace: up to it, inclusive. With no grace, never:
// not even in the millisecond of the rotation, which the times (whole
// milliseconds) cannot tell from the rotation itself.
func (s *Store) withinGrace(rotatedAt time.Time) bool {
	return s.rotationGrace > 0 && !s.now().After(rotatedAt.Add(s.rotationGrace))
}

// revokeChain revokes the newest session of the rotation chain that m, a
// marker of it, belongs to, with ReasonReuseDetected naming reused. Should
// the chain move on (rotated again) between the read of its newest session
// and the revocation, it reads again.
func (s *Store) revokeChain(ctx context.Context, reused sessionID, m marker) (*Revocation, error) {
	last := ""
	for range 8 {
		newest, err := s.rdb.HGet(ctx, s.markerKey(reused.tag, m.family), markerFieldNewest).Result()
		switch {
		case errors.Is(err, redis.Nil):
			return nil, nil // the chain is gone
		case err != nil:
			return nil, wrapErr(ctx, "reuse", err)
		case newest == last:
			return nil, nil // what is there is not live (ended, cut off)
		}
		u, err := uuid.Parse(newest)
		if err != nil {
			return nil, nil
		}
		ev, err := s.revoke(ctx, sessionID{tag: reused.tag, uuid: u}, nil, ReasonReuseDetected, reused.String())
		if err != nil || ev != nil {
			return ev, err
		}
		last = newest
	}
	return nil, nil
}

// chainMarkers returns the keys of the markers of the tokens that rotations
// replaced on the way to a session rotated from from (its rotatedFrom),
// newest first, at most maxRotationChain, reading them under tx's WATCH.
func (s *Store) chainMarkers(ctx context.Context, tx *redis.Tx, t tag, from string) ([]string, error) {
	var keys []string
	for from != "" && len(keys) < maxRotationChain {
		key := s.markerKey(t, from)
		if err := tx.Watch(ctx, key).Err(); err != nil {
			return nil, err
		}
		f, err := tx.HGetAll(ctx, key).Result()
		if err != nil {
			return nil, err
		}
		m, ok := decodeMarker(from, f)
		if !ok {
			break
		}
		keys = append(keys, key)
		from = m.prev
	}
	return keys, nil
}
