package store

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// walkList walks List to its end with pages of limit, taking the pages from
// stores in turn (a cursor is all the state a walk has), and returns how many
// times each session id was listed. It checks what every page must satisfy:
// at most limit sessions, each live; a cursor that parses back to itself. A
// page may hold no session and still not be the last: the walk is bounded
// by a number of pages and a time instead.
func walkList(t testing.TB, st *Store, limit int, more ...*Store) map[string]int {
	t.Helper()
	ctx := ctxT(t)
	stores := append([]*Store{st}, more...)
	seen := map[string]int{}
	deadline := time.Now().Add(25 * time.Second)
	cursor := ""
	for page := 0; ; page++ {
		if page == 5000 || time.Now().After(deadline) {
			t.Fatalf("List with limit %d not done after %d pages", limit, page)
		}
		s := stores[page%len(stores)]
		sessions, next, err := s.List(ctx, limit, cursor)
		if err != nil {
			t.Fatalf("List(%d, %q), page %d: %v", limit, cursor, page, err)
		}
		if len(sessions) > limit {
			t.Fatalf("List(%d) returned a page of %d sessions", limit, len(sessions))
		}
		now := s.now()
		for _, sess := range sessions {
			if !sess.ActiveAt(now) || s.cutoff.excludes(sess.CreatedAt) {
				t.Fatalf("List returned %s, which is not live (ends %v, created %v, cutoff %v)", sess.ID, sess.EndsAt(), sess.CreatedAt, s.Cutoff())
			}
			seen[sess.ID]++
		}
		if next == "" {
			return seen
		}
		c, err := parseListCursor(next)
		if err != nil || c.String() != next {
			t.Fatalf("List returned the cursor %q, which parses to %q (%v)", next, c.String(), err)
		}
		cursor = next
	}
}

func backendNamed(t testing.TB, name string) *backend {
	t.Helper()
	for _, b := range backends {
		if b.name == name {
			return b
		}
	}
	t.Fatalf("no backend %q", name)
	return nil
}

// createMany creates n sessions of users users (round robin) from a few
// goroutines, and returns them.
func (f *fixture) createMany(t testing.TB, n, users int, ttl time.Duration) []*Created {
	t.Helper()
	ctx := ctxT(t)
	out := make([]*Created, n)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				c, err := f.store.Create(ctx, NewSession{UserID: fmt.Sprintf("user-%d", i%users), TTL: ttl, UserAgent: "list/1"})
				if err != nil {
					errs <- err
					return
				}
				out[i] = c
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("create: %v", err)
	}
	return out
}

// TestList walks every session of many users, with pages of 7 and 200, and
// of fewer users with pages of 1: every live session is listed at least
// once, and nothing else (not the revoked, the ended, the cut off, nor
// another prefix's sessions).
func TestList(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		live, users int
		limits      []int
	}{
		// More sessions than a SCAN batch examines keys, so that a page
		// spans several batches (and, on the Cluster, several masters).
		{320, 50, []int{7, 200}},
		// A page of 1 reads what is left of its batch: fewer sessions keep
		// the walk fast.
		{100, 20, []int{1}},
	} {
		t.Run(fmt.Sprint(tc.limits), func(t *testing.T) {
			t.Parallel()
			forEachBackend(t, Config{}, func(t *testing.T, f *fixture) {
				testListWalks(t, f, tc.live, tc.users, tc.limits)
			})
		})
	}
}

func testListWalks(t *testing.T, f *fixture, live, users int, limits []int) {
	ctx := ctxT(t)
	cutOff := f.createMany(t, 20, 10, time.Hour)
	f.clock.Advance(time.Millisecond)
	if _, _, err := f.store.RevokeAll(ctx, f.store.now()); err != nil {
		t.Fatal(err)
	}
	sessions := f.createMany(t, live, users, time.Hour)
	ended := f.createMany(t, 20, 7, time.Minute)
	revokedS := f.createMany(t, 20, 5, time.Hour)
	for _, c := range revokedS {
		if _, err := f.store.Revoke(ctx, c.Session.ID); err != nil {
			t.Fatal(err)
		}
	}
	f.clock.Advance(2 * time.Minute)
	// Sessions of another prefix on the same backend.
	g := newFixture(t, backendNamed(t, f.backend), Config{})
	foreign := g.createMany(t, 20, 5, time.Hour)

	want := map[string]bool{}
	for _, c := range sessions {
		want[c.Session.ID] = true
	}
	notLive := map[string]string{}
	for what, cs := range map[string][]*Created{"cut off": cutOff, "ended": ended, "revoked": revokedS, "another prefix's": foreign} {
		for _, c := range cs {
			notLive[c.Session.ID] = what
		}
	}
	// A second store on the same prefix continues the walks: a cursor is
	// all the state a walk has.
	second := New(f.rdb, Config{KeyPrefix: f.prefix, Clock: f.clock.Now})
	for _, limit := range limits {
		got := walkList(t, f.store, limit, second)
		for id := range want {
			if got[id] == 0 {
				t.Fatalf("limit %d: live session %s not listed (%d of %d listed)", limit, id, len(got), len(want))
			}
		}
		for id := range got {
			if !want[id] {
				t.Fatalf("limit %d: listed %s, a %s session", limit, id, notLive[id])
			}
		}
	}
}

