package store

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The keys of a session id, for the tests that look at Redis directly.
func (f *fixture) sessionKeyOf(t testing.TB, id string) string {
	t.Helper()
	sid, err := parseSessionID(id)
	if err != nil {
		t.Fatalf("session id %q: %v", id, err)
	}
	return f.store.sessionKey(sid.tag, sid.uuid.String())
}

func (f *fixture) markerKeyOf(t testing.TB, id string) string {
	t.Helper()
	sid, err := parseSessionID(id)
	if err != nil {
		t.Fatalf("session id %q: %v", id, err)
	}
	return f.store.markerKey(sid.tag, sid.uuid.String())
}

func (f *fixture) indexKeyOf(userID string) string { return f.store.indexKey(userTag(userID), userID) }

// expireTime is PEXPIRETIME of key in Unix milliseconds: -2 when the key does
// not exist, -1 when it does not expire.
func (f *fixture) expireTime(t testing.TB, key string) int64 {
	t.Helper()
	d, err := f.rdb.PExpireTime(ctxT(t), key).Result()
	if err != nil {
		t.Fatalf("PEXPIRETIME %s: %v", key, err)
	}
	if d < 0 {
		return int64(d) // go-redis passes -1 and -2 through as nanoseconds
	}
	return d.Milliseconds()
}

func (f *fixture) exists(t testing.TB, key string) bool {
	t.Helper()
	n, err := f.rdb.Exists(ctxT(t), key).Result()
	if err != nil {
		t.Fatalf("EXISTS %s: %v", key, err)
	}
	return n == 1
}

func (f *fixture) hash(t testing.TB, key string) map[string]string {
	t.Helper()
	m, err := f.rdb.HGetAll(ctxT(t), key).Result()
	if err != nil {
		t.Fatalf("HGETALL %s: %v", key, err)
	}
	return m
}

// wantEvent fails unless r is reason for exactly the session id.
func wantEvent(t *testing.T, r Revocation, reason Reason, userID, id string) {
	t.Helper()
	if r.Reason != reason || r.UserID != userID || !slices.Equal(r.SessionIDs, []string{id}) || r.At.IsZero() {
		t.Fatalf("event %+v, want reason %d for %s of %s", r, reason, id, userID)
	}
}

func TestGetByID(t *testing.T) {
	t.Parallel()
	forEachBackend(t, Config{}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		c, err := f.store.Create(ctx, NewSession{UserID: "user-1", Email: "a@example.com", Attributes: map[string]string{"k": "v"},
			TTL: time.Hour, IdleTimeout: 10 * time.Minute, AuthMethods: []string{"pwd"}, AssuranceLevel: 2})
		if err != nil {
			t.Fatal(err)
		}
		got, err := f.store.GetByID(ctx, c.Session.ID)
		if err != nil {
			t.Fatalf("GetByID(live): %v", err)
		}
		w := c.Session
		if got.ID != w.ID || got.UserID != w.UserID || got.Email != w.Email || !maps.Equal(got.Attributes, w.Attributes) ||
			!got.CreatedAt.Equal(w.CreatedAt) || !got.ExpiresAt.Equal(w.ExpiresAt) || got.IdleTimeout != w.IdleTimeout ||
			!slices.Equal(got.AuthMethods, w.AuthMethods) || got.AssuranceLevel != 2 || !got.AuthenticatedAt.Equal(w.CreatedAt) {
			t.Fatalf("GetByID = %+v, want %+v", got, w)
		}

		// Well formed, never issued.
		unknown := sessionID{tag: userTag("user-1"), uuid: [16]byte{1, 2, 3}}.String()
		if _, err := f.store.GetByID(ctx, unknown); !errors.Is(err, ErrNotFound) {
			t.Fatalf("GetByID(unknown) err = %v, want ErrNotFound", err)
		}
		for _, bad := range []string{"", "nope", c.Token, strings.ToUpper(c.Session.ID[:8]) + c.Session.ID[8:], c.Session.ID + "0", strings.Replace(c.Session.ID, "_", "-", 1)} {
			if bad == c.Session.ID {
				continue // an id with no letters in its tag
			}
			if _, err := f.store.GetByID(ctx, bad); !errors.Is(err, ErrMalformedSessionID) {
				t.Fatalf("GetByID(%.20q) err = %v, want ErrMalformedSessionID", bad, err)
			}
		}

		// Expired by the clock (its key is still in Redis), revoked (no key).
		short := f.create(t, "user-1", time.Minute, 0)
		gone := f.create(t, "user-1", time.Hour, 0)
		if _, err := f.store.Revoke(ctx, gone.Session.ID); err != nil {
			t.Fatal(err)
		}
		f.clock.Advance(time.Minute)
		for name, id := range map[string]string{"expired": short.Session.ID, "revoked": gone.Session.ID} {
			if _, err := f.store.GetByID(ctx, id); !errors.Is(err, ErrNotFound) {
				t.Fatalf("GetByID(%s) err = %v, want ErrNotFound", name, err)
			}
		}
		if _, err := f.store.GetByID(ctx, c.Session.ID); err != nil {
			t.Fatalf("GetByID(live) after a minute: %v", err)
		}

		// Cut off by RevokeAll.
		f.clock.Advance(time.Millisecond)
		if _, _, err := f.store.RevokeAll(ctx, f.store.now()); err != nil {
			t.Fatal(err)
		}
		if _, err := f.store.GetByID(ctx, c.Session.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("GetByID(cut off) err = %v, want ErrNotFound", err)
		}
	})
}

