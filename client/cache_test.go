package client

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
)

func testSession(id string, expires time.Time) *Session {
	return &Session{SessionId: id, ExpiresAt: timestamppb.New(expires), IdleExpiresAt: timestamppb.New(expires)}
}

func TestCacheRefusesOvertakenValidations(t *testing.T) {
	t.Parallel()
	c := newCache(10, time.Minute)
	far := time.Now().Add(time.Hour)
	c.add("tok-a", testSession("a", far), c.begin())
	if _, ok := c.get("tok-a"); ok {
		t.Fatal("the cache answered before its stream was live")
	}
	c.setLive(true)

	// A validation in flight while its session is revoked is not cached.
	start := c.begin()
	c.revoke([]string{"a"})
	c.add("tok-a", testSession("a", far), start)
	if _, ok := c.get("tok-a"); ok {
		t.Fatal("cached a validation that a revocation overtook")
	}
	// One overtaken by another session's revocation is.
	start = c.begin()
	c.revoke([]string{"other"})
	c.add("tok-b", testSession("b", far), start)
	if _, ok := c.get("tok-b"); !ok {
		t.Fatal("did not cache a validation untouched by the revocation in between")
	}
	// A revocation evicts; a drop empties everything and turns the cache off.
	c.revoke([]string{"b"})
	if _, ok := c.get("tok-b"); ok {
		t.Fatal("a revoked session is still cached")
	}
	c.add("tok-c", testSession("c", far), c.begin())
	start = c.begin()
	c.setLive(false)
	c.setLive(true)
	if _, ok := c.get("tok-c"); ok {
		t.Fatal("an entry survived a drop")
	}
	c.add("tok-d", testSession("d", far), start)
	if _, ok := c.get("tok-d"); ok {
		t.Fatal("cached a validation that a drop overtook")
	}
	// A validation that began before the stream was established is not
	// cached: an event may have come before the stream did.
	c.setLive(false)
	start = c.begin()
	c.setLive(true)
	c.add("tok-f", testSession("f", far), start)
	if _, ok := c.get("tok-f"); ok {
		t.Fatal("cached a validation that began before the stream was established")
	}
	// Too many events to tell: not cached.
	start = c.begin()
	for i := range recentEvents + 1 {
		c.revoke([]string{fmt.Sprint("x", i)})
	}
	c.add("tok-e", testSession("e", far), start)
	if _, ok := c.get("tok-e"); ok {
		t.Fatal("cached a validation overtaken by more events than the cache remembers")
	}
}

func TestCacheEntryLifetime(t *testing.T) {
	t.Parallel()
	c := newCache(2, time.Minute)
	now := time.Now()
	c.now = func() time.Time { return now }
	c.setLive(true)
	c.add("short", testSession("s", now.Add(10*time.Second)), c.begin())
	c.add("long", testSession("l", now.Add(time.Hour)), c.begin())
	now = now.Add(10 * time.Second)
	if _, ok := c.get("short"); ok {
		t.Fatal("an entry outlived its session")
	}
	if _, ok := c.get("long"); !ok {
		t.Fatal("an entry expired before the cache TTL")
	}
	now = now.Add(time.Minute)
	if _, ok := c.get("long"); ok {
		t.Fatal("an entry outlived the cache TTL")
	}
	// Bounded: the least recently used goes, and its session index with it.
	for i := range 5 {
		c.add(fmt.Sprint("t", i), testSession(fmt.Sprint("s", i), now.Add(time.Hour)), c.begin())
	}
	if c.lru.Len() != 2 || len(c.bySession) != 2 {
		t.Fatalf("cache holds %d entries and %d index entries, want 2 and 2", c.lru.Len(), len(c.bySession))
	}
}

func testSessionCreated(id string, created time.Time) *Session {
	s := testSession(id, created.Add(time.Hour))
	s.CreatedAt = timestamppb.New(created)
	return s
}

func event(reason sessionauthv1.RevocationEvent_Reason, ids ...string) *sessionauthv1.RevocationEvent {
	return &sessionauthv1.RevocationEvent{Reason: reason, SessionIds: ids}
}

