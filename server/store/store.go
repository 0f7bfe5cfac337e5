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
//	sessiond:v1:{<tag>}:r:<uuid>     hash: a rotated-away token (reuse.go),
//	                                 kept while its successor may live
//	sessiond:v1:cutoff               string: the revoke-all cutoff, a Unix
//	                                 millisecond (cutoff.go); never expires
//	sessiond:v1:pagekey              string: the key that authenticates page
//	                                 tokens (pagekey.go); never expires
//	sessiond:v1:revocations          pub/sub channel: one JSON message per
//	                                 revocation or change (revocations.go),
//	                                 published in the MULTI/EXEC of the write
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
//   - A session is live while its key exists, it has not ended (EndsAt), and
//     it was created at or after the revoke-all cutoff (cutoff.go). Sessions
//     cut off by RevokeAll keep their keys until they expire, and count
//     towards the per-user cap until then (they are the oldest, so the
//     first evicted: deleted without an eviction event, for they were
//     revoked already).
package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"encoding/hex"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/sessiond/sessiond/internal/autopipe"
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
	// CutoffMaxAge is how long the revoke-all cutoff read from Redis is
	// trusted (cutoff.go); 0 means DefaultCutoffMaxAge (1s).
	CutoffMaxAge time.Duration
	// RotationGrace is how long after a rotation the old token may be
	// presented again without being taken for a stolen copy (reuse.go); 0
	// means DefaultRotationGrace (10s), a negative value no grace.
	RotationGrace time.Duration
	// MinReplicaAcks, when positive, makes every write wait, after its
	// EXEC and on the same connection, until that many replicas of the
	// master that took it have acknowledged it (Redis' WAIT), at most
	// ReplicaAckTimeout; fewer in time is ErrNotReplicated. 0: writes are
	// acknowledged when the master has applied them.
	MinReplicaAcks int
	// ReplicaAckTimeout bounds the wait for MinReplicaAcks; 0 means
	// DefaultReplicaAckTimeout (500ms).
	ReplicaAckTimeout time.Duration
	// ReadPipelines is how many pipelines of coalesced validation reads may
	// be in flight at once to each Redis (each master of a Cluster) while
	// RunReads runs (internal/autopipe); 0 means autopipe.DefaultLanes.
	ReadPipelines int
}

// DefaultReplicaAckTimeout is Config.ReplicaAckTimeout's default.
const DefaultReplicaAckTimeout = 500 * time.Millisecond