func TestUpdate(t *testing.T) {
	t.Parallel()
	forEachBackend(t, Config{}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		events, _ := watchEvents(t, f)
		c := f.create(t, "user-1", time.Hour, 10*time.Minute)
		sKey := f.sessionKeyOf(t, c.Session.ID)
		exp := f.expireTime(t, sKey)

		// By token: set.
		got, err := f.store.Update(ctx, Ref{Token: c.Token}, AttributeChange{Set: map[string]string{"a": "1", "b": "2"}})
		if err != nil {
			t.Fatalf("Update(token): %v", err)
		}
		if want := map[string]string{"a": "1", "b": "2"}; !maps.Equal(got.Attributes, want) || got.ID != c.Session.ID {
			t.Fatalf("Update(token) = %s %v, want %s %v", got.ID, got.Attributes, c.Session.ID, want)
		}
		wantEvent(t, nextEvent(t, events), ReasonUpdated, "user-1", c.Session.ID)

		// By id: set and remove; a key in both is set, a key removed that
		// was not there is no error.
		got, err = f.store.Update(ctx, Ref{ID: c.Session.ID}, AttributeChange{
			Set: map[string]string{"b": "20", "c": "3"}, Remove: []string{"a", "b", "never"}})
		if err != nil {
			t.Fatalf("Update(id): %v", err)
		}
		want := map[string]string{"b": "20", "c": "3"}
		if !maps.Equal(got.Attributes, want) {
			t.Fatalf("Update(id) attributes %v, want %v", got.Attributes, want)
		}
		wantEvent(t, nextEvent(t, events), ReasonUpdated, "user-1", c.Session.ID)
		read, err := f.store.Get(ctx, c.Token)
		if err != nil || !maps.Equal(read.Attributes, want) {
			t.Fatalf("Get after Update = %v, %v; want attributes %v", read, err, want)
		}
		// Nothing else changed: not the expiry, not the last validation.
		if e := f.expireTime(t, sKey); e != exp {
			t.Fatalf("Update moved the session key's expiry from %d to %d", exp, e)
		}
		if !read.LastSeenAt.Equal(c.Session.LastSeenAt) || !read.ExpiresAt.Equal(c.Session.ExpiresAt) || read.UserAgent != c.Session.UserAgent {
			t.Fatalf("Update changed more than the attributes: %+v, was %+v", read, c.Session)
		}

		// Removing every attribute leaves none, in the store's answer and
		// in Redis.
		got, err = f.store.Update(ctx, Ref{Token: c.Token}, AttributeChange{Remove: []string{"b", "c"}})
		if err != nil || got.Attributes != nil {
			t.Fatalf("Update(remove all) = %v, %v; want no attributes", got, err)
		}
		wantEvent(t, nextEvent(t, events), ReasonUpdated, "user-1", c.Session.ID)
		for k := range f.hash(t, sKey) {
			if strings.HasPrefix(k, attrFieldPrefix) {
				t.Fatalf("field %q left after removing every attribute", k)
			}
		}

		// Refs that name no live session.
		sid, _ := parseSessionID(c.Session.ID)
		forged, _, _ := newToken(sid)
		for name, ref := range map[string]Ref{"forged token": {Token: forged}, "malformed token": {Token: "garbage"}, "empty": {}} {
			if _, err := f.store.Update(ctx, ref, AttributeChange{Set: map[string]string{"x": "y"}}); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Update(%s) err = %v, want ErrNotFound", name, err)
			}
		}
		if _, err := f.store.Update(ctx, Ref{ID: "nope"}, AttributeChange{Set: map[string]string{"x": "y"}}); !errors.Is(err, ErrMalformedSessionID) {
			t.Fatalf("Update(malformed id) err = %v, want ErrMalformedSessionID", err)
		}
		if _, ok := f.hash(t, sKey)[attrFieldPrefix+"x"]; ok {
			t.Fatal("an Update that named no live session wrote the attribute")
		}
		f.checkConsistent(t)
	})
}

