package linearize

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
)

// Attribute is the session attribute the recorder's clients set and the
// model follows.
const Attribute = "v"

// Workload is what a Recorder's clients do. The zero value of each field
// means the default written on it.
type Workload struct {
	// Users are the users the clients act for, each call for one picked at
	// random. Required.
	Users []string
	// Clients is the number of concurrent clients; 0 means 16.
	Clients int
	// MaxCalls bounds each client's calls; 0 means 1000.
	MaxCalls int
	// MaxTime bounds each client's run; 0 means 30s.
	MaxTime time.Duration
	// CallTimeout is each call's deadline; 0 means 10s. Keep it longer than
	// sessiond's request timeout, so that a slow store shows as sessiond's
	// UNAVAILABLE.
	CallTimeout time.Duration
	// Backoff is a client's pause after an indeterminate answer, as a
	// caller backing off would; 0 means 100ms.
	Backoff time.Duration
	// Think is the longest pause between a client's calls (each pause is
	// random, up to it); 0 means 4ms.
	Think time.Duration
	// ExtendTTL is the lifetime ExtendSession sets; 0 means 2h. It must be
	// longer than the run, and within sessiond's --max-ttl.
	ExtendTTL time.Duration
}

func (w Workload) withDefaults() Workload {
	if w.Clients <= 0 {
		w.Clients = 16
	}
	if w.MaxCalls <= 0 {
		w.MaxCalls = 1000
	}
	if w.MaxTime <= 0 {
		w.MaxTime = 30 * time.Second
	}
	if w.CallTimeout <= 0 {
		w.CallTimeout = 10 * time.Second
	}
	if w.Backoff <= 0 {
		w.Backoff = 100 * time.Millisecond
	}
	if w.Think <= 0 {
		w.Think = 4 * time.Millisecond
	}
	if w.ExtendTTL <= 0 {
		w.ExtendTTL = 2 * time.Hour
	}
	return w
}

// The mix of calls, in percent, when the user has sessions the clients know
// (otherwise the call is a create).
var mix = [numKinds]int{
	Create: 22, Validate: 26, RevokeToken: 6, RevokeID: 4, RevokeUser: 3,
	Rotate: 10, UpdateToken: 5, UpdateID: 5, Extend: 4, List: 15,
}

// poolSize is how many of a user's newest sessions the clients remember and
// pick from; older ones are forgotten (a cap of a few sessions has ended
// them long since).
const poolSize = 6

// Recorder runs a Workload against a sessiond and records its history.
type Recorder struct {
	c    sessionauthv1.SessionAuthorityClient
	w    Workload
	stop chan struct{}
	once sync.Once
	wg   sync.WaitGroup
	ops  [][]Op // per client

	pools map[string]*pool
	// Per user, the call time (Unix ns) of the latest call answered
	// (OK or not live) and of the latest write acknowledged.
	answered, acked map[string]*atomic.Int64
	// Calls answered and writes acknowledged so far.
	nAnswered, nAcked atomic.Int64
}

// pool is the sessions of one user that the clients know, newest last.
type pool struct {
	mu       sync.Mutex
	sessions []known
}

type known struct{ id, token string }

func (p *pool) add(k known) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sessions = append(p.sessions, k)
	if len(p.sessions) > poolSize {
		p.sessions = slices.Delete(p.sessions, 0, len(p.sessions)-poolSize)
	}
}

func (p *pool) ids() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, len(p.sessions))
	for i, k := range p.sessions {
		out[i] = k.id
	}
	return out
}

func (p *pool) pick(rng *rand.Rand) (known, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.sessions) == 0 {
		return known{}, false
	}
	// The newest half more often: they are more likely still live.
	if n := len(p.sessions); n > 2 && rng.IntN(10) < 6 {
		return p.sessions[n/2+rng.IntN(n-n/2)], true
	}
	return p.sessions[rng.IntN(len(p.sessions))], true
}

