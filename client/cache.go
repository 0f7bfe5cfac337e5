package client

import (
	"context"
	"crypto/sha256"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"google.golang.org/grpc/metadata"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
)

// watchReadyHeader is the response header with which sessiond's
// WatchRevocations says that its subscription is live (see the proto).
const watchReadyHeader = "sessiond-revocations"

// recentEvents is how many revoked session ids the cache remembers, to refuse
// caching a validation that a revocation overtook.
const recentEvents = 1024

type tokenKey [sha256.Size]byte

type cacheEntry struct {
	key     tokenKey
	session *Session
	until   time.Time
}

// cache holds validated sessions keyed by the SHA-256 of their token. It is
// trusted only while a WatchRevocations stream is established; it is emptied
// whenever that stream ends, and evicts a session as soon as an event names
// it.
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
	// seq counts revocation events and drops; recent remembers what the last
	// ones named ("" for a drop), so that add can tell whether a validation
	// was overtaken by a revocation while it was in flight.
	seq    uint64
	recent [recentEvents]struct {
		seq       uint64
		sessionID string
	}
	recentLen int

	// The counters of CacheStats, read without mu.
	hits, misses, revoked, evicted, drops atomic.Uint64
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
	key := tokenKey(sha256.Sum256([]byte(token)))
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
	if !c.now().Before(e.until) {
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
// or a revocation of the session (or a drop) came in since begin returned
// start.
func (c *cache) add(token string, s *Session, start uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.live {
		return
	}
	if c.revokedSince(s.GetSessionId(), start, true) {
		return
	}
	until := c.now().Add(c.ttl)
	for _, t := range []time.Time{s.GetExpiresAt().AsTime(), s.GetIdleExpiresAt().AsTime()} {
		if t.Before(until) {
			until = t
		}
	}
	key := tokenKey(sha256.Sum256([]byte(token)))
	if c.lru.Add(key, &cacheEntry{key: key, session: s, until: until}) {
		c.evicted.Add(1)
	}
	c.bySession[s.GetSessionId()] = key
}

// note records an event (sessionID "" for a drop). Called with mu held.
// revokedSince reports whether sessionID may have been revoked since seq
// start (begin): an event named it, or too many events came to tell; with
// drops, a break of the revocation stream counts too. c.mu is held.
func (c *cache) revokedSince(sessionID string, start uint64, drops bool) bool {
	since := c.seq - start
	if since == 0 {
		return false
	}
	if since > uint64(min(c.recentLen, recentEvents)) {
		return true // too much happened to tell
	}
	for i := range int(since) {
		r := c.recent[(c.recentLen-1-i+recentEvents)%recentEvents]
		if r.sessionID == sessionID || (drops && r.sessionID == "") {
			return true
		}
	}
	return false
}

// onRevoke calls fn once if sessionID is revoked after seq since (begin),
// until stop is called: at once if it already was. fn must not block.
func (c *cache) onRevoke(sessionID string, since uint64, fn func()) (stop func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.revokedSince(sessionID, since, false) {
		fn()
		return func() {}
	}
	w := &revokeWatcher{fn: fn}
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
type revokeWatcher struct{ fn func() }

func (c *cache) note(sessionID string) {
	c.seq++
	c.recent[c.recentLen%recentEvents] = struct {
		seq       uint64
		sessionID string
	}{c.seq, sessionID}
	c.recentLen++
	if c.recentLen >= 2*recentEvents {
		c.recentLen -= recentEvents
	}
}

// revoke evicts the sessions an event names.
func (c *cache) revoke(sessionIDs []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range sessionIDs {
		c.note(id)
		if key, ok := c.bySession[id]; ok && c.lru.Remove(key) {
			c.revoked.Add(1)
		}
		for w := range c.watchers[id] {
			w.fn()
		}
		delete(c.watchers, id)
	}
}

// forget evicts the session of token (after this client revoked it).
func (c *cache) forget(token string) {
	key := tokenKey(sha256.Sum256([]byte(token)))
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.lru.Peek(key); ok {
		c.note(e.session.GetSessionId())
		c.lru.Remove(key)
		c.revoked.Add(1)
	}
}

// setLive marks the cache trusted (the stream is established) or not; making
// it untrusted empties it.
func (c *cache) setLive(live bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !live {
		if c.live {
			c.drops.Add(1)
		}
		c.note("")
		c.lru.Purge()
		clear(c.bySession)
	}
	c.live = live
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
	// revoked (an event on the stream, or Revoke or Rotate through this
	// client).
	RevocationEvictions uint64
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
				c.cache.revoke(ev.GetSessionIds())
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