func TestUpdateCheckRefuses(t *testing.T) {
	t.Parallel()
	forEachBackend(t, Config{}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		events, _ := watchEvents(t, f)
		c, err := f.store.Create(ctx, NewSession{UserID: "user-1", TTL: time.Hour, Attributes: map[string]string{"keep": "me"}})
		if err != nil {
			t.Fatal(err)
		}
		sKey := f.sessionKeyOf(t, c.Session.ID)
		before := f.hash(t, sKey)
		errTooMany := errors.New("too many attributes")
		var seen map[string]string
		_, err = f.store.Update(ctx, Ref{ID: c.Session.ID}, AttributeChange{
			Set:    map[string]string{"a": "1"},
			Remove: []string{"keep"},
			Check: func(attrs map[string]string) error {
				seen = maps.Clone(attrs)
				return errTooMany
			},
		})
		if !errors.Is(err, errTooMany) {
			t.Fatalf("Update with a refusing Check: err = %v, want the Check's", err)
		}
		if want := map[string]string{"a": "1"}; !maps.Equal(seen, want) {
			t.Fatalf("Check saw %v, want the resulting attributes %v", seen, want)
		}
		if after := f.hash(t, sKey); !maps.Equal(after, before) {
			t.Fatalf("a refused Update wrote: %v, was %v", after, before)
		}
		// Nothing was published: the next event is the next update's.
		if _, err := f.store.Update(ctx, Ref{Token: c.Token}, AttributeChange{Set: map[string]string{"b": "2"}, Check: func(map[string]string) error { return nil }}); err != nil {
			t.Fatal(err)
		}
		wantEvent(t, nextEvent(t, events), ReasonUpdated, "user-1", c.Session.ID)
		if got, err := f.store.Get(ctx, c.Token); err != nil || !maps.Equal(got.Attributes, map[string]string{"keep": "me", "b": "2"}) {
			t.Fatalf("after the refusal and an update: %v, %v", got, err)
		}
	})
}

// TestConcurrentUpdatesAllLand runs updates of different attributes of one
// session from many goroutines: each must land, whatever the interleaving
// (a lost WATCH race is retried on the new state).
func TestConcurrentUpdatesAllLand(t *testing.T) {
	t.Parallel()
	const setters, removers = 16, 8
	forEachBackend(t, Config{}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		initial := map[string]string{}
		for i := range removers {
			initial[fmt.Sprintf("r%d", i)] = "old"
		}
		c, err := f.store.Create(ctx, NewSession{UserID: "user-1", TTL: time.Hour, Attributes: initial})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, setters+removers)
		for i := range setters + removers {
			wg.Go(func() {
				ch := AttributeChange{Set: map[string]string{fmt.Sprintf("s%d", i): fmt.Sprint(i)}}
				ref := Ref{Token: c.Token}
				if i >= setters {
					ch = AttributeChange{Remove: []string{fmt.Sprintf("r%d", i-setters)}}
					ref = Ref{ID: c.Session.ID}
				}
				_, err := f.store.Update(ctx, ref, ch)
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("concurrent Update: %v", err)
			}
		}
		want := map[string]string{}
		for i := range setters {
			want[fmt.Sprintf("s%d", i)] = fmt.Sprint(i)
		}
		got, err := f.store.Get(ctx, c.Token)
		if err != nil || !maps.Equal(got.Attributes, want) {
			t.Fatalf("after %d concurrent updates: %v, %v; want attributes %v", setters+removers, got, err, want)
		}
		f.checkConsistent(t)
	})
}