// Store is the Redis-backed session store. It is safe for concurrent use.
type Store struct {
	rdb           redis.UniversalClient
	prefix        string
	maxPerUser    int
	touchInterval time.Duration
	clock         func() time.Time
	maxAttempts   int
	rotationGrace time.Duration
	cutoff        cutoff
	minAcks       int
	ackTimeout    time.Duration
	pageKey       pageKeyCache
	reads         *autopipe.Reader         // the validations' reads (Get)
	retries       sync.Map                 // op → *atomic.Uint64: WATCH races lost and retried
	known         atomic.Pointer[[]master] // a Cluster's masters as clusterMasters last found them
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
		rotationGrace: cfg.RotationGrace,
		minAcks:       max(cfg.MinReplicaAcks, 0),
		ackTimeout:    cfg.ReplicaAckTimeout,
	}
	if s.ackTimeout <= 0 {
		s.ackTimeout = DefaultReplicaAckTimeout
	}
	s.reads = autopipe.New(rdb, autopipe.Config{Lanes: cfg.ReadPipelines})
	s.cutoff.base, s.cutoff.maxAge = time.Now(), cfg.CutoffMaxAge
	if s.cutoff.maxAge <= 0 {
		s.cutoff.maxAge = DefaultCutoffMaxAge
	}
	switch {
	case s.rotationGrace == 0:
		s.rotationGrace = DefaultRotationGrace
	case s.rotationGrace < 0:
		s.rotationGrace = 0
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

// sessionKeyOf is sessionKey(id.tag, id.uuid.String()) in one allocation
// (the string's; the hot path's key).
func (s *Store) sessionKeyOf(id sessionID) string {
	var buf [128]byte // a prefix is at most 64 bytes (cmd/sessiond checks)
	b := append(buf[:0], s.prefix...)
	b = append(b, ":v1:{"...)
	b = hex.AppendEncode(b, id.tag[:])
	b = append(b, "}:s:"...)
	return string(appendUUID(b, id.uuid))
}

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
	// AuthMethods are the methods the user logged in with; AssuranceLevel
	// what they amount to, 1 to 3 (0 means 1).
	AuthMethods    []string
	AssuranceLevel int
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

			AuthenticatedAt: now,
			AuthMethods:     ns.AuthMethods,
			AssuranceLevel:  max(ns.AssuranceLevel, 1),
		},
		tokenHash: string(parsed.hash[:]),
	}
	ends := rec.EndsAt()
	sKey, iKey := s.sessionKey(id.tag, u.String()), s.indexKey(id.tag, ns.UserID)
	fields := rec.fields()
	// evicted are the sessions the cap revokes; announced those of them that
	// were still live (not already cut off by RevokeAll): the event's.
	var evicted, announced []string
	var count *redis.IntCmd
	var top *redis.ZSliceCmd
	err = s.watchReading(ctx, "create", iKey, func(p redis.Pipeliner) {
		count = p.ZCount(ctx, iKey, "("+ms(now), "+inf")
		top = p.ZRevRangeWithScores(ctx, iKey, 0, 0)
	}, func(tx *redis.Tx) error {
		evicted, announced = nil, nil
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
			cutOff, err := s.cutOffMembers(ctx, tx, id.tag, live[:n], now)
			if err != nil {
				return err
			}
			for i, z := range live {
				if i < n {
					evicted = append(evicted, memberString(z.Member))
					if !cutOff[memberString(z.Member)] {
						announced = append(announced, memberString(z.Member))
					}
				} else if int64(z.Score) > indexEnds {
					indexEnds = int64(z.Score)
				}
			}
		}
		return s.commit(ctx, tx, func(p redis.Pipeliner) {
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
			}
			if len(announced) > 0 {
				ids := make([]string, len(announced))
				for i, m := range announced {
					ids[i] = formatID(id.tag, m)
				}
				s.publishRevocation(ctx, p, Revocation{SessionIDs: ids, UserID: ns.UserID, Reason: ReasonEvicted, At: now})
			}
			p.ZAdd(ctx, iKey, redis.Z{Score: float64(ends.UnixMilli()), Member: u.String()})
			p.PExpireAt(ctx, iKey, time.UnixMilli(indexEnds))
		})
	})
	if err != nil {
		return nil, err
	}
	out := &Created{Token: token, Session: &rec.Session}
	for _, m := range announced {
		out.Evicted = append(out.Evicted, formatID(id.tag, m))
	}
	return out, nil
}

// Get returns the live session the token belongs to, with one Redis round
// trip. A token that is malformed (no round trip), unknown, expired or revoked
// gives ErrNotFound; a token that Rotate replaced gives ErrNotFound too, and
// presented after the rotation grace a *ReuseError (which is ErrNotFound)
// once its successor is revoked (reuse.go). The session's TouchDue says
// whether this validation should be recorded with Touch.
func (s *Store) Get(ctx context.Context, token string) (*Session, error) {
	pt, ok := parseToken(token)
	if !ok {
		return nil, ErrNotFound
	}
	if err := s.ensureCutoff(ctx); err != nil {
		return nil, err
	}
	m, err := s.reads.HGetAll(ctx, s.sessionKeyOf(pt.id))
	if err != nil {
		return nil, wrapErr(ctx, "get", err)
	}
	if len(m) == 0 {
		return nil, s.checkReuse(ctx, pt)
	}
	rec, err := decodeRecord(pt.id.String(), m)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", pt.id, err)
	}
	now := s.now()
	if !pt.matches(rec.tokenHash) || !s.alive(rec, now) {
		return nil, ErrNotFound
	}
	rec.touchDue = !now.Before(rec.LastSeenAt.Add(s.touchInterval))
	return &rec.Session, nil
}

