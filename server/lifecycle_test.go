package server_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/internal/assurance"
	"github.com/sessiond/sessiond/server"
	"github.com/sessiond/sessiond/server/store"
)

// nextEvent returns the next event of a revocation stream, failing the test
// if none comes within 5s.
func nextEvent(t *testing.T, watch sessionauthv1.SessionAuthority_WatchRevocationsClient) *sessionauthv1.RevocationEvent {
	t.Helper()
	type result struct {
		ev  *sessionauthv1.RevocationEvent
		err error
	}
	got := make(chan result, 1)
	go func() {
		ev, err := watch.Recv()
		got <- result{ev, err}
	}()
	select {
	case r := <-got:
		if r.err != nil {
			t.Fatalf("WatchRevocations: %v", r.err)
		}
		return r.ev
	case <-time.After(5 * time.Second):
		t.Fatal("no revocation event within 5s")
	}
	return nil
}

func validate(ctx context.Context, e *env, token string) (*sessionauthv1.Session, error) {
	resp, err := e.Client.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: token})
	return resp.GetSession(), err
}

func TestLifecycleEndToEnd(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{Audit: true})
	ctx := callCtx(t)
	watch := openWatch(t, e)

	created := e.create(t, &sessionauthv1.CreateSessionRequest{
		UserId: "ada", Attributes: map[string]string{"tenant": "acme", "theme": "dark"},
		AuthMethods: []string{"password", "totp", "password"}, AssuranceLevel: 2,
		Ttl: durationpb.New(2 * time.Hour), IdleTimeout: durationpb.New(time.Hour),
	})
	s := created.GetSession()
	if !slices.Equal(s.GetAuthMethods(), []string{"password", "totp"}) || s.GetAssuranceLevel() != 2 ||
		!s.GetAuthenticatedAt().AsTime().Equal(s.GetCreatedAt().AsTime()) {
		t.Fatalf("created %v: want methods [password totp] (deduplicated), level 2, authenticated at creation", s)
	}
	plain := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "bob"})
	if p := plain.GetSession(); p.GetAssuranceLevel() != 1 || len(p.GetAuthMethods()) != 0 {
		t.Fatalf("a session created without assurance: %v; want level 1 and no methods", p)
	}

	// GetSession: the operator's lookup.
	got, err := e.Client.GetSession(ctx, &sessionauthv1.GetSessionRequest{SessionId: s.GetSessionId()})
	if err != nil || got.GetSession().GetUserId() != "ada" || got.GetSession().GetAssuranceLevel() != 2 {
		t.Fatalf("GetSession = %v, %v", got, err)
	}

	// UpdateSession by token, then by id.
	up, err := e.Client.UpdateSession(ctx, &sessionauthv1.UpdateSessionRequest{
		Target:        &sessionauthv1.UpdateSessionRequest_Token{Token: created.GetToken()},
		SetAttributes: map[string]string{"cart": "3"}, RemoveAttributes: []string{"theme", "absent"},
	})
	if err != nil || !maps.Equal(up.GetSession().GetAttributes(), map[string]string{"tenant": "acme", "cart": "3"}) {
		t.Fatalf("UpdateSession(token) = %v, %v", up, err)
	}
	if ev := nextEvent(t, watch); ev.GetReason() != sessionauthv1.RevocationEvent_REASON_UPDATED || ev.GetSessionIds()[0] != s.GetSessionId() {
		t.Fatalf("event %v, want REASON_UPDATED of %s", ev, s.GetSessionId())
	}
	up, err = e.Client.UpdateSession(ctx, &sessionauthv1.UpdateSessionRequest{
		Target:        &sessionauthv1.UpdateSessionRequest_SessionId{SessionId: s.GetSessionId()},
		SetAttributes: map[string]string{"tenant": "globex"}, RemoveAttributes: []string{"cart", "tenant"},
	})
	if err != nil || !maps.Equal(up.GetSession().GetAttributes(), map[string]string{"tenant": "globex"}) {
		t.Fatalf("UpdateSession(id) = %v, %v; a key both set and removed is set", up, err)
	}
	nextEvent(t, watch)
	if v, err := validate(ctx, e, created.GetToken()); err != nil || !maps.Equal(v.GetAttributes(), map[string]string{"tenant": "globex"}) {
		t.Fatalf("ValidateSession after the updates = %v, %v", v, err)
	}

	// ExtendSession: the absolute expiry becomes now + ttl.
	e.Clock.Advance(30 * time.Minute)
	ext, err := e.Client.ExtendSession(ctx, &sessionauthv1.ExtendSessionRequest{SessionId: s.GetSessionId(), Ttl: durationpb.New(5 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if want := e.Clock.Now().Add(5 * time.Hour).Truncate(time.Millisecond); !ext.GetSession().GetExpiresAt().AsTime().Equal(want) {
		t.Fatalf("expires_at after ExtendSession = %v, want %v", ext.GetSession().GetExpiresAt().AsTime(), want)
	}
	idle := ext.GetSession().GetIdleExpiresAt().AsTime()
	if at := e.RDB.PExpireTime(ctx, sessionKey(t, e, s.GetSessionId())).Val(); !idle.Equal(s.GetIdleExpiresAt().AsTime()) || at != time.Duration(idle.UnixMilli())*time.Millisecond {
		t.Fatalf("idle expiry %v and key expiry %v after ExtendSession; want the idle expiry %v unchanged", idle, at, s.GetIdleExpiresAt().AsTime())
	}
	nextEvent(t, watch)
	ext, err = e.Client.ExtendSession(ctx, &sessionauthv1.ExtendSessionRequest{SessionId: s.GetSessionId()})
	if want := e.Clock.Now().Add(server.DefaultTTL).Truncate(time.Millisecond); err != nil || !ext.GetSession().GetExpiresAt().AsTime().Equal(want) {
		t.Fatalf("ExtendSession without ttl = %v, %v; want the default ttl", ext, err)
	}
	nextEvent(t, watch)

	// ListSessions walks every user's sessions.
	var listed []string
	tok := ""
	for range 20 {
		page, err := e.Client.ListSessions(ctx, &sessionauthv1.ListSessionsRequest{PageSize: 1, PageToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.GetSessions()) > 1 {
			t.Fatalf("a page of %d with page_size 1", len(page.GetSessions()))
		}
		for _, s := range page.GetSessions() {
			listed = append(listed, s.GetSessionId())
		}
		if tok = page.GetNextPageToken(); tok == "" {
			break
		}
	}
	slices.Sort(listed)
	want := []string{s.GetSessionId(), plain.GetSession().GetSessionId()}
	slices.Sort(want)
	if !slices.Equal(listed, want) {
		t.Fatalf("ListSessions listed %v, want %v", listed, want)
	}

	// RevokeAllSessions cuts off both; a session created after it lives.
	e.Clock.Advance(time.Millisecond)
	all, err := e.Client.RevokeAllSessions(ctx, &sessionauthv1.RevokeAllSessionsRequest{})
	if now := e.Clock.Now(); err != nil || now.After(all.GetIssuedBefore().AsTime()) || all.GetIssuedBefore().AsTime().Sub(now) >= time.Millisecond {
		t.Fatalf("RevokeAllSessions = %v, %v; want the cutoff now, rounded up to the millisecond", all, err)
	}
	e.Clock.Advance(time.Millisecond) // past the cutoff
	ev := nextEvent(t, watch)
	if ev.GetReason() != sessionauthv1.RevocationEvent_REASON_ALL_REVOKED || !ev.GetIssuedBefore().AsTime().Equal(all.GetIssuedBefore().AsTime()) || len(ev.GetSessionIds()) != 0 {
		t.Fatalf("event %v, want REASON_ALL_REVOKED at the cutoff", ev)
	}
	after := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "ada"})
	for _, tok := range []string{created.GetToken(), plain.GetToken()} {
		_, err := validate(ctx, e, tok)
		wantCode(t, err, codes.Unauthenticated, "a session created before the cutoff")
	}
	if _, err := validate(ctx, e, after.GetToken()); err != nil {
		t.Fatalf("a session created after the cutoff: %v", err)
	}
	_, err = e.Client.GetSession(ctx, &sessionauthv1.GetSessionRequest{SessionId: s.GetSessionId()})
	wantCode(t, err, codes.NotFound, "GetSession of a cut-off session")
	page, err := e.Client.ListSessions(ctx, &sessionauthv1.ListSessionsRequest{PageSize: 200})
	if err != nil || len(page.GetSessions()) != 1 || page.GetSessions()[0].GetSessionId() != after.GetSession().GetSessionId() {
		t.Fatalf("ListSessions after the cutoff = %v, %v; want only the new session", page, err)
	}
	// An earlier cutoff changes nothing.
	earlier, err := e.Client.RevokeAllSessions(ctx, &sessionauthv1.RevokeAllSessionsRequest{IssuedBefore: timestamppb.New(e.Clock.Now().Add(-time.Hour))})
	if err != nil || !earlier.GetIssuedBefore().AsTime().Equal(all.GetIssuedBefore().AsTime()) {
		t.Fatalf("an earlier RevokeAllSessions = %v, %v; want the cutoff in force", earlier, err)
	}

	events := auditEvents(t, e.Audit)
	var changes []string
	for _, ev := range events {
		switch {
		case ev.Msg == "session.updated":
			changes = append(changes, ev.Change)
		case ev.Msg == "session.revoked" && ev.Reason == "all_revoked":
			if !ev.IssuedBefore.Equal(all.GetIssuedBefore().AsTime()) {
				t.Errorf("audit all_revoked issued_before %v, want %v", ev.IssuedBefore, all.GetIssuedBefore().AsTime())
			}
			changes = append(changes, ev.Reason)
		}
	}
	if !slices.Equal(changes, []string{"attributes", "attributes", "expiry", "expiry", "all_revoked"}) {
		t.Fatalf("audit events %v, want two attribute updates, two extensions and one cutoff", changes)
	}
}

// sessionKey is the Redis key of a session (the store's key layout).
func sessionKey(t *testing.T, e *env, sessionID string) string {
	t.Helper()
	tag, uuid, ok := strings.Cut(sessionID, "_")
	if !ok {
		t.Fatalf("session id %q", sessionID)
	}
	return store.DefaultKeyPrefix + ":v1:{" + tag + "}:s:" + uuid
}

func TestLifecycleCodes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := callCtx(t)
	live := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "u"})
	gone := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "u"})
	if _, err := e.Client.RevokeSession(ctx, &sessionauthv1.RevokeSessionRequest{Target: &sessionauthv1.RevokeSessionRequest_Token{Token: gone.GetToken()}}); err != nil {
		t.Fatal(err)
	}
	goneID := gone.GetSession().GetSessionId()
	set := map[string]string{"k": "v"}
	cases := []struct {
		name string
		call func(context.Context) error
		code codes.Code
	}{
		{"get an ended session", func(ctx context.Context) error {
			_, err := e.Client.GetSession(ctx, &sessionauthv1.GetSessionRequest{SessionId: goneID})
			return err
		}, codes.NotFound},
		{"extend an ended session", func(ctx context.Context) error {
			_, err := e.Client.ExtendSession(ctx, &sessionauthv1.ExtendSessionRequest{SessionId: goneID})
			return err
		}, codes.NotFound},
		{"update an ended session by id", func(ctx context.Context) error {
			_, err := e.Client.UpdateSession(ctx, &sessionauthv1.UpdateSessionRequest{Target: &sessionauthv1.UpdateSessionRequest_SessionId{SessionId: goneID}, SetAttributes: set})
			return err
		}, codes.NotFound},
		{"update an ended session by token", func(ctx context.Context) error {
			_, err := e.Client.UpdateSession(ctx, &sessionauthv1.UpdateSessionRequest{Target: &sessionauthv1.UpdateSessionRequest_Token{Token: gone.GetToken()}, SetAttributes: set})
			return err
		}, codes.Unauthenticated},
		{"update by a malformed token", func(ctx context.Context) error {
			_, err := e.Client.UpdateSession(ctx, &sessionauthv1.UpdateSessionRequest{Target: &sessionauthv1.UpdateSessionRequest_Token{Token: "nope"}, SetAttributes: set})
			return err
		}, codes.Unauthenticated},
		{"revoke all in the future", func(ctx context.Context) error {
			_, err := e.Client.RevokeAllSessions(ctx, &sessionauthv1.RevokeAllSessionsRequest{IssuedBefore: timestamppb.New(e.Clock.Now().Add(time.Minute))})
			return err
		}, codes.InvalidArgument},
	}
	for _, tc := range cases {
		wantCode(t, tc.call(callCtx(t)), tc.code, tc.name)
	}
	if ks := e.RDB.Keys(ctx, "*"+strings.Split(goneID, "_")[1]).Val(); len(ks) != 0 {
		t.Fatalf("keys %v of the ended session exist again", ks)
	}
	if _, err := validate(ctx, e, live.GetToken()); err != nil {
		t.Fatalf("the live session after the refused calls: %v", err)
	}
}