// TestCacheUpdates: REASON_UPDATED evicts the session and refuses the
// validations it overtook, but ends no stream of the session.
func TestCacheUpdates(t *testing.T) {
	t.Parallel()
	c := newCache(10, time.Minute)
	c.setLive(true)
	now := time.Now()
	ended := false
	stop := c.onRevoke("a", now, c.begin(), func() { ended = true })
	defer stop()

	c.add("tok-a", testSessionCreated("a", now), c.begin())
	start := c.begin()
	c.apply(event(sessionauthv1.RevocationEvent_REASON_UPDATED, "a"))
	if _, ok := c.get("tok-a"); ok {
		t.Fatal("an updated session is still cached")
	}
	c.add("tok-a", testSessionCreated("a", now), start)
	if _, ok := c.get("tok-a"); ok {
		t.Fatal("cached a validation that an update overtook")
	}
	if ended {
		t.Fatal("an update ended the session's stream")
	}
	// A stream opened while an update was in flight goes on too.
	since := c.begin()
	c.apply(event(sessionauthv1.RevocationEvent_REASON_UPDATED, "a"))
	stop2 := c.onRevoke("a", now, since, func() { ended = true })
	defer stop2()
	if ended {
		t.Fatal("an update before the stream registered ended it")
	}
	// Fresh data after the update is cached again; a revocation still ends
	// the streams.
	c.add("tok-a", testSessionCreated("a", now), c.begin())
	if _, ok := c.get("tok-a"); !ok {
		t.Fatal("the session was not cached again after its update")
	}
	c.apply(event(sessionauthv1.RevocationEvent_REASON_LOGOUT, "a"))
	if !ended {
		t.Fatal("a revocation after an update did not end the stream")
	}
	if st := c.stats(); st.UpdateEvictions != 1 || st.RevocationEvictions != 1 {
		t.Fatalf("stats %+v, want 1 update eviction and 1 revocation eviction", st)
	}
}

// TestCacheReuseDetected: REASON_REUSE_DETECTED revokes the sessions it
// names (and the reused one).
func TestCacheReuseDetected(t *testing.T) {
	t.Parallel()
	c := newCache(10, time.Minute)
	c.setLive(true)
	now := time.Now()
	c.add("tok-new", testSessionCreated("new", now), c.begin())
	c.add("tok-old", testSessionCreated("old", now), c.begin())
	ended := false
	defer c.onRevoke("new", now, c.begin(), func() { ended = true })()
	ev := event(sessionauthv1.RevocationEvent_REASON_REUSE_DETECTED, "new")
	ev.ReusedSessionId = "old"
	c.apply(ev)
	for _, tok := range []string{"tok-new", "tok-old"} {
		if _, ok := c.get(tok); ok {
			t.Errorf("%s is still cached after a reuse detection", tok)
		}
	}
	if !ended {
		t.Fatal("a reuse detection did not end the successor's stream")
	}
}

// TestCacheCutoff: REASON_ALL_REVOKED evicts the sessions created before
// issued_before, ends their streams only, refuses them from then on, and is
// kept across drops; an earlier cutoff changes nothing.
func TestCacheCutoff(t *testing.T) {
	t.Parallel()
	c := newCache(10, time.Minute)
	c.setLive(true)
	cutoff := time.Now().Truncate(time.Millisecond)
	before, at := cutoff.Add(-time.Millisecond), cutoff // created_at < cutoff is revoked
	c.add("tok-old", testSessionCreated("old", before), c.begin())
	c.add("tok-new", testSessionCreated("new", at), c.begin())
	var oldEnded, newEnded bool
	defer c.onRevoke("old", before, c.begin(), func() { oldEnded = true })()
	defer c.onRevoke("new", at, c.begin(), func() { newEnded = true })()
	start := c.begin()

	ev := event(sessionauthv1.RevocationEvent_REASON_ALL_REVOKED)
	ev.IssuedBefore = timestamppb.New(cutoff)
	c.apply(ev)
	if _, ok := c.get("tok-old"); ok {
		t.Fatal("a session created before the cutoff is still cached")
	}
	if _, ok := c.get("tok-new"); !ok {
		t.Fatal("a session created at the cutoff was evicted")
	}
	if !oldEnded || newEnded {
		t.Fatalf("streams ended: before the cutoff %v (want true), at it %v (want false)", oldEnded, newEnded)
	}
	// An in-flight validation of an older session: refused, and reported.
	if c.add("tok-old", testSessionCreated("old", before), start) {
		t.Fatal("add accepted a session created before the cutoff")
	}
	if _, ok := c.get("tok-old"); ok {
		t.Fatal("cached a session created before the cutoff")
	}
	// One of a newer session: cached.
	if !c.add("tok-new2", testSessionCreated("new2", at), start) {
		t.Fatal("add refused a session created at the cutoff")
	}
	if _, ok := c.get("tok-new2"); !ok {
		t.Fatal("did not cache a session created at the cutoff")
	}
	// A stream of an older session opened now ends at once.
	ended := false
	defer c.onRevoke("old2", before, c.begin(), func() { ended = true })()
	if !ended {
		t.Fatal("a stream of a session created before the cutoff was let open")
	}
	// An earlier cutoff does not move it back; a drop does not forget it.
	ev.IssuedBefore = timestamppb.New(before.Add(-time.Hour))
	c.apply(ev)
	c.setLive(false)
	c.setLive(true)
	if c.add("tok-old", testSessionCreated("old", before), c.begin()) {
		t.Fatal("the cutoff was lost")
	}
	// A cutoff event without its cutoff drops everything.
	c.add("tok-new", testSessionCreated("new", at), c.begin())
	c.apply(event(sessionauthv1.RevocationEvent_REASON_ALL_REVOKED))
	if _, ok := c.get("tok-new"); ok {
		t.Fatal("a malformed cutoff event left entries")
	}
}
