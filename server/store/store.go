// Package store keeps sessions in Redis.
//
// # Key layout
//
// With the default prefix "sessiond", a user's keys are
//
//	sessiond:v1:{<tag>}:s:<uuid>     hash: one session (fields in session.go)
//	sessiond:v1:{<tag>}:u:<user_id>  sorted set: the user's index; members are
//	                                 session UUIDs, scores the Unix millisecond at
//	                                 which each session ends
//	sessiond:v1:revocations          pub/sub channel: one JSON message per
//	                                 revocation (revocations.go), published in
//	                                 the MULTI/EXEC of the write
//
// where <tag> is the first 4 bytes of SHA-256(user_id) in hex. The tag is a
// Redis Cluster hash tag, so all of a user's keys live in one slot and every
// transaction below runs unchanged on a single Redis, Sentinel or Cluster. The
// session id ("<tag>_<uuid>") and the token both carry the tag and UUID, so
// any session is found without a scan.
//
// # Invariants
//
//   - A session key expires when the session ends (the earlier of its
//     absolute and idle expiry), and its index member has that time as score.
//   - The index is pruned of ended members on every write to it, and expires
//     with its latest member, so it never outlives the user's last session.
//   - Every write is one MULTI/EXEC, behind WATCH where it reads first, so the
//     sessions and the index agree whatever the interleaving of calls.
package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// DefaultKeyPrefix starts every key when Config.KeyPrefix is empty.
const DefaultKeyPrefix = "sessiond"

// Config is the store's policy. The zero value of each field has the meaning
// documented on it.
type Config struct {
	// KeyPrefix starts every key; "" means DefaultKeyPrefix. It must not contain
	// '{' or '}' (they would break the Cluster hash tag).
	KeyPrefix string
	// MaxSessionsPerUser caps a user's live sessions: a create over the cap
	// revokes the oldest in the same transaction. 0 means no cap.
	MaxSessionsPerUser int
	// TouchInterval is how long after the last recorded validation a new one
	// is recorded (sliding the idle expiry). 0 records every validation.
	TouchInterval time.Duration
	// Clock returns the current time; nil means time.Now.
	Clock func() time.Time
	// MaxAttempts bounds the tries of a write that loses the WATCH race to
	// concurrent writes for the same user; 0 means 50.
	MaxAttempts int
}

// Store is the Redis-backed session store. It is safe for concurrent use.
type Store struct {
	rdb           redis.UniversalClient
	prefix        string
	maxPerUser    int
	touchInterval time.Duration
	clock         func() time.Time
	maxAttempts   int
}

// New returns a store over rdb. It does no I/O.
func New(rdb redis.UniversalClient, cfg Config) *Store {
	s := &Store{
		rdb:           rdb,
		prefix:        cfg.KeyPrefix,
		maxPerUser:    cfg.MaxSessionsPerUser,
		touchInterval: cfg.TouchInterval,
		clock:         cfg.Clock,
		maxAttempts:   cfg.MaxAttempts,
	}
	if s.prefix == "" {
		s.prefix = DefaultKeyPrefix
	}
	if s.clock == nil {
		s.clock = time.Now
	}
	if s.maxAttempts <= 0 {
		s.maxAttempts = 50
	}
	return s
}

// now is the store's clock at Redis' precision (milliseconds).
func (s *Store) now() time.Time { return s.clock().Truncate(time.Millisecond) }

func (s *Store) keyBase(t tag) string { return s.prefix + ":v1:{" + t.String() + "}:" }

func (s *Store) sessionKey(t tag, member string) string { return s.keyBase(t) + "s:" + member }

func (s *Store) indexKey(t tag, userID string) string { return s.keyBase(t) + "u:" + userID }