func TestLifecycleInvalidArgument(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	live := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "u", Attributes: map[string]string{"a": strings.Repeat("x", 1000)}})
	id := live.GetSession().GetSessionId()
	before := e.RDB.DBSize(callCtx(t)).Val()
	long := strings.Repeat("x", 65)
	many := func(n int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprint("m", i))
		}
		return out
	}
	big := map[string]string{}
	for i := range 8 {
		big[fmt.Sprint("b", i)] = strings.Repeat("y", 1000)
	}
	byID := func(set map[string]string, remove ...string) *sessionauthv1.UpdateSessionRequest {
		return &sessionauthv1.UpdateSessionRequest{Target: &sessionauthv1.UpdateSessionRequest_SessionId{SessionId: id}, SetAttributes: set, RemoveAttributes: remove}
	}
	update := func(req *sessionauthv1.UpdateSessionRequest) func(context.Context) error {
		return func(ctx context.Context) error { _, err := e.Client.UpdateSession(ctx, req); return err }
	}
	cases := []struct {
		name  string
		call  func(context.Context) error
		field string
	}{
		{"create with a level of 4", create(e, &sessionauthv1.CreateSessionRequest{UserId: "u", AssuranceLevel: 4}), "assurance_level"},
		{"create with a negative level", create(e, &sessionauthv1.CreateSessionRequest{UserId: "u", AssuranceLevel: -1}), "assurance_level"},
		{"create with an empty method", create(e, &sessionauthv1.CreateSessionRequest{UserId: "u", AuthMethods: []string{""}}), "auth_methods"},
		{"create with a method of 65 bytes", create(e, &sessionauthv1.CreateSessionRequest{UserId: "u", AuthMethods: []string{long}}), "auth_methods"},
		{"create with a method with a comma", create(e, &sessionauthv1.CreateSessionRequest{UserId: "u", AuthMethods: []string{"a,b"}}), "auth_methods"},
		{"create with 17 methods", create(e, &sessionauthv1.CreateSessionRequest{UserId: "u", AuthMethods: many(17)}), "auth_methods"},
		{"validate with a level of 4", func(ctx context.Context) error {
			_, err := e.Client.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: live.GetToken(), MinAssuranceLevel: 4})
			return err
		}, "min_assurance_level"},
		{"validate with a negative max_auth_age", func(ctx context.Context) error {
			_, err := e.Client.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: live.GetToken(), MaxAuthAge: durationpb.New(-time.Second)})
			return err
		}, "max_auth_age"},
		{"rotate to a level of 9", func(ctx context.Context) error {
			_, err := e.Client.RotateSession(ctx, &sessionauthv1.RotateSessionRequest{Token: live.GetToken(), AssuranceLevel: 9})
			return err
		}, "assurance_level"},
		{"rotate adding a bad method", func(ctx context.Context) error {
			_, err := e.Client.RotateSession(ctx, &sessionauthv1.RotateSessionRequest{Token: live.GetToken(), AddAuthMethods: []string{"a b"}})
			return err
		}, "add_auth_methods"},
		{"update without target", update(&sessionauthv1.UpdateSessionRequest{SetAttributes: map[string]string{"k": "v"}}), "target"},
		{"update with nothing to change", update(byID(nil)), "set_attributes"},
		{"update with a malformed id", update(&sessionauthv1.UpdateSessionRequest{Target: &sessionauthv1.UpdateSessionRequest_SessionId{SessionId: "x"}, SetAttributes: map[string]string{"k": "v"}}), "session_id"},
		{"update with an empty key", update(byID(map[string]string{"": "v"})), "attributes"},
		{"update removing a key with a newline", update(byID(nil, "a\nb")), "remove_attributes"},
		{"update over the total size", update(byID(big)), "set_attributes"},
		{"get without id", func(ctx context.Context) error {
			_, err := e.Client.GetSession(ctx, &sessionauthv1.GetSessionRequest{})
			return err
		}, "session_id"},
		{"get a malformed id", func(ctx context.Context) error {
			_, err := e.Client.GetSession(ctx, &sessionauthv1.GetSessionRequest{SessionId: "nope"})
			return err
		}, "session_id"},
		{"extend over the max", func(ctx context.Context) error {
			_, err := e.Client.ExtendSession(ctx, &sessionauthv1.ExtendSessionRequest{SessionId: id, Ttl: durationpb.New(server.DefaultMaxTTL + time.Second)})
			return err
		}, "ttl"},
		{"extend by a negative ttl", func(ctx context.Context) error {
			_, err := e.Client.ExtendSession(ctx, &sessionauthv1.ExtendSessionRequest{SessionId: id, Ttl: durationpb.New(-time.Hour)})
			return err
		}, "ttl"},
		{"list all with page size 201", func(ctx context.Context) error {
			_, err := e.Client.ListSessions(ctx, &sessionauthv1.ListSessionsRequest{PageSize: 201})
			return err
		}, "page_size"},
		{"list all with a ListUserSessions token", func(ctx context.Context) error {
			_, err := e.Client.ListSessions(ctx, &sessionauthv1.ListSessionsRequest{PageToken: server.ForgedPageToken(id)})
			return err
		}, "page_token"},
		{"list all with garbage", func(ctx context.Context) error {
			_, err := e.Client.ListSessions(ctx, &sessionauthv1.ListSessionsRequest{PageToken: "bDE6bDEuOTk5OTkuMC4"})
			return err
		}, "page_token"},
		{"revoke all with an invalid time", func(ctx context.Context) error {
			_, err := e.Client.RevokeAllSessions(ctx, &sessionauthv1.RevokeAllSessionsRequest{IssuedBefore: &timestamppb.Timestamp{Seconds: 1, Nanos: -1}})
			return err
		}, "issued_before"},
	}
	for _, tc := range cases {
		st := wantCode(t, tc.call(callCtx(t)), codes.InvalidArgument, tc.name)
		if !strings.HasPrefix(st.Message(), tc.field+": ") {
			t.Errorf("%s: message %q does not start with the field %q", tc.name, st.Message(), tc.field)
		}
		var br *errdetails.BadRequest
		for _, d := range st.Details() {
			if b, ok := d.(*errdetails.BadRequest); ok {
				br = b
			}
		}
		if br == nil || br.GetFieldViolations()[0].GetField() != tc.field {
			t.Errorf("%s: BadRequest detail %v, want the field %q first", tc.name, br, tc.field)
		}
	}
	if after := e.RDB.DBSize(callCtx(t)).Val(); after != before {
		t.Fatalf("refused requests changed the keyspace: %d keys before, %d after", before, after)
	}
	v, err := validate(callCtx(t), e, live.GetToken())
	if err != nil || len(v.GetAttributes()) != 1 || v.GetAssuranceLevel() != 1 {
		t.Fatalf("the session after the refused calls: %v, %v", v, err)
	}
}

