package linearize

import (
	"encoding/binary"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
)

// t0 is the start of every hand-built history.
var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// at is t0 + ms milliseconds.
func at(ms float64) time.Time { return t0.Add(time.Duration(ms * float64(time.Millisecond))) }

// sid is a session id of user "alice" whose UUIDv7 was drawn ms after t0
// (seq orders ids drawn in the same millisecond).
func sid(ms int64, seq uint16) string {
	var u uuid.UUID
	binary.BigEndian.PutUint64(u[:8], uint64(at(float64(ms)).UnixMilli())<<16)
	u[6] = 0x70 | byte(seq>>8&0x0f)
	u[7] = byte(seq)
	u[8] = 0x80
	u[15] = 1
	return "2bd806c9_" + u.String()
}

// hist builds hand-made histories for user alice.
type hist struct{ h History }

func (b *hist) add(op Op, call, ret float64) *Op {
	op.User, op.Call, op.Return = "alice", at(call), at(ret)
	if op.GotUser == "" && op.Code == codes.OK {
		op.GotUser = "alice"
	}
	b.h = append(b.h, op)
	return &b.h[len(b.h)-1]
}

func (b *hist) create(id, value string, call, ret float64) {
	b.add(Op{Kind: Create, Value: value, ID: id, GotValue: value}, call, ret)
}

// lost is a create whose answer sessiond gave as UNAVAILABLE.
func (b *hist) lost(value string, call, ret float64) {
	b.add(Op{Kind: Create, Value: value, Code: codes.Unavailable, Message: "session store unavailable; retry later"}, call, ret)
}

func (b *hist) validate(id, value string, code codes.Code, call, ret float64) {
	op := Op{Kind: Validate, Target: id, Code: code}
	if code == codes.OK {
		op.ID, op.GotValue = id, value
	}
	b.add(op, call, ret)
}

func (b *hist) revoke(id string, revoked bool, code codes.Code, call, ret float64) {
	b.add(Op{Kind: RevokeToken, Target: id, Revoked: revoked, Code: code}, call, ret)
}

func (b *hist) rotate(id, next, value string, call, ret float64) {
	b.add(Op{Kind: Rotate, Target: id, ID: next, GotValue: value}, call, ret)
}

func (b *hist) revokeUser(except string, count int, call, ret float64) {
	b.add(Op{Kind: RevokeUser, Except: except, Count: count}, call, ret)
}

func (b *hist) list(call, ret float64, ids ...string) *Op {
	op := Op{Kind: List}
	for _, id := range ids {
		op.Listed = append(op.Listed, ListedSession{ID: id, User: "alice"})
	}
	return b.add(op, call, ret)
}

func verdict(t *testing.T, h History, limit int) porcupine.CheckResult {
	t.Helper()
	r, err := Check(h, Config{Cap: limit, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return r.Verdict
}

// fakeTB records what Require reports instead of failing the test.
type fakeTB struct {
	testing.TB
	mu     sync.Mutex
	errors []string
}

func (f *fakeTB) Helper()             {}
func (f *fakeTB) Logf(string, ...any) {}
func (f *fakeTB) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errors = append(f.errors, fmt.Sprintf(format, args...))
}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.Errorf(format, args...)
	f.TB.Fatalf("unexpected Fatalf: "+format, args...)
}

