package store

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestRevokeAll cuts off the sessions created before the cutoff, of every
// user: each verb treats them as gone; the sessions created at or after it
// live.
func TestRevokeAll(t *testing.T) {
	t.Parallel()
	forEachBackend(t, Config{}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		events, _ := watchEvents(t, f)
		old := f.create(t, "user-1", time.Hour, 0)
		oldOther := f.create(t, "user-2", time.Hour, 0)
		f.clock.Advance(time.Millisecond)
		cut := f.store.now()

		inForce, ev, err := f.store.RevokeAll(ctx, cut)
		if err != nil {
			t.Fatal(err)
		}
		if !inForce.Equal(cut) || ev == nil || ev.Reason != ReasonAllRevoked || !ev.IssuedBefore.Equal(cut) || len(ev.SessionIDs) != 0 {
			t.Fatalf("RevokeAll = %v, %+v; want the cutoff %v in force and its event", inForce, ev, cut)
		}
		if got := nextEvent(t, events); got.Reason != ReasonAllRevoked || !got.IssuedBefore.Equal(cut) {
			t.Fatalf("event %+v, want ReasonAllRevoked issued before %v", got, cut)
		}
		if !f.store.Cutoff().Equal(cut) {
			t.Fatalf("Cutoff() = %v, want %v", f.store.Cutoff(), cut)
		}
		// Created at the cutoff: live.
		atCut := f.create(t, "user-1", time.Hour, 0)
		f.clock.Advance(time.Millisecond)
		later := f.create(t, "user-1", time.Hour, 0)

		for _, c := range []*Created{old, oldOther} {
			if _, err := f.store.Get(ctx, c.Token); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Get(cut off) err = %v, want ErrNotFound", err)
			}
			if _, err := f.store.GetByID(ctx, c.Session.ID); !errors.Is(err, ErrNotFound) {
				t.Fatalf("GetByID(cut off) err = %v, want ErrNotFound", err)
			}
		}
		_, err = f.store.Rotate(ctx, old.Token, Step{})
		wantPlainNotFound(t, "Rotate(cut off)", err)
		if _, err := f.store.Update(ctx, Ref{Token: old.Token}, AttributeChange{Set: map[string]string{"a": "b"}}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Update(cut off) err = %v, want ErrNotFound", err)
		}
		if _, err := f.store.Extend(ctx, old.Session.ID, 2*time.Hour); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Extend(cut off) err = %v, want ErrNotFound", err)
		}
		if r, err := f.store.RevokeToken(ctx, old.Token); r != nil || err != nil {
			t.Fatalf("RevokeToken(cut off) = %+v, %v; want nothing revoked", r, err)
		}
		if r, err := f.store.Revoke(ctx, oldOther.Session.ID); r != nil || err != nil {
			t.Fatalf("Revoke(cut off) = %+v, %v; want nothing revoked", r, err)
		}
		listed, _, err := f.store.ListUser(ctx, "user-1", 10, "")
		if err != nil {
			t.Fatal(err)
		}
		if got, want := sessionIDs(listed), []string{later.Session.ID, atCut.Session.ID}; !slices.Equal(got, want) {
			t.Fatalf("ListUser after RevokeAll: %v, want %v", got, want)
		}
		all := walkList(t, f.store, 50)
		if all[old.Session.ID] > 0 || all[oldOther.Session.ID] > 0 || all[atCut.Session.ID] == 0 || all[later.Session.ID] == 0 || len(all) != 2 {
			t.Fatalf("List after RevokeAll: %v, want %s and %s", all, atCut.Session.ID, later.Session.ID)
		}
		for _, c := range []*Created{atCut, later} {
			if _, err := f.store.Get(ctx, c.Token); err != nil {
				t.Fatalf("a session created at or after the cutoff: %v", err)
			}
		}
		// New sessions, rotations and updates go on.
		r, err := f.store.Rotate(ctx, atCut.Token, Step{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.store.Update(ctx, Ref{Token: r.Token}, AttributeChange{Set: map[string]string{"a": "b"}}); err != nil {
			t.Fatal(err)
		}
		f.checkConsistent(t)
	})
}