// TestChangeOfDeadSession updates and extends sessions that are not live:
// ErrNotFound, and nothing written (no key created, no field, no expiry
// moved).
func TestChangeOfDeadSession(t *testing.T) {
	t.Parallel()
	forEachBackend(t, Config{}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		revokedS := f.create(t, "user-r", time.Hour, 0)
		if _, err := f.store.RevokeToken(ctx, revokedS.Token); err != nil {
			t.Fatal(err)
		}
		expired := f.create(t, "user-e", time.Minute, 0)
		cutOff := f.create(t, "user-c", time.Hour, 0)
		// Keep user-c's index alive after the cutoff with a live session.
		f.clock.Advance(time.Millisecond)
		if _, _, err := f.store.RevokeAll(ctx, f.store.now()); err != nil {
			t.Fatal(err)
		}
		f.create(t, "user-c", time.Hour, 0)
		f.clock.Advance(time.Minute) // expired has ended (by the store's clock)

		for _, tc := range []struct {
			name string
			c    *Created
		}{{"revoked", revokedS}, {"expired", expired}, {"cut off", cutOff}} {
			sKey, iKey := f.sessionKeyOf(t, tc.c.Session.ID), f.indexKeyOf(tc.c.Session.UserID)
			hash, sExp, iExp := f.hash(t, sKey), f.expireTime(t, sKey), f.expireTime(t, iKey)
			for _, ref := range []Ref{{Token: tc.c.Token}, {ID: tc.c.Session.ID}} {
				if _, err := f.store.Update(ctx, ref, AttributeChange{Set: map[string]string{"x": "y"}}); !errors.Is(err, ErrNotFound) {
					t.Fatalf("Update(%s) err = %v, want ErrNotFound", tc.name, err)
				}
			}
			if _, err := f.store.Extend(ctx, tc.c.Session.ID, 24*time.Hour); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Extend(%s) err = %v, want ErrNotFound", tc.name, err)
			}
			if got := f.hash(t, sKey); !maps.Equal(got, hash) {
				t.Fatalf("%s session's key was written: %v, was %v", tc.name, got, hash)
			}
			if s, i := f.expireTime(t, sKey), f.expireTime(t, iKey); s != sExp || i != iExp {
				t.Fatalf("%s session: key and index expire at %d, %d; were %d, %d", tc.name, s, i, sExp, iExp)
			}
		}
		if f.exists(t, f.sessionKeyOf(t, revokedS.Session.ID)) || f.exists(t, f.indexKeyOf("user-r")) {
			t.Fatal("a change of a revoked session resurrected its keys")
		}
		f.checkConsistent(t)
	})
}

// TestChangeAfterRedisExpiredTheKey uses the real clock: Redis itself has
// removed the session key, and a change must not create it again.
func TestChangeAfterRedisExpiredTheKey(t *testing.T) {
	t.Parallel()
	forEachBackend(t, Config{Clock: time.Now}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		c := f.create(t, "user-1", 150*time.Millisecond, 0)
		sKey, iKey := f.sessionKeyOf(t, c.Session.ID), f.indexKeyOf("user-1")
		deadline := time.Now().Add(10 * time.Second)
		for f.exists(t, sKey) || f.exists(t, iKey) {
			if time.Now().After(deadline) {
				t.Fatal("the session's keys still exist 10s after it ended")
			}
			time.Sleep(20 * time.Millisecond)
		}
		if _, err := f.store.Update(ctx, Ref{Token: c.Token}, AttributeChange{Set: map[string]string{"x": "y"}}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Update(expired) err = %v, want ErrNotFound", err)
		}
		if _, err := f.store.Extend(ctx, c.Session.ID, time.Hour); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Extend(expired) err = %v, want ErrNotFound", err)
		}
		if keys := f.keys(t, "*"); len(keys) != 0 {
			t.Fatalf("keys %v after changing an expired session, want none", keys)
		}
	})
}

