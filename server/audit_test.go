package server_test

import (
	"bufio"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/server/access"
	"github.com/sessiond/sessiond/server/store"
)

type auditEvent struct {
	Time              time.Time `json:"time"`
	Level             string    `json:"level"`
	Msg               string    `json:"msg"`
	LogType           string    `json:"log_type"`
	Reason            string    `json:"reason"`
	SessionID         string    `json:"session_id"`
	SessionIDs        []string  `json:"session_ids"`
	Count             int       `json:"count"`
	ReplacedSessionID string    `json:"replaced_session_id"`
	ExceptSessionID   string    `json:"except_session_id"`
	ReusedSessionID   string    `json:"reused_session_id"`
	IssuedBefore      time.Time `json:"issued_before"`
	Change            string    `json:"change"`
	UserID            string    `json:"user_id"`
	Caller            struct {
		Name string `json:"name"`
		Addr string `json:"addr"`
	} `json:"caller"`
	Method string `json:"method"`
}

func auditEvents(t *testing.T, buf fmt.Stringer) []auditEvent {
	t.Helper()
	var out []auditEvent
	sc := bufio.NewScanner(strings.NewReader(buf.String()))
	for sc.Scan() {
		var ev auditEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("audit line %q is not JSON: %v", sc.Text(), err)
		}
		out = append(out, ev)
	}
	return out
}

