package store

import (
	"context"
	"fmt"
	"maps"
	"time"

	"github.com/redis/go-redis/v9"
)

// Ref names a session: by its token (the session's own user agent) or by its
// public id (an operator). Exactly one is set.
type Ref struct {
	Token string
	ID    string
}

// resolve returns the session id ref names, and the check its stored token
// hash must pass (nil for an id). A malformed token is ErrNotFound, a
// malformed id ErrMalformedSessionID.
func (r Ref) resolve() (sessionID, func(string) bool, error) {
	if r.ID != "" {
		id, err := parseSessionID(r.ID)
		return id, nil, err
	}
	pt, ok := parseToken(r.Token)
	if !ok {
		return sessionID{}, nil, ErrNotFound
	}
	return pt.id, pt.matches, nil
}

// GetByID returns the live session with this id: an operator's lookup.
// ErrNotFound when there is none, ErrMalformedSessionID when the id cannot be
// one sessiond issued.
func (s *Store) GetByID(ctx context.Context, sessionID string) (*Session, error) {
	id, err := parseSessionID(sessionID)
	if err != nil {
		return nil, err
	}
	if err := s.ensureCutoff(ctx); err != nil {
		return nil, err
	}
	m, err := s.reads.HGetAll(ctx, s.sessionKeyOf(id))
	if err != nil {
		return nil, wrapErr(ctx, "get by id", err)
	}
	if len(m) == 0 {
		return nil, ErrNotFound
	}
	rec, err := decodeRecord(id.String(), m)
	if err != nil {
		return nil, fmt.Errorf("get by id %s: %w", id, err)
	}
	if !s.alive(rec, s.now()) {
		return nil, ErrNotFound
	}
	return &rec.Session, nil
}

// AttributeChange is an Update: the attributes to set and those to remove (a
// key in both is set). Check, if not nil, vets the resulting attributes (the
// caller's limits): its error is Update's, and nothing is written.
type AttributeChange struct {
	Set    map[string]string
	Remove []string
	Check  func(attrs map[string]string) error
}

// Update changes the attributes of the live session ref names, in one
// transaction, and publishes ReasonUpdated for it. Concurrent updates of
// different attributes all land (a lost WATCH race is retried on the new
// state). ErrNotFound when there is no such live session.
func (s *Store) Update(ctx context.Context, ref Ref, ch AttributeChange) (*Session, error) {
	var out *Session
	err := s.change(ctx, "update", ref, func(tx *redis.Tx, id sessionID, rec *record, now time.Time) (func(redis.Pipeliner), error) {
		attrs := maps.Clone(rec.Attributes)
		if attrs == nil {
			attrs = map[string]string{}
		}
		var del []string
		for _, k := range ch.Remove {
			if _, set := ch.Set[k]; !set {
				if _, had := attrs[k]; had {
					del = append(del, attrFieldPrefix+k)
				}
				delete(attrs, k)
			}
		}
		maps.Copy(attrs, ch.Set)
		if ch.Check != nil {
			if err := ch.Check(attrs); err != nil {
				return nil, refusal{err}
			}
		}
		next := rec.Session
		next.Attributes = attrs
		if len(attrs) == 0 {
			next.Attributes = nil
		}
		out = &next
		sKey := s.sessionKey(id.tag, id.uuid.String())
		return func(p redis.Pipeliner) {
			if len(del) > 0 {
				p.HDel(ctx, sKey, del...)
			}
			if len(ch.Set) > 0 {
				set := make(map[string]any, len(ch.Set))
				for k, v := range ch.Set {
					set[attrFieldPrefix+k] = v
				}
				p.HSet(ctx, sKey, set)
			}
		}, nil
	})
	return out, err
}

