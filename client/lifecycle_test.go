package client_test

import (
	"maps"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sessiond/sessiond/client"
	"github.com/sessiond/sessiond/internal/sessiondtest"
	"github.com/sessiond/sessiond/internal/testutil"
)

// TestLifecycle: Create with the assurance fields, Update and UpdateByID,
// Session, Extend, AllSessions and StepUp against a real sessiond, with
// their error codes.
func TestLifecycle(t *testing.T) {
	t.Parallel()
	sd := sessiondtest.Start(t)
	c := client.New(sd.Conn)
	ctx := ctxT(t)

	token, s, err := c.Create(ctx, client.NewSession{UserID: "ada", Attributes: map[string]string{"tenant": "t1", "theme": "dark"},
		AuthMethods: []string{"password", "password"}, AssuranceLevel: 1, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if s.GetAssuranceLevel() != 1 || !slices.Equal(s.GetAuthMethods(), []string{"password"}) || !s.GetAuthenticatedAt().AsTime().Equal(s.GetCreatedAt().AsTime()) {
		t.Fatalf("created level %d, methods %v, authenticated at %v (created %v)", s.GetAssuranceLevel(), s.GetAuthMethods(), s.GetAuthenticatedAt().AsTime(), s.GetCreatedAt().AsTime())
	}
	if _, s0, err := c.Create(ctx, client.NewSession{UserID: "ada"}); err != nil || s0.GetAssuranceLevel() != 1 {
		t.Fatalf("a session created without a level: %v, level %d; want 1", err, s0.GetAssuranceLevel())
	}

	// Update by token and by id.
	got, err := c.Update(ctx, token, client.AttributeChange{Set: map[string]string{"tenant": "t2"}, Remove: []string{"theme", "absent"}})
	if err != nil || !maps.Equal(got.GetAttributes(), map[string]string{"tenant": "t2"}) {
		t.Fatalf("Update = %v, %v", got.GetAttributes(), err)
	}
	got, err = c.UpdateByID(ctx, s.GetSessionId(), client.AttributeChange{Set: map[string]string{"role": "admin"}})
	if err != nil || !maps.Equal(got.GetAttributes(), map[string]string{"tenant": "t2", "role": "admin"}) {
		t.Fatalf("UpdateByID = %v, %v", got.GetAttributes(), err)
	}
	if v, err := c.Validate(ctx, token); err != nil || !maps.Equal(v.GetAttributes(), got.GetAttributes()) {
		t.Fatalf("Validate after the updates: %v, %v", v.GetAttributes(), err)
	}

	// Session by id.
	if got, err := c.Session(ctx, s.GetSessionId()); err != nil || got.GetUserId() != "ada" || got.GetAttributes()["role"] != "admin" {
		t.Fatalf("Session = %v, %v", got, err)
	}

	// Extend: the absolute expiry moves to now + ttl, shorter or longer.
	before := time.Now()
	got, err = c.Extend(ctx, s.GetSessionId(), 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if exp := got.GetExpiresAt().AsTime(); exp.Before(before.Add(2*time.Hour-time.Second)) || exp.After(time.Now().Add(2*time.Hour)) {
		t.Fatalf("Extend(2h) gave expiry %v, want about now+2h", exp)
	}

	// StepUp: a new token and id, the same data, the level and methods
	// raised, authenticated_at now; the old token is gone.
	time.Sleep(2 * time.Millisecond) // authenticated_at is kept to the millisecond
	newToken, up, err := c.StepUp(ctx, token, client.Reauthentication{Methods: []string{"totp"}, AssuranceLevel: 2})
	if err != nil {
		t.Fatal(err)
	}
	if up.GetSessionId() == s.GetSessionId() || up.GetAssuranceLevel() != 2 || !slices.Equal(up.GetAuthMethods(), []string{"password", "totp"}) ||
		!up.GetAuthenticatedAt().AsTime().After(s.GetAuthenticatedAt().AsTime()) || up.GetAttributes()["role"] != "admin" {
		t.Fatalf("StepUp gave %v", up)
	}
	if _, err := c.Validate(ctx, token); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("the stepped-up token: %v, want Unauthenticated", err)
	}
	if _, err := c.Validate(ctx, newToken, client.WithMinAssuranceLevel(2), client.WithMaxAuthAge(time.Minute)); err != nil {
		t.Fatalf("the new token with level 2 and a recent authentication: %v", err)
	}

	// AllSessions: every session, over pages of 2, whoever the user.
	want := map[string]bool{up.GetSessionId(): true}
	for i := range 5 {
		_, s, err := c.Create(ctx, client.NewSession{UserID: "user-" + string(rune('a'+i))})
		if err != nil {
			t.Fatal(err)
		}
		want[s.GetSessionId()] = true
	}
	seen := map[string]bool{}
	for s, err := range c.AllSessions(ctx, 2) {
		if err != nil {
			t.Fatal(err)
		}
		seen[s.GetSessionId()] = true
	}
	for id := range want {
		if !seen[id] {
			t.Errorf("AllSessions did not list %s", id)
		}
	}
	for range c.AllSessions(ctx, 0) {
		break // stopping early is fine
	}

	// The codes.
	unknown := testutil.Tampered(newToken)
	for _, tc := range []struct {
		what string
		err  error
		want codes.Code
	}{
		{"Update of an unknown token", second(c.Update(ctx, unknown, client.AttributeChange{Set: map[string]string{"a": "b"}})), codes.Unauthenticated},
		{"Update with nothing to change", second(c.Update(ctx, newToken, client.AttributeChange{})), codes.InvalidArgument},
		{"Update over a limit", second(c.Update(ctx, newToken, client.AttributeChange{Set: map[string]string{"k": string(make([]byte, 2000))}})), codes.InvalidArgument},
		{"UpdateByID of a gone session", second(c.UpdateByID(ctx, s.GetSessionId(), client.AttributeChange{Set: map[string]string{"a": "b"}})), codes.NotFound},
		{"UpdateByID of a malformed id", second(c.UpdateByID(ctx, "nope", client.AttributeChange{Set: map[string]string{"a": "b"}})), codes.InvalidArgument},
		{"Session of a gone session", second(c.Session(ctx, s.GetSessionId())), codes.NotFound},
		{"Session of no id", second(c.Session(ctx, "")), codes.InvalidArgument},
		{"Extend of a gone session", second(c.Extend(ctx, s.GetSessionId(), time.Hour)), codes.NotFound},
		{"Extend under 1s", second(c.Extend(ctx, up.GetSessionId(), 500*time.Millisecond)), codes.InvalidArgument},
		{"StepUp to level 4", third(c.StepUp(ctx, newToken, client.Reauthentication{AssuranceLevel: 4})), codes.InvalidArgument},
		{"StepUp with a malformed method", third(c.StepUp(ctx, newToken, client.Reauthentication{Methods: []string{"pass word"}})), codes.InvalidArgument},
		{"StepUp of an unknown token", third(c.StepUp(ctx, unknown, client.Reauthentication{})), codes.Unauthenticated},
		{"Create at level 4", third(c.Create(ctx, client.NewSession{UserID: "x", AssuranceLevel: 4})), codes.InvalidArgument},
		{"Validate with level 4", second(c.Validate(ctx, newToken, client.WithMinAssuranceLevel(4))), codes.InvalidArgument},
		{"Validate with a negative age", second(c.Validate(ctx, newToken, client.WithMaxAuthAge(-time.Second))), codes.InvalidArgument},
		{"RevokeAll in the future", second(c.RevokeAll(ctx, time.Now().Add(time.Hour))), codes.InvalidArgument},
	} {
		if got := status.Code(tc.err); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.what, tc.err, tc.want)
		}
	}
	var none []*client.Session
	for s, err := range c.AllSessions(ctx, 500) {
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("AllSessions with a page of 500: %v, %v; want InvalidArgument", s, err)
		}
		none = append(none, s)
	}
	if len(none) != 1 {
		t.Errorf("AllSessions with a bad page size yielded %d times, want once (the error)", len(none))
	}
}