// Record starts w's clients against c. Stop them with Stop, which returns
// the history; they stop by themselves after w.MaxCalls calls or w.MaxTime.
func Record(c sessionauthv1.SessionAuthorityClient, w Workload) *Recorder {
	w = w.withDefaults()
	r := &Recorder{c: c, w: w, stop: make(chan struct{}), ops: make([][]Op, w.Clients),
		pools: map[string]*pool{}, answered: map[string]*atomic.Int64{}, acked: map[string]*atomic.Int64{}}
	for _, u := range w.Users {
		r.pools[u], r.answered[u], r.acked[u] = &pool{}, &atomic.Int64{}, &atomic.Int64{}
	}
	seed := uint64(time.Now().UnixNano())
	for i := range w.Clients {
		rng := rand.New(rand.NewPCG(seed, uint64(i)))
		r.wg.Go(func() { r.run(i, rng) })
	}
	return r
}

// Stop ends the clients (each finishes the call it is making), waits for
// them and returns the history. Stopping twice returns it again.
func (r *Recorder) Stop() History {
	r.once.Do(func() { close(r.stop) })
	r.wg.Wait()
	var h History
	for _, ops := range r.ops {
		h = append(h, ops...)
	}
	slices.SortStableFunc(h, func(a, b Op) int { return a.Call.Compare(b.Call) })
	return h
}

// Wait waits until the clients have stopped by themselves (Workload's
// MaxCalls or MaxTime), then returns the history as Stop does.
func (r *Recorder) Wait() History {
	r.wg.Wait()
	return r.Stop()
}

// Answered is the time the latest call for user that sessiond answered (OK,
// or no such live session) was sent; zero if none.
func (r *Recorder) Answered(user string) time.Time { return unixTime(r.answered[user]) }

// Acknowledged is the time the latest write for user that sessiond
// acknowledged was sent; zero if none.
func (r *Recorder) Acknowledged(user string) time.Time { return unixTime(r.acked[user]) }

// Progress is how many calls sessiond has answered so far (OK, or no such
// live session), and how many of them were writes it acknowledged.
func (r *Recorder) Progress() (answered, acknowledged int64) {
	return r.nAnswered.Load(), r.nAcked.Load()
}

func unixTime(v *atomic.Int64) time.Time {
	if v == nil || v.Load() == 0 {
		return time.Time{}
	}
	return time.Unix(0, v.Load())
}

func (r *Recorder) stopped() bool {
	select {
	case <-r.stop:
		return true
	default:
		return false
	}
}

// sleep pauses d, or less if the recorder stops.
func (r *Recorder) sleep(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-r.stop:
	case <-t.C:
	}
}

func (r *Recorder) run(client int, rng *rand.Rand) {
	deadline := time.Now().Add(r.w.MaxTime)
	for n := range r.w.MaxCalls {
		if r.stopped() || time.Now().After(deadline) {
			return
		}
		user := r.w.Users[rng.IntN(len(r.w.Users))]
		op := r.call(client, n, rng, user)
		r.ops[client] = append(r.ops[client], op)
		switch op.Outcome() {
		case OK, NotLive:
			setMax(r.answered[user], op.Call.UnixNano())
			r.nAnswered.Add(1)
			if op.Kind.writes() && op.Outcome() == OK {
				setMax(r.acked[user], op.Call.UnixNano())
				r.nAcked.Add(1)
			}
			r.sleep(time.Duration(rng.Int64N(int64(r.w.Think) + 1)))
		default:
			r.sleep(r.w.Backoff/2 + time.Duration(rng.Int64N(int64(r.w.Backoff))))
		}
	}
}

func setMax(v *atomic.Int64, x int64) {
	for {
		old := v.Load()
		if x <= old || v.CompareAndSwap(old, x) {
			return
		}
	}
}

// pickKind draws a kind from mix.
func pickKind(rng *rand.Rand) Kind {
	x := rng.IntN(100)
	for k := range numKinds {
		if x < mix[k] {
			return k
		}
		x -= mix[k]
	}
	return Validate
}