// TestUpdateRacingRevoke runs an update and a revocation of one session at
// once, many times: whichever wins, the session ends revoked, with no key.
func TestUpdateRacingRevoke(t *testing.T) {
	t.Parallel()
	const rounds = 20
	forEachBackend(t, Config{}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		for round := range rounds {
			user := fmt.Sprintf("user-%d", round)
			c := f.create(t, user, time.Hour, 0)
			var wg sync.WaitGroup
			var updErr, revErr error
			wg.Go(func() {
				_, updErr = f.store.Update(ctx, Ref{Token: c.Token}, AttributeChange{Set: map[string]string{"x": "y"}})
			})
			wg.Go(func() { _, revErr = f.store.Revoke(ctx, c.Session.ID) })
			wg.Wait()
			if revErr != nil || (updErr != nil && !errors.Is(updErr, ErrNotFound)) {
				t.Fatalf("round %d: revoke %v, update %v", round, revErr, updErr)
			}
			if f.exists(t, f.sessionKeyOf(t, c.Session.ID)) || f.exists(t, f.indexKeyOf(user)) {
				t.Fatalf("round %d: keys left after the revocation (update: %v)", round, updErr)
			}
		}
		f.checkConsistent(t)
	})
}

func TestExtend(t *testing.T) {
	t.Parallel()
	forEachBackend(t, Config{}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		events, _ := watchEvents(t, f)
		plain := f.create(t, "user-1", time.Hour, 0)             // no idle timeout
		idle := f.create(t, "user-1", time.Hour, 10*time.Minute) // ends 10m after its last validation
		other := f.create(t, "user-1", 30*time.Minute, 0)        // another session of the user
		short := f.create(t, "user-1", 2*time.Minute, 0)         // ended by the time of the extensions
		iKey := f.indexKeyOf("user-1")
		f.clock.Advance(5 * time.Minute)
		now := f.store.now()

		check := func(what string, got *Session, err error, c *Created, wantExpires, wantEnds time.Time) {
			t.Helper()
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			wantEvent(t, nextEvent(t, events), ReasonUpdated, "user-1", c.Session.ID)
			if !got.ExpiresAt.Equal(wantExpires) || !got.EndsAt().Equal(wantEnds) {
				t.Fatalf("%s: expires %v, ends %v; want %v, %v", what, got.ExpiresAt, got.EndsAt(), wantExpires, wantEnds)
			}
			if !got.LastSeenAt.Equal(c.Session.LastSeenAt) || got.IdleTimeout != c.Session.IdleTimeout || !got.CreatedAt.Equal(c.Session.CreatedAt) {
				t.Fatalf("%s changed more than the expiry: %+v, was %+v", what, got, c.Session)
			}
			read, err := f.store.GetByID(ctx, c.Session.ID)
			if err != nil || !read.ExpiresAt.Equal(wantExpires) {
				t.Fatalf("%s: GetByID = %v, %v; want it to expire at %v", what, read, err, wantExpires)
			}
			if e := f.expireTime(t, f.sessionKeyOf(t, c.Session.ID)); e != wantEnds.UnixMilli() {
				t.Fatalf("%s: the session key expires at %d, want %d", what, e, wantEnds.UnixMilli())
			}
			if s, err := f.rdb.ZScore(ctx, iKey, member(c.Session.ID)).Result(); err != nil || int64(s) != wantEnds.UnixMilli() {
				t.Fatalf("%s: index score %v (%v), want %d", what, int64(s), err, wantEnds.UnixMilli())
			}
			f.checkConsistent(t)
		}

		// Longer: the key, the index entry and the index follow.
		got, err := f.store.Extend(ctx, plain.Session.ID, 2*time.Hour)
		check("extend plain by 2h", got, err, plain, now.Add(2*time.Hour), now.Add(2*time.Hour))
		if e := f.expireTime(t, iKey); e != now.Add(2*time.Hour).UnixMilli() {
			t.Fatalf("the index expires at %d, want with the extended session at %d", e, now.Add(2*time.Hour).UnixMilli())
		}
		// The write pruned the index of the ended session.
		if _, err := f.rdb.ZScore(ctx, iKey, member(short.Session.ID)).Result(); err == nil {
			t.Fatal("Extend left an ended member in the index")
		}
		// Shorter: the index's expiry comes back to its latest other member.
		got, err = f.store.Extend(ctx, plain.Session.ID, time.Minute)
		check("extend plain to 1m", got, err, plain, now.Add(time.Minute), now.Add(time.Minute))
		// idle ends 10m after its creation, other 30m after: other is the latest.
		if e := f.expireTime(t, iKey); e != other.Session.ExpiresAt.UnixMilli() {
			t.Fatalf("the index expires at %d, want the latest other session's end %d", e, other.Session.ExpiresAt.UnixMilli())
		}

		// With an idle timeout: the idle expiry is unchanged by a longer
		// absolute expiry, and capped by a shorter one.
		idleEnds := idle.Session.LastSeenAt.Add(10 * time.Minute)
		got, err = f.store.Extend(ctx, idle.Session.ID, 3*time.Hour)
		check("extend idle by 3h", got, err, idle, now.Add(3*time.Hour), idleEnds)
		got, err = f.store.Extend(ctx, idle.Session.ID, 2*time.Minute)
		check("extend idle to 2m", got, err, idle, now.Add(2*time.Minute), now.Add(2*time.Minute))

		// The extended session outlives its original expiry, and ends at the new one.
		if _, err := f.store.Extend(ctx, plain.Session.ID, 2*time.Hour); err != nil {
			t.Fatal(err)
		}
		nextEvent(t, events)
		f.clock.Advance(time.Hour)
		if _, err := f.store.Get(ctx, plain.Token); err != nil {
			t.Fatalf("past its original expiry: %v", err)
		}
		f.clock.Advance(time.Hour)
		if _, err := f.store.Get(ctx, plain.Token); !errors.Is(err, ErrNotFound) {
			t.Fatalf("at its new expiry: err = %v, want ErrNotFound", err)
		}

		if _, err := f.store.Extend(ctx, other.Session.ID, 0); err == nil || errors.Is(err, ErrNotFound) {
			t.Fatalf("Extend(ttl 0) err = %v, want a usage error", err)
		}
		if _, err := f.store.Extend(ctx, "nope", time.Hour); !errors.Is(err, ErrMalformedSessionID) {
			t.Fatalf("Extend(malformed) err = %v, want ErrMalformedSessionID", err)
		}
		unknown := sessionID{tag: userTag("user-1"), uuid: [16]byte{9}}.String()
		if _, err := f.store.Extend(ctx, unknown, time.Hour); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Extend(unknown) err = %v, want ErrNotFound", err)
		}
	})
}