// requireViolation feeds h to Require, expects it to fail naming the
// visualisation, and checks that the file is there.
func requireViolation(t *testing.T, h History, limit int) {
	t.Helper()
	dir := t.TempDir()
	f := &fakeTB{TB: t}
	r := Require(f, h, Config{Cap: limit, Timeout: 10 * time.Second, OutputDir: dir})
	if r.Verdict != porcupine.Illegal {
		t.Fatalf("verdict %v, want Illegal", r.Verdict)
	}
	if len(f.errors) != 1 || !strings.Contains(f.errors[0], "VIOLATION") {
		t.Fatalf("Require reported %q, want one violation", f.errors)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 {
		t.Fatalf("output directory holds %v (%v), want the visualisation", entries, err)
	}
	path := dir + "/" + entries[0].Name()
	if !strings.Contains(f.errors[0], path) {
		t.Errorf("the failure %q does not name %s", f.errors[0], path)
	}
	html, err := os.ReadFile(path)
	if err != nil || !strings.Contains(string(html), "<html") || !strings.Contains(string(html), "validate(s0)") {
		t.Errorf("visualisation %s: %d bytes, %v: not porcupine's HTML with the history", path, len(html), err)
	}
	if ex := r.Excerpt(10); len(ex) == 0 || !strings.Contains(ex[len(ex)-1], "validate(s0) → OK") {
		t.Errorf("excerpt %q: want it to end with the validation that no order places", ex)
	}
}

// TestCheckerFindsValidateAfterRevoke is the checker failing on purpose: a
// validation that starts after a revocation was acknowledged answers OK.
func TestCheckerFindsValidateAfterRevoke(t *testing.T) {
	t.Parallel()
	s := sid(1, 0)
	var b hist
	b.create(s, "c", 0, 10)
	b.validate(s, "c", codes.OK, 12, 14)
	b.revoke(s, true, codes.OK, 20, 30)
	b.validate(s, "c", codes.OK, 40, 50)
	requireViolation(t, b.h, 3)

	// The same validation, concurrent with the revoke: either order is fine.
	b.h[3].Call = at(25)
	if v := verdict(t, b.h, 3); v != porcupine.Ok {
		t.Errorf("a validation concurrent with the revoke: %v, want Ok", v)
	}
}

// TestCheckerFindsRotatedTokenValidating: a token that RotateSession replaced
// validates afterwards.
func TestCheckerFindsRotatedTokenValidating(t *testing.T) {
	t.Parallel()
	s0, s1 := sid(1, 0), sid(21, 0)
	var b hist
	b.create(s0, "c", 0, 10)
	b.rotate(s0, s1, "c", 20, 30)
	b.validate(s1, "c", codes.OK, 35, 38)
	b.validate(s0, "c", codes.OK, 40, 50)
	requireViolation(t, b.h, 3)

	b.h[3].Code, b.h[3].ID, b.h[3].GotValue, b.h[3].GotUser = codes.Unauthenticated, "", "", ""
	if v := verdict(t, b.h, 3); v != porcupine.Ok {
		t.Errorf("the rotated-away token UNAUTHENTICATED: %v, want Ok", v)
	}
}

func TestModel(t *testing.T) {
	t.Parallel()
	a, bb, c, d := sid(1, 0), sid(11, 0), sid(21, 0), sid(31, 0)
	for _, tc := range []struct {
		name  string
		limit int
		build func(b *hist)
		want  porcupine.CheckResult
	}{
		{"evicts the oldest", 2, func(b *hist) {
			b.create(a, "a", 0, 5)
			b.create(bb, "b", 10, 15)
			b.create(c, "c", 20, 25)
			b.validate(a, "", codes.Unauthenticated, 30, 31)
			b.validate(bb, "b", codes.OK, 32, 33)
		}, porcupine.Ok},
		{"an evicted session validates", 2, func(b *hist) {
			b.create(a, "a", 0, 5)
			b.create(bb, "b", 10, 15)
			b.create(c, "c", 20, 25)
			b.validate(a, "a", codes.OK, 30, 31)
		}, porcupine.Illegal},
		{"the newest evicted instead of the oldest", 2, func(b *hist) {
			b.create(a, "a", 0, 5)
			b.create(bb, "b", 10, 15)
			b.create(c, "c", 20, 25)
			b.validate(bb, "", codes.Unauthenticated, 30, 31)
		}, porcupine.Illegal},
		// The id is drawn before the transaction: a create that commits
		// second may carry the older id, and then evicts the one that
		// committed first.
		{"eviction by id order, not commit order", 1, func(b *hist) {
			b.create(sid(2, 0), "a", 0, 30) // older id, committed last
			b.create(sid(8, 0), "b", 1, 10) // newer id, committed first
			b.validate(sid(2, 0), "a", codes.OK, 40, 41)
			b.validate(sid(8, 0), "", codes.Unauthenticated, 42, 43)
		}, porcupine.Ok},
		{"a revoke that may have happened took effect late", 3, func(b *hist) {
			b.create(a, "a", 0, 5)
			b.revoke(a, false, codes.Unavailable, 10, 11)
			b.validate(a, "a", codes.OK, 20, 21)
			b.validate(a, "", codes.Unauthenticated, 30, 31)
		}, porcupine.Ok},
		{"and then never comes back", 3, func(b *hist) {
			b.create(a, "a", 0, 5)
			b.revoke(a, false, codes.Unavailable, 10, 11)
			b.validate(a, "", codes.Unauthenticated, 20, 21)
			b.validate(a, "a", codes.OK, 30, 31)
		}, porcupine.Illegal},
		{"revoked=false for a live session", 3, func(b *hist) {
			b.create(a, "a", 0, 5)
			b.revoke(a, false, codes.OK, 10, 11)
		}, porcupine.Illegal},
		{"revoke-user counts a lost create that happened", 3, func(b *hist) {
			b.create(a, "a", 0, 5)
			b.lost("x", 10, 11)
			b.revokeUser("", 2, 20, 21)
		}, porcupine.Ok},
		{"or did not", 3, func(b *hist) {
			b.create(a, "a", 0, 5)
			b.lost("x", 10, 11)
			b.revokeUser("", 1, 20, 21)
		}, porcupine.Ok},
		{"but no more", 3, func(b *hist) {
			b.create(a, "a", 0, 5)
			b.lost("x", 10, 11)
			b.revokeUser("", 3, 20, 21)
		}, porcupine.Illegal},
		{"revoke-user keeps except_session_id", 3, func(b *hist) {
			b.create(a, "a", 0, 5)
			b.create(bb, "b", 10, 15)
			b.revokeUser(a, 1, 20, 21)
			b.validate(a, "a", codes.OK, 30, 31)
			b.validate(bb, "", codes.Unauthenticated, 32, 33)
		}, porcupine.Ok},
		// A lost create that happened takes a cap slot: the next create
		// evicts the oldest known session (the lost one is newer).
		{"a lost create takes a cap slot", 2, func(b *hist) {
			b.create(a, "a", 0, 5)
			b.lost("x", 10, 11)
			b.create(c, "c", 20, 25)
			b.validate(a, "", codes.Unauthenticated, 30, 31)
			b.revokeUser("", 2, 40, 41)
		}, porcupine.Ok},
		{"so the oldest cannot stay when it happened", 2, func(b *hist) {
			b.create(a, "a", 0, 5)
			b.lost("x", 10, 11)
			b.create(c, "c", 20, 25)
			b.validate(a, "a", codes.OK, 30, 31)
			b.revokeUser("", 3, 40, 41)
		}, porcupine.Illegal},
		{"a lost create, listed", 3, func(b *hist) {
			b.create(a, "a", 0, 5)
			b.lost("x", 10, 11)
			b.list(20, 21, sid(10, 5), a)
		}, porcupine.Ok},
		{"an unknown session listed", 3, func(b *hist) {
			b.create(a, "a", 0, 5)
			b.list(20, 21, sid(10, 5), a)
		}, porcupine.Illegal},
		{"a listed session that was revoked", 3, func(b *hist) {
			b.create(a, "a", 0, 5)
			b.create(bb, "b", 10, 15)
			b.revoke(a, true, codes.OK, 20, 21)
			b.list(30, 31, bb, a)
		}, porcupine.Illegal},
		{"a list leaves out a live session", 3, func(b *hist) {
			b.create(a, "a", 0, 5)
			b.create(bb, "b", 10, 15)
			b.list(30, 31, bb).Unlisted = []string{a}
		}, porcupine.Illegal},
		{"a list leaves out a session revoked during it", 3, func(b *hist) {
			b.create(a, "a", 0, 5)
			b.create(bb, "b", 10, 15)
			b.revoke(a, true, codes.OK, 31, 32)
			b.list(30, 40, bb).Unlisted = []string{a}
		}, porcupine.Ok},
		{"or created during it", 3, func(b *hist) {
			b.create(a, "a", 0, 5)
			b.create(bb, "b", 31, 32)
			b.list(30, 40, a).Unlisted = []string{bb}
		}, porcupine.Ok},
		{"a list not newest first", 3, func(b *hist) {
			b.create(a, "a", 0, 5)
			b.create(bb, "b", 10, 15)
			b.list(30, 31, a, bb)
		}, porcupine.Illegal},
		{"an update seen by a validation", 3, func(b *hist) {
			b.create(a, "a", 0, 5)
			b.add(Op{Kind: UpdateID, Target: a, Value: "u", ID: a, GotValue: "u"}, 10, 11)
			b.validate(a, "u", codes.OK, 20, 21)
		}, porcupine.Ok},
		{"an update lost after it was acknowledged", 3, func(b *hist) {
			b.create(a, "a", 0, 5)
			b.add(Op{Kind: UpdateID, Target: a, Value: "u", ID: a, GotValue: "u"}, 10, 11)
			b.validate(a, "a", codes.OK, 20, 21)
		}, porcupine.Illegal},
		{"a rotation copies the attribute, a lost one may have happened", 3, func(b *hist) {
			b.create(a, "a", 0, 5)
			b.rotate(a, bb, "a", 10, 15)
			b.validate(bb, "a", codes.OK, 20, 21)
			b.add(Op{Kind: Rotate, Target: bb, Code: codes.DeadlineExceeded}, 30, 31)
			b.validate(bb, "", codes.Unauthenticated, 40, 41)
			b.revokeUser("", 1, 50, 51) // the rotation's new session
		}, porcupine.Ok},
		{"an aborted write changed nothing", 3, func(b *hist) {
			b.create(a, "a", 0, 5)
			b.revoke(a, false, codes.Aborted, 10, 11)
			b.create(d, "d", 12, 13)
			b.validate(a, "a", codes.OK, 20, 21)
		}, porcupine.Ok},
		{"a refused write that happened after all", 3, func(b *hist) {
			b.create(a, "a", 0, 5)
			b.add(Op{Kind: RevokeToken, Target: a, Code: codes.Unavailable,
				Message: "the session store refuses writes (read-only replica); nothing was written: retry later, and tell its operator"}, 10, 11)
			b.validate(a, "", codes.Unauthenticated, 20, 21)
		}, porcupine.Illegal},
		{"an unavailable write that happened", 3, func(b *hist) {
			b.create(a, "a", 0, 5)
			b.add(Op{Kind: RevokeToken, Target: a, Code: codes.Unavailable,
				Message: "the write reached the Redis master but not enough of its replicas in time"}, 10, 11)
			b.validate(a, "", codes.Unauthenticated, 20, 21)
		}, porcupine.Ok},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var b hist
			tc.build(&b)
			if got := verdict(t, b.h, tc.limit); got != tc.want {
				t.Errorf("verdict %v, want %v", got, tc.want)
			}
		})
	}
}

