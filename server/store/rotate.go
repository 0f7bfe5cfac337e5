package store

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// Rotate replaces the session of token by a new session with the same data
// (user, email, client IP, user agent, attributes, creation time, absolute
// expiry, idle timeout) under a new id and token, and revokes the old one, in
// one transaction. The new session counts as validated now. Of concurrent
// rotations of one token exactly one succeeds; the others, like any token
// that is not a live session's, get ErrNotFound.
func (s *Store) Rotate(ctx context.Context, token string) (*Created, error) {
	old, ok := parseToken(token)
	if !ok {
		return nil, ErrNotFound
	}
	oldMember := old.id.uuid.String()
	oldKey := s.sessionKey(old.id.tag, oldMember)
	var (
		out   *Created
		found bool
	)
	err := s.watch(ctx, "rotate", func(tx *redis.Tx) error {
		found = false
		m, err := tx.HGetAll(ctx, oldKey).Result()
		if err != nil || len(m) == 0 {
			return err
		}
		rec, err := decodeRecord(old.id.String(), m)
		if err != nil {
			return nil // unreadable: not a session to rotate
		}
		now := s.now()
		if !old.matches(rec.tokenHash) || !rec.ActiveAt(now) {
			return nil
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
		next := *rec
		next.ID = id.String()
		next.LastSeenAt = now
		next.tokenHash = string(parsed.hash[:])
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
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Del(ctx, oldKey)
			p.HSet(ctx, newKey, next.fields())
			p.PExpireAt(ctx, newKey, ends)
			p.ZRem(ctx, iKey, oldMember)
			p.ZRemRangeByScore(ctx, iKey, "-inf", ms(now))
			p.ZAdd(ctx, iKey, redis.Z{Score: float64(ends.UnixMilli()), Member: u.String()})
			p.PExpireAt(ctx, iKey, time.UnixMilli(indexEnds))
			s.publishRevocation(ctx, p, Revocation{SessionIDs: []string{old.id.String()}, UserID: rec.UserID, Reason: ReasonRotated, At: now})
			return nil
		})
		if err == nil {
			found = true
			out = &Created{Token: newTok, Session: &next.Session, Replaced: old.id.String()}
		}
		return err
	}, oldKey)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, ErrNotFound
	}
	return out, nil
}