// TestExtendMovesChainMarkers extends the end of a rotation chain: the
// markers of the tokens it replaced live as long as it can.
func TestExtendMovesChainMarkers(t *testing.T) {
	t.Parallel()
	forEachBackend(t, Config{}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		a := f.create(t, "user-1", time.Hour, 0)
		b, err := f.store.Rotate(ctx, a.Token, Step{})
		if err != nil {
			t.Fatal(err)
		}
		c, err := f.store.Rotate(ctx, b.Token, Step{})
		if err != nil {
			t.Fatal(err)
		}
		markers := []string{f.markerKeyOf(t, a.Session.ID), f.markerKeyOf(t, b.Session.ID)}
		for _, ttl := range []time.Duration{3 * time.Hour, 20 * time.Minute} {
			got, err := f.store.Extend(ctx, c.Session.ID, ttl)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range markers {
				if e := f.expireTime(t, k); e != got.ExpiresAt.UnixMilli() {
					t.Fatalf("after Extend(%v): marker %s expires at %d, want with the session at %d", ttl, k, e, got.ExpiresAt.UnixMilli())
				}
			}
			f.checkConsistent(t)
		}
		// The chain still works: A after the grace revokes C.
		f.clock.Advance(DefaultRotationGrace + time.Millisecond)
		var reuse *ReuseError
		if _, err := f.store.Get(ctx, a.Token); !errors.As(err, &reuse) || reuse.Revocation == nil || reuse.Revocation.SessionIDs[0] != c.Session.ID {
			t.Fatalf("A after the grace: err = %v, want a ReuseError revoking %s", err, c.Session.ID)
		}
	})
}

