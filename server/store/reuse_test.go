package store

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// rotate rotates token with the zero Step, failing the test on error.
func (f *fixture) rotate(t testing.TB, token string) *Created {
	t.Helper()
	r, err := f.store.Rotate(ctxT(t), token, Step{})
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	return r
}

// wantReuse fails unless err is a ReuseError for reused that revoked the
// session revoked ("" for none).
func wantReuse(t *testing.T, err error, reused, revoked string) {
	t.Helper()
	var re *ReuseError
	if !errors.As(err, &re) || !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want a ReuseError that is ErrNotFound", err)
	}
	if re.ReusedID != reused {
		t.Fatalf("ReuseError names %s, want %s", re.ReusedID, reused)
	}
	switch {
	case revoked == "" && re.Revocation != nil:
		t.Fatalf("ReuseError revoked %+v, want nothing (no live session left)", re.Revocation)
	case revoked != "" && re.Revocation == nil:
		t.Fatalf("ReuseError revoked nothing, want %s", revoked)
	case revoked != "":
		wantEvent(t, *re.Revocation, ReasonReuseDetected, re.Revocation.UserID, revoked)
		if re.Revocation.ReusedID != reused {
			t.Fatalf("revocation %+v names the reused session %s, want %s", re.Revocation, re.Revocation.ReusedID, reused)
		}
	}
}

// wantPlainNotFound fails unless err is ErrNotFound but no ReuseError.
func wantPlainNotFound(t *testing.T, what string, err error) {
	t.Helper()
	var re *ReuseError
	if !errors.Is(err, ErrNotFound) || errors.As(err, &re) {
		t.Fatalf("%s: err = %v, want ErrNotFound and no ReuseError", what, err)
	}
}

func TestRotatedTokenWithinGrace(t *testing.T) {
	t.Parallel()
	forEachBackend(t, Config{}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		a := f.create(t, "user-1", time.Hour, 0)
		b := f.rotate(t, a.Token)
		// Up to the grace, inclusive: not found, and the successor lives.
		for _, step := range []time.Duration{0, DefaultRotationGrace / 2, DefaultRotationGrace / 2} {
			f.clock.Advance(step)
			_, err := f.store.Get(ctx, a.Token)
			wantPlainNotFound(t, "Get(old) within the grace", err)
			_, err = f.store.Rotate(ctx, a.Token, Step{})
			wantPlainNotFound(t, "Rotate(old) within the grace", err)
			if _, err := f.store.Get(ctx, b.Token); err != nil {
				t.Fatalf("the successor after its predecessor was presented within the grace: %v", err)
			}
		}
		f.checkConsistent(t)
	})
}

// With no grace, the old token presented in the very millisecond of its
// rotation (the clock does not move here) is reuse already.
func TestRotatedTokenReuseWithoutGrace(t *testing.T) {
	t.Parallel()
	forEachBackend(t, Config{RotationGrace: -1}, func(t *testing.T, f *fixture) {
		a := f.create(t, "user-1", time.Hour, 0)
		b := f.rotate(t, a.Token)
		_, err := f.store.Get(ctxT(t), a.Token)
		wantReuse(t, err, a.Session.ID, b.Session.ID)
		f.checkConsistent(t)
	})
}

func TestRotatedTokenReuse(t *testing.T) {
	t.Parallel()
	forEachBackend(t, Config{}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		events, _ := watchEvents(t, f)
		a := f.create(t, "user-1", time.Hour, 0)
		other := f.create(t, "user-1", time.Hour, 0)
		b := f.rotate(t, a.Token)
		wantEvent(t, nextEvent(t, events), ReasonRotated, "user-1", a.Session.ID)
		f.clock.Advance(DefaultRotationGrace + time.Millisecond)

		_, err := f.store.Get(ctx, a.Token)
		wantReuse(t, err, a.Session.ID, b.Session.ID)
		ev := nextEvent(t, events)
		wantEvent(t, ev, ReasonReuseDetected, "user-1", b.Session.ID)
		if ev.ReusedID != a.Session.ID {
			t.Fatalf("event %+v, want ReusedID %s", ev, a.Session.ID)
		}
		if _, err := f.store.Get(ctx, b.Token); !errors.Is(err, ErrNotFound) {
			t.Fatalf("the successor after reuse: err = %v, want ErrNotFound", err)
		}
		if _, err := f.store.Get(ctx, other.Token); err != nil {
			t.Fatalf("another session of the user after reuse: %v", err)
		}
		// Again, to Rotate: still reuse, but nothing left to revoke.
		_, err = f.store.Rotate(ctx, a.Token, Step{})
		wantReuse(t, err, a.Session.ID, "")
		f.checkConsistent(t)

		// A token forged for the rotated-away id is not the old token: it
		// revokes nothing.
		c := f.create(t, "user-1", time.Hour, 0)
		d := f.rotate(t, c.Token)
		f.clock.Advance(DefaultRotationGrace + time.Millisecond)
		sid, _ := parseSessionID(c.Session.ID)
		forged, _, _ := newToken(sid)
		_, err = f.store.Get(ctx, forged)
		wantPlainNotFound(t, "Get(forged token of a rotated id)", err)
		_, err = f.store.Rotate(ctx, forged, Step{})
		wantPlainNotFound(t, "Rotate(forged token of a rotated id)", err)
		if _, err := f.store.Get(ctx, d.Token); err != nil {
			t.Fatalf("a forged token revoked the successor: %v", err)
		}
		// The real one, to Rotate, does.
		_, err = f.store.Rotate(ctx, c.Token, Step{})
		wantReuse(t, err, c.Session.ID, d.Session.ID)
		f.checkConsistent(t)
	})
}