func ms(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

// NewSession describes a session to create. TTL must be positive; the caller
// has applied its defaults and limits.
type NewSession struct {
	UserID      string
	Email       string
	ClientIP    string
	UserAgent   string
	Attributes  map[string]string
	TTL         time.Duration
	IdleTimeout time.Duration // 0: no idle timeout
}

// Created is the outcome of Create.
type Created struct {
	Token   string // the bearer token; the store keeps only its hash
	Session *Session
	Evicted []string // ids of the sessions revoked to respect the per-user cap
	// Replaced is, for Rotate, the id of the session the new one replaced
	// (revoked in the same transaction).
	Replaced string
}

// Create stores a new session, adds it to its user's index and, when the user
// is at the cap, revokes the user's oldest sessions, all in one transaction.
func (s *Store) Create(ctx context.Context, ns NewSession) (*Created, error) {
	if ns.UserID == "" || ns.TTL <= 0 || ns.IdleTimeout < 0 {
		return nil, errors.New("create: user id and a positive ttl are required")
	}
	u, err := uuid.NewV7()
	if err != nil {
		return nil, fmt.Errorf("create: session uuid: %w", err)
	}
	id := sessionID{tag: userTag(ns.UserID), uuid: u}
	token, parsed, err := newToken(id)
	if err != nil {
		return nil, fmt.Errorf("create: token: %w", err)
	}
	now := s.now()
	rec := &record{
		Session: Session{
			ID:          id.String(),
			UserID:      ns.UserID,
			Email:       ns.Email,
			ClientIP:    ns.ClientIP,
			UserAgent:   ns.UserAgent,
			Attributes:  ns.Attributes,
			CreatedAt:   now,
			ExpiresAt:   now.Add(ns.TTL).Truncate(time.Millisecond),
			LastSeenAt:  now,
			IdleTimeout: ns.IdleTimeout.Truncate(time.Millisecond),
		},
		tokenHash: string(parsed.hash[:]),
	}
	ends := rec.EndsAt()
	sKey, iKey := s.sessionKey(id.tag, u.String()), s.indexKey(id.tag, ns.UserID)
	fields := rec.fields()
	var evicted []string
	err = s.watch(ctx, "create", func(tx *redis.Tx) error {
		evicted = nil
		var count *redis.IntCmd
		var top *redis.ZSliceCmd
		if _, err := tx.Pipelined(ctx, func(p redis.Pipeliner) error {
			count = p.ZCount(ctx, iKey, "("+ms(now), "+inf")
			top = p.ZRevRangeWithScores(ctx, iKey, 0, 0)
			return nil
		}); err != nil {
			return err
		}
		indexEnds := ends.UnixMilli()
		if t := top.Val(); len(t) == 1 && int64(t[0].Score) > indexEnds {
			indexEnds = int64(t[0].Score)
		}
		if s.maxPerUser > 0 && count.Val() >= int64(s.maxPerUser) {
			live, err := tx.ZRangeByScoreWithScores(ctx, iKey, &redis.ZRangeBy{Min: "(" + ms(now), Max: "+inf"}).Result()
			if err != nil {
				return err
			}
			// UUIDv7 members sort by creation time: the oldest come first.
			slices.SortFunc(live, func(a, b redis.Z) int { return cmpMember(a.Member, b.Member) })
			n := max(len(live)-s.maxPerUser+1, 0)
			indexEnds = ends.UnixMilli()
			for i, z := range live {
				if i < n {
					evicted = append(evicted, memberString(z.Member))
				} else if int64(z.Score) > indexEnds {
					indexEnds = int64(z.Score)
				}
			}
		}
		_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.HSet(ctx, sKey, fields)
			p.PExpireAt(ctx, sKey, ends)
			p.ZRemRangeByScore(ctx, iKey, "-inf", ms(now))
			if len(evicted) > 0 {
				keys := make([]string, len(evicted))
				members := make([]any, len(evicted))
				for i, m := range evicted {
					keys[i], members[i] = s.sessionKey(id.tag, m), m
				}
				p.Del(ctx, keys...)
				p.ZRem(ctx, iKey, members...)
				ids := make([]string, len(evicted))
				for i, m := range evicted {
					ids[i] = formatID(id.tag, m)
				}
				s.publishRevocation(ctx, p, Revocation{SessionIDs: ids, UserID: ns.UserID, Reason: ReasonEvicted, At: now})
			}
			p.ZAdd(ctx, iKey, redis.Z{Score: float64(ends.UnixMilli()), Member: u.String()})
			p.PExpireAt(ctx, iKey, time.UnixMilli(indexEnds))
			return nil
		})
		return err
	}, iKey)
	if err != nil {
		return nil, err
	}
	out := &Created{Token: token, Session: &rec.Session}
	for _, m := range evicted {
		out.Evicted = append(out.Evicted, formatID(id.tag, m))
	}
	return out, nil
}