// Extend sets the absolute expiry of the live session with this id to now +
// ttl, in one transaction with its index entry, the expiry of its key and
// the markers of its rotation chain, and publishes ReasonUpdated for it. The
// idle timeout and last validation are unchanged. ErrNotFound when there is
// no such live session.
func (s *Store) Extend(ctx context.Context, id string, ttl time.Duration) (*Session, error) {
	if ttl <= 0 {
		return nil, fmt.Errorf("extend: the ttl must be positive")
	}
	var out *Session
	err := s.change(ctx, "extend", Ref{ID: id}, func(tx *redis.Tx, id sessionID, rec *record, now time.Time) (func(redis.Pipeliner), error) {
		member := id.uuid.String()
		next := rec.Session
		next.ExpiresAt = now.Add(ttl).Truncate(time.Millisecond)
		ends := next.EndsAt()
		iKey := s.indexKey(id.tag, rec.UserID)
		if err := tx.Watch(ctx, iKey).Err(); err != nil {
			return nil, err
		}
		// The index expires with its latest member: the others', and this
		// session's new end.
		top, err := tx.ZRevRangeByScoreWithScores(ctx, iKey, &redis.ZRangeBy{Min: "(" + ms(now), Max: "+inf", Count: 2}).Result()
		if err != nil {
			return nil, err
		}
		indexEnds := ends.UnixMilli()
		for _, z := range top {
			if memberString(z.Member) != member && int64(z.Score) > indexEnds {
				indexEnds = int64(z.Score)
			}
		}
		markers, err := s.chainMarkers(ctx, tx, id.tag, rec.rotatedFrom)
		if err != nil {
			return nil, err
		}
		out = &next
		sKey := s.sessionKey(id.tag, member)
		return func(p redis.Pipeliner) {
			p.HSet(ctx, sKey, fieldExpires, next.ExpiresAt.UnixMilli())
			p.PExpireAt(ctx, sKey, ends)
			p.ZRemRangeByScore(ctx, iKey, "-inf", ms(now))
			p.ZAdd(ctx, iKey, redis.Z{Score: float64(ends.UnixMilli()), Member: member})
			p.PExpireAt(ctx, iKey, time.UnixMilli(indexEnds))
			for _, k := range markers {
				p.PExpireAt(ctx, k, next.ExpiresAt)
			}
			if rec.family != "" { // the chain's first marker, which names its newest session
				p.PExpireAt(ctx, s.markerKey(id.tag, rec.family), next.ExpiresAt)
			}
		}, nil
	})
	return out, err
}

// refusal is plan's verdict that the change must not be made (change's
// error, with nothing written), as opposed to a Redis error.
type refusal struct{ err error }

func (r refusal) Error() string { return r.err.Error() }

// change is the read-modify-write of one live session, ref: under WATCH of
// its key it reads the session, and plan (given its id, record and the time)
// returns the writes, which are committed in one MULTI/EXEC with the
// ReasonUpdated event. A refusal from plan is change's error, and nothing is
// written.
func (s *Store) change(ctx context.Context, op string, ref Ref, plan func(tx *redis.Tx, id sessionID, rec *record, now time.Time) (func(redis.Pipeliner), error)) error {
	id, tokenMatches, err := ref.resolve()
	if err != nil {
		return err
	}
	if err := s.ensureCutoff(ctx); err != nil {
		return err
	}
	sKey := s.sessionKey(id.tag, id.uuid.String())
	var (
		found   bool
		refused error
	)
	err = s.watch(ctx, op, func(tx *redis.Tx) error {
		found, refused = false, nil
		m, err := tx.HGetAll(ctx, sKey).Result()
		if err != nil || len(m) == 0 {
			return err
		}
		rec, err := decodeRecord(id.String(), m)
		if err != nil {
			return nil // unreadable: not a session to change
		}
		now := s.now()
		if (tokenMatches != nil && !tokenMatches(rec.tokenHash)) || !s.alive(rec, now) {
			return nil
		}
		found = true
		writes, err := plan(tx, id, rec, now)
		if r, ok := err.(refusal); ok {
			refused = r.err
			return nil
		}
		if err != nil {
			return err
		}
		ev := Revocation{SessionIDs: []string{rec.ID}, UserID: rec.UserID, Reason: ReasonUpdated, At: now}
		return s.commit(ctx, tx, func(p redis.Pipeliner) {
			writes(p)
			s.publishRevocation(ctx, p, ev)
		})
	}, sKey)
	switch {
	case err != nil:
		return err
	case refused != nil:
		return refused
	case !found:
		return ErrNotFound
	}
	return nil
}