func sessionIDs(sessions []*Session) []string {
	var ids []string
	for _, s := range sessions {
		ids = append(ids, s.ID)
	}
	return ids
}

func TestRevokeAllNeverMovesBack(t *testing.T) {
	t.Parallel()
	forEachBackend(t, Config{}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		events, _ := watchEvents(t, f)
		t1 := f.store.now()
		t2 := t1.Add(time.Second)
		if _, ev, err := f.store.RevokeAll(ctx, t2); err != nil || ev == nil {
			t.Fatalf("RevokeAll(t2) = %+v, %v", ev, err)
		}
		nextEvent(t, events)
		// Earlier, or the same: the cutoff in force, and no event.
		for _, before := range []time.Time{t1, t2} {
			inForce, ev, err := f.store.RevokeAll(ctx, before)
			if err != nil || ev != nil || !inForce.Equal(t2) {
				t.Fatalf("RevokeAll(%v) = %v, %+v, %v; want %v in force and no event", before, inForce, ev, err, t2)
			}
		}
		// Another Store (that has not read the cutoff) learns it from its
		// own earlier RevokeAll.
		other := New(f.rdb, Config{KeyPrefix: f.prefix, Clock: f.clock.Now})
		if inForce, ev, err := other.RevokeAll(ctx, t1); err != nil || ev != nil || !inForce.Equal(t2) || !other.Cutoff().Equal(t2) {
			t.Fatalf("another store's earlier RevokeAll = %v, %+v, %v (cutoff %v); want %v in force", inForce, ev, err, other.Cutoff(), t2)
		}
		// The next event is the next cutoff's: the refused ones published nothing.
		t3 := t2.Add(time.Second)
		if _, _, err := f.store.RevokeAll(ctx, t3); err != nil {
			t.Fatal(err)
		}
		if ev := nextEvent(t, events); ev.Reason != ReasonAllRevoked || !ev.IssuedBefore.Equal(t3) {
			t.Fatalf("event %+v, want the cutoff %v", ev, t3)
		}
		if got := f.rdb.Get(ctx, f.store.cutoffKey()).Val(); got != ms(t3) {
			t.Fatalf("cutoff key %q, want %s", got, ms(t3))
		}
	})
}

// TestCutoffReachesOtherStores runs a second and a third Store on the same
// backend and prefix, both trusting their copy of the cutoff for an hour:
// the second learns the cutoff from the event stream (before its onEvent
// sees the event), the third from RefreshCutoff.
func TestCutoffReachesOtherStores(t *testing.T) {
	t.Parallel()
	forEachBackend(t, Config{}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		cfg := Config{KeyPrefix: f.prefix, Clock: f.clock.Now, CutoffMaxAge: time.Hour}
		watching, refreshing := New(f.rdb, cfg), New(f.rdb, cfg)
		old := f.create(t, "user-1", time.Hour, 0)
		for _, s := range []*Store{watching, refreshing} {
			if _, err := s.Get(ctx, old.Token); err != nil { // reads the cutoff: none
				t.Fatal(err)
			}
		}

		wctx, cancel := context.WithCancel(context.Background())
		ready, done := make(chan struct{}), make(chan error, 1)
		type seen struct {
			ev     Revocation
			cutoff time.Time // watching's cutoff when onEvent saw ev
		}
		events := make(chan seen, 10)
		go func() {
			done <- watching.WatchRevocations(wctx, func() { close(ready) }, func(r Revocation) { events <- seen{r, watching.Cutoff()} })
		}()
		t.Cleanup(func() { cancel(); <-done })
		select {
		case <-ready:
		case err := <-done:
			t.Fatalf("WatchRevocations: %v", err)
		case <-time.After(5 * time.Second):
			t.Fatal("WatchRevocations not ready within 5s")
		}

		f.clock.Advance(time.Millisecond)
		cut := f.store.now()
		if _, _, err := f.store.RevokeAll(ctx, cut); err != nil {
			t.Fatal(err)
		}
		select {
		case s := <-events:
			if s.ev.Reason != ReasonAllRevoked || !s.cutoff.Equal(cut) {
				t.Fatalf("onEvent saw %+v with the cutoff at %v, want it raised to %v first", s.ev, s.cutoff, cut)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no event within 5s")
		}
		if _, err := watching.Get(ctx, old.Token); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get(cut off) on the watching store: err = %v, want ErrNotFound", err)
		}

		// Without events, it takes a read: the copy is trusted until then.
		if !refreshing.Cutoff().IsZero() {
			t.Fatalf("the refreshing store knows the cutoff %v before reading it", refreshing.Cutoff())
		}
		if err := refreshing.RefreshCutoff(ctx); err != nil {
			t.Fatal(err)
		}
		if !refreshing.Cutoff().Equal(cut) {
			t.Fatalf("after RefreshCutoff: %v, want %v", refreshing.Cutoff(), cut)
		}
		if _, err := refreshing.Get(ctx, old.Token); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get(cut off) after RefreshCutoff: err = %v, want ErrNotFound", err)
		}
	})
}