// Get returns the live session the token belongs to, with one Redis round
// trip. A token that is malformed (no round trip), unknown, expired or revoked
// gives ErrNotFound. The session's TouchDue says whether this validation
// should be recorded with Touch.
func (s *Store) Get(ctx context.Context, token string) (*Session, error) {
	pt, ok := parseToken(token)
	if !ok {
		return nil, ErrNotFound
	}
	m, err := s.rdb.HGetAll(ctx, s.sessionKey(pt.id.tag, pt.id.uuid.String())).Result()
	if err != nil {
		return nil, wrapErr(ctx, "get", err)
	}
	if len(m) == 0 {
		return nil, ErrNotFound
	}
	rec, err := decodeRecord(pt.id.String(), m)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", pt.id, err)
	}
	now := s.now()
	if !pt.matches(rec.tokenHash) || !rec.ActiveAt(now) {
		return nil, ErrNotFound
	}
	rec.touchDue = !now.Before(rec.LastSeenAt.Add(s.touchInterval))
	return &rec.Session, nil
}

// Touch records a validation of sess now: it sets last_seen_at and slides the
// idle expiry of the session key and its index member. It writes nothing when
// the session was revoked or touched by someone else since sess was read, so
// a touch never resurrects a revoked session. It returns the session as
// recorded.
func (s *Store) Touch(ctx context.Context, sess *Session) (*Session, error) {
	id, err := parseSessionID(sess.ID)
	if err != nil {
		return nil, err
	}
	now := s.now()
	next := *sess
	next.LastSeenAt = now
	next.touchDue = false
	ends := next.EndsAt()
	member := id.uuid.String()
	sKey, iKey := s.sessionKey(id.tag, member), s.indexKey(id.tag, sess.UserID)
	seen := ms(sess.LastSeenAt)
	touched := false
	err = s.watch(ctx, "touch", func(tx *redis.Tx) error {
		ls, err := tx.HGet(ctx, sKey, fieldLastSeen).Result()
		if errors.Is(err, redis.Nil) || (err == nil && ls != seen) {
			return nil // revoked, expired, or recorded by a concurrent validation
		}
		if err != nil {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.HSet(ctx, sKey, fieldLastSeen, now.UnixMilli())
			p.ZRemRangeByScore(ctx, iKey, "-inf", ms(now))
			if sess.IdleTimeout > 0 {
				p.PExpireAt(ctx, sKey, ends)
				p.ZAddArgs(ctx, iKey, redis.ZAddArgs{XX: true, GT: true, Members: []redis.Z{{Score: float64(ends.UnixMilli()), Member: member}}})
				p.Do(ctx, "PEXPIREAT", iKey, ends.UnixMilli(), "GT")
			}
			return nil
		})
		touched = err == nil
		return err
	}, sKey)
	if err != nil {
		return nil, err
	}
	if !touched {
		return sess, nil
	}
	return &next, nil
}

// RevokeToken ends the session the token belongs to, and returns the event it
// published; nil, with no error, when there is no such live session
// (including a malformed token). Revoking twice is not an error.
func (s *Store) RevokeToken(ctx context.Context, token string) (*Revocation, error) {
	pt, ok := parseToken(token)
	if !ok {
		return nil, nil
	}
	return s.revoke(ctx, pt.id, pt.matches, ReasonLogout)
}

// Revoke ends the session with this id, and returns the event it published;
// nil, with no error, when there is no such live session, and
// ErrMalformedSessionID when the id cannot be one sessiond issued.
func (s *Store) Revoke(ctx context.Context, sessionID string) (*Revocation, error) {
	id, err := parseSessionID(sessionID)
	if err != nil {
		return nil, err
	}
	return s.revoke(ctx, id, nil, ReasonRevoked)
}