// TestReuseRevokesTheChainsLiveSession builds A→B→C and presents A, then on
// another chain B: either revokes C.
func TestReuseRevokesTheChainsLiveSession(t *testing.T) {
	t.Parallel()
	forEachBackend(t, Config{}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		for presented := range 2 {
			user := fmt.Sprintf("user-%d", presented)
			a := f.create(t, user, time.Hour, 0)
			b := f.rotate(t, a.Token)
			f.clock.Advance(time.Second)
			c := f.rotate(t, b.Token)
			f.clock.Advance(DefaultRotationGrace + time.Millisecond)
			chain := []*Created{a, b}
			_, err := f.store.Get(ctx, chain[presented].Token)
			wantReuse(t, err, chain[presented].Session.ID, c.Session.ID)
			for i, s := range []*Created{a, b, c} {
				if _, err := f.store.Get(ctx, s.Token); !errors.Is(err, ErrNotFound) {
					t.Fatalf("chain member %d after reuse: err = %v, want ErrNotFound", i, err)
				}
			}
			if s, _, err := f.store.ListUser(ctx, user, 10, ""); err != nil || len(s) != 0 {
				t.Fatalf("%s's sessions after reuse: %v, %v; want none", user, s, err)
			}
		}
		f.checkConsistent(t)
	})
}

// TestReuseOfALongChain: a thief who rotates a stolen token many times (more
// than any bound on the markers followed) is still caught when the
// victim's old token comes back: the chain's newest session is one read
// away.
func TestReuseOfALongChain(t *testing.T) {
	t.Parallel()
	forEachBackend(t, Config{}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		victim := f.create(t, "long-chain", time.Hour, 0)
		stolen := f.rotate(t, victim.Token)
		for range 2 * maxRotationChain {
			stolen = f.rotate(t, stolen.Token)
		}
		f.clock.Advance(DefaultRotationGrace + time.Millisecond)
		_, err := f.store.Get(ctx, victim.Token)
		wantReuse(t, err, victim.Session.ID, stolen.Session.ID)
		if _, err := f.store.Get(ctx, stolen.Token); !errors.Is(err, ErrNotFound) {
			t.Fatalf("the thief's session after the reuse: err = %v, want ErrNotFound", err)
		}
		f.checkConsistent(t)
	})
}

func TestReuseAfterLogout(t *testing.T) {
	t.Parallel()
	forEachBackend(t, Config{}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		a := f.create(t, "user-1", time.Hour, 0)
		b := f.rotate(t, a.Token)
		if r, err := f.store.RevokeToken(ctx, b.Token); r == nil || err != nil {
			t.Fatalf("logout of the successor: %v, %v", r, err)
		}
		f.clock.Advance(DefaultRotationGrace + time.Millisecond)
		_, err := f.store.Get(ctx, a.Token)
		wantReuse(t, err, a.Session.ID, "")
		f.checkConsistent(t)
	})
}

// TestConcurrentRotationsLosersNotReuse rotates one token from many
// goroutines at once: one wins, the others are within the grace, so they get
// ErrNotFound (not a ReuseError) and the winner's session lives on.
func TestConcurrentRotationsLosersNotReuse(t *testing.T) {
	t.Parallel()
	const rotators = 12
	forEachBackend(t, Config{}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		c := f.create(t, "user-1", time.Hour, 0)
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			winners []*Created
			losers  []error
		)
		for range rotators {
			wg.Go(func() {
				r, err := f.store.Rotate(ctx, c.Token, Step{})
				mu.Lock()
				defer mu.Unlock()
				if err == nil {
					winners = append(winners, r)
				} else {
					losers = append(losers, err)
				}
			})
		}
		wg.Wait()
		if len(winners) != 1 {
			t.Fatalf("%d of %d concurrent rotations succeeded, want exactly 1 (losers: %v)", len(winners), rotators, losers)
		}
		for _, err := range losers {
			wantPlainNotFound(t, "a losing rotation", err)
		}
		if _, err := f.store.Get(ctx, winners[0].Token); err != nil {
			t.Fatalf("the winner's token: %v", err)
		}
		f.checkConsistent(t)
	})
}

