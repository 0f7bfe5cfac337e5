package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/server/store"
)

// The request fuzz targets call the handlers themselves, in process, over the
// real store on a Redis that cannot be reached: every dial fails at once, so
// nothing leaves the process. What the handlers pass to the store is
// recorded, and the outcome is checked against an oracle written from the
// limits the proto documents (not from validate.go):
//
//   - input within every limit reaches the store, with exactly the values
//     the request carried (a client IP in canonical form, a lifetime in
//     [1s, MaxTTL] or the default);
//   - input over any limit never reaches the store and is answered with
//     InvalidArgument and a google.rpc.BadRequest detail whose first
//     violation the message names;
//   - no answer echoes the token it was given.

// fuzzConfig is the service configuration of the fuzz targets.
var fuzzConfig = Config{DefaultTTL: 24 * time.Hour, MaxTTL: 30 * 24 * time.Hour, DefaultIdleTimeout: time.Hour}

// unknownToken is a token of the right form that no session has.
const unknownToken = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEB"

// errNoRedis is what every dial to the unreachable Redis fails with.
var errNoRedis = &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("fuzz: no Redis here")}

// recordingStore is the real store, over a Redis that cannot be reached,
// that records what reaches it: every call that needed Redis (it dialed, or
// the service logged the dial error the connection pool kept), and the
// arguments of Create (answered without the store) and ListUser.
type recordingStore struct {
	Store
	dials   *atomic.Int64 // dials made for a call
	probes  *atomic.Int64 // go-redis' own background dials (backgroundProbe)
	log     *bytes.Buffer // the service's log
	created *store.NewSession
	listed  []string // user id, limit, cursor
}

func newRecordingStore(tb testing.TB) *recordingStore {
	tb.Helper()
	dials, probes := new(atomic.Int64), new(atomic.Int64)
	rdb := redis.NewClient(&redis.Options{
		Addr:       "sessiond-fuzz.invalid:6379",
		MaxRetries: -1, DialerRetries: 1, DialerRetryTimeout: time.Microsecond,
		Dialer: func(context.Context, string, string) (net.Conn, error) {
			if backgroundProbe() {
				probes.Add(1)
			} else {
				dials.Add(1)
			}
			return nil, errNoRedis
		},
	})
	tb.Cleanup(func() { _ = rdb.Close() })
	return &recordingStore{Store: store.New(rdb, store.Config{}), dials: dials, probes: probes, log: new(bytes.Buffer)}
}

// backgroundProbe reports whether the dial in progress is go-redis' own
// probe (internal/pool's (*ConnPool).tryDial): once as many dials as the
// pool has connections have failed, go-redis dials once a second in the
// background to learn when Redis is back. Such a probe can land during a
// call that reached nothing, and is not that call's. (go-redis dials on a
// context of its own, so the probe cannot be told apart by the context.)
func backgroundProbe() bool {
	pc := make([]uintptr, 64)
	frames := runtime.CallersFrames(pc[:runtime.Callers(2, pc)])
	for {
		f, more := frames.Next()
		if strings.HasSuffix(f.Function, ".tryDial") {
			return true
		}
		if !more {
			return false
		}
	}
}