// TestRevokeAll: the cutoff revokes the sessions created before it, whoever
// their user, and no other; it only moves forward.
func TestRevokeAll(t *testing.T) {
	t.Parallel()
	sd := sessiondtest.Start(t) // a Redis of its own: the cutoff is global
	c := client.New(sd.Conn)
	ctx := ctxT(t)
	old, _ := createSession(t, c, "u1")
	old2, old2S := createSession(t, c, "u2")
	// After the later of the two (times are milliseconds: old2 may share
	// its millisecond with newer, though not with old).
	newer, newS := createAfter(t, c, "u3", old2S.GetCreatedAt().AsTime())

	cutoff := newS.GetCreatedAt().AsTime().Truncate(time.Millisecond) // newS is not before it, old and old2 are
	inForce, err := c.RevokeAll(ctx, cutoff)
	if err != nil || !inForce.Equal(cutoff) {
		t.Fatalf("RevokeAll(%v) = %v, %v", cutoff, inForce, err)
	}
	for _, tok := range []string{old, old2} {
		if _, err := c.Validate(ctx, tok); status.Code(err) != codes.Unauthenticated {
			t.Errorf("a session created before the cutoff: %v, want Unauthenticated", err)
		}
	}
	if _, err := c.Validate(ctx, newer); err != nil {
		t.Fatalf("a session created at the cutoff: %v", err)
	}
	// An earlier cutoff changes nothing: the one in force is returned.
	if got, err := c.RevokeAll(ctx, cutoff.Add(-time.Hour)); err != nil || !got.Equal(cutoff) {
		t.Fatalf("RevokeAll with an earlier cutoff = %v, %v; want %v in force", got, err, cutoff)
	}
	// The zero time is now.
	start := time.Now()
	got, err := c.RevokeAll(ctx, time.Time{})
	// sessiond rounds the cutoff up to the millisecond (creation times are
	// kept to the millisecond).
	if err != nil || got.Before(start) || got.After(time.Now().Truncate(time.Millisecond).Add(time.Millisecond)) {
		t.Fatalf("RevokeAll(zero) = %v, %v; want now (between %v and %v)", got, err, start, time.Now())
	}
	if _, err := c.Validate(ctx, newer); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("after RevokeAll(now): %v, want Unauthenticated", err)
	}
	if tok, _ := createAfter(t, c, "u4", got); !validates(t, c, tok) {
		t.Fatal("a session created after the cutoff does not validate")
	}
}

func validates(t *testing.T, c *client.Client, token string) bool {
	_, err := c.Validate(ctxT(t), token)
	return err == nil
}

func createSession(t *testing.T, c *client.Client, user string) (string, *client.Session) {
	t.Helper()
	token, s, err := c.Create(ctxT(t), client.NewSession{UserID: user})
	if err != nil {
		t.Fatal(err)
	}
	return token, s
}

// createAfter creates a session whose created_at is in a later millisecond
// than after (a cutoff is kept to the millisecond).
func createAfter(t *testing.T, c *client.Client, user string, after time.Time) (string, *client.Session) {
	t.Helper()
	for range 100 {
		token, s := createSession(t, c, user)
		if s.GetCreatedAt().AsTime().UnixMilli() > after.UnixMilli() {
			return token, s
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("created_at did not move past the millisecond")
	return "", nil
}

func second[T any](_ T, err error) error        { return err }
func third[T, U any](_ T, _ U, err error) error { return err }
