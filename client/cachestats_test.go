package client

import (
	"testing"
	"time"
)

func TestCacheStatsCount(t *testing.T) {
	t.Parallel()
	c := newCache(2, time.Minute)
	far := time.Now().Add(time.Hour)
	c.get("tok-a") // not live: a miss
	c.setLive(true)
	c.add("tok-a", testSession("a", far), c.begin())
	c.get("tok-a")                                   // hit
	c.get("tok-x")                                   // miss
	c.add("tok-b", testSession("b", far), c.begin()) // cache full
	c.add("tok-c", testSession("c", far), c.begin()) // evicts a
	c.revoke([]string{"b", "unknown"})               // evicts b
	c.forget("tok-c")                                // evicts c
	c.add("tok-d", testSession("d", far), c.begin())
	live := c.stats()
	c.setLive(false) // a drop
	c.setLive(false) // not another
	got := c.stats()
	want := CacheStats{Enabled: true, Hits: 1, Misses: 2, CapacityEvictions: 1, RevocationEvictions: 2, Drops: 1}
	if got != want {
		t.Fatalf("stats = %+v, want %+v", got, want)
	}
	if !live.Live || live.Entries != 1 {
		t.Fatalf("stats while live = %+v, want live with 1 entry", live)
	}
	if (&Client{}).CacheStats() != (CacheStats{}) {
		t.Fatal("a client without cache has stats")
	}
}