// TestStepUp: a session below a caller's demand is refused with the reason,
// stays live, and passes once the user has stepped up through rotation.
func TestStepUp(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := callCtx(t)
	c := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "u", AuthMethods: []string{"password"}})
	denied := func(token string, level int32, age time.Duration, reason string) {
		t.Helper()
		req := &sessionauthv1.ValidateSessionRequest{Token: token, MinAssuranceLevel: level}
		if age > 0 {
			req.MaxAuthAge = durationpb.New(age)
		}
		_, err := e.Client.ValidateSession(ctx, req)
		st := wantCode(t, err, codes.PermissionDenied, reason)
		info, ok := assurance.Denial(err)
		if !ok || info.GetReason() != reason || info.GetDomain() != "sessiond" {
			t.Fatalf("ErrorInfo %v (message %q), want the reason %s", info, st.Message(), reason)
		}
	}
	denied(c.GetToken(), 2, 0, assurance.ReasonLevelTooLow)
	e.Clock.Advance(10 * time.Minute)
	denied(c.GetToken(), 0, 5*time.Minute, assurance.ReasonReauthenticationRequired)
	if _, err := e.Client.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: c.GetToken(), MinAssuranceLevel: 1, MaxAuthAge: durationpb.New(time.Hour)}); err != nil {
		t.Fatalf("a demand the session meets: %v", err)
	}
	if _, err := validate(ctx, e, c.GetToken()); err != nil {
		t.Fatalf("a denial revoked the session: %v", err)
	}

	up, err := e.Client.RotateSession(ctx, &sessionauthv1.RotateSessionRequest{Token: c.GetToken(), AssuranceLevel: 2, AddAuthMethods: []string{"webauthn", "password"}, Reauthenticated: true})
	if err != nil {
		t.Fatal(err)
	}
	n := up.GetSession()
	if n.GetAssuranceLevel() != 2 || !slices.Equal(n.GetAuthMethods(), []string{"password", "webauthn"}) || !n.GetAuthenticatedAt().AsTime().Equal(e.Clock.Now().Truncate(time.Millisecond)) ||
		!n.GetCreatedAt().AsTime().Equal(c.GetSession().GetCreatedAt().AsTime()) {
		t.Fatalf("stepped-up session %v: want level 2, methods [password webauthn], authenticated now, the creation kept", n)
	}
	if _, err := e.Client.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: up.GetToken(), MinAssuranceLevel: 2, MaxAuthAge: durationpb.New(5 * time.Minute)}); err != nil {
		t.Fatalf("after the step-up: %v", err)
	}
	// A plain rotation keeps the level and the authentication time.
	e.Clock.Advance(time.Minute)
	plain, err := e.Client.RotateSession(ctx, &sessionauthv1.RotateSessionRequest{Token: up.GetToken()})
	if err != nil || plain.GetSession().GetAssuranceLevel() != 2 || !plain.GetSession().GetAuthenticatedAt().AsTime().Equal(n.GetAuthenticatedAt().AsTime()) {
		t.Fatalf("a plain rotation = %v, %v; want the level and authenticated_at kept", plain, err)
	}
}

