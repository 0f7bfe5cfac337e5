package store

import (
	"errors"
	"sync"
	"testing"
	"time"
)

func TestRotate(t *testing.T) {
	t.Parallel()
	forEachBackend(t, Config{TouchInterval: time.Minute}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		old := f.create(t, "user-1", time.Hour, 10*time.Minute)
		other := f.create(t, "user-1", 2*time.Hour, 0)
		f.clock.Advance(30 * time.Second)

		rotated, err := f.store.Rotate(ctx, old.Token, Step{})
		if err != nil {
			t.Fatalf("Rotate: %v", err)
		}
		n, o := rotated.Session, old.Session
		if rotated.Token == old.Token || n.ID == o.ID || rotated.Replaced != o.ID {
			t.Fatalf("Rotate gave id %s (replaced %s), want a new id replacing %s", n.ID, rotated.Replaced, o.ID)
		}
		if n.UserID != o.UserID || !n.CreatedAt.Equal(o.CreatedAt) || !n.ExpiresAt.Equal(o.ExpiresAt) || n.IdleTimeout != o.IdleTimeout {
			t.Fatalf("Rotate changed the session's data: %+v, was %+v", n, o)
		}
		if !n.LastSeenAt.Equal(f.store.now()) {
			t.Fatalf("rotated session last seen %v, want now (%v)", n.LastSeenAt, f.store.now())
		}
		if _, err := f.store.Get(ctx, old.Token); !errors.Is(err, ErrNotFound) {
			t.Fatalf("the old token still validates: %v", err)
		}
		if got, err := f.store.Get(ctx, rotated.Token); err != nil || got.ID != n.ID {
			t.Fatalf("the new token: %v, %v", got, err)
		}
		if _, err := f.store.Get(ctx, other.Token); err != nil {
			t.Fatalf("another session of the user was touched by the rotation: %v", err)
		}
		f.checkConsistent(t)

		for _, tok := range []string{old.Token, "garbage", ""} {
			if _, err := f.store.Rotate(ctx, tok, Step{}); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Rotate(%.10q) err = %v, want ErrNotFound", tok, err)
			}
		}
		// A rotated session ends when the old one would have: its idle expiry
		// slides from the rotation, its absolute expiry stays.
		f.clock.Advance(10*time.Minute - time.Millisecond)
		if _, err := f.store.Get(ctx, rotated.Token); err != nil {
			t.Fatalf("rotated session ended before its idle timeout: %v", err)
		}
	})
}

func TestConcurrentRotationsHaveOneWinner(t *testing.T) {
	t.Parallel()
	forEachBackend(t, Config{}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		c := f.create(t, "user-1", time.Hour, 0)
		const rotators = 12
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			winners []*Created
			errs    []error
		)
		for range rotators {
			wg.Go(func() {
				r, err := f.store.Rotate(ctx, c.Token, Step{})
				mu.Lock()
				defer mu.Unlock()
				if err == nil {
					winners = append(winners, r)
				} else if !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrConflict) {
					errs = append(errs, err)
				}
			})
		}
		wg.Wait()
		if len(errs) > 0 {
			t.Fatalf("concurrent rotations failed: %v", errs)
		}
		if len(winners) != 1 {
			t.Fatalf("%d of %d concurrent rotations succeeded, want exactly 1", len(winners), rotators)
		}
		if _, err := f.store.Get(ctx, winners[0].Token); err != nil {
			t.Fatalf("the winner's token: %v", err)
		}
		f.checkConsistent(t)
	})
}