func (s *Store) revoke(ctx context.Context, id sessionID, tokenMatches func(string) bool, reason Reason) (*Revocation, error) {
	member := id.uuid.String()
	sKey := s.sessionKey(id.tag, member)
	var revoked *Revocation
	err := s.watch(ctx, "revoke", func(tx *redis.Tx) error {
		revoked = nil
		vals, err := tx.HMGet(ctx, sKey, fieldTokenHash, fieldUserID).Result()
		if err != nil {
			return err
		}
		hash, _ := vals[0].(string)
		userID, _ := vals[1].(string)
		if hash == "" || userID == "" || (tokenMatches != nil && !tokenMatches(hash)) {
			return nil
		}
		iKey := s.indexKey(id.tag, userID)
		if err := tx.Watch(ctx, iKey).Err(); err != nil {
			return err
		}
		now := s.now()
		// The index's new expiry is the latest end among the other live members.
		top, err := tx.ZRevRangeByScoreWithScores(ctx, iKey, &redis.ZRangeBy{Min: "(" + ms(now), Max: "+inf", Count: 2}).Result()
		if err != nil {
			return err
		}
		var indexEnds int64
		for _, z := range top {
			if memberString(z.Member) != member && int64(z.Score) > indexEnds {
				indexEnds = int64(z.Score)
			}
		}
		event := Revocation{SessionIDs: []string{id.String()}, UserID: userID, Reason: reason, At: now}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Del(ctx, sKey)
			s.publishRevocation(ctx, p, event)
			if indexEnds == 0 {
				p.Del(ctx, iKey)
				return nil
			}
			p.ZRem(ctx, iKey, member)
			p.ZRemRangeByScore(ctx, iKey, "-inf", ms(now))
			p.PExpireAt(ctx, iKey, time.UnixMilli(indexEnds))
			return nil
		})
		if err == nil {
			revoked = &event
		}
		return err
	}, sKey)
	if err != nil {
		return nil, err
	}
	return revoked, nil
}

// RevokeUser ends every live session of the user but the one with id
// exceptID (if not empty), and returns the event it published; nil when the
// user had no live session to end. exceptID must be a session id of this
// user (ErrMalformedSessionID, ErrForeignSession).
func (s *Store) RevokeUser(ctx context.Context, userID, exceptID string) (*Revocation, error) {
	t := userTag(userID)
	keep := ""
	if exceptID != "" {
		id, err := parseSessionID(exceptID)
		if err != nil {
			return nil, err
		}
		if id.tag != t {
			return nil, ErrForeignSession
		}
		keep = id.uuid.String()
	}
	iKey := s.indexKey(t, userID)
	var event *Revocation
	err := s.watch(ctx, "revoke user", func(tx *redis.Tx) error {
		event = nil
		all, err := tx.ZRangeWithScores(ctx, iKey, 0, -1).Result()
		if err != nil {
			return err
		}
		now := s.now()
		var keys, revoked []string
		var members []any
		var keepEnds int64
		for _, z := range all {
			m := memberString(z.Member)
			live := int64(z.Score) > now.UnixMilli()
			if m == keep && live {
				keepEnds = int64(z.Score)
				continue
			}
			keys = append(keys, s.sessionKey(t, m))
			members = append(members, m)
			if live {
				revoked = append(revoked, formatID(t, m))
			}
		}
		if len(keys) == 0 {
			return nil
		}
		ev := Revocation{SessionIDs: revoked, UserID: userID, Reason: ReasonUserRevoked, At: now}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Del(ctx, keys...)
			if len(revoked) > 0 {
				s.publishRevocation(ctx, p, ev)
			}
			if keepEnds == 0 {
				p.Del(ctx, iKey)
				return nil
			}
			p.ZRem(ctx, iKey, members...)
			p.PExpireAt(ctx, iKey, time.UnixMilli(keepEnds))
			return nil
		})
		if err == nil && len(revoked) > 0 {
			event = &ev
		}
		return err
	}, iKey)
	if err != nil {
		return nil, err
	}
	return event, nil
}