// TestReuseRacingRotation presents A (rotated into B, after the grace) while
// B is being rotated into C, many times: whichever order the store sees,
// the chain ends with no live session.
func TestReuseRacingRotation(t *testing.T) {
	t.Parallel()
	const rounds = 15
	forEachBackend(t, Config{}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		for round := range rounds {
			user := fmt.Sprintf("user-%d", round)
			a := f.create(t, user, time.Hour, 0)
			b := f.rotate(t, a.Token)
			f.clock.Advance(DefaultRotationGrace + time.Millisecond)
			var (
				wg      sync.WaitGroup
				c       *Created
				rotErr  error
				reuseEr error
			)
			wg.Go(func() { c, rotErr = f.store.Rotate(ctx, b.Token, Step{}) })
			wg.Go(func() { _, reuseEr = f.store.Get(ctx, a.Token) })
			wg.Wait()
			var re *ReuseError
			if !errors.As(reuseEr, &re) {
				t.Fatalf("round %d: presenting A: err = %v, want a ReuseError", round, reuseEr)
			}
			if rotErr != nil && !errors.Is(rotErr, ErrNotFound) {
				t.Fatalf("round %d: rotating B: %v", round, rotErr)
			}
			if rotErr == nil && (re.Revocation == nil || re.Revocation.SessionIDs[0] != c.Session.ID) {
				t.Fatalf("round %d: B was rotated into C, but the reuse revoked %+v", round, re.Revocation)
			}
			if rotErr != nil && (re.Revocation == nil || re.Revocation.SessionIDs[0] != b.Session.ID) {
				t.Fatalf("round %d: B's rotation lost, but the reuse revoked %+v", round, re.Revocation)
			}
			live, err := f.rdb.ZCount(ctx, f.indexKeyOf(user), "("+ms(f.store.now()), "+inf").Result()
			if err != nil || live != 0 {
				t.Fatalf("round %d: %d live members in the user's index (%v), want none (rotation: %v)", round, live, err, rotErr)
			}
			for name, s := range map[string]*Created{"A": a, "B": b, "C": c} {
				if s == nil {
					continue
				}
				if _, err := f.store.Get(ctx, s.Token); !errors.Is(err, ErrNotFound) {
					t.Fatalf("round %d: %s still validates (err %v)", round, name, err)
				}
			}
		}
		if keys := f.keys(t, "*}:s:*"); len(keys) != 0 {
			t.Fatalf("session keys left: %v", keys)
		}
		f.checkConsistent(t)
	})
}

// TestMarkerExpiresWithSuccessor checks the marker's expiry: the successor's
// absolute expiry (not its idle one), through a chain.
func TestMarkerExpiresWithSuccessor(t *testing.T) {
	t.Parallel()
	forEachBackend(t, Config{}, func(t *testing.T, f *fixture) {
		a := f.create(t, "user-1", time.Hour, 10*time.Minute)
		f.clock.Advance(time.Minute)
		b := f.rotate(t, a.Token)
		f.clock.Advance(time.Minute)
		c := f.rotate(t, b.Token)
		for _, id := range []string{a.Session.ID, b.Session.ID} {
			if e := f.expireTime(t, f.markerKeyOf(t, id)); e != c.Session.ExpiresAt.UnixMilli() {
				t.Fatalf("marker of %s expires at %d, want with the successor's absolute expiry %d", id, e, c.Session.ExpiresAt.UnixMilli())
			}
		}
		if !c.Session.ExpiresAt.Equal(a.Session.ExpiresAt) {
			t.Fatalf("rotation moved the absolute expiry from %v to %v", a.Session.ExpiresAt, c.Session.ExpiresAt)
		}
		// The marker holds no token, only its hash (as the session did).
		m := f.hash(t, f.markerKeyOf(t, a.Session.ID))
		if len(m[fieldTokenHash]) != 32 || m[markerFieldNext] != member(b.Session.ID) {
			t.Fatalf("marker of A: %q", m)
		}
		f.checkConsistent(t)
	})
}
