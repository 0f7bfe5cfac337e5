package client

import (
	"context"
	"crypto/sha256"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"google.golang.org/grpc/metadata"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
)

// watchReadyHeader is the response header with which sessiond's
// WatchRevocations says that its subscription is live (see the proto).
const watchReadyHeader = "sessiond-revocations"

// recentEvents is how many events (revoked or updated session ids, drops)
// the cache remembers, to refuse caching a validation that one overtook.
const recentEvents = 1024

type tokenKey [sha256.Size]byte

// keyOf is the cache's key for token: its SHA-256, so that the cache holds
// no token. The hash reads the token's bytes in place: converting the
// string to a []byte would copy it to the heap on every lookup, and
// sha256.Sum256 neither keeps nor changes its argument.
func keyOf(token string) tokenKey {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token)))
}

type cacheEntry struct {
	key     tokenKey
	session *Session
	created time.Time // the session's created_at, for a RevokeAllSessions cutoff
	until   time.Time
}

// eventKind is what an event the cache remembers did to its session.
type eventKind uint8

const (
	eventRevoked eventKind = iota // the session ended
	eventUpdated                  // the session's data changed; it lives on
	eventDrop                     // the whole cache was emptied (no session)
)

// cache holds validated sessions keyed by the SHA-256 of their token. It is
// trusted only while a WatchRevocations stream is established; it is emptied
// whenever that stream ends, and evicts a session as soon as an event names
// it (revoked or updated) or a RevokeAllSessions cutoff covers it.
type cache struct {
	ttl time.Duration
	now func() time.Time

	mu        sync.Mutex
	live      bool
	lru       *simplelru.LRU[tokenKey, *cacheEntry]
	bySession map[string]tokenKey
	// watchers are the streams that end when their session is revoked
	// (onRevoke), by session id.
	watchers map[string]map[*revokeWatcher]struct{}
	// seq counts events (revocations, updates) and drops; recent remembers
	// what the last ones named, so that add can tell whether a validation
	// was overtaken by one while it was in flight.
	seq       uint64
	recent    [recentEvents]recentEvent
	recentLen int
	// cutoff is the latest RevokeAllSessions cutoff heard of (the zero time:
	// none): every session created before it is revoked. It only moves
	// forward, and survives drops (a cutoff never goes back).
	cutoff time.Time

	// The counters of CacheStats, read without mu.
	hits, misses, revoked, updated, evicted, drops atomic.Uint64
}

type recentEvent struct {
	seq       uint64
	sessionID string // "" for a drop
	kind      eventKind
}

func newCache(size int, ttl time.Duration) *cache {
	c := &cache{ttl: ttl, now: time.Now, bySession: map[string]tokenKey{}}
	c.lru, _ = simplelru.NewLRU[tokenKey, *cacheEntry](size, func(_ tokenKey, e *cacheEntry) {
		delete(c.bySession, e.session.GetSessionId())
	})
	return c
}

// get returns the cached session of token, if the cache is live and holds
// one that has not expired.
func (c *cache) get(token string) (*Session, bool) {
	key := keyOf(token)
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.live {
		c.misses.Add(1)
		return nil, false
	}
	e, ok := c.lru.Get(key)
	if !ok {
		c.misses.Add(1)
		return nil, false
	}
	if !c.now().Before(e.until) || e.created.Before(c.cutoff) {
		c.lru.Remove(key)
		c.misses.Add(1)
		return nil, false
	}
	c.hits.Add(1)
	return e.session, true
}

// begin returns the position to pass to add after a validation call.
func (c *cache) begin() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seq
}

// add caches a session that sessiond validated, unless the cache is not live
// or an event about the session (a revocation, an update) or a drop came in
// since begin returned start. It reports false, caching nothing, when the
// session was created before a RevokeAllSessions cutoff the cache knows of:
// it is revoked, whatever a sessiond that has not heard of the cutoff yet
// said.
func (c *cache) add(token string, s *Session, start uint64) bool {
	created := s.GetCreatedAt().AsTime()
	c.mu.Lock()
	defer c.mu.Unlock()
	if created.Before(c.cutoff) {
		return false
	}
	if !c.live || c.overtaken(s.GetSessionId(), start, true) {
		return true
	}
	until := c.now().Add(c.ttl)
	for _, t := range []time.Time{s.GetExpiresAt().AsTime(), s.GetIdleExpiresAt().AsTime()} {
		if t.Before(until) {
			until = t
		}
	}
	key := keyOf(token)
	if c.lru.Add(key, &cacheEntry{key: key, session: s, created: created, until: until}) {
		c.evicted.Add(1)
	}
	c.bySession[s.GetSessionId()] = key
	return true
}