func TestListEmpty(t *testing.T) {
	t.Parallel()
	forEachBackend(t, Config{}, func(t *testing.T, f *fixture) {
		if got := walkList(t, f.store, 10); len(got) != 0 {
			t.Fatalf("List of an empty store: %v", got)
		}
		// Only dead sessions: still empty.
		c := f.create(t, "user-1", time.Hour, 0)
		if _, err := f.store.RevokeToken(ctxT(t), c.Token); err != nil {
			t.Fatal(err)
		}
		f.create(t, "user-1", time.Minute, 0)
		f.clock.Advance(time.Minute)
		if got := walkList(t, f.store, 10); len(got) != 0 {
			t.Fatalf("List of a store with no live session: %v", got)
		}
	})
}

func TestListMalformedCursor(t *testing.T) {
	t.Parallel()
	forEachBackend(t, Config{}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		c := f.create(t, "user-1", time.Hour, 0)
		id := c.Session.ID
		for _, bad := range []string{
			"x", "l2", "l2.0.0.0", "l1.0.0.", "l1.0.0." + id, "l3.0.0.0.", "l2.0.0.0." + id + ".", "l2.-1.0.0.", "l2.16384.0.0.",
			"l2.a.0.0.", "l2.0.x.0.", "l2.0.0.x.", "l2.0.-5.0.", "l2.0.18446744073709551616.0.", "l2.0.0.0.nope",
			"l2.0.0.0." + strings.ToUpper(id), " l2.0.0.0.", "l2..0.0.", "l2.0..0.",
		} {
			if bad == "l2.0.0.0."+id {
				continue // an id with no letters
			}
			if s, next, err := f.store.List(ctx, 10, bad); !errors.Is(err, ErrMalformedCursor) {
				t.Fatalf("List(%q) = %d sessions, %q, %v; want ErrMalformedCursor", bad, len(s), next, err)
			}
		}
		// A cursor that names no master any more (the Cluster changed): the
		// walk goes on from the next one, here none.
		if s, next, err := f.store.List(ctx, 10, "l2.16383.5.0."); err != nil || next != "" || len(s) != 0 {
			t.Fatalf(`List("l2.16383.5.0.") = %v, %q, %v; want the end of the walk`, s, next, err)
		}
		// A cursor as List returns them.
		if _, _, err := f.store.List(ctx, 10, "l2.0.0.7."+id); err != nil {
			t.Fatalf("List(a well-formed cursor): %v", err)
		}
	})
}