// call makes one call for user and records it.
func (r *Recorder) call(client, n int, rng *rand.Rand, user string) Op {
	p := r.pools[user]
	kind := pickKind(rng)
	target, ok := p.pick(rng)
	if !ok {
		kind = Create
	}
	op := Op{Client: client, Kind: kind, User: user}
	if kind != Create && kind != RevokeUser && kind != List {
		op.Target = target.id
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.w.CallTimeout)
	defer cancel()
	session := func(s *sessionauthv1.Session) {
		op.ID, op.GotUser, op.GotValue = s.GetSessionId(), s.GetUserId(), s.GetAttributes()[Attribute]
	}
	op.Call = time.Now()
	var err error
	switch kind {
	case Create:
		op.Value = fmt.Sprintf("c%d.%d", client, n)
		var resp *sessionauthv1.CreateSessionResponse
		resp, err = r.c.CreateSession(ctx, &sessionauthv1.CreateSessionRequest{
			UserId: user, UserAgent: "linearize", Attributes: map[string]string{Attribute: op.Value},
		})
		if err == nil {
			session(resp.GetSession())
			defer p.add(known{id: resp.GetSession().GetSessionId(), token: resp.GetToken()})
		}
	case Validate:
		var resp *sessionauthv1.ValidateSessionResponse
		resp, err = r.c.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: target.token})
		session(resp.GetSession())
	case RevokeToken, RevokeID:
		req := &sessionauthv1.RevokeSessionRequest{Target: &sessionauthv1.RevokeSessionRequest_Token{Token: target.token}}
		if kind == RevokeID {
			req.Target = &sessionauthv1.RevokeSessionRequest_SessionId{SessionId: target.id}
		}
		var resp *sessionauthv1.RevokeSessionResponse
		resp, err = r.c.RevokeSession(ctx, req)
		op.Revoked = resp.GetRevoked()
	case RevokeUser:
		if ok && rng.IntN(2) == 0 {
			op.Except = target.id
		}
		var resp *sessionauthv1.RevokeUserSessionsResponse
		resp, err = r.c.RevokeUserSessions(ctx, &sessionauthv1.RevokeUserSessionsRequest{UserId: user, ExceptSessionId: op.Except})
		op.Count = int(resp.GetRevokedCount())
	case Rotate:
		var resp *sessionauthv1.RotateSessionResponse
		resp, err = r.c.RotateSession(ctx, &sessionauthv1.RotateSessionRequest{Token: target.token})
		if err == nil {
			session(resp.GetSession())
			defer p.add(known{id: resp.GetSession().GetSessionId(), token: resp.GetToken()})
		}
	case UpdateToken, UpdateID:
		op.Value = fmt.Sprintf("u%d.%d", client, n)
		req := &sessionauthv1.UpdateSessionRequest{
			Target:        &sessionauthv1.UpdateSessionRequest_Token{Token: target.token},
			SetAttributes: map[string]string{Attribute: op.Value},
		}
		if kind == UpdateID {
			req.Target = &sessionauthv1.UpdateSessionRequest_SessionId{SessionId: target.id}
		}
		var resp *sessionauthv1.UpdateSessionResponse
		resp, err = r.c.UpdateSession(ctx, req)
		session(resp.GetSession())
	case Extend:
		var resp *sessionauthv1.ExtendSessionResponse
		resp, err = r.c.ExtendSession(ctx, &sessionauthv1.ExtendSessionRequest{SessionId: target.id, Ttl: durationpb.New(r.w.ExtendTTL)})
		session(resp.GetSession())
	case List:
		knew := p.ids()
		var resp *sessionauthv1.ListUserSessionsResponse
		resp, err = r.c.ListUserSessions(ctx, &sessionauthv1.ListUserSessionsRequest{UserId: user, PageSize: 50})
		for _, s := range resp.GetSessions() {
			op.Listed = append(op.Listed, ListedSession{ID: s.GetSessionId(), User: s.GetUserId()})
		}
		for _, id := range knew {
			if !slices.ContainsFunc(op.Listed, func(s ListedSession) bool { return s.ID == id }) {
				op.Unlisted = append(op.Unlisted, id)
			}
		}
	}
	op.Return = time.Now()
	st := status.Convert(err)
	op.Code, op.Message = st.Code(), st.Message()
	return op
}