// TestRecordingStoreIgnoresBackgroundProbes: a call's dial is counted;
// go-redis' background probe, which starts once dials keep failing, is
// not.
func TestRecordingStoreIgnoresBackgroundProbes(t *testing.T) {
	st := newRecordingStore(t)
	svc := st.service()
	if _, err := svc.ValidateSession(context.Background(), &sessionauthv1.ValidateSessionRequest{Token: unknownToken}); status.Code(err) != codes.Unavailable {
		t.Fatalf("ValidateSession with Redis down: %v, want Unavailable", err)
	}
	if !st.reached() || st.dials.Load() == 0 {
		t.Fatalf("a validation of a well-formed token: reached %v, %d dials counted; want it counted", st.reached(), st.dials.Load())
	}
	// Fail dials until go-redis starts its probe (after as many failures as
	// the pool has connections; its first probe dials at once).
	for deadline := time.Now().Add(10 * time.Second); st.probes.Load() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("go-redis started no background probe in 10s of failing dials")
		}
		_, _ = svc.ValidateSession(context.Background(), &sessionauthv1.ValidateSessionRequest{Token: unknownToken})
	}
	// With no call in flight, the next probe (a second later) is counted
	// as a probe only.
	st.reset()
	before := st.probes.Load()
	for deadline := time.Now().Add(5 * time.Second); st.probes.Load() == before; {
		if time.Now().After(deadline) {
			t.Fatal("go-redis probed once and not again within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st.reached() {
		t.Fatalf("a background probe counted as a call's dial (%d dials)", st.dials.Load())
	}
}

// service returns the service over r, logging into r.log.
func (r *recordingStore) service() *Server {
	cfg := fuzzConfig
	cfg.Logger = slog.New(slog.NewTextHandler(r.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return New(r, cfg)
}

func (r *recordingStore) reset() {
	r.dials.Store(0)
	r.log.Reset()
	r.created, r.listed = nil, nil
}

// reached reports whether the last call needed Redis.
func (r *recordingStore) reached() bool {
	return r.dials.Load() > 0 || strings.Contains(r.log.String(), errNoRedis.Err.Error()) || r.created != nil || r.listed != nil
}

func (r *recordingStore) Create(_ context.Context, ns store.NewSession) (*store.Created, error) {
	r.created = &ns
	return nil, fmt.Errorf("create: %w", store.ErrUnavailable)
}

func (r *recordingStore) ListUser(ctx context.Context, userID string, limit int, cursor string) ([]*store.Session, string, error) {
	r.listed = []string{userID, strconv.Itoa(limit), cursor}
	return r.Store.ListUser(ctx, userID, limit, cursor)
}

// The oracle: the documented limits, written down again.

// textOK: at most limit bytes of valid UTF-8 without a control character,
// and not empty if required.
func textOK(s string, limit int, required bool) bool {
	return (s != "" || !required) && len(s) <= limit && utf8.ValidString(s) && strings.IndexFunc(s, unicode.IsControl) < 0
}

// sessionIDForm is the one spelling of a session id: the user's routing tag
// and a UUID, in lowercase.
var sessionIDForm = regexp.MustCompile(`^[0-9a-f]{8}_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// isSessionIDOf reports whether id is a well-formed session id of userID.
func isSessionIDOf(id, userID string) bool {
	sum := sha256.Sum256([]byte(userID))
	return sessionIDForm.MatchString(id) && id[:8] == hex.EncodeToString(sum[:4])
}

// lifetimeOK resolves a requested lifetime as documented: unset or zero is
// the default; anything else must be a valid duration in [1s, limit].
func lifetimeOK(d *durationpb.Duration, def, limit time.Duration) (time.Duration, bool) {
	if d == nil {
		return def, true
	}
	if d.CheckValid() != nil {
		return 0, false
	}
	switch dur := d.AsDuration(); {
	case dur == 0:
		return def, true
	case dur < time.Second || dur > limit:
		return 0, false
	default:
		return dur, true
	}
}

// knownFields are the field names a BadRequest may name.
var knownFields = map[string]bool{
	"user_id": true, "email": true, "client_ip": true, "user_agent": true, "attributes": true, "ttl": true,
	"idle_timeout": true, "token": true, "session_id": true, "target": true, "page_size": true, "page_token": true,
	"except_session_id": true, "auth_methods": true, "assurance_level": true, "min_assurance_level": true, "max_auth_age": true,
	"add_auth_methods": true, "set_attributes": true, "remove_attributes": true, "issued_before": true,
}

// checkInvalidArgument fails unless err is InvalidArgument with a BadRequest
// detail that names known fields, the first of them in the message.
func checkInvalidArgument(t *testing.T, what string, err error) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument {
		t.Fatalf("%s: code %v (%q), want InvalidArgument", what, st.Code(), st.Message())
	}
	var br *errdetails.BadRequest
	for _, d := range st.Details() {
		if b, ok := d.(*errdetails.BadRequest); ok {
			br = b
		}
	}
	if br == nil || len(br.GetFieldViolations()) == 0 {
		t.Fatalf("%s: InvalidArgument %q without a BadRequest detail", what, st.Message())
	}
	for _, fv := range br.GetFieldViolations() {
		if !knownFields[fv.GetField()] || fv.GetDescription() == "" {
			t.Fatalf("%s: violation %q: %q", what, fv.GetField(), fv.GetDescription())
		}
	}
	if first := br.GetFieldViolations()[0]; !strings.HasPrefix(st.Message(), first.GetField()+": "+first.GetDescription()) {
		t.Fatalf("%s: message %q does not name the first violation %v", what, st.Message(), first)
	}
}

// checkNoEcho fails if the status of err carries secret (a token).
func checkNoEcho(t *testing.T, what string, err error, secret string) {
	t.Helper()
	if len(secret) < 8 || err == nil {
		return // short strings occur in the fixed messages by chance
	}
	st := status.Convert(err)
	if strings.Contains(st.Message(), secret) || strings.Contains(fmt.Sprint(st.Proto().GetDetails()), secret) {
		t.Fatalf("%s: the status %q echoes the token", what, st.Message())
	}
}

func duration(set bool, sec int64, nanos int32) *durationpb.Duration {
	if !set {
		return nil
	}
	return &durationpb.Duration{Seconds: sec, Nanos: nanos}
}

// FuzzCreateSessionRequest runs CreateSession's validation on fuzzed fields:
// accepted input reaches the store within every documented limit, rejected
// input never does and is answered with InvalidArgument and a BadRequest.
// fillers adds that many generated attributes (values fillLen bytes long) to
// reach the count and size limits.
func FuzzCreateSessionRequest(f *testing.F) {
	st := newRecordingStore(f)
	svc := st.service()
	f.Fuzz(func(t *testing.T, userID, email, userAgent, clientIP, attrKey, attrValue string, fillers uint8, fillLen uint16,
		ttlSet bool, ttlSec int64, ttlNanos int32, idleSet bool, idleSec int64, idleNanos int32) {
		attrs := map[string]string{}
		for i := range int(fillers % 40) {
			attrs[fmt.Sprintf("f%02d", i)] = strings.Repeat("v", int(fillLen%1100))
		}
		if attrKey != "" || attrValue != "" {
			attrs[attrKey] = attrValue
		}
		if len(attrs) == 0 {
			attrs = nil
		}
		req := &sessionauthv1.CreateSessionRequest{
			UserId: userID, Email: email, UserAgent: userAgent, ClientIp: clientIP, Attributes: attrs,
			Ttl: duration(ttlSet, ttlSec, ttlNanos), IdleTimeout: duration(idleSet, idleSec, idleNanos),
		}

		ok := textOK(userID, 256, true) && textOK(email, 320, false) && textOK(userAgent, 512, false)
		var canonicalIP string
		if clientIP != "" {
			// An IPv4 or IPv6 address in textual form, without a zone.
			addr, err := netip.ParseAddr(clientIP)
			ok = ok && err == nil && len(clientIP) <= 64 && addr.Zone() == ""
			canonicalIP = addr.String()
		}
		total := 0
		for k, v := range attrs {
			total += len(k) + len(v)
			ok = ok && k != "" && textOK(k, 64, true) && len(v) <= 1024
		}
		ok = ok && len(attrs) <= 32 && total <= 8192
		ttl, ttlOK := lifetimeOK(req.GetTtl(), fuzzConfig.DefaultTTL, fuzzConfig.MaxTTL)
		idle, idleOK := lifetimeOK(req.GetIdleTimeout(), fuzzConfig.DefaultIdleTimeout, fuzzConfig.MaxTTL)
		ok = ok && ttlOK && idleOK

		st.reset()
		_, err := svc.CreateSession(context.Background(), req)
		if !ok {
			checkInvalidArgument(t, "CreateSession", err)
			if st.reached() {
				t.Fatal("rejected input reached the store")
			}
			return
		}
		if code := status.Code(err); code == codes.InvalidArgument {
			t.Fatalf("input within every limit rejected: %v", err)
		}
		ns := st.created
		if ns == nil {
			t.Fatalf("accepted input did not reach the store (%v)", err)
		}
		switch {
		case ns.UserID != userID || ns.Email != email || ns.UserAgent != userAgent:
			t.Fatalf("the store got %q %q %q", ns.UserID, ns.Email, ns.UserAgent)
		case len(ns.Attributes) != len(attrs):
			t.Fatalf("the store got %d attributes, the request had %d", len(ns.Attributes), len(attrs))
		case ns.TTL != ttl || ns.TTL < time.Second || ns.TTL > fuzzConfig.MaxTTL:
			t.Fatalf("ttl %v, want %v", ns.TTL, ttl)
		case ns.IdleTimeout != idle || ns.IdleTimeout < time.Second || ns.IdleTimeout > fuzzConfig.MaxTTL:
			t.Fatalf("idle timeout %v, want %v", ns.IdleTimeout, idle)
		case ns.ClientIP != canonicalIP:
			t.Fatalf("client ip %q, want %q", ns.ClientIP, canonicalIP)
		}
		// What sessiond keeps and hands back to every validator is text it
		// could have been sent over the wire: no control characters.
		if !textOK(ns.ClientIP, 64, false) {
			t.Fatalf("client ip %q stored with control characters or bad UTF-8", ns.ClientIP)
		}
		for k, v := range ns.Attributes {
			if attrs[k] != v {
				t.Fatalf("attribute %q = %q, the request had %q", k, v, attrs[k])
			}
		}
	})
}

// FuzzTokenAndUserRequests runs the validation of every other RPC on fuzzed
// fields: ValidateSession, RotateSession and RevokeSession by token (token at
// most 1024 bytes), RevokeSession by id, ListUserSessions (user_id, page_size
// in [0, 200], page_token as returned) and RevokeUserSessions (user_id,
// except_session_id of that user). Input over a limit never reaches Redis and
// is InvalidArgument with a BadRequest; a token or id that is not well formed
// is answered without a Redis round trip; what is well formed reaches Redis
// (down here: Unavailable, never OK); no answer echoes the token.
func FuzzTokenAndUserRequests(f *testing.F) {
	st := newRecordingStore(f)
	svc := st.service()
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, token, sessionID, userID, pageToken string, pageSize int32) {
		tokenOK := token != "" && len(token) <= 1024

		for _, rpc := range []string{"ValidateSession", "RotateSession", "RevokeSession"} {
			st.reset()
			var err error
			switch rpc {
			case "ValidateSession":
				_, err = svc.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: token})
			case "RotateSession":
				_, err = svc.RotateSession(ctx, &sessionauthv1.RotateSessionRequest{Token: token})
			case "RevokeSession":
				_, err = svc.RevokeSession(ctx, &sessionauthv1.RevokeSessionRequest{Target: &sessionauthv1.RevokeSessionRequest_Token{Token: token}})
			}
			checkNoEcho(t, rpc, err, token)
			code := status.Code(err)
			switch {
			case !tokenOK:
				checkInvalidArgument(t, rpc, err)
				if st.reached() {
					t.Fatalf("%s: a rejected token reached Redis", rpc)
				}
			case !wellFormedToken(token):
				// Rejected without a Redis round trip: Unauthenticated, or a
				// revoke of nothing.
				if st.reached() || (code != codes.Unauthenticated && !(rpc == "RevokeSession" && code == codes.OK)) {
					t.Fatalf("%s of a malformed token: %v (reached Redis: %v)", rpc, err, st.reached())
				}
			default:
				if !st.reached() || code != codes.Unavailable {
					t.Fatalf("%s of a well-formed token: %v (reached Redis: %v), want Unavailable", rpc, err, st.reached())
				}
			}
		}

		st.reset()
		_, err := svc.RevokeSession(ctx, &sessionauthv1.RevokeSessionRequest{Target: &sessionauthv1.RevokeSessionRequest_SessionId{SessionId: sessionID}})
		switch {
		case sessionID == "" || !sessionIDForm.MatchString(sessionID):
			checkInvalidArgument(t, "RevokeSession by id", err)
			if st.reached() {
				t.Fatal("RevokeSession: a malformed id reached Redis")
			}
		default:
			if !st.reached() || status.Code(err) != codes.Unavailable {
				t.Fatalf("RevokeSession of a well-formed id: %v, want Unavailable", err)
			}
		}

		userOK := textOK(userID, 256, true)
		_, pageOK := pageTokenOfForm("p2:", pageToken)
		st.reset()
		_, err = svc.ListUserSessions(ctx, &sessionauthv1.ListUserSessionsRequest{UserId: userID, PageSize: pageSize, PageToken: pageToken})
		switch {
		case !userOK || pageSize < 0 || pageSize > 200 || !pageOK:
			checkInvalidArgument(t, "ListUserSessions", err)
			if st.reached() {
				t.Fatal("ListUserSessions: rejected input reached the store")
			}
		case pageToken != "":
			// A token of the right form is checked against the page key,
			// which is in Redis (down here): never taken on trust.
			if !st.reached() || status.Code(err) != codes.Unavailable || st.listed != nil {
				t.Fatalf("ListUserSessions with a page token of the right form: %v (reached: %v, listed: %q), want Unavailable before listing", err, st.reached(), st.listed)
			}
		default:
			want := int(pageSize)
			if want == 0 {
				want = 50
			}
			if got := []string{userID, strconv.Itoa(want), ""}; !slices.Equal(st.listed, got) {
				t.Fatalf("ListUserSessions: the store got %q, want %q", st.listed, got)
			}
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("ListUserSessions: %v, want Unavailable (no Redis)", err)
			}
		}

		st.reset()
		_, err = svc.RevokeUserSessions(ctx, &sessionauthv1.RevokeUserSessionsRequest{UserId: userID, ExceptSessionId: sessionID})
		switch {
		case !userOK || len(sessionID) > 64:
			checkInvalidArgument(t, "RevokeUserSessions", err)
			if st.reached() {
				t.Fatal("RevokeUserSessions: rejected input reached Redis")
			}
		case sessionID != "" && !isSessionIDOf(sessionID, userID):
			checkInvalidArgument(t, "RevokeUserSessions with another user's except_session_id", err)
			if st.reached() {
				t.Fatal("RevokeUserSessions: a malformed except_session_id reached Redis")
			}
		default:
			if !st.reached() || status.Code(err) != codes.Unavailable {
				t.Fatalf("RevokeUserSessions: %v, want Unavailable (no Redis)", err)
			}
		}
	})
}

// wellFormedToken is the documented form of a token: 72 characters of
// unpadded base64url, decoded strictly to 54 bytes of format version 1.
func wellFormedToken(s string) bool {
	raw, err := base64.RawURLEncoding.Strict().DecodeString(s)
	return err == nil && len(s) == 72 && len(raw) == 54 && raw[0] == 1
}

// methodsOK is the documented form of a list of authentication methods: at
// most 16 distinct entries of 1 to 64 bytes of ASCII letters, digits, '.',
// '_', ':' or '-'. It returns the list without duplicates.
func methodsOK(methods []string) ([]string, bool) {
	var out []string
	for _, m := range methods {
		if m == "" || len(m) > 64 || strings.IndexFunc(m, func(r rune) bool {
			return !(r < 128 && (unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("._:-", r)))
		}) >= 0 {
			return nil, false
		}
		if !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	return out, len(out) <= 16
}

// FuzzLifecycleRequests runs the validation of the lifecycle's fields on
// fuzzed input: CreateSession's auth_methods and assurance_level,
// ValidateSession's min_assurance_level and max_auth_age, RotateSession's
// step-up, UpdateSession, GetSession, ExtendSession, ListSessions and
// RevokeAllSessions. methods is a "|"-separated list. Input over a limit
// never reaches the store and is InvalidArgument with a BadRequest; input
// within every limit reaches it (Redis is down here: Unavailable).
func FuzzLifecycleRequests(f *testing.F) {
	st := newRecordingStore(f)
	svc := st.service()
	ctx := context.Background()
	valid := unknownToken
	f.Fuzz(func(t *testing.T, methods string, level int32, ageSet bool, ageSec int64, ageNanos int32,
		sessionID, attrKey, attrValue, removeKey, pageToken string, pageSize int32, beforeSec int64, beforeNanos int32) {
		var list []string
		if methods != "" {
			list = strings.Split(methods, "|")
		}
		deduped, mOK := methodsOK(list)
		levelOK := level >= 0 && level <= 3
		reaches := func(rpc string, ok bool, err error) {
			t.Helper()
			if !ok {
				checkInvalidArgument(t, rpc, err)
				if st.reached() {
					t.Fatalf("%s: rejected input reached the store", rpc)
				}
				return
			}
			if code := status.Code(err); code == codes.InvalidArgument || !st.reached() {
				t.Fatalf("%s: input within every limit: %v (reached the store: %v)", rpc, err, st.reached())
			}
		}

		st.reset()
		_, err := svc.CreateSession(ctx, &sessionauthv1.CreateSessionRequest{UserId: "u", AuthMethods: list, AssuranceLevel: level})
		reaches("CreateSession", mOK && levelOK, err)
		if mOK && levelOK && (!slices.Equal(st.created.AuthMethods, deduped) || st.created.AssuranceLevel != int(level)) {
			t.Fatalf("CreateSession: the store got methods %q level %d, want %q %d", st.created.AuthMethods, st.created.AssuranceLevel, deduped, level)
		}

		age := duration(ageSet, ageSec, ageNanos)
		ageOK := age == nil || (age.CheckValid() == nil && age.AsDuration() >= 0)
		st.reset()
		_, err = svc.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: valid, MinAssuranceLevel: level, MaxAuthAge: age})
		reaches("ValidateSession", levelOK && ageOK, err)

		st.reset()
		_, err = svc.RotateSession(ctx, &sessionauthv1.RotateSessionRequest{Token: valid, AssuranceLevel: level, AddAuthMethods: list})
		reaches("RotateSession", mOK && levelOK, err)

		idOK := sessionID != "" && sessionIDForm.MatchString(sessionID)
		set := map[string]string{}
		if attrKey != "" || attrValue != "" {
			set[attrKey] = attrValue
		}
		var remove []string
		if removeKey != "" {
			remove = []string{removeKey}
		}
		changeOK := (len(set) > 0 || len(remove) > 0) &&
			(len(set) == 0 || (attrKey != "" && textOK(attrKey, 64, true) && len(attrValue) <= 1024)) &&
			(len(remove) == 0 || textOK(removeKey, 64, true))
		st.reset()
		_, err = svc.UpdateSession(ctx, &sessionauthv1.UpdateSessionRequest{Target: &sessionauthv1.UpdateSessionRequest_SessionId{SessionId: sessionID}, SetAttributes: set, RemoveAttributes: remove})
		reaches("UpdateSession", idOK && changeOK, err)
		st.reset()
		_, err = svc.GetSession(ctx, &sessionauthv1.GetSessionRequest{SessionId: sessionID})
		reaches("GetSession", idOK, err)
		_, ttlOK := lifetimeOK(age, fuzzConfig.DefaultTTL, fuzzConfig.MaxTTL)
		st.reset()
		_, err = svc.ExtendSession(ctx, &sessionauthv1.ExtendSessionRequest{SessionId: sessionID, Ttl: age})
		reaches("ExtendSession", idOK && ttlOK, err)

		_, cursorOK := pageTokenOfForm("l2:", pageToken)
		st.reset()
		_, err = svc.ListSessions(ctx, &sessionauthv1.ListSessionsRequest{PageSize: pageSize, PageToken: pageToken})
		reaches("ListSessions", pageSize >= 0 && pageSize <= 200 && cursorOK, err)

		before := &timestamppb.Timestamp{Seconds: beforeSec, Nanos: beforeNanos}
		st.reset()
		_, err = svc.RevokeAllSessions(ctx, &sessionauthv1.RevokeAllSessionsRequest{IssuedBefore: before})
		reaches("RevokeAllSessions", before.CheckValid() == nil && !before.AsTime().After(time.Now()), err)
	})
}

// pageTokenOfForm is the documented form of a page token: unpadded
// base64url of the RPC's prefix, a cursor, "." and the base64url of a
// 16-byte MAC, at most 256 characters. It returns the cursor.
func pageTokenOfForm(prefix, tok string) (string, bool) {
	if tok == "" {
		return "", true
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(tok)
	if err != nil || len(tok) > 256 {
		return "", false
	}
	body, ok := strings.CutPrefix(string(b), prefix)
	i := strings.LastIndexByte(body, '.')
	if !ok || i <= 0 {
		return "", false
	}
	mac, err := base64.RawURLEncoding.Strict().DecodeString(body[i+1:])
	return body[:i], err == nil && len(mac) == 16
}

// listCursorForm is the documented form of a ListSessions cursor (the store's
// list.go): version, slot, SCAN cursor, the cursor after that batch, and the
// last session listed, if any.
var listCursorForm = regexp.MustCompile(`^l2\.(0|[1-9][0-9]{0,4})\.(0|[1-9][0-9]{0,19})\.(0|[1-9][0-9]{0,19})\.(` + sessionIDForm.String()[1:len(sessionIDForm.String())-1] + `)?$`)