// overtaken reports whether an event may have made what sessiond said of
// sessionID stale since seq start (begin): an event named it, or too many
// events came to tell. For the cache (cached), any event counts: a
// revocation, an update, a drop; for a stream (onRevoke), only a
// revocation. c.mu is held.
func (c *cache) overtaken(sessionID string, start uint64, cached bool) bool {
	since := c.seq - start
	if since == 0 {
		return false
	}
	if since > uint64(min(c.recentLen, recentEvents)) {
		return true // too much happened to tell
	}
	for i := range int(since) {
		r := c.recent[(c.recentLen-1-i+recentEvents)%recentEvents]
		switch {
		case r.kind == eventDrop:
			if cached {
				return true
			}
		case r.sessionID == sessionID && (cached || r.kind == eventRevoked):
			return true
		}
	}
	return false
}

// onRevoke calls fn once if sessionID, created at created, is revoked after
// seq since (begin), by an event naming it or by a RevokeAllSessions cutoff,
// until stop is called: at once if it already was. An update of the session
// does not call fn. fn must not block.
func (c *cache) onRevoke(sessionID string, created time.Time, since uint64, fn func()) (stop func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if created.Before(c.cutoff) || c.overtaken(sessionID, since, false) {
		fn()
		return func() {}
	}
	w := &revokeWatcher{fn: fn, created: created}
	if c.watchers == nil {
		c.watchers = map[string]map[*revokeWatcher]struct{}{}
	}
	if c.watchers[sessionID] == nil {
		c.watchers[sessionID] = map[*revokeWatcher]struct{}{}
	}
	c.watchers[sessionID][w] = struct{}{}
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if ws := c.watchers[sessionID]; ws != nil {
			delete(ws, w)
			if len(ws) == 0 {
				delete(c.watchers, sessionID)
			}
		}
	}
}

// revokeWatcher is a stream waiting for its session's revocation.
type revokeWatcher struct {
	fn      func()
	created time.Time // the session's created_at, for a cutoff
}

// note records an event. c.mu is held.
func (c *cache) note(sessionID string, kind eventKind) {
	c.seq++
	c.recent[c.recentLen%recentEvents] = recentEvent{seq: c.seq, sessionID: sessionID, kind: kind}
	c.recentLen++
	if c.recentLen >= 2*recentEvents {
		c.recentLen -= recentEvents
	}
}

// apply applies an event of the revocation stream.
func (c *cache) apply(ev *sessionauthv1.RevocationEvent) {
	switch ev.GetReason() {
	case sessionauthv1.RevocationEvent_REASON_UPDATED:
		c.update(ev.GetSessionIds())
	case sessionauthv1.RevocationEvent_REASON_ALL_REVOKED:
		if ts := ev.GetIssuedBefore(); ts.CheckValid() == nil {
			c.revokeBefore(ts.AsTime())
		} else {
			c.dropAll() // a cutoff, but which? Forget everything.
		}
		c.revoke(ev.GetSessionIds()) // none, by the proto
	default:
		// Every other reason, known (logout, revoked, user revoked, evicted,
		// rotated, reuse detected) or not, revokes the sessions it names.
		// REASON_REUSE_DETECTED also names the reused session, which its
		// rotation ended before: should the cache still hold it, drop it.
		ids := ev.GetSessionIds()
		if id := ev.GetReusedSessionId(); id != "" {
			ids = append(slices.Clip(ids), id)
		}
		c.revoke(ids)
	}
}

// revoke evicts revoked sessions and ends their streams.
func (c *cache) revoke(sessionIDs []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range sessionIDs {
		c.note(id, eventRevoked)
		if key, ok := c.bySession[id]; ok && c.lru.Remove(key) {
			c.revoked.Add(1)
		}
		for w := range c.watchers[id] {
			w.fn()
		}
		delete(c.watchers, id)
	}
}

// update evicts sessions whose data changed (they live on: their streams
// go on).
func (c *cache) update(sessionIDs []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range sessionIDs {
		c.note(id, eventUpdated)
		if key, ok := c.bySession[id]; ok && c.lru.Remove(key) {
			c.updated.Add(1)
		}
	}
}

// revokeBefore applies a RevokeAllSessions cutoff: it evicts every session
// created before it and ends their streams, and from now on refuses them
// (add, get, onRevoke). An earlier cutoff than one already known changes
// nothing.
func (c *cache) revokeBefore(cutoff time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !cutoff.After(c.cutoff) {
		return
	}
	c.cutoff = cutoff
	for _, key := range c.lru.Keys() {
		if e, ok := c.lru.Peek(key); ok && e.created.Before(cutoff) {
			c.lru.Remove(key)
			c.revoked.Add(1)
		}
	}
	for id, ws := range c.watchers {
		for w := range ws {
			if w.created.Before(cutoff) {
				w.fn()
				delete(ws, w)
			}
		}
		if len(ws) == 0 {
			delete(c.watchers, id)
		}
	}
}