// TestReuseDetection: a rotated-away token is refused; presented after the
// grace, it revokes what it was rotated into, announced and audited.
func TestReuseDetection(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{Audit: true, Store: store.Config{RotationGrace: 10 * time.Second}})
	ctx := callCtx(t)
	watch := openWatch(t, e)
	a := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "victim"})
	b, err := e.Client.RotateSession(ctx, &sessionauthv1.RotateSessionRequest{Token: a.GetToken()})
	if err != nil {
		t.Fatal(err)
	}
	nextEvent(t, watch) // rotated
	c, err := e.Client.RotateSession(ctx, &sessionauthv1.RotateSessionRequest{Token: b.GetToken()})
	if err != nil {
		t.Fatal(err)
	}
	nextEvent(t, watch) // rotated

	// Within the grace: refused, and nothing else happens.
	e.Clock.Advance(5 * time.Second)
	_, err = validate(ctx, e, b.GetToken())
	wantCode(t, err, codes.Unauthenticated, "a token rotated away within the grace")
	if _, err := validate(ctx, e, c.GetToken()); err != nil {
		t.Fatalf("the live session after a reuse within the grace: %v", err)
	}

	// After it: the live session of the chain (c, two rotations on) goes too.
	e.Clock.Advance(20 * time.Second)
	_, err = e.Client.RotateSession(ctx, &sessionauthv1.RotateSessionRequest{Token: a.GetToken()})
	wantCode(t, err, codes.Unauthenticated, "the first token, reused after the grace")
	_, err = validate(ctx, e, c.GetToken())
	wantCode(t, err, codes.Unauthenticated, "the chain's live session after the reuse")
	ev := nextEvent(t, watch)
	if ev.GetReason() != sessionauthv1.RevocationEvent_REASON_REUSE_DETECTED || ev.GetReusedSessionId() != a.GetSession().GetSessionId() ||
		!slices.Equal(ev.GetSessionIds(), []string{c.GetSession().GetSessionId()}) {
		t.Fatalf("event %v, want REASON_REUSE_DETECTED of %s for %s", ev, c.GetSession().GetSessionId(), a.GetSession().GetSessionId())
	}
	found := false
	for _, ev := range auditEvents(t, e.Audit) {
		if ev.Msg == "session.revoked" && ev.Reason == "reuse_detected" {
			found = ev.ReusedSessionID == a.GetSession().GetSessionId() && slices.Equal(ev.SessionIDs, []string{c.GetSession().GetSessionId()})
		}
	}
	if !found {
		t.Fatalf("no audit event naming both sessions:\n%s", e.Audit)
	}
	if !strings.Contains(e.Logs.String(), "rotated-away token presented again") {
		t.Fatal("no warning in the operational log")
	}
	// Presenting it again finds nothing left to revoke.
	_, err = validate(ctx, e, b.GetToken())
	wantCode(t, err, codes.Unauthenticated, "a reused token, again")
}

