package store

import (
	"context"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// Rotated-token reuse detection (SuperTokens' refresh-token theft detection).
//
// Rotate leaves a marker behind the token it replaced:
//
//	sessiond:v1:{<tag>}:r:<old uuid>   hash: h  the old token's SHA-256
//	                                         n  the successor's UUID
//	                                         t  when it was rotated (Unix ms)
//	                                         rf the UUID the old session was
//	                                            itself rotated from, if any
//
// expiring with the successor's absolute expiry (Extend moves the markers of
// its chain with it), so the marker lives as long as the successor can. When
// a token that matches a marker is presented to Get or Rotate after the
// rotation grace, the token was used after a newer one replaced it: either
// a stolen copy or a very late retry. The live session of the chain (the
// successor, or the session it was rotated into, and so on) is revoked with
// ReasonReuseDetected. Within the grace (two tabs racing to rotate, a retry)
// the token is just not found.

// DefaultRotationGrace is Config.RotationGrace's default.
const DefaultRotationGrace = 10 * time.Second

// maxRotationChain bounds the markers followed from a reused token to the
// live session of its chain, and the markers Extend moves.
const maxRotationChain = 32

const (
	markerFieldNext      = "n"
	markerFieldRotatedAt = "t"
)

// marker is a rotated-away token.
type marker struct {
	tokenHash string
	next      string // the successor's UUID
	rotatedAt time.Time
	prev      string // the UUID of the session the old one was rotated from
}

func (s *Store) markerKey(t tag, member string) string { return s.keyBase(t) + "r:" + member }

func (m marker) fields() map[string]any {
	f := map[string]any{fieldTokenHash: m.tokenHash, markerFieldNext: m.next, markerFieldRotatedAt: m.rotatedAt.UnixMilli()}
	if m.prev != "" {
		f[fieldRotatedFrom] = m.prev
	}
	return f
}

func decodeMarker(f map[string]string) (marker, bool) {
	at, err := strconv.ParseInt(f[markerFieldRotatedAt], 10, 64)
	m := marker{tokenHash: f[fieldTokenHash], next: f[markerFieldNext], rotatedAt: time.UnixMilli(at), prev: f[fieldRotatedFrom]}
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
	// Revocation is the event of the session revoked for it: the live
	// session rotated from ReusedID. Nil when none was live any more.
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
	m, ok := decodeMarker(f)
	if !ok || !pt.matches(m.tokenHash) || !s.now().After(m.rotatedAt.Add(s.rotationGrace)) {
		return ErrNotFound
	}
	ev, err := s.revokeChain(ctx, pt.id, m)
	if err != nil {
		return err
	}
	return &ReuseError{ReusedID: pt.id.String(), Revocation: ev}
}

// revokeChain revokes the live session of the rotation chain that m starts,
// with ReasonReuseDetected naming reused. A rotation chain has at most one
// live session (Rotate revokes the old one as it creates the new); should
// it move on (rotated again) between the walk and the revocation, the walk
// is done again.
func (s *Store) revokeChain(ctx context.Context, reused sessionID, m marker) (*Revocation, error) {
	last := ""
	for range 8 {
		victim, err := s.chainEnd(ctx, reused.tag, m.next)
		if err != nil || victim == "" || victim == last {
			return nil, err // nothing live (or what is there is not live: ended, cut off)
		}
		u, err := uuid.Parse(victim)
		if err != nil {
			return nil, nil
		}
		ev, err := s.revoke(ctx, sessionID{tag: reused.tag, uuid: u}, nil, ReasonReuseDetected, reused.String())
		if err != nil || ev != nil {
			return ev, err
		}
		last = victim
	}
	return nil, nil
}

// chainEnd follows a rotation chain from member to the session key that
// still exists, or "" when the chain ends without one.
func (s *Store) chainEnd(ctx context.Context, t tag, member string) (string, error) {
	for range maxRotationChain {
		n, err := s.rdb.Exists(ctx, s.sessionKey(t, member)).Result()
		if err != nil {
			return "", wrapErr(ctx, "reuse", err)
		}
		if n == 1 {
			return member, nil
		}
		f, err := s.rdb.HGetAll(ctx, s.markerKey(t, member)).Result()
		if err != nil {
			return "", wrapErr(ctx, "reuse", err)
		}
		m, ok := decodeMarker(f)
		if !ok {
			return "", nil
		}
		member = m.next
	}
	return "", nil
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
		m, ok := decodeMarker(f)
		if !ok {
			break
		}
		keys = append(keys, key)
		from = m.prev
	}
	return keys, nil
}