// TestListPagesAreBounded walks a Redis of its own that holds far more other
// keys than sessions: no page sends more than maxScansPerPage SCANs, so some
// pages hold no session, and the walk still lists every session.
func TestListPagesAreBounded(t *testing.T) {
	t.Parallel()
	f := newPrivateFixture(t, Config{})
	ctx := ctxT(t)
	const filler = 40_000
	for i := 0; i < filler; i += 1000 {
		pairs := make([]any, 0, 2000)
		for j := i; j < i+1000; j++ {
			pairs = append(pairs, fmt.Sprintf("other:%d", j), "x")
		}
		if err := f.rdb.MSet(ctx, pairs...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	cs := f.createMany(t, 5, 5, time.Hour)
	seen := map[string]int{}
	cursor, pages, empty := "", 0, 0
	for ; pages < 100; pages++ {
		before := f.commandCalls(t)
		sessions, next, err := f.store.List(ctx, 10, cursor)
		if err != nil {
			t.Fatal(err)
		}
		if d := diffCalls(before, f.commandCalls(t)); d["scan"] > maxScansPerPage || d["scan"] == 0 {
			t.Fatalf("page %d sent %d SCANs, want 1 to %d", pages, d["scan"], maxScansPerPage)
		}
		for _, s := range sessions {
			seen[s.ID]++
		}
		if len(sessions) == 0 && next != "" {
			empty++
		}
		if cursor = next; cursor == "" {
			break
		}
	}
	if cursor != "" {
		t.Fatalf("walk not done after %d pages", pages)
	}
	for _, c := range cs {
		if seen[c.Session.ID] == 0 {
			t.Fatalf("session %s not listed", c.Session.ID)
		}
	}
	if pages < 2 || empty == 0 {
		t.Fatalf("%d pages, %d of them empty, over %d keys: want the walk split into bounded pages", pages+1, empty, filler)
	}
	t.Logf("%d keys walked in %d pages (%d empty but not the last)", filler, pages+1, empty)
}

// TestListSurvivesKeyspaceChanges stops a walk in the middle of a SCAN
// batch (pages of 1), changes the keyspace under it (deleting keys of
// another prefix: half of them, which leaves Redis' table of keys as it is
// but makes the batch read again reach further; then nearly all, which
// shrinks the table), and finishes the walk: every session must be listed.
func TestListSurvivesKeyspaceChanges(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		deleted int // of 30,000 keys
		shrink  bool
	}{{"half the keys deleted", 15_000, false}, {"the table shrunk", 30_000, true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newPrivateFixture(t, Config{})
			ctx := ctxT(t)
			const filler = 30_000
			for i := 0; i < filler; i += 1000 {
				pairs := make([]any, 0, 2000)
				for j := i; j < i+1000; j++ {
					pairs = append(pairs, fmt.Sprintf("other:%d", j), "x")
				}
				if err := f.rdb.MSet(ctx, pairs...).Err(); err != nil {
					t.Fatal(err)
				}
			}
			cs := f.createMany(t, 300, 50, time.Hour)
			tableBefore := mainTableOverhead(t, f)

			// Walk until a page stops in the middle of a batch.
			seen := map[string]int{}
			cursor := ""
			for page := 0; ; page++ {
				if page == 100 || (page > 0 && cursor == "") {
					t.Fatalf("no page of 1 stopped in the middle of a batch in %d pages", page)
				}
				sessions, next, err := f.store.List(ctx, 1, cursor)
				if err != nil {
					t.Fatal(err)
				}
				for _, s := range sessions {
					seen[s.ID]++
				}
				cursor = next
				if c, _ := parseListCursor(cursor); c.after != "" {
					break
				}
			}
			// Every other key, so that every batch thins out.
			keys := make([]string, 0, tc.deleted)
			for j := range tc.deleted {
				keys = append(keys, fmt.Sprintf("other:%d", j*filler/tc.deleted))
			}
			for chunk := range slices.Chunk(keys, 1000) {
				if err := f.rdb.Del(ctx, chunk...).Err(); err != nil {
					t.Fatal(err)
				}
			}
			if tc.shrink {
				// Redis shrinks the table in its cron, then rehashes incrementally.
				deadline := time.Now().Add(10 * time.Second)
				for mainTableOverhead(t, f) > tableBefore/8 {
					if time.Now().After(deadline) {
						t.Fatalf("the keyspace table did not shrink within 10s (%d B, was %d B)", mainTableOverhead(t, f), tableBefore)
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
			// Else Redis keeps the table: it shrinks one under 10% full.

			for page := 0; cursor != ""; page++ {
				if page == 2000 {
					t.Fatal("walk not done after 2000 pages")
				}
				sessions, next, err := f.store.List(ctx, 1, cursor)
				if err != nil {
					t.Fatal(err)
				}
				for _, s := range sessions {
					seen[s.ID]++
				}
				cursor = next
			}
			var missed int
			for _, c := range cs {
				if seen[c.Session.ID] == 0 {
					missed++
				}
			}
			if missed > 0 {
				t.Fatalf("%d of %d sessions not listed by a walk across a change of the keyspace", missed, len(cs))
			}
		})
	}
}

// mainTableOverhead is the size of database 0's main hash table (MEMORY
// STATS db.0 overhead.hashtable.main), which follows its number of buckets.
func mainTableOverhead(t testing.TB, f *fixture) int64 {
	t.Helper()
	v, err := f.rdb.Do(ctxT(t), "MEMORY", "STATS").Result()
	if err != nil {
		t.Fatal(err)
	}
	pairs := func(v any) map[string]any {
		m := map[string]any{}
		switch x := v.(type) {
		case []any:
			for i := 0; i+1 < len(x); i += 2 {
				k, _ := x[i].(string)
				m[k] = x[i+1]
			}
		case map[any]any:
			for k, val := range x {
				ks, _ := k.(string)
				m[ks] = val
			}
		}
		return m
	}
	n, ok := pairs(pairs(v)["db.0"])["overhead.hashtable.main"].(int64)
	if !ok {
		t.Fatalf("no db.0 overhead.hashtable.main in MEMORY STATS: %v", v)
	}
	return n
}