// TestReuseDetectionRacesRotations: many clients rotating one token at once
// (two tabs, retries) make one winner and no reuse alarm; a stolen copy
// presented after the grace while the user rotates on leaves nothing of
// the chain live, whatever the interleaving.
func TestReuseDetectionRacesRotations(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{Store: store.Config{RotationGrace: 10 * time.Second}})
	ctx := callCtx(t)
	for round := range 5 {
		c := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: fmt.Sprint("racer-", round)})
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			winners []*sessionauthv1.RotateSessionResponse
		)
		for range 12 {
			wg.Go(func() {
				r, err := e.Client.RotateSession(ctx, &sessionauthv1.RotateSessionRequest{Token: c.GetToken()})
				if status.Code(err) != codes.OK && status.Code(err) != codes.Unauthenticated {
					t.Errorf("a racing rotation: %v", err)
				}
				if err == nil {
					mu.Lock()
					winners = append(winners, r)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if len(winners) != 1 {
			t.Fatalf("round %d: %d rotations won, want 1", round, len(winners))
		}
		if _, err := validate(ctx, e, winners[0].GetToken()); err != nil {
			t.Fatalf("round %d: the winner's session after the losers presented the old token within the grace: %v", round, err)
		}

		// The stolen first token, after the grace, against the user rotating on.
		e.Clock.Advance(11 * time.Second)
		var next *sessionauthv1.RotateSessionResponse
		wg.Go(func() {
			_, err := validate(ctx, e, c.GetToken())
			if status.Code(err) != codes.Unauthenticated {
				t.Errorf("the stolen token: %v", err)
			}
		})
		wg.Go(func() {
			r, err := e.Client.RotateSession(ctx, &sessionauthv1.RotateSessionRequest{Token: winners[0].GetToken()})
			if status.Code(err) != codes.OK && status.Code(err) != codes.Unauthenticated {
				t.Errorf("the user's rotation: %v", err)
			}
			next = r
		})
		wg.Wait()
		for _, tok := range []string{winners[0].GetToken(), next.GetToken()} {
			if tok == "" {
				continue // the rotation lost to the revocation
			}
			_, err := validate(ctx, e, tok)
			wantCode(t, err, codes.Unauthenticated, fmt.Sprintf("round %d: a session of the chain after the reuse", round))
		}
	}
}

// TestUnreadableCutoffFailsClosed: a sessiond that cannot read the
// revoke-all cutoff stops validating (Unavailable) once the cutoff it read
// last is older than --cutoff-max-age, and reports itself not ready; a
// RevokeAllSessions rewrites the cutoff, and it serves again.
func TestUnreadableCutoffFailsClosed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{Store: store.Config{CutoffMaxAge: 200 * time.Millisecond}})
	ctx := callCtx(t)
	tok := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "u"}).GetToken()
	if _, err := validate(ctx, e, tok); err != nil {
		t.Fatal(err)
	}
	if err := e.RDB.Set(ctx, store.DefaultKeyPrefix+":v1:cutoff", "not-a-time", 0).Err(); err != nil {
		t.Fatal(err)
	}
	waitHealth(t, e, healthpb.HealthCheckResponse_NOT_SERVING)
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := validate(ctx, e, tok)
		if status.Code(err) == codes.Unavailable {
			break
		}
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("validation with an unreadable cutoff: %v, want Unavailable within 5s", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(e.Logs.String(), "is not a Unix millisecond") {
		t.Fatal("the log does not say what is wrong with the cutoff")
	}
	e.Clock.Advance(time.Millisecond)
	if _, err := e.Client.RevokeAllSessions(ctx, &sessionauthv1.RevokeAllSessionsRequest{}); err != nil {
		t.Fatalf("RevokeAllSessions over an unreadable cutoff: %v", err)
	}
	waitHealth(t, e, healthpb.HealthCheckResponse_SERVING)
	_, err := validate(ctx, e, tok)
	wantCode(t, err, codes.Unauthenticated, "a session created before the rewritten cutoff")
}
