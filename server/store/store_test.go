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

	"github.com/redis/go-redis/v9"
	"github.com/sessiond/sessiond/internal/redistest"
)

func TestCreateGet(t *testing.T) {
	t.Parallel()
	forEachBackend(t, Config{}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		c, err := f.store.Create(ctx, NewSession{
			UserID: "user-1", Email: "a@example.com", ClientIP: "203.0.113.7", UserAgent: "ua/1",
			Attributes: map[string]string{"tenant": "acme", "mfa": "totp"}, TTL: time.Hour, IdleTimeout: 10 * time.Minute,
		})
		if err != nil {
			t.Fatal(err)
		}
		got, err := f.store.Get(ctx, c.Token)
		if err != nil {
			t.Fatal(err)
		}
		want := c.Session
		if got.ID != want.ID || got.UserID != "user-1" || got.Email != "a@example.com" || got.ClientIP != "203.0.113.7" ||
			got.UserAgent != "ua/1" || !maps.Equal(got.Attributes, want.Attributes) || !got.CreatedAt.Equal(want.CreatedAt) ||
			!got.ExpiresAt.Equal(f.clock.Now().Truncate(time.Millisecond).Add(time.Hour)) || got.IdleTimeout != 10*time.Minute {
			t.Fatalf("Get = %+v, want %+v", got, want)
		}
		if !got.IdleExpiresAt().Equal(got.CreatedAt.Add(10 * time.Minute)) {
			t.Fatalf("idle expiry %v, want created + 10m", got.IdleExpiresAt())
		}
		// The session key lives exactly until the session ends.
		exp := f.rdb.PExpireTime(ctx, f.store.sessionKey(userTag("user-1"), strings.SplitN(c.Session.ID, "_", 2)[1])).Val()
		if exp.Milliseconds() != got.EndsAt().UnixMilli() {
			t.Fatalf("session key expires at %d, want %d", exp.Milliseconds(), got.EndsAt().UnixMilli())
		}
		f.checkConsistent(t)
	})
}

func TestGetRejectsForgedToken(t *testing.T) {
	t.Parallel()
	forEachBackend(t, Config{}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		c := f.create(t, "user-1", time.Hour, 0)
		// Another token for the same session id: right key, wrong secret.
		id, _ := parseSessionID(c.Session.ID)
		forged, _, _ := newToken(id)
		// The real token with its last character changed (1 in 64 ends in "A").
		changed := c.Token[:71] + "A"
		if changed == c.Token {
			changed = c.Token[:71] + "B"
		}
		for _, tok := range []string{forged, "", "garbage", changed} {
			if _, err := f.store.Get(ctx, tok); !errors.Is(err, ErrNotFound) {
				t.Errorf("Get(forged) err = %v, want ErrNotFound", err)
			}
		}
		if ok, err := revoked(f.store.RevokeToken(ctx, forged)); ok || err != nil {
			t.Fatalf("RevokeToken(forged) = %v, %v; want false, nil", ok, err)
		}
		if _, err := f.store.Get(ctx, c.Token); err != nil {
			t.Fatalf("the real token stopped working after a forged revoke: %v", err)
		}
	})
}

func TestGetIsOneRoundTrip(t *testing.T) {
	t.Parallel()
	// The revoke-all cutoff is read once, then trusted for the hour.
	f := newPrivateFixture(t, Config{TouchInterval: time.Minute, CutoffMaxAge: time.Hour})
	ctx := ctxT(t)
	c := f.create(t, "user-1", time.Hour, 30*time.Minute)
	if err := f.store.RefreshCutoff(ctx); err != nil {
		t.Fatal(err)
	}
	before := f.commandCalls(t)
	for range 100 {
		if _, err := f.store.Get(ctx, c.Token); err != nil {
			t.Fatal(err)
		}
	}
	// A malformed token costs no round trip at all.
	for range 50 {
		if _, err := f.store.Get(ctx, "not-a-token"); !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
	}
	if d := diffCalls(before, f.commandCalls(t)); !maps.Equal(d, map[string]int{"hgetall": 100}) {
		t.Fatalf("100 validations sent %v, want exactly 100 HGETALL", d)
	}
}