// TestCutoffReadWhenStale: a Store whose copy of the cutoff is older than
// CutoffMaxAge reads it before deciding anything, so learns a cutoff it
// missed.
func TestCutoffReadWhenStale(t *testing.T) {
	t.Parallel()
	forEachBackend(t, Config{}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		const maxAge = 100 * time.Millisecond
		other := New(f.rdb, Config{KeyPrefix: f.prefix, Clock: f.clock.Now, CutoffMaxAge: maxAge})
		old := f.create(t, "user-1", time.Hour, 0)
		if _, err := other.Get(ctx, old.Token); err != nil {
			t.Fatal(err)
		}
		f.clock.Advance(time.Millisecond)
		if _, _, err := f.store.RevokeAll(ctx, f.store.now()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(maxAge)
		if _, err := other.Get(ctx, old.Token); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get(cut off) with a stale copy of the cutoff: err = %v, want ErrNotFound", err)
		}
	})
}

func TestRevokeUserSkipsCutOff(t *testing.T) {
	t.Parallel()
	forEachBackend(t, Config{}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		events, _ := watchEvents(t, f)
		f.create(t, "user-1", time.Hour, 0)
		f.create(t, "user-1", time.Hour, 0)
		only := f.create(t, "user-2", time.Hour, 0)
		f.clock.Advance(time.Millisecond)
		if _, _, err := f.store.RevokeAll(ctx, f.store.now()); err != nil {
			t.Fatal(err)
		}
		nextEvent(t, events)
		live := f.create(t, "user-1", time.Hour, 0)

		r, err := f.store.RevokeUser(ctx, "user-1", "")
		if err != nil || r == nil || !slices.Equal(r.SessionIDs, []string{live.Session.ID}) {
			t.Fatalf("RevokeUser = %+v, %v; want only the live session %s", r, err, live.Session.ID)
		}
		wantEvent(t, nextEvent(t, events), ReasonUserRevoked, "user-1", live.Session.ID)
		// Only cut-off sessions: nothing revoked, nothing published (the
		// next event is the next revocation's).
		if r, err := f.store.RevokeUser(ctx, "user-2", ""); r != nil || err != nil {
			t.Fatalf("RevokeUser(only cut-off sessions) = %+v, %v; want nothing revoked", r, err)
		}
		if _, err := f.store.Get(ctx, only.Token); !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
		again := f.create(t, "user-2", time.Hour, 0)
		if _, err := f.store.Revoke(ctx, again.Session.ID); err != nil {
			t.Fatal(err)
		}
		wantEvent(t, nextEvent(t, events), ReasonRevoked, "user-2", again.Session.ID)
		f.checkConsistent(t)
	})
}