// forget evicts the session of token (after this client revoked or rotated
// it).
func (c *cache) forget(token string) {
	key := keyOf(token)
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.lru.Peek(key); ok {
		c.note(e.session.GetSessionId(), eventRevoked)
		c.lru.Remove(key)
		c.revoked.Add(1)
	}
}

// forgetUpdated evicts the session of token (after this client may have
// updated it).
func (c *cache) forgetUpdated(token string) {
	key := keyOf(token)
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.lru.Peek(key); ok {
		c.note(e.session.GetSessionId(), eventUpdated)
		c.lru.Remove(key)
		c.updated.Add(1)
	}
}

// setLive marks the cache trusted (the stream is established) or not; making
// it untrusted empties it. Either way, the validations in flight are not
// cached: one that began before a stream was established may have read a
// session before an event that no stream delivered.
func (c *cache) setLive(live bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !live && c.live {
		c.drops.Add(1)
	}
	c.dropAllLocked()
	c.live = live
}

// dropAll empties the cache and refuses the validations in flight; the
// streams of its sessions go on.
func (c *cache) dropAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropAllLocked()
}

func (c *cache) dropAllLocked() {
	c.note("", eventDrop)
	c.lru.Purge()
	clear(c.bySession)
}

// CacheStats is what a client's cache (WithCache) has done since New. The
// counters only grow; clientmetrics exports them to Prometheus.
type CacheStats struct {
	// Enabled: the client was built WithCache. Without it, every other
	// field is zero.
	Enabled bool
	// Live: the revocation stream is established and the cache is in use.
	Live bool
	// Entries is the number of sessions cached now.
	Entries int
	// Hits counts validations answered from the cache.
	Hits uint64
	// Misses counts validations that asked sessiond: not cached, expired
	// from the cache, or the cache was not live.
	Misses uint64
	// RevocationEvictions counts cached sessions evicted because they were
	// revoked (an event on the stream, a RevokeAllSessions cutoff, or
	// Revoke, RevokeByID, Rotate, StepUp or RevokeAll through this client).
	RevocationEvictions uint64
	// UpdateEvictions counts cached sessions evicted because their data
	// changed (UpdateSession, ExtendSession: an event on the stream, or
	// Update, UpdateByID or Extend through this client).
	UpdateEvictions uint64
	// CapacityEvictions counts cached sessions evicted to make room (the
	// least recently used, when the cache holds its size).
	CapacityEvictions uint64
	// Drops counts the times the whole cache was emptied because its
	// revocation stream broke (or Close was called).
	Drops uint64
}

func (c *cache) stats() CacheStats {
	c.mu.Lock()
	live, entries := c.live, c.lru.Len()
	c.mu.Unlock()
	return CacheStats{
		Enabled:             true,
		Live:                live,
		Entries:             entries,
		Hits:                c.hits.Load(),
		Misses:              c.misses.Load(),
		RevocationEvictions: c.revoked.Load(),
		UpdateEvictions:     c.updated.Load(),
		CapacityEvictions:   c.evicted.Load(),
		Drops:               c.drops.Load(),
	}
}

// watchRevocations keeps a WatchRevocations stream open until ctx ends,
// feeding its events to the cache, and reconnects with jittered backoff when
// it breaks. The cache is trusted only while a stream is established.
func (c *Client) watchRevocations(ctx context.Context) {
	defer c.cache.setLive(false)
	backoff := c.opts.minBackoff
	for ctx.Err() == nil {
		established := false
		stream, err := c.rpc.WatchRevocations(ctx, &sessionauthv1.WatchRevocationsRequest{})
		if err == nil {
			var md metadata.MD
			if md, err = stream.Header(); err == nil && len(md.Get(watchReadyHeader)) == 0 {
				_, err = stream.Recv() // a trailers-only response: its status says why
			}
		}
		if err == nil {
			established = true
			c.cache.setLive(true)
			c.opts.logger.Debug("sessiond revocation stream established: cache on")
			for {
				var ev *sessionauthv1.RevocationEvent
				if ev, err = stream.Recv(); err != nil {
					break
				}
				c.cache.apply(ev)
			}
		}
		c.cache.setLive(false)
		if ctx.Err() != nil {
			return
		}
		if established {
			backoff = c.opts.minBackoff
		}
		c.opts.logger.Warn("sessiond revocation stream down: cache off until it is back", "error", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff/2 + rand.N(backoff/2+1)):
		}
		backoff = min(2*backoff, c.opts.maxBackoff)
	}
}

var discardLogger = slog.New(slog.DiscardHandler)
