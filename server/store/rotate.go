package store

import (
	"context"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// Step is what a rotation proves about the user (a step-up): the zero Step
// changes nothing but the token and id.
type Step struct {
	// AssuranceLevel is the new session's level, 1 to 3; 0 keeps the old.
	AssuranceLevel int
	// AddAuthMethods are appended to the session's methods, without
	// duplicates.
	AddAuthMethods []string
	// Reauthenticated sets AuthenticatedAt to now.
	Reauthenticated bool
	// Check, if not nil, vets the resulting methods (the caller's limits);
	// its error is Rotate's, and nothing is written.
	Check func(methods []string) error
}

// Rotate replaces the session of token by a new session with the same data
// (user, email, client IP, user agent, attributes, creation time, absolute
// expiry, idle timeout, authentication), changed as step says, under a new
// id and token, and revokes the old one, in one transaction. The new session
// counts as validated now. Of concurrent rotations of one token exactly one
// succeeds; the others, like any token that is not a live session's, get
// ErrNotFound.
//
// The old token is remembered (its hash, in a marker that lives as long as
// the new session can: reuse.go); presented again after the rotation grace,
// here or to Get, it revokes the live session of its chain (a *ReuseError).
func (s *Store) Rotate(ctx context.Context, token string, step Step) (*Created, error) {
	old, ok := parseToken(token)
	if !ok {
		return nil, ErrNotFound
	}
	if err := s.ensureCutoff(ctx); err != nil {
		return nil, err
	}
	oldMember := old.id.uuid.String()
	oldKey := s.sessionKey(old.id.tag, oldMember)
	var (
		out     *Created
		found   bool
		refused error // step.Check's verdict
	)
	err := s.watch(ctx, "rotate", func(tx *redis.Tx) error {
		found, refused = false, nil
		m, err := tx.HGetAll(ctx, oldKey).Result()
		if err != nil || len(m) == 0 {
			return err
		}
		rec, err := decodeRecord(old.id.String(), m)
		if err != nil {
			return nil // unreadable: not a session to rotate
		}
		now := s.now()
		if !old.matches(rec.tokenHash) || !s.alive(rec, now) {
			return nil
		}
		found = true
		next := *rec
		next.AuthMethods = appendNew(slices.Clone(rec.AuthMethods), step.AddAuthMethods)
		if step.Check != nil {
			if refused = step.Check(next.AuthMethods); refused != nil {
				return nil
			}
		}
		if step.AssuranceLevel > 0 {
			next.AssuranceLevel = step.AssuranceLevel
		}
		if step.Reauthenticated {
			next.AuthenticatedAt = now
		}
		iKey := s.indexKey(old.id.tag, rec.UserID)
		if err := tx.Watch(ctx, iKey).Err(); err != nil {
			return err
		}
		u, err := uuid.NewV7()
		if err != nil {
			return err
		}
		id := sessionID{tag: old.id.tag, uuid: u}
		newTok, parsed, err := newToken(id)
		if err != nil {
			return err
		}
		next.ID = id.String()
		next.LastSeenAt = now
		next.tokenHash = string(parsed.hash[:])
		next.rotatedFrom = oldMember
		if next.family == "" {
			next.family = oldMember // the first rotation starts the chain
		}
		ends := next.EndsAt()
		// The index's new expiry: the latest end among the other live
		// members, and the new session's.
		top, err := tx.ZRevRangeByScoreWithScores(ctx, iKey, &redis.ZRangeBy{Min: "(" + ms(now), Max: "+inf", Count: 2}).Result()
		if err != nil {
			return err
		}
		indexEnds := ends.UnixMilli()
		for _, z := range top {
			if memberString(z.Member) != oldMember && int64(z.Score) > indexEnds {
				indexEnds = int64(z.Score)
			}
		}
		newKey := s.sessionKey(id.tag, u.String())
		mark := s.markerKey(old.id.tag, oldMember)
		err = s.commit(ctx, tx, func(p redis.Pipeliner) {
			p.Del(ctx, oldKey)
			p.HSet(ctx, newKey, next.fields())
			p.PExpireAt(ctx, newKey, ends)
			p.ZRem(ctx, iKey, oldMember)
			p.ZRemRangeByScore(ctx, iKey, "-inf", ms(now))
			p.ZAdd(ctx, iKey, redis.Z{Score: float64(ends.UnixMilli()), Member: u.String()})
			p.PExpireAt(ctx, iKey, time.UnixMilli(indexEnds))
			p.HSet(ctx, mark, marker{tokenHash: rec.tokenHash, next: u.String(), rotatedAt: now, prev: rec.rotatedFrom, family: next.family}.fields(oldMember))
			p.PExpireAt(ctx, mark, next.ExpiresAt) // as long as the successor can live
			// The chain's first marker names its newest session.
			first := s.markerKey(old.id.tag, next.family)
			p.HSet(ctx, first, markerFieldNewest, u.String())
			p.PExpireAt(ctx, first, next.ExpiresAt)
			s.publishRevocation(ctx, p, Revocation{SessionIDs: []string{old.id.String()}, UserID: rec.UserID, Reason: ReasonRotated, At: now})
		})
		if err == nil {
			out = &Created{Token: newTok, Session: &next.Session, Replaced: old.id.String()}
		}
		return err
	}, oldKey)
	switch {
	case err != nil:
		return nil, err
	case refused != nil:
		return nil, refused
	case !found:
		return nil, s.checkReuse(ctx, old)
	}
	return out, nil
}

// appendNew appends to list the entries of add it does not hold yet.
func appendNew(list, add []string) []string {
	for _, a := range add {
		if !slices.Contains(list, a) {
			list = append(list, a)
		}
	}
	return list
}