// TestMalformedHistory: a call naming a session that no answer gave is not
// a history.
func TestMalformedHistory(t *testing.T) {
	t.Parallel()
	var b hist
	b.validate(sid(1, 0), "", codes.Unauthenticated, 0, 1)
	if _, err := Check(b.h, Config{Cap: 3}); err == nil {
		t.Error("Check accepted a validation of a token no create answered")
	}
}

// TestUnknownIsAFailure: a check that does not finish in time fails the
// test, saying so, with the visualisation of what was checked.
func TestUnknownIsAFailure(t *testing.T) {
	t.Parallel()
	s := sid(1, 0)
	var b hist
	b.create(s, "c", 0, 10)
	// 24 concurrent updates that may or may not have happened, and a value
	// none of them set: every subset of them is tried before the verdict.
	for i := range 24 {
		b.add(Op{Kind: UpdateID, Target: s, Value: fmt.Sprintf("u%d", i), Code: codes.Unavailable}, 20, 21)
	}
	b.validate(s, "never-set", codes.OK, 30, 31)
	dir := t.TempDir()
	f := &fakeTB{TB: t}
	r := Require(f, b.h, Config{Cap: 3, Timeout: 50 * time.Millisecond, OutputDir: dir})
	if r.Verdict != porcupine.Unknown {
		t.Fatalf("verdict %v, want Unknown (the check cannot finish in 50ms)", r.Verdict)
	}
	if len(f.errors) != 1 || !strings.Contains(f.errors[0], "not a pass") || !strings.Contains(f.errors[0], dir) {
		t.Errorf("Require reported %q, want a failure saying the check did not finish, naming the visualisation", f.errors)
	}
}