func TestAbsoluteExpiry(t *testing.T) {
	t.Parallel()
	forEachBackend(t, Config{}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		c := f.create(t, "user-1", time.Hour, 0)
		f.clock.Advance(time.Hour - time.Millisecond)
		if _, err := f.store.Get(ctx, c.Token); err != nil {
			t.Fatalf("1ms before expiry: %v", err)
		}
		f.clock.Advance(time.Millisecond)
		if _, err := f.store.Get(ctx, c.Token); !errors.Is(err, ErrNotFound) {
			t.Fatalf("at expiry: err = %v, want ErrNotFound", err)
		}
	})
}

func TestIdleExpiryAndTouch(t *testing.T) {
	t.Parallel()
	forEachBackend(t, Config{TouchInterval: time.Minute}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		c := f.create(t, "user-1", 24*time.Hour, 10*time.Minute)

		// Within the touch interval validations write nothing.
		f.clock.Advance(59 * time.Second)
		sess, err := f.store.Get(ctx, c.Token)
		if err != nil {
			t.Fatal(err)
		}
		if sess.TouchDue() {
			t.Fatal("touch due 59s after the last one with a 1m interval")
		}

		// Past it, one touch slides the idle expiry.
		f.clock.Advance(time.Second)
		if sess, err = f.store.Get(ctx, c.Token); err != nil {
			t.Fatal(err)
		}
		if !sess.TouchDue() {
			t.Fatal("touch not due after the interval")
		}
		touched, err := f.store.Touch(ctx, sess)
		if err != nil {
			t.Fatal(err)
		}
		now := f.clock.Now().Truncate(time.Millisecond)
		if !touched.LastSeenAt.Equal(now) || !touched.IdleExpiresAt().Equal(now.Add(10*time.Minute)) {
			t.Fatalf("after touch: last seen %v, idle expiry %v; want %v and +10m", touched.LastSeenAt, touched.IdleExpiresAt(), now)
		}
		// A second touch of the same (now stale) read writes nothing: another
		// validation already recorded this period.
		again, err := f.store.Touch(ctx, sess)
		if err != nil || !again.LastSeenAt.Equal(sess.LastSeenAt) {
			t.Fatalf("stale touch = %v, %v; want the session unchanged", again, err)
		}
		f.checkConsistent(t)

		// Idle for 10 minutes since the touch: ended.
		f.clock.Advance(10*time.Minute - time.Millisecond)
		if _, err := f.store.Get(ctx, c.Token); err != nil {
			t.Fatalf("just before idle expiry: %v", err)
		}
		f.clock.Advance(time.Millisecond)
		if _, err := f.store.Get(ctx, c.Token); !errors.Is(err, ErrNotFound) {
			t.Fatalf("at idle expiry: err = %v, want ErrNotFound", err)
		}
	})
}

// TestTouchIsOneTransaction counts the commands Redis serves, so it runs on a
// server of its own.
func TestTouchIsOneTransaction(t *testing.T) {
	t.Parallel()
	f := newPrivateFixture(t, Config{TouchInterval: time.Minute})
	ctx := ctxT(t)
	c := f.create(t, "user-1", 24*time.Hour, 10*time.Minute)
	f.clock.Advance(time.Minute)
	sess, err := f.store.Get(ctx, c.Token)
	if err != nil {
		t.Fatal(err)
	}
	before := f.commandCalls(t)
	if _, err := f.store.Touch(ctx, sess); err != nil {
		t.Fatal(err)
	}
	if d := diffCalls(before, f.commandCalls(t)); d["multi"] != 1 || d["exec"] != 1 {
		t.Fatalf("touch sent %v, want one MULTI/EXEC", d)
	}
}

func TestIdleNeverPassesAbsoluteExpiry(t *testing.T) {
	t.Parallel()
	forEachBackend(t, Config{}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		c := f.create(t, "user-1", 15*time.Minute, 10*time.Minute)
		f.clock.Advance(9 * time.Minute)
		sess, err := f.store.Get(ctx, c.Token)
		if err != nil {
			t.Fatal(err)
		}
		touched, err := f.store.Touch(ctx, sess)
		if err != nil {
			t.Fatal(err)
		}
		if !touched.IdleExpiresAt().Equal(touched.ExpiresAt) {
			t.Fatalf("idle expiry %v passes absolute expiry %v", touched.IdleExpiresAt(), touched.ExpiresAt)
		}
		f.checkConsistent(t)
	})
}