// ListUser returns up to limit of the user's live sessions, newest first,
// starting after the session id cursor (empty: from the newest). next is the
// cursor of the following page, empty on the last page. A cursor that is not
// a session id of this user gives ErrMalformedCursor.
func (s *Store) ListUser(ctx context.Context, userID string, limit int, cursor string) (sessions []*Session, next string, err error) {
	t := userTag(userID)
	before := ""
	if cursor != "" {
		id, err := parseSessionID(cursor)
		if err != nil || id.tag != t {
			return nil, "", ErrMalformedCursor
		}
		before = id.uuid.String()
	}
	now := s.now()
	members, err := s.rdb.ZRangeByScore(ctx, s.indexKey(t, userID), &redis.ZRangeBy{Min: "(" + ms(now), Max: "+inf"}).Result()
	if err != nil {
		return nil, "", wrapErr(ctx, "list", err)
	}
	// Newest first: UUIDv7 text sorts by creation time.
	slices.SortFunc(members, func(a, b string) int { return -cmpMember(a, b) })
	if before != "" {
		i, _ := slices.BinarySearchFunc(members, before, func(m, target string) int { return -cmpMember(m, target) })
		if i < len(members) && members[i] == before {
			i++
		}
		members = members[i:]
	}
	if len(members) > limit {
		members = members[:limit]
		next = formatID(t, members[limit-1])
	}
	if len(members) == 0 {
		return nil, "", nil
	}
	cmds := make([]*redis.MapStringStringCmd, len(members))
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, m := range members {
			cmds[i] = p.HGetAll(ctx, s.sessionKey(t, m))
		}
		return nil
	}); err != nil {
		return nil, "", wrapErr(ctx, "list", err)
	}
	for i, cmd := range cmds {
		if len(cmd.Val()) == 0 {
			continue // revoked or expired since the index was read
		}
		rec, err := decodeRecord(formatID(t, members[i]), cmd.Val())
		if err != nil {
			return nil, "", fmt.Errorf("list %s: %w", formatID(t, members[i]), err)
		}
		if rec.UserID == userID && rec.ActiveAt(now) {
			sessions = append(sessions, &rec.Session)
		}
	}
	return sessions, next, nil
}

// Ping checks that Redis answers. On a Cluster it pings every master and
// succeeds if any answers: one lost master makes its users fail (with
// Unavailable) until its replica takes over, but the process can still serve
// the rest, and every sessiond replica is affected alike, so readiness must
// not flap with whichever node a single ping happened to reach.
func (s *Store) Ping(ctx context.Context) error {
	cc, ok := s.rdb.(*redis.ClusterClient)
	if !ok {
		return wrapErr(ctx, "ping", s.rdb.Ping(ctx).Err())
	}
	var answered atomic.Int32
	var last atomic.Value
	err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		if err := c.Ping(ctx).Err(); err != nil {
			last.Store(err)
		} else {
			answered.Add(1)
		}
		return nil
	})
	if answered.Load() > 0 {
		return nil
	}
	if err == nil {
		err, _ = last.Load().(error)
	}
	if err == nil {
		err = errors.New("no master answered")
	}
	return wrapErr(ctx, "ping", err)
}

func formatID(t tag, member string) string { return t.String() + "_" + member }

func memberString(m any) string {
	s, _ := m.(string)
	return s
}

func cmpMember[T any](a, b T) int {
	x, y := memberString(a), memberString(b)
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// watch runs fn under WATCH keys, retrying with jittered backoff while it
// loses the race to a concurrent write, at most MaxAttempts times. fn must
// return only Redis errors; it reports its outcome through its closure.
func (s *Store) watch(ctx context.Context, op string, fn func(*redis.Tx) error, keys ...string) error {
	backoff := time.Millisecond
	for attempt := 1; ; attempt++ {
		err := s.rdb.Watch(ctx, fn, keys...)
		if !errors.Is(err, redis.TxFailedErr) || attempt == s.maxAttempts {
			return wrapErr(ctx, op, err)
		}
		timer := time.NewTimer(rand.N(backoff) + time.Millisecond/4)
		select {
		case <-ctx.Done():
			timer.Stop()
			return wrapErr(ctx, op, ctx.Err())
		case <-timer.C:
		}
		backoff = min(2*backoff, 32*time.Millisecond)
	}
}
