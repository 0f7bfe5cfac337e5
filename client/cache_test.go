package client

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
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