func TestTouchDoesNotResurrectRevoked(t *testing.T) {
	t.Parallel()
	forEachBackend(t, Config{}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		c := f.create(t, "user-1", time.Hour, 10*time.Minute)
		sess, err := f.store.Get(ctx, c.Token)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := revoked(f.store.RevokeToken(ctx, c.Token)); !ok || err != nil {
			t.Fatalf("revoke: %v %v", ok, err)
		}
		f.clock.Advance(time.Minute)
		if _, err := f.store.Touch(ctx, sess); err != nil {
			t.Fatal(err)
		}
		if keys := f.keys(t, "*"); len(keys) != 0 {
			t.Fatalf("keys %v after touching a revoked session, want none", keys)
		}
	})
}

func TestIndexPrunedAndExpiresWithLastSession(t *testing.T) {
	t.Parallel()
	forEachBackend(t, Config{}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		short := f.create(t, "user-1", time.Minute, 0)
		long := f.create(t, "user-1", time.Hour, 0)
		mid := f.create(t, "user-1", 30*time.Minute, 0)
		iKey := f.store.indexKey(userTag("user-1"), "user-1")
		if exp := f.rdb.PExpireTime(ctx, iKey).Val(); exp.Milliseconds() != long.Session.ExpiresAt.UnixMilli() {
			t.Fatalf("index expires at %d, want the latest session's %d", exp.Milliseconds(), long.Session.ExpiresAt.UnixMilli())
		}
		// Revoking the latest session pulls the index's expiry back to the next.
		if ok, err := revoked(f.store.RevokeToken(ctx, long.Token)); !ok || err != nil {
			t.Fatalf("revoke: %v %v", ok, err)
		}
		if exp := f.rdb.PExpireTime(ctx, iKey).Val(); exp.Milliseconds() != mid.Session.ExpiresAt.UnixMilli() {
			t.Fatalf("after revoking the latest: index expires at %d, want %d", exp.Milliseconds(), mid.Session.ExpiresAt.UnixMilli())
		}
		// Once the short one has ended, the next write prunes it.
		f.clock.Advance(2 * time.Minute)
		f.create(t, "user-1", time.Minute, 0)
		if n := f.rdb.ZCard(ctx, iKey).Val(); n != 2 {
			t.Fatalf("index holds %d members after a write past the short session's end, want 2", n)
		}
		if f.rdb.ZScore(ctx, iKey, strings.SplitN(short.Session.ID, "_", 2)[1]).Err() == nil {
			t.Fatal("the ended session is still in the index")
		}
		f.checkConsistent(t)
	})
}

