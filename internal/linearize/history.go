package linearize

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
)

// Kind is the RPC an operation called.
type Kind uint8

// The operations the model knows.
const (
	Create      Kind = iota // CreateSession
	Validate                // ValidateSession
	RevokeToken             // RevokeSession by token
	RevokeID                // RevokeSession by session_id
	RevokeUser              // RevokeUserSessions
	Rotate                  // RotateSession
	UpdateToken             // UpdateSession by token
	UpdateID                // UpdateSession by session_id
	Extend                  // ExtendSession
	List                    // ListUserSessions
	numKinds
)

var kindNames = [numKinds]string{"create", "validate", "revoke-token", "revoke-id", "revoke-user", "rotate", "update-token", "update-id", "extend", "list"}

func (k Kind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// writes reports whether the operation may change the state.
func (k Kind) writes() bool { return k != Validate && k != List && k != Extend }

// Op is one recorded call: what was asked, what was answered, and when.
type Op struct {
	Client int  // the client that made the call, from 0
	Kind   Kind // the RPC
	User   string
	// Target is the id of the session the call names (every kind but Create,
	// RevokeUser and List): one that a Create or Rotate of the history
	// answered, with the token it answered when the call is by token.
	Target string
	Except string // RevokeUser: except_session_id, or ""
	Value  string // Create, UpdateToken, UpdateID: the value set for attribute "v"

	Call, Return time.Time // when the call was sent, and when its answer came
	Code         codes.Code
	Message      string // the status message

	// The answer, when Code is OK.
	ID       string          // Create, Rotate: the new session's id; Validate, Update*, Extend: the session's
	GotUser  string          // the user of the session answered
	GotValue string          // attribute "v" of the session answered
	Revoked  bool            // RevokeToken, RevokeID
	Count    int             // RevokeUser
	Listed   []ListedSession // List, in the order answered
	// Unlisted are sessions of the user that the client knew when it
	// called List and that the answer left out. Each was not live at some
	// instant of the call (not created yet, or ended already): List reads
	// the user's index, then each session.
	Unlisted []string
}

// ListedSession is one session of a ListUserSessions answer.
type ListedSession struct{ ID, User string }

// History is every call a recording made.
type History []Op

// Outcome is what an answer says about the operation's effect.
type Outcome uint8

// The outcomes.
const (
	OK            Outcome = iota // it happened, with the answer recorded
	NotLive                      // UNAUTHENTICATED or NOT_FOUND: no such live session, nothing changed
	Indeterminate                // UNAVAILABLE, DEADLINE_EXCEEDED, CANCELED: may or may not have happened
	Refused                      // ABORTED, or UNAVAILABLE saying the store refused the write: nothing was written
	Unexpected                   // any other code: a fault (Require fails); checked as Indeterminate
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"ok", "not-live", "indeterminate", "refused", "unexpected"}

func (o Outcome) String() string { return outcomeNames[o] }

// Outcome classifies the op's answer.
func (op *Op) Outcome() Outcome {
	switch op.Code {
	case codes.OK:
		return OK
	case codes.Unauthenticated:
		if op.Kind == Validate || op.Kind == Rotate || op.Kind == UpdateToken {
			return NotLive
		}
	case codes.NotFound:
		if op.Kind == UpdateID || op.Kind == Extend {
			return NotLive
		}
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		if op.Kind.writes() && strings.HasPrefix(op.Message, refusedMessage) {
			// Redis refused the transaction (EXECABORT: out of memory,
			// read-only): sessiond says nothing was written, and the
			// model holds it to that.
			return Refused
		}
		return Indeterminate
	case codes.Aborted:
		if op.Kind.writes() {
			return Refused
		}
	}
	return Unexpected
}

// refusedMessage starts sessiond's UNAVAILABLE for a write that Redis
// refused (server/errors.go), which goes on "nothing was written".
const refusedMessage = "the session store refuses writes"

// answeredBySessiond reports whether an Unavailable answer came from
// sessiond's own error mapping (server/errors.go), after the store call
// returned, rather than from the transport. Only then does the call's
// answer bound when a session it created drew its id.
func (op *Op) answeredBySessiond() bool {
	if op.Code != codes.Unavailable {
		return false
	}
	for _, p := range []string{"session store unavailable", "session store did not answer in time", "the write reached the Redis master"} {
		if strings.HasPrefix(op.Message, p) {
			return true
		}
	}
	return false
}

// slackMillis widens the window in which a lost create drew its id, for the
// granularity of the UUIDv7's millisecond and of the recorder's clock.
const slackMillis = 2

// idMillis is the creation millisecond a session id's UUIDv7 carries.
func idMillis(id string) (int64, bool) {
	_, u, ok := strings.Cut(id, "_")
	if !ok {
		return 0, false
	}
	parsed, err := uuid.Parse(u)
	if err != nil || parsed.Version() != 7 {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(parsed[:8]) >> 16), true
}

// idOrder compares session ids as sessiond orders a user's sessions: by
// UUID (store.cmpMember), which for a UUIDv7 is creation order.
func idOrder(a, b string) int {
	_, ua, _ := strings.Cut(a, "_")
	_, ub, _ := strings.Cut(b, "_")
	return cmp.Compare(ua, ub)
}

// input is a porcupine operation's input: positions are in the user's
// universe (its known session ids, oldest first).
type input struct {
	op     *Op
	kind   Kind
	user   string
	target int // the named session, -1 for none
	except int // RevokeUser: the session kept, -1 for none
	// omitted: this Validate-like check stands for a List that left target
	// out (not live at some instant of the call).
	omitted bool
	value   string // Create, Update*: the value set
	// phantom: a lost Create or Rotate's session, if it happened.
	phantom gapRange
}

// output is a porcupine operation's output.
type output struct {
	outcome Outcome
	pos     int    // Create, Rotate: the new session; Validate, Update*, Extend: the session answered
	value   string // "v" of the session answered
	revoked bool
	count   int
	listed  []int // List: the known sessions listed
	unknown []int // List: the gaps of the listed ids no client knows
	// bad says why no state can explain the answer (another user's
	// session, a list out of order, an id issued twice); "" if none.
	bad string
}

// universe is one user's known session ids (answered by a Create or Rotate),
// sorted in sessiond's order.
type universe struct {
	ids    []string
	pos    map[string]int
	millis []int64 // creation millisecond of each id
}

func (u *universe) gap(id string) int {
	i, _ := slices.BinarySearchFunc(u.ids, id, idOrder)
	return i
}

// window places a session whose id was drawn in [lo, hi] (milliseconds) in
// the gaps between known ids: after those certainly older, before those
// certainly newer.
func (u *universe) window(lo, hi int64) gapRange {
	a, _ := slices.BinarySearch(u.millis, lo)   // ids with millis < lo
	b, _ := slices.BinarySearch(u.millis, hi+1) // ids with millis <= hi
	return gapRange{a, b}
}

// prepared is a history turned into porcupine operations.
type prepared struct {
	ops       []porcupine.Operation
	base      time.Time // time 0 of the operations
	dropped   int       // calls left out: failed reads, aborted writes
	universes map[string]*universe
}

// prepare turns h into porcupine operations: positions in each user's
// universe, open-ended answer times for indeterminate writes, and failed
// reads and aborted writes left out. It fails only for a history that is
// not one (a call naming a session no answer gave).
func prepare(h History) (*prepared, error) {
	p := &prepared{universes: map[string]*universe{}}
	if len(h) == 0 {
		return p, nil
	}
	p.base = h[0].Call
	var last time.Time
	issued := map[string]int{} // id -> index of the op that first answered it
	bad := map[int]string{}
	for i := range h {
		op := &h[i]
		if op.Call.Before(p.base) {
			p.base = op.Call
		}
		if op.Return.After(last) {
			last = op.Return
		}
		if op.Return.Before(op.Call) {
			return nil, fmt.Errorf("op %d (%s of %s): answered before it was called", i, op.Kind, op.User)
		}
		if (op.Kind == Create || op.Kind == Rotate) && op.Outcome() == OK {
			if _, ok := idMillis(op.ID); !ok {
				bad[i] = fmt.Sprintf("answered a malformed session id %q", op.ID)
				continue
			}
			if j, dup := issued[op.ID]; dup {
				bad[i] = fmt.Sprintf("answered session id %s, which op %d was answered already", op.ID, j)
				continue
			}
			issued[op.ID] = i
			u := p.universes[op.User]
			if u == nil {
				u = &universe{pos: map[string]int{}}
				p.universes[op.User] = u
			}
			u.ids = append(u.ids, op.ID)
		}
	}
	for _, u := range p.universes {
		slices.SortFunc(u.ids, idOrder)
		for i, id := range u.ids {
			u.pos[id] = i
			ms, _ := idMillis(id)
			u.millis = append(u.millis, ms)
		}
	}
	openEnd := last.Sub(p.base).Nanoseconds() + 1
	// ended is, per session, the earliest answer that showed it ended (not
	// live, revoked, rotated away): a list that starts after it leaves the
	// session out as a matter of course, and its omission is not checked.
	ended := map[string]time.Time{}
	for i := range h {
		op := &h[i]
		o := op.Outcome()
		if o == NotLive || o == OK && (op.Kind == RevokeToken || op.Kind == RevokeID || op.Kind == Rotate) {
			if t, ok := ended[op.Target]; !ok || op.Return.Before(t) {
				ended[op.Target] = op.Return
			}
		}
	}
	for i := range h {
		op := &h[i]
		out := op.Outcome()
		if out == Refused || (out == Indeterminate || out == Unexpected) && !op.Kind.writes() {
			p.dropped++
			continue
		}
		u := p.universes[op.User]
		if u == nil {
			u = &universe{pos: map[string]int{}}
			p.universes[op.User] = u
		}
		in := &input{op: op, kind: op.Kind, user: op.User, target: -1, except: -1, value: op.Value}
		o := &output{outcome: out, pos: -1, value: op.GotValue, revoked: op.Revoked, count: op.Count, bad: bad[i]}
		if op.Kind != Create && op.Kind != RevokeUser && op.Kind != List {
			t, ok := u.pos[op.Target]
			if !ok {
				return nil, fmt.Errorf("op %d (%s of %s) names session %q, which no create or rotate of the history answered", i, op.Kind, op.User, op.Target)
			}
			in.target = t
		}
		if op.Except != "" {
			t, ok := u.pos[op.Except]
			if !ok {
				return nil, fmt.Errorf("op %d (%s of %s) keeps session %q, which no create or rotate of the history answered", i, op.Kind, op.User, op.Except)
			}
			in.except = t
		}
		if out == OK {
			p.answer(op, u, o)
		}
		if (op.Kind == Create || op.Kind == Rotate) && (out == Indeterminate || out == Unexpected) {
			lo, hi := op.Call.UnixMilli()-slackMillis, int64(math.MaxInt64-1)
			if op.answeredBySessiond() {
				hi = op.Return.UnixMilli() + slackMillis
			}
			in.phantom = u.window(lo, hi)
		}
		ret := op.Return.Sub(p.base).Nanoseconds()
		if out == Indeterminate || out == Unexpected {
			ret = openEnd
		}
		if op.Kind == List && out == OK && o.bad == "" {
			// Each session left out was not live at some instant of the
			// call: a check of its own, placed independently.
			for _, id := range op.Unlisted {
				if t, ok := ended[id]; ok && t.Before(op.Call) {
					continue
				}
				if pos, ok := u.pos[id]; ok {
					p.ops = append(p.ops, porcupine.Operation{
						ClientId: op.Client,
						Input:    &input{op: op, kind: Validate, user: op.User, target: pos, except: -1, omitted: true},
						Call:     op.Call.Sub(p.base).Nanoseconds(),
						Output:   &output{outcome: NotLive, pos: -1},
						Return:   ret,
						Metadata: op,
					})
				}
			}
		}
		p.ops = append(p.ops, porcupine.Operation{
			ClientId: op.Client,
			Input:    in,
			Call:     op.Call.Sub(p.base).Nanoseconds(),
			Output:   o,
			Return:   ret,
			Metadata: op,
		})
	}
	return p, nil
}

// answer fills o from op's OK answer, and sets o.bad when no state can
// explain it.
func (p *prepared) answer(op *Op, u *universe, o *output) {
	switch op.Kind {
	case Create, Rotate, Validate, UpdateToken, UpdateID, Extend:
		if pos, ok := u.pos[op.ID]; ok {
			o.pos = pos
		} else if o.bad == "" {
			o.bad = fmt.Sprintf("answered session %s, which is not the one named", op.ID)
		}
		if op.GotUser != op.User && o.bad == "" {
			o.bad = fmt.Sprintf("answered a session of user %q", op.GotUser)
		}
	case List:
		for i, s := range op.Listed {
			switch {
			case s.User != op.User:
				o.bad = fmt.Sprintf("listed session %s of user %q", s.ID, s.User)
			case i > 0 && idOrder(op.Listed[i-1].ID, s.ID) <= 0:
				o.bad = fmt.Sprintf("listed %s after %s: not newest first", s.ID, op.Listed[i-1].ID)
			}
			if o.bad != "" {
				return
			}
			if pos, ok := u.pos[s.ID]; ok {
				o.listed = append(o.listed, pos)
			} else {
				o.unknown = append(o.unknown, u.gap(s.ID))
			}
		}
	}
}