// TestCapEvictsCutOffSilently: over the per-user cap, Create evicts the
// oldest sessions first, which after a RevokeAll are cut-off ones: deleted,
// but neither reported nor announced as evicted (they were revoked already);
// a live session evicted is both.
func TestCapEvictsCutOffSilently(t *testing.T) {
	t.Parallel()
	forEachBackend(t, Config{MaxSessionsPerUser: 2}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		events, _ := watchEvents(t, f)
		f.create(t, "capped", time.Hour, 0)
		f.create(t, "capped", time.Hour, 0)
		f.clock.Advance(time.Millisecond)
		if _, _, err := f.store.RevokeAll(ctx, f.store.now()); err != nil {
			t.Fatal(err)
		}
		nextEvent(t, events)
		third := f.create(t, "capped", time.Hour, 0)
		fourth := f.create(t, "capped", time.Hour, 0)
		if len(third.Evicted) != 0 || len(fourth.Evicted) != 0 {
			t.Fatalf("creates that evicted cut-off sessions report %v and %v, want nothing", third.Evicted, fourth.Evicted)
		}
		fifth := f.create(t, "capped", time.Hour, 0)
		if !slices.Equal(fifth.Evicted, []string{third.Session.ID}) {
			t.Fatalf("the create over the cap of live sessions evicted %v, want %s", fifth.Evicted, third.Session.ID)
		}
		// The first event after the cutoff's is the live session's eviction.
		wantEvent(t, nextEvent(t, events), ReasonEvicted, "capped", third.Session.ID)
		f.checkConsistent(t)
	})
}

// failCutoffReads is a go-redis hook that, while on, fails every read of the
// cutoff key as a broken connection would, and lets every other command
// through: Redis answers, but the cutoff cannot be read.
type failCutoffReads struct {
	key string
	on  atomic.Bool
}

func (h *failCutoffReads) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *failCutoffReads) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if args := cmd.Args(); h.on.Load() && cmd.Name() == "get" && len(args) == 2 && args[1] == h.key {
			err := &net.OpError{Op: "read", Net: "tcp", Err: errors.New("injected: connection reset")}
			cmd.SetErr(err)
			return err
		}
		return next(ctx, cmd)
	}
}

func (h *failCutoffReads) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestStaleCutoffFailsClosed: once the cutoff is older than CutoffMaxAge and
// cannot be read, nothing that decides whether a session is live answers
// (ErrUnavailable), though Redis serves the sessions; nor does Ping.
func TestStaleCutoffFailsClosed(t *testing.T) {
	t.Parallel()
	f := newPrivateFixture(t, Config{})
	ctx := ctxT(t)
	const maxAge = 300 * time.Millisecond
	hook := &failCutoffReads{key: f.store.cutoffKey()}
	rdb := redis.NewClient(&redis.Options{Addr: f.srv.Addr(), ContextTimeoutEnabled: true, MaxRetries: clientMaxRetries})
	t.Cleanup(func() { _ = rdb.Close() })
	rdb.AddHook(hook)
	st := New(rdb, Config{Clock: f.clock.Now, CutoffMaxAge: maxAge})
	c, err := st.Create(ctx, NewSession{UserID: "user-1", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	if err := st.RefreshCutoff(ctx); err != nil {
		t.Fatal(err)
	}
	read := time.Now() // the read was sent before: stale by read+maxAge at the latest
	hook.on.Store(true)
	// While the copy is fresh, validation needs no read. (On a machine too
	// busy to get here within maxAge, it is stale already: then it fails.)
	_, err = st.Get(ctx, c.Token)
	if err != nil && (time.Since(start) < maxAge || !errors.Is(err, ErrUnavailable)) {
		t.Fatalf("Get with a copy of the cutoff read %v ago: %v", time.Since(start), err)
	}

	time.Sleep(time.Until(read.Add(maxAge)))
	checks := map[string]func() error{
		"Get":      func() error { _, err := st.Get(ctx, c.Token); return err },
		"GetByID":  func() error { _, err := st.GetByID(ctx, c.Session.ID); return err },
		"ListUser": func() error { _, _, err := st.ListUser(ctx, "user-1", 10, ""); return err },
		"List":     func() error { _, _, err := st.List(ctx, 10, ""); return err },
		"Rotate":   func() error { _, err := st.Rotate(ctx, c.Token, Step{}); return err },
		"Update": func() error {
			_, err := st.Update(ctx, Ref{Token: c.Token}, AttributeChange{Set: map[string]string{"a": "b"}})
			return err
		},
		"Extend":      func() error { _, err := st.Extend(ctx, c.Session.ID, time.Hour); return err },
		"RevokeToken": func() error { _, err := st.RevokeToken(ctx, c.Token); return err },
		"Revoke":      func() error { _, err := st.Revoke(ctx, c.Session.ID); return err },
		"RevokeUser":  func() error { _, err := st.RevokeUser(ctx, "user-1", ""); return err },
		"Ping":        func() error { return st.Ping(ctx) },
	}
	for name, call := range checks {
		if err := call(); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "cutoff") {
			t.Fatalf("%s with a stale cutoff that cannot be read: err = %v, want ErrUnavailable from the cutoff's read", name, err)
		}
	}
	// Nothing was written meanwhile.
	if got, err := f.store.GetByID(ctx, c.Session.ID); err != nil || got.Attributes != nil || !got.ExpiresAt.Equal(c.Session.ExpiresAt) {
		t.Fatalf("the session after the refused calls: %+v, %v", got, err)
	}

	hook.on.Store(false)
	if err := st.Ping(ctx); err != nil {
		t.Fatalf("Ping once the cutoff can be read again: %v", err)
	}
	if _, err := st.Get(ctx, c.Token); err != nil {
		t.Fatalf("Get once the cutoff can be read again: %v", err)
	}
}

// TestStaleCutoffWhenRedisStops stops Redis: once the copy of the cutoff is
// stale, the calls fail on reading it.
func TestStaleCutoffWhenRedisStops(t *testing.T) {
	t.Parallel()
	const maxAge = 100 * time.Millisecond
	f := newPrivateFixture(t, Config{CutoffMaxAge: maxAge})
	ctx := ctxT(t)
	c := f.create(t, "user-1", time.Hour, 0)
	if _, err := f.store.Get(ctx, c.Token); err != nil {
		t.Fatal(err)
	}
	read := time.Now()
	f.srv.Stop()
	time.Sleep(time.Until(read.Add(maxAge)))
	if _, err := f.store.Get(ctx, c.Token); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "cutoff") {
		t.Fatalf("Get with Redis stopped and a stale cutoff: err = %v, want ErrUnavailable from the cutoff's read", err)
	}
	if err := f.store.Ping(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Ping with Redis stopped: err = %v, want ErrUnavailable", err)
	}
}