// TestAuditEvents makes each kind of change and checks the event each one
// writes: what, which sessions, whose, why, who called, when; and that no
// event holds a token or a token's hash.
func TestAuditEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{Audit: true, Store: store.Config{MaxSessionsPerUser: 2}})
	audit := e.Audit
	var tokens []string
	create := func(user string) *sessionauthv1.CreateSessionResponse {
		t.Helper()
		resp, err := e.Client.CreateSession(as(t, "login"), &sessionauthv1.CreateSessionRequest{UserId: user, Email: user + "@example.com"})
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, resp.GetToken())
		return resp
	}
	n := 0
	next := func(t *testing.T) auditEvent {
		t.Helper()
		evs := auditEvents(t, audit)
		if len(evs) <= n {
			t.Fatalf("no audit event #%d; have %d", n+1, len(evs))
		}
		n++
		return evs[n-1]
	}
	common := func(t *testing.T, ev auditEvent, msg, caller, method string) {
		t.Helper()
		if ev.Msg != msg || ev.LogType != "audit" || ev.Level != "INFO" {
			t.Errorf("event %+v: want msg %q, log_type audit, level INFO", ev, msg)
		}
		if ev.Caller.Name != caller || !strings.HasPrefix(ev.Caller.Addr, "127.0.0.1:") {
			t.Errorf("%s: caller %+v, want %s at 127.0.0.1", msg, ev.Caller, caller)
		}
		if ev.Method != "/sessionauth.v1.SessionAuthority/"+method {
			t.Errorf("%s: method %q, want %s", msg, ev.Method, method)
		}
		if !ev.Time.Equal(e.Clock.Now()) {
			t.Errorf("%s: time %v, want the server's clock %v", msg, ev.Time, e.Clock.Now())
		}
	}

	// Created.
	s1 := create("user-1").GetSession()
	ev := next(t)
	common(t, ev, "session.created", "login", "CreateSession")
	if ev.SessionID != s1.GetSessionId() || ev.UserID != "user-1" {
		t.Errorf("created: %+v, want session %s of user-1", ev, s1.GetSessionId())
	}

	// Evicted over the cap of 2, by the third create.
	e.Clock.Advance(time.Second)
	s2 := create("user-1")
	next(t)
	s3 := create("user-1").GetSession()
	if ev = next(t); ev.Msg != "session.created" || ev.SessionID != s3.GetSessionId() {
		t.Fatalf("third create: %+v", ev)
	}
	ev = next(t)
	common(t, ev, "session.revoked", "login", "CreateSession")
	if ev.Reason != "evicted" || !slices.Equal(ev.SessionIDs, []string{s1.GetSessionId()}) || ev.Count != 1 || ev.UserID != "user-1" {
		t.Errorf("eviction: %+v, want reason evicted of %s", ev, s1.GetSessionId())
	}

	// Rotated, by another caller.
	e.Clock.Advance(time.Second)
	rot, err := e.Client.RotateSession(as(t, "issuer"), &sessionauthv1.RotateSessionRequest{Token: s2.GetToken()})
	if err != nil {
		t.Fatal(err)
	}
	tokens = append(tokens, rot.GetToken())
	ev = next(t)
	common(t, ev, "session.rotated", "issuer", "RotateSession")
	if ev.Reason != "rotated" || ev.SessionID != rot.GetSession().GetSessionId() || ev.ReplacedSessionID != s2.GetSession().GetSessionId() || ev.UserID != "user-1" {
		t.Errorf("rotated: %+v, want %s replacing %s", ev, rot.GetSession().GetSessionId(), s2.GetSession().GetSessionId())
	}

	// Revoked by token (logout); again: nothing revoked, no event.
	if _, err := e.Client.RevokeSession(as(t, "app"), &sessionauthv1.RevokeSessionRequest{
		Target: &sessionauthv1.RevokeSessionRequest_Token{Token: rot.GetToken()}}); err != nil {
		t.Fatal(err)
	}
	ev = next(t)
	common(t, ev, "session.revoked", "app", "RevokeSession")
	if ev.Reason != "logout" || !slices.Equal(ev.SessionIDs, []string{rot.GetSession().GetSessionId()}) || ev.UserID != "user-1" {
		t.Errorf("logout: %+v", ev)
	}
	if _, err := e.Client.RevokeSession(as(t, "app"), &sessionauthv1.RevokeSessionRequest{
		Target: &sessionauthv1.RevokeSessionRequest_Token{Token: rot.GetToken()}}); err != nil {
		t.Fatal(err)
	}

	// Revoked by id, by an anonymous caller (no authentication).
	if _, err := e.Client.RevokeSession(callCtx(t), &sessionauthv1.RevokeSessionRequest{
		Target: &sessionauthv1.RevokeSessionRequest_SessionId{SessionId: s3.GetSessionId()}}); err != nil {
		t.Fatal(err)
	}
	ev = next(t)
	common(t, ev, "session.revoked", access.Anonymous, "RevokeSession")
	if ev.Reason != "revoked" || !slices.Equal(ev.SessionIDs, []string{s3.GetSessionId()}) || ev.UserID != "user-1" {
		t.Errorf("revoked by id: %+v", ev)
	}

	// All of a user's sessions but one.
	keep := create("user-2").GetSession()
	next(t)
	other := create("user-2").GetSession()
	next(t)
	if _, err := e.Client.RevokeUserSessions(as(t, "admin"), &sessionauthv1.RevokeUserSessionsRequest{
		UserId: "user-2", ExceptSessionId: keep.GetSessionId()}); err != nil {
		t.Fatal(err)
	}
	ev = next(t)
	common(t, ev, "session.revoked", "admin", "RevokeUserSessions")
	if ev.Reason != "user_revoked" || !slices.Equal(ev.SessionIDs, []string{other.GetSessionId()}) || ev.Count != 1 ||
		ev.UserID != "user-2" || ev.ExceptSessionID != keep.GetSessionId() {
		t.Errorf("revoke user: %+v", ev)
	}
	// Nothing left to revoke: no event.
	if _, err := e.Client.RevokeUserSessions(as(t, "admin"), &sessionauthv1.RevokeUserSessionsRequest{
		UserId: "user-2", ExceptSessionId: keep.GetSessionId()}); err != nil {
		t.Fatal(err)
	}
	// Validations and lists are not audited.
	if _, err := e.Client.ValidateSession(callCtx(t), &sessionauthv1.ValidateSessionRequest{Token: tokens[len(tokens)-2]}); err != nil {
		t.Fatal(err)
	}
	if evs := auditEvents(t, audit); len(evs) != n {
		t.Errorf("%d audit events, want %d: %+v", len(evs), n, evs[n:])
	}

	// No token, nor its SHA-256 in any spelling, in the audit log; and no
	// audit event in the operational log.
	all := audit.String()
	for _, tok := range tokens {
		h := sha256.Sum256([]byte(tok))
		for _, s := range []string{tok, string(h[:]), hex.EncodeToString(h[:]), base64.StdEncoding.EncodeToString(h[:]),
			base64.RawURLEncoding.EncodeToString(h[:]), base64.RawStdEncoding.EncodeToString(h[:])} {
			if strings.Contains(all, s) {
				t.Fatalf("the audit log holds a token or its hash:\n%s", all)
			}
		}
	}
	if strings.Contains(e.Logs.String(), `"log_type":"audit"`) {
		t.Error("an audit event went to the operational log")
	}
}