// member is the UUID of a session id: its member in the user's index.
func member(id string) string {
	_, m, _ := strings.Cut(id, "_")
	return m
}

func TestAuthenticationRoundTrip(t *testing.T) {
	t.Parallel()
	forEachBackend(t, Config{}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		// Defaults: level 1, no methods, authenticated at creation, and
		// none of it stored.
		plain := f.create(t, "user-1", time.Hour, 0)
		got, err := f.store.Get(ctx, plain.Token)
		if err != nil {
			t.Fatal(err)
		}
		if got.AssuranceLevel != 1 || got.AuthMethods != nil || !got.AuthenticatedAt.Equal(got.CreatedAt) {
			t.Fatalf("default authentication: level %d, methods %v, at %v (created %v)", got.AssuranceLevel, got.AuthMethods, got.AuthenticatedAt, got.CreatedAt)
		}
		for _, field := range []string{fieldAuthAt, fieldAuthMethods, fieldAssurance, fieldRotatedFrom} {
			if _, ok := f.hash(t, f.sessionKeyOf(t, plain.Session.ID))[field]; ok {
				t.Fatalf("field %q stored for a default session", field)
			}
		}

		c, err := f.store.Create(ctx, NewSession{UserID: "user-1", TTL: time.Hour, AuthMethods: []string{"pwd", "webauthn"}, AssuranceLevel: 3})
		if err != nil {
			t.Fatal(err)
		}
		if c.Session.AssuranceLevel != 3 || !slices.Equal(c.Session.AuthMethods, []string{"pwd", "webauthn"}) || !c.Session.AuthenticatedAt.Equal(c.Session.CreatedAt) {
			t.Fatalf("Create returned %+v", c.Session)
		}
		for name, read := range map[string]func() (*Session, error){
			"Get":     func() (*Session, error) { return f.store.Get(ctx, c.Token) },
			"GetByID": func() (*Session, error) { return f.store.GetByID(ctx, c.Session.ID) },
		} {
			got, err := read()
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if got.AssuranceLevel != 3 || !slices.Equal(got.AuthMethods, []string{"pwd", "webauthn"}) || !got.AuthenticatedAt.Equal(c.Session.CreatedAt) {
				t.Fatalf("%s: level %d, methods %v, authenticated at %v; want 3, [pwd webauthn], %v",
					name, got.AssuranceLevel, got.AuthMethods, got.AuthenticatedAt, c.Session.CreatedAt)
			}
		}
	})
}

func TestRotateStepUp(t *testing.T) {
	t.Parallel()
	forEachBackend(t, Config{}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		c, err := f.store.Create(ctx, NewSession{UserID: "user-1", TTL: time.Hour, AuthMethods: []string{"pwd"}})
		if err != nil {
			t.Fatal(err)
		}
		f.clock.Advance(time.Minute)
		stepped, err := f.store.Rotate(ctx, c.Token, Step{AssuranceLevel: 2, AddAuthMethods: []string{"otp", "pwd", "otp"}, Reauthenticated: true})
		if err != nil {
			t.Fatal(err)
		}
		reauth := f.store.now()
		want := func(what string, s *Session, level int, methods []string, at time.Time) {
			t.Helper()
			if s.AssuranceLevel != level || !slices.Equal(s.AuthMethods, methods) || !s.AuthenticatedAt.Equal(at) || !s.CreatedAt.Equal(c.Session.CreatedAt) {
				t.Fatalf("%s: level %d, methods %v, authenticated at %v, created %v; want %d, %v, %v, %v",
					what, s.AssuranceLevel, s.AuthMethods, s.AuthenticatedAt, s.CreatedAt, level, methods, at, c.Session.CreatedAt)
			}
		}
		want("Rotate(step up)", stepped.Session, 2, []string{"pwd", "otp"}, reauth)
		got, err := f.store.Get(ctx, stepped.Token)
		if err != nil {
			t.Fatal(err)
		}
		want("Get after the step up", got, 2, []string{"pwd", "otp"}, reauth)

		// The zero Step keeps it all; a later step can change the level
		// without reauthenticating.
		f.clock.Advance(time.Minute)
		same, err := f.store.Rotate(ctx, stepped.Token, Step{})
		if err != nil {
			t.Fatal(err)
		}
		want("Rotate(zero step)", same.Session, 2, []string{"pwd", "otp"}, reauth)
		lvl, err := f.store.Rotate(ctx, same.Token, Step{AssuranceLevel: 3, AddAuthMethods: []string{"webauthn"}})
		if err != nil {
			t.Fatal(err)
		}
		got, err = f.store.GetByID(ctx, lvl.Session.ID)
		if err != nil {
			t.Fatal(err)
		}
		want("GetByID after a step without reauthentication", got, 3, []string{"pwd", "otp", "webauthn"}, reauth)
		f.checkConsistent(t)
	})
}