// RunReads coalesces the reads of concurrent validations (Get) into
// pipelines until ctx ends (internal/autopipe): a validation that finds no
// other read in flight reads directly, the others share pipelines. Without
// it, each Get reads on its own. Stop it after the last Get has returned.
func (s *Store) RunReads(ctx context.Context) { s.reads.Run(ctx) }

// alive reports whether the session of rec is live at now: it has not ended
// and the revoke-all cutoff does not exclude it.
func (s *Store) alive(rec *record, now time.Time) bool {
	return rec.ActiveAt(now) && !s.cutoff.excludes(rec.CreatedAt)
}

// Touch records a validation of sess now: it sets last_seen_at and slides the
// idle expiry of the session key and its index member. It writes nothing when
// the session was revoked, touched or extended by someone else since sess was
// read, so a touch never resurrects a revoked session nor undoes an Extend.
// It returns the session as recorded.
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
	seen, expires := ms(sess.LastSeenAt), ms(sess.ExpiresAt)
	touched := false
	err = s.watch(ctx, "touch", func(tx *redis.Tx) error {
		vals, err := tx.HMGet(ctx, sKey, fieldLastSeen, fieldExpires).Result()
		if err != nil {
			return err
		}
		if ls, _ := vals[0].(string); ls != seen {
			return nil // revoked, expired, or recorded by a concurrent validation
		}
		if x, _ := vals[1].(string); x != expires {
			return nil // extended since sess was read (Extend): its end would be wrong
		}
		err = s.commit(ctx, tx, func(p redis.Pipeliner) {
			p.HSet(ctx, sKey, fieldLastSeen, now.UnixMilli())
			p.ZRemRangeByScore(ctx, iKey, "-inf", ms(now))
			if sess.IdleTimeout > 0 {
				p.PExpireAt(ctx, sKey, ends)
				p.ZAddArgs(ctx, iKey, redis.ZAddArgs{XX: true, GT: true, Members: []redis.Z{{Score: float64(ends.UnixMilli()), Member: member}}})
				p.Do(ctx, "PEXPIREAT", iKey, ends.UnixMilli(), "GT")
			}
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
	if err := s.ensureCutoff(ctx); err != nil {
		return nil, err
	}
	return s.revoke(ctx, pt.id, pt.matches, ReasonLogout, "")
}

// Revoke ends the session with this id, and returns the event it published;
// nil, with no error, when there is no such live session, and
// ErrMalformedSessionID when the id cannot be one sessiond issued.
func (s *Store) Revoke(ctx context.Context, sessionID string) (*Revocation, error) {
	id, err := parseSessionID(sessionID)
	if err != nil {
		return nil, err
	}
	if err := s.ensureCutoff(ctx); err != nil {
		return nil, err
	}
	return s.revoke(ctx, id, nil, ReasonRevoked, "")
}

// revoke ends the session id, if it is live and its token hash satisfies
// tokenMatches (nil: any), publishing reason (and reusedID, for
// ReasonReuseDetected).
func (s *Store) revoke(ctx context.Context, id sessionID, tokenMatches func(string) bool, reason Reason, reusedID string) (*Revocation, error) {
	member := id.uuid.String()
	sKey := s.sessionKey(id.tag, member)
	var revoked *Revocation
	err := s.watch(ctx, "revoke", func(tx *redis.Tx) error {
		revoked = nil
		vals, err := tx.HMGet(ctx, sKey, fieldTokenHash, fieldUserID, fieldCreated).Result()
		if err != nil {
			return err
		}
		hash, _ := vals[0].(string)
		userID, _ := vals[1].(string)
		created, _ := vals[2].(string)
		if hash == "" || userID == "" || (tokenMatches != nil && !tokenMatches(hash)) {
			return nil
		}
		if c, err := strconv.ParseInt(created, 10, 64); err == nil && s.cutoff.excludes(time.UnixMilli(c)) {
			return nil // revoked already, by RevokeAll; its key expires in its time
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
		event := Revocation{SessionIDs: []string{id.String()}, UserID: userID, Reason: reason, At: now, ReusedID: reusedID}
		err = s.commit(ctx, tx, func(p redis.Pipeliner) {
			p.Del(ctx, sKey)
			s.publishRevocation(ctx, p, event)
			if indexEnds == 0 {
				p.Del(ctx, iKey)
				return
			}
			p.ZRem(ctx, iKey, member)
			p.ZRemRangeByScore(ctx, iKey, "-inf", ms(now))
			p.PExpireAt(ctx, iKey, time.UnixMilli(indexEnds))
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
// user (ErrMalformedSessionID, ErrForeignSession): its routing tag must be
// the user's and, if the session still exists, its stored user too (two
// users' 32-bit tags can collide). A session of the user that is gone is
// simply not kept.
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
	if err := s.ensureCutoff(ctx); err != nil {
		return nil, err
	}
	iKey := s.indexKey(t, userID)
	var (
		event   *Revocation
		foreign bool
	)
	err := s.watch(ctx, "revoke user", func(tx *redis.Tx) error {
		event, foreign = nil, false
		if keep != "" {
			owner, err := tx.HGet(ctx, s.sessionKey(t, keep), fieldUserID).Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				return err
			}
			if owner != "" && owner != userID {
				foreign = true // another user's, whose tag collides with this one's
				return nil
			}
		}
		all, err := tx.ZRangeWithScores(ctx, iKey, 0, -1).Result()
		if err != nil {
			return err
		}
		now := s.now()
		cutOff, err := s.cutOffMembers(ctx, tx, t, all, now)
		if err != nil {
			return err
		}
		var keys, revoked []string
		var members []any
		var keepEnds int64
		for _, z := range all {
			m := memberString(z.Member)
			live := int64(z.Score) > now.UnixMilli() && !cutOff[m]
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
		err = s.commit(ctx, tx, func(p redis.Pipeliner) {
			p.Del(ctx, keys...)
			if len(revoked) > 0 {
				s.publishRevocation(ctx, p, ev)
			}
			if keepEnds == 0 {
				p.Del(ctx, iKey)
				return
			}
			p.ZRem(ctx, iKey, members...)
			p.PExpireAt(ctx, iKey, time.UnixMilli(keepEnds))
		})
		if err == nil && len(revoked) > 0 {
			event = &ev
		}
		return err
	}, iKey)
	switch {
	case err != nil:
		return nil, err
	case foreign:
		return nil, ErrForeignSession
	}
	return event, nil
}

// cutOffMembers returns the members of index that have not ended by now but
// were created before the revoke-all cutoff (so are no longer live), reading
// their creation times in one round trip; nil, without a read, when no
// cutoff is set.
func (s *Store) cutOffMembers(ctx context.Context, tx *redis.Tx, t tag, index []redis.Z, now time.Time) (map[string]bool, error) {
	if s.cutoff.at.Load() == 0 {
		return nil, nil
	}
	var members []string
	for _, z := range index {
		if int64(z.Score) > now.UnixMilli() {
			members = append(members, memberString(z.Member))
		}
	}
	if len(members) == 0 {
		return nil, nil
	}
	cmds := make([]*redis.StringCmd, len(members))
	if _, err := tx.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, m := range members {
			cmds[i] = p.HGet(ctx, s.sessionKey(t, m), fieldCreated)
		}
		return nil
	}); err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	out := map[string]bool{}
	for i, cmd := range cmds {
		if c, err := strconv.ParseInt(cmd.Val(), 10, 64); err == nil && s.cutoff.excludes(time.UnixMilli(c)) {
			out[members[i]] = true
		}
	}
	return out, nil
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
	if err := s.ensureCutoff(ctx); err != nil {
		return nil, "", err
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
		if rec.UserID == userID && s.alive(rec, now) {
			sessions = append(sessions, &rec.Session)
		}
	}
	return sessions, next, nil
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

// commit runs the writes fn queues as one MULTI/EXEC on tx's connection:
// every write of the store goes through it. A write Redis refuses (out of
// memory, read-only, ...) is a *RefusedError; with MinReplicaAcks, the
// write then waits for that many replicas (WAIT, on the same connection:
// on a Cluster, the master that took it) and is ErrNotReplicated if fewer
// acknowledge it in time.
func (s *Store) commit(ctx context.Context, tx *redis.Tx, fn func(p redis.Pipeliner)) error {
	cmds, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
		fn(p)
		return nil
	})
	if err != nil {
		// An EXECABORT says only that a queued command was refused: the
		// command's own reply says why.
		for _, c := range cmds {
			if r := refusedBy(c.Err()); r != nil {
				return r
			}
		}
		return err
	}
	if s.minAcks == 0 {
		return nil
	}
	n, err := tx.Do(ctx, "WAIT", s.minAcks, s.ackTimeout.Milliseconds()).Int()
	if err != nil {
		return fmt.Errorf("%w: %w: the write was applied, but waiting for its replicas failed: %w", ErrUnavailable, ErrNotReplicated, err)
	}
	if n < s.minAcks {
		return fmt.Errorf("%w: %w: %d of %d replicas acknowledged the write within %v", ErrUnavailable, ErrNotReplicated, n, s.minAcks, s.ackTimeout)
	}
	return nil
}

// ReadStats counts the validations' reads (Get) since New: how many went to
// Redis on their own and how many shared pipelines (see RunReads).
type ReadStats = autopipe.Stats

// ReadStats returns the counts of the validations' reads so far.
func (s *Store) ReadStats() ReadStats { return s.reads.Stats() }

// WatchRetries returns, by operation ("create", "touch", "revoke", ...),
// how many times a write lost the WATCH race to a concurrent write for the
// same user (or session) and was tried again, since New.
func (s *Store) WatchRetries() map[string]uint64 {
	out := map[string]uint64{}
	s.retries.Range(func(op, n any) bool {
		out[op.(string)] = n.(*atomic.Uint64).Load()
		return true
	})
	return out
}

// watchReading is watch for a write that begins with reads (queued by
// reads; a missing key's redis.Nil is left in its command) of the key it
// watches: on a single Redis (or Sentinel's master) the WATCH goes in one
// pipeline with the reads, a round trip fewer than WATCH then the reads.
// fn must commit whenever it returns nil; when it returns an error the
// WATCH is dropped (UNWATCH) before the connection goes back to the pool.
// A Cluster client's WATCH must name its key to find the node: there, the
// WATCH goes first, on its own.
func (s *Store) watchReading(ctx context.Context, op, key string, reads func(p redis.Pipeliner), fn func(*redis.Tx) error) error {
	if _, single := s.rdb.(*redis.Client); !single {
		return s.watch(ctx, op, func(tx *redis.Tx) error {
			if _, err := tx.Pipelined(ctx, func(p redis.Pipeliner) error { reads(p); return nil }); err != nil && !errors.Is(err, redis.Nil) {
				return err
			}
			return fn(tx)
		}, key)
	}
	return s.watch(ctx, op, func(tx *redis.Tx) error {
		var watch *redis.StatusCmd
		_, err := tx.Pipelined(ctx, func(p redis.Pipeliner) error {
			watch = redis.NewStatusCmd(ctx, "watch", key)
			_ = p.Process(ctx, watch)
			reads(p)
			return nil
		})
		if watch.Err() != nil {
			return watch.Err()
		}
		if errors.Is(err, redis.Nil) { // a read of a missing key: its command says so
			err = nil
		}
		if err == nil {
			err = fn(tx)
		}
		if err != nil && !errors.Is(err, redis.TxFailedErr) {
			_ = tx.Unwatch(ctx).Err() // an EXEC that ran has dropped it already
		}
		return err
	})
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
		n, _ := s.retries.LoadOrStore(op, new(atomic.Uint64))
		n.(*atomic.Uint64).Add(1)
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
