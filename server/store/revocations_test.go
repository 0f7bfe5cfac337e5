package store

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// watchEvents runs WatchRevocations until the test ends and returns its
// events on a channel, once the subscription is confirmed.
func watchEvents(t *testing.T, f *fixture) (<-chan Revocation, <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan Revocation, 100)
	ready := make(chan struct{})
	done := make(chan error, 1)
	finished := make(chan struct{})
	go func() {
		done <- f.store.WatchRevocations(ctx, func() { close(ready) }, func(r Revocation) { events <- r })
		close(finished)
	}()
	t.Cleanup(func() { cancel(); <-finished })
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("WatchRevocations ended before it was ready: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("WatchRevocations not ready within 5s")
	}
	return events, done
}

func nextEvent(t *testing.T, events <-chan Revocation) Revocation {
	t.Helper()
	select {
	case r := <-events:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("no revocation event within 5s")
		return Revocation{}
	}
}

func TestRevocationEvents(t *testing.T) {
	t.Parallel()
	forEachBackend(t, Config{MaxSessionsPerUser: 3}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		events, _ := watchEvents(t, f)
		var cs []*Created
		for range 4 {
			cs = append(cs, f.create(t, "user-1", time.Hour, 0))
		}
		want := func(r Revocation, reason Reason, ids ...string) {
			t.Helper()
			slices.Sort(ids)
			slices.Sort(r.SessionIDs)
			if r.Reason != reason || r.UserID != "user-1" || !slices.Equal(r.SessionIDs, ids) || r.At.IsZero() {
				t.Fatalf("event %+v, want reason %d for %v", r, reason, ids)
			}
		}
		want(nextEvent(t, events), ReasonEvicted, cs[0].Session.ID)

		if _, err := f.store.RevokeToken(ctx, cs[1].Token); err != nil {
			t.Fatal(err)
		}
		want(nextEvent(t, events), ReasonLogout, cs[1].Session.ID)
		if _, err := f.store.Revoke(ctx, cs[2].Session.ID); err != nil {
			t.Fatal(err)
		}
		want(nextEvent(t, events), ReasonRevoked, cs[2].Session.ID)
		more := f.create(t, "user-1", time.Hour, 0)
		if _, err := f.store.RevokeUser(ctx, "user-1", ""); err != nil {
			t.Fatal(err)
		}
		want(nextEvent(t, events), ReasonUserRevoked, cs[3].Session.ID, more.Session.ID)

		// Nothing revoked, nothing published.
		if r, _ := f.store.Revoke(ctx, cs[2].Session.ID); r != nil {
			t.Fatal("revoked twice")
		}
		if _, err := f.store.RevokeUser(ctx, "user-1", ""); err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-events:
			t.Fatalf("an event for a revocation that revoked nothing: %+v", r)
		case <-time.After(100 * time.Millisecond):
		}
	})
}

func TestWatchRevocationsEndsWhenRedisGoes(t *testing.T) {
	t.Parallel()
	f := newPrivateFixture(t, Config{})
	_, done := watchEvents(t, f)
	f.srv.Stop()
	select {
	case err := <-done:
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("WatchRevocations ended with %v, want ErrUnavailable", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WatchRevocations did not notice that Redis went away")
	}
}