func TestRotateStepCheckRefuses(t *testing.T) {
	t.Parallel()
	forEachBackend(t, Config{}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		events, _ := watchEvents(t, f)
		c, err := f.store.Create(ctx, NewSession{UserID: "user-1", TTL: time.Hour, AuthMethods: []string{"pwd"}})
		if err != nil {
			t.Fatal(err)
		}
		keysBefore := f.keys(t, "*")
		hashBefore := f.hash(t, f.sessionKeyOf(t, c.Session.ID))
		errTooMany := errors.New("too many methods")
		var seen []string
		_, err = f.store.Rotate(ctx, c.Token, Step{AssuranceLevel: 3, AddAuthMethods: []string{"otp"}, Reauthenticated: true,
			Check: func(methods []string) error {
				seen = slices.Clone(methods)
				return errTooMany
			}})
		if !errors.Is(err, errTooMany) {
			t.Fatalf("Rotate with a refusing Check: err = %v, want the Check's", err)
		}
		if !slices.Equal(seen, []string{"pwd", "otp"}) {
			t.Fatalf("Check saw %v, want the resulting methods [pwd otp]", seen)
		}
		keysAfter := f.keys(t, "*")
		slices.Sort(keysBefore)
		slices.Sort(keysAfter)
		if !slices.Equal(keysAfter, keysBefore) {
			t.Fatalf("a refused Rotate changed the keys: %v, were %v", keysAfter, keysBefore)
		}
		if h := f.hash(t, f.sessionKeyOf(t, c.Session.ID)); !maps.Equal(h, hashBefore) {
			t.Fatalf("a refused Rotate wrote the session: %v, was %v", h, hashBefore)
		}
		got, err := f.store.Get(ctx, c.Token)
		if err != nil || got.AssuranceLevel != 1 || !slices.Equal(got.AuthMethods, []string{"pwd"}) {
			t.Fatalf("the old token after a refused Rotate: %v, %v", got, err)
		}
		// Nothing was published: the next event is the next rotation's.
		r, err := f.store.Rotate(ctx, c.Token, Step{})
		if err != nil {
			t.Fatal(err)
		}
		wantEvent(t, nextEvent(t, events), ReasonRotated, "user-1", c.Session.ID)
		if r.Replaced != c.Session.ID {
			t.Fatalf("Rotate replaced %s, want %s", r.Replaced, c.Session.ID)
		}
	})
}

// TestTouchAfterExtend records a validation read before an Extend: the
// touch must not put back the absolute expiry it read.
func TestTouchAfterExtend(t *testing.T) {
	t.Parallel()
	forEachBackend(t, Config{}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		// Ends at its absolute expiry (10m), before its idle one (30m).
		c := f.create(t, "user-1", 10*time.Minute, 30*time.Minute)
		sess, err := f.store.Get(ctx, c.Token)
		if err != nil {
			t.Fatal(err)
		}
		ext, err := f.store.Extend(ctx, c.Session.ID, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		f.clock.Advance(time.Minute)
		if _, err := f.store.Touch(ctx, sess); err != nil {
			t.Fatal(err)
		}
		got, err := f.store.GetByID(ctx, c.Session.ID)
		if err != nil || !got.ExpiresAt.Equal(ext.ExpiresAt) {
			t.Fatalf("after the touch: %v, %v; want the extended expiry %v", got, err, ext.ExpiresAt)
		}
		if e := f.expireTime(t, f.sessionKeyOf(t, c.Session.ID)); e != got.EndsAt().UnixMilli() {
			t.Fatalf("the session key expires at %d, want when the session ends, %d", e, got.EndsAt().UnixMilli())
		}
		f.checkConsistent(t)
	})
}