// TestStaleCutoffReadOnce: many calls that find the cutoff stale at once
// send one read of it. The store has never read it, and Redis holds the
// first read (CLIENT PAUSE) so that the others come while it is in flight.
func TestStaleCutoffReadOnce(t *testing.T) {
	t.Parallel()
	const callers = 50
	f := newPrivateFixture(t, Config{CutoffMaxAge: time.Hour})
	ctx := ctxT(t)
	c := f.create(t, "user-1", time.Hour, 0) // Create needs no cutoff
	before := f.commandCalls(t)
	if err := f.rdb.Do(ctx, "CLIENT", "PAUSE", 200, "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Go(func() {
			_, err := f.store.Get(ctx, c.Token)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
	}
	d := diffCalls(before, f.commandCalls(t))
	if d["get"] != 1 || d["hgetall"] != callers {
		t.Fatalf("%d concurrent validations with a stale cutoff sent %v, want one GET (the cutoff) and %d HGETALL", callers, d, callers)
	}
}

// TestKeepCutoffFresh: a Store that keeps its cutoff fresh learns a cutoff
// set elsewhere within about a quarter of CutoffMaxAge, without any call of
// its own.
func TestKeepCutoffFresh(t *testing.T) {
	t.Parallel()
	forEachBackend(t, Config{}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		const maxAge = 200 * time.Millisecond
		kept := New(f.rdb, Config{KeyPrefix: f.prefix, Clock: f.clock.Now, CutoffMaxAge: maxAge})
		kctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { kept.KeepCutoffFresh(kctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })

		cut := f.store.now()
		if _, _, err := f.store.RevokeAll(ctx, cut); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for !kept.Cutoff().Equal(cut) {
			if time.Now().After(deadline) {
				t.Fatalf("the cutoff kept fresh is %v 5s after RevokeAll(%v)", kept.Cutoff(), cut)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}