// TestIndexGoneAfterLastSessionExpires uses real (short) durations: it is
// Redis' own clock that must remove the keys.
func TestIndexGoneAfterLastSessionExpires(t *testing.T) {
	t.Parallel()
	forEachBackend(t, Config{Clock: time.Now}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		// Warm the client first: on a Cluster or a Sentinel group its first
		// command also fetches the slot map or asks for the master, which on
		// a busy machine can take longer than a short TTL.
		if keys := f.keys(t, "*"); len(keys) != 0 {
			t.Fatalf("keys %v before any session", keys)
		}
		var latest time.Time
		want := map[string]time.Time{} // key -> when it must expire
		for _, ttl := range []time.Duration{time.Second, 2 * time.Second, 1500 * time.Millisecond} {
			c := f.create(t, "user-1", ttl, 0)
			want[f.store.sessionKey(userTag("user-1"), strings.SplitN(c.Session.ID, "_", 2)[1])] = c.Session.ExpiresAt
			if c.Session.ExpiresAt.After(latest) {
				latest = c.Session.ExpiresAt
			}
		}
		want[f.store.indexKey(userTag("user-1"), "user-1")] = latest
		// Not time-dependent: each key expires by Redis' clock when its
		// session ends, the index with the latest session. A key may only be
		// gone already if its end has passed.
		for key, at := range want {
			exp, err := f.rdb.PExpireTime(ctx, key).Result()
			if err != nil {
				t.Fatalf("PEXPIRETIME %s: %v", key, err)
			}
			if exp == -2 && !time.Now().Before(at) {
				continue
			}
			if exp.Milliseconds() != at.UnixMilli() {
				t.Fatalf("%s expires at %v (PEXPIRETIME), want %d", key, exp, at.UnixMilli())
			}
		}
		if keys := f.keys(t, "*"); len(keys) > len(want) {
			t.Fatalf("keys %v, want at most 3 sessions and 1 index", keys)
		}
		deadline := latest.Add(10 * time.Second)
		for keys := f.keys(t, "*"); len(keys) != 0; keys = f.keys(t, "*") {
			if time.Now().After(deadline) {
				t.Fatalf("keys left 10s after every session ended: %v", keys)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

func TestRevokeByTokenAndID(t *testing.T) {
	t.Parallel()
	forEachBackend(t, Config{}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		a := f.create(t, "user-1", time.Hour, 0)
		b := f.create(t, "user-1", time.Hour, 0)

		if ok, err := revoked(f.store.RevokeToken(ctx, a.Token)); !ok || err != nil {
			t.Fatalf("RevokeToken = %v, %v", ok, err)
		}
		if ok, err := revoked(f.store.RevokeToken(ctx, a.Token)); ok || err != nil {
			t.Fatalf("second RevokeToken = %v, %v; want false, nil", ok, err)
		}
		if ok, err := revoked(f.store.Revoke(ctx, b.Session.ID)); !ok || err != nil {
			t.Fatalf("Revoke(id) = %v, %v", ok, err)
		}
		if ok, err := revoked(f.store.Revoke(ctx, b.Session.ID)); ok || err != nil {
			t.Fatalf("second Revoke(id) = %v, %v; want false, nil", ok, err)
		}
		if _, err := f.store.Revoke(ctx, "nope"); !errors.Is(err, ErrMalformedSessionID) {
			t.Fatalf("Revoke(malformed) err = %v", err)
		}
		for _, c := range []*Created{a, b} {
			if _, err := f.store.Get(ctx, c.Token); !errors.Is(err, ErrNotFound) {
				t.Fatalf("revoked token still validates: %v", err)
			}
		}
		if keys := f.keys(t, "*"); len(keys) != 0 {
			t.Fatalf("keys %v left after revoking every session, want none", keys)
		}
	})
}

func TestRevokeUser(t *testing.T) {
	t.Parallel()
	forEachBackend(t, Config{}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		var cs []*Created
		for range 4 {
			cs = append(cs, f.create(t, "user-1", time.Hour, 0))
		}
		other := f.create(t, "user-2", time.Hour, 0)

		n, err := revokedCount(f.store.RevokeUser(ctx, "user-1", cs[2].Session.ID))
		if err != nil || n != 3 {
			t.Fatalf("RevokeUser(except) = %d, %v; want 3", n, err)
		}
		for i, c := range cs {
			_, err := f.store.Get(ctx, c.Token)
			if i == 2 && err != nil {
				t.Fatalf("the kept session no longer validates: %v", err)
			}
			if i != 2 && !errors.Is(err, ErrNotFound) {
				t.Fatalf("session %d still validates after RevokeUser", i)
			}
		}
		if _, err := f.store.Get(ctx, other.Token); err != nil {
			t.Fatalf("another user's session was revoked: %v", err)
		}
		f.checkConsistent(t)

		if _, err := f.store.RevokeUser(ctx, "user-1", other.Session.ID); !errors.Is(err, ErrForeignSession) {
			t.Fatalf("except with another user's session: err = %v", err)
		}
		if _, err := f.store.RevokeUser(ctx, "user-1", "garbage"); !errors.Is(err, ErrMalformedSessionID) {
			t.Fatalf("except malformed: err = %v", err)
		}
		n, err = revokedCount(f.store.RevokeUser(ctx, "user-1", ""))
		if err != nil || n != 1 {
			t.Fatalf("RevokeUser = %d, %v; want 1", n, err)
		}
		n, err = revokedCount(f.store.RevokeUser(ctx, "user-1", ""))
		if err != nil || n != 0 {
			t.Fatalf("RevokeUser again = %d, %v; want 0", n, err)
		}
		if keys := f.keys(t, "*{"+userTag("user-1").String()+"}*"); len(keys) != 0 && userTag("user-1") != userTag("user-2") {
			t.Fatalf("user-1 keys left: %v", keys)
		}
		f.checkConsistent(t)
	})
}

func TestListUserPages(t *testing.T) {
	t.Parallel()
	forEachBackend(t, Config{}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		var ids []string
		for range 7 {
			ids = append(ids, f.create(t, "user-1", time.Hour, 0).Session.ID)
			f.clock.Advance(time.Millisecond)
		}
		f.create(t, "user-2", time.Hour, 0)
		revoked := ids[3]
		if _, err := f.store.Revoke(ctx, revoked); err != nil {
			t.Fatal(err)
		}
		var got []string
		cursor := ""
		for page := 0; ; page++ {
			if page > 5 {
				t.Fatal("pagination does not end")
			}
			sessions, next, err := f.store.ListUser(ctx, "user-1", 2, cursor)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range sessions {
				got = append(got, s.ID)
			}
			if next == "" {
				break
			}
			cursor = next
		}
		var want []string
		for i := len(ids) - 1; i >= 0; i-- {
			if ids[i] != revoked {
				want = append(want, ids[i])
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("listed %v, want newest first %v", got, want)
		}
		if _, _, err := f.store.ListUser(ctx, "user-2", 2, ids[0]); !errors.Is(err, ErrMalformedCursor) && userTag("user-1") != userTag("user-2") {
			t.Fatalf("another user's cursor: err = %v", err)
		}
		if _, _, err := f.store.ListUser(ctx, "user-1", 2, "x"); !errors.Is(err, ErrMalformedCursor) {
			t.Fatalf("malformed cursor: err = %v", err)
		}
		if s, next, err := f.store.ListUser(ctx, "nobody", 10, ""); err != nil || len(s) != 0 || next != "" {
			t.Fatalf("unknown user: %v %q %v", s, next, err)
		}
	})
}

func TestCapEvictsOldest(t *testing.T) {
	t.Parallel()
	forEachBackend(t, Config{MaxSessionsPerUser: 3}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		var cs []*Created
		for range 5 {
			cs = append(cs, f.create(t, "user-1", time.Hour, 0))
		}
		if ev := cs[3].Evicted; !slices.Equal(ev, []string{cs[0].Session.ID}) {
			t.Fatalf("4th create evicted %v, want the oldest %s", ev, cs[0].Session.ID)
		}
		for i, c := range cs {
			_, err := f.store.Get(ctx, c.Token)
			if (i < 2) != errors.Is(err, ErrNotFound) {
				t.Fatalf("session %d: err = %v (want the two oldest gone, the rest live)", i, err)
			}
		}
		f.checkConsistent(t)
	})
}

func TestCapUnderParallelCreates(t *testing.T) {
	t.Parallel()
	const cap, n = 5, 40
	forEachBackend(t, Config{MaxSessionsPerUser: cap}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for range n {
			wg.Go(func() {
				_, err := f.store.Create(ctx, NewSession{UserID: "user-1", TTL: time.Hour})
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("parallel create: %v", err)
			}
		}
		iKey := f.store.indexKey(userTag("user-1"), "user-1")
		if got := f.rdb.ZCard(ctx, iKey).Val(); got != cap {
			t.Fatalf("index holds %d sessions after %d parallel creates with cap %d", got, n, cap)
		}
		if keys := f.keys(t, "*}:s:*"); len(keys) != cap {
			t.Fatalf("%d session keys, want %d", len(keys), cap)
		}
		f.checkConsistent(t)
	})
}

// TestConcurrentStorm runs creates, touches, revokes (by token and id) and
// revoke-alls for a few users at once, then checks that the index and the
// session keys agree, with no orphan either way.
func TestConcurrentStorm(t *testing.T) {
	t.Parallel()
	forEachBackend(t, Config{MaxSessionsPerUser: 8}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		users := []string{"storm-1", "storm-2"}
		var mu sync.Mutex
		var tokens []*Created
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		deadline := time.Now().Add(2 * time.Second)
		for w := range 8 {
			wg.Go(func() {
				for i := 0; i < 150 && time.Now().Before(deadline); i++ {
					user := users[(w+i)%len(users)]
					var err error
					switch op := (w + i) % 6; op {
					case 0, 1, 2:
						var c *Created
						c, err = f.store.Create(ctx, NewSession{UserID: user, TTL: time.Hour, IdleTimeout: 30 * time.Minute})
						if err == nil {
							mu.Lock()
							tokens = append(tokens, c)
							mu.Unlock()
						}
					case 3, 4:
						mu.Lock()
						var c *Created
						if len(tokens) > 0 {
							c = tokens[(w*31+i)%len(tokens)]
						}
						mu.Unlock()
						if c == nil {
							continue
						}
						if op == 3 {
							_, err = f.store.RevokeToken(ctx, c.Token)
						} else if s, gerr := f.store.Get(ctx, c.Token); gerr == nil {
							f.clock.Advance(time.Second)
							_, err = f.store.Touch(ctx, s)
						}
					case 5:
						_, err = f.store.RevokeUser(ctx, user, "")
					}
					if err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("storm: %v", err)
		}
		f.checkConsistent(t)
	})
}

func TestNoRawTokenInRedis(t *testing.T) {
	t.Parallel()
	forEachBackend(t, Config{}, func(t *testing.T, f *fixture) {
		ctx := ctxT(t)
		var tokens []string
		for i := range 1000 {
			c, err := f.store.Create(ctx, NewSession{UserID: fmt.Sprintf("user-%d", i%50), TTL: time.Hour, Email: "u@example.com"})
			if err != nil {
				t.Fatal(err)
			}
			tokens = append(tokens, c.Token)
		}
		var dump strings.Builder
		keys := f.keys(t, "*")
		for _, k := range keys {
			dump.WriteString(k + "\n")
			switch f.rdb.Type(ctx, k).Val() {
			case "hash":
				for fk, fv := range f.rdb.HGetAll(ctx, k).Val() {
					dump.WriteString(fk + "=" + fv + "\n")
				}
			case "zset":
				for _, m := range f.rdb.ZRange(ctx, k, 0, -1).Val() {
					dump.WriteString(m + "\n")
				}
			}
		}
		all := dump.String()
		for _, tok := range tokens {
			// The whole token, and the part that carries its secret.
			if strings.Contains(all, tok) || strings.Contains(all, tok[28:]) {
				t.Fatalf("a token (or its secret) is stored in Redis")
			}
		}
		if len(keys) != 1050 {
			t.Fatalf("%d keys, want 1000 sessions and 50 indexes", len(keys))
		}
	})
}

func TestUnavailable(t *testing.T) {
	t.Parallel()
	f := newPrivateFixture(t, Config{})
	ctx := ctxT(t)
	c := f.create(t, "user-1", time.Hour, 0)
	f.srv.Stop()
	if _, err := f.store.Get(ctx, c.Token); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Get with Redis down: err = %v, want ErrUnavailable", err)
	}
	if _, err := f.store.Create(ctx, NewSession{UserID: "u", TTL: time.Hour}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Create with Redis down: err = %v, want ErrUnavailable", err)
	}
	if _, err := f.store.RevokeToken(ctx, c.Token); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Revoke with Redis down: err = %v, want ErrUnavailable", err)
	}
	if err := f.store.Ping(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Ping with Redis down: err = %v", err)
	}
}

// A write whose pipelined WATCH (watchReading) is followed by a failure
// drops the WATCH before its connection goes back to the pool: a later
// transaction on that connection is not failed by a change to a key it
// never watched.
func TestFailedWriteLeavesNoWatch(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: 1, MaxRetries: clientMaxRetries})
	t.Cleanup(func() { _ = rdb.Close() })
	other := srv.Client(t)
	s := New(rdb, Config{MaxAttempts: 1})
	ctx := ctxT(t)

	failed := errors.New("the write gave up after its reads")
	err := s.watchReading(ctx, "test", "watched", func(p redis.Pipeliner) { p.Get(ctx, "watched") },
		func(*redis.Tx) error { return failed })
	if !errors.Is(err, failed) {
		t.Fatalf("watchReading = %v, want %v", err, failed)
	}
	if err := other.Set(ctx, "watched", "changed", 0).Err(); err != nil {
		t.Fatal(err)
	}
	// The pool's one connection again: a transaction watching another key.
	err = rdb.Watch(ctx, func(tx *redis.Tx) error {
		_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, "mine", "1", 0)
			return nil
		})
		return err
	}, "mine")
	if err != nil {
		t.Fatalf("a transaction on the connection after the failed write: %v (its WATCH was left armed)", err)
	}
}
