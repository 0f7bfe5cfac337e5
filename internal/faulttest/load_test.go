package faulttest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/internal/sessiondtest"
	"github.com/sessiond/sessiond/server"
	"github.com/sessiond/sessiond/server/store"
)

// callTimeout is the deadline callers set on each call. It is longer than
// any request timeout the tests give sessiond, so a store that does not answer
// shows as sessiond's Unavailable, not as the caller's DeadlineExceeded.
const callTimeout = 5 * time.Second

// sessiond's defaults for --redis-dial-timeout and --redis-timeout.
const (
	redisDialTimeout = 2 * time.Second
	redisTimeout     = time.Second
)

// keyPrefix is the key prefix of every test's sessiond.
const keyPrefix = "ft"

// The go-redis clients below are built as cmd/sessiond builds them
// (cmd/sessiond/redis.go): context deadlines honoured, sessiond's default
// timeouts, reads and writes on masters only.

func singleClient(t *testing.T, addr string) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{
		Addr:                  addr,
		ContextTimeoutEnabled: true,
		DialTimeout:           redisDialTimeout,
		ReadTimeout:           redisTimeout,
		WriteTimeout:          redisTimeout,
	})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// clusterClient is cmd/sessiond's cluster client; reload sets
// ClusterStateReloadInterval (sessiond: 1s; 0: go-redis' default, 60s).
func clusterClient(t *testing.T, addrs []string, reload time.Duration) *redis.ClusterClient {
	t.Helper()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:                      addrs,
		ContextTimeoutEnabled:      true,
		DialTimeout:                redisDialTimeout,
		ReadTimeout:                redisTimeout,
		WriteTimeout:               redisTimeout,
		ReadOnly:                   false,
		ClusterStateReloadInterval: reload,
	})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

func failoverClient(t *testing.T, master string, sentinels []string) *redis.Client {
	t.Helper()
	rdb := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:            master,
		SentinelAddrs:         sentinels,
		ContextTimeoutEnabled: true,
		DialTimeout:           redisDialTimeout,
		ReadTimeout:           redisTimeout,
		WriteTimeout:          redisTimeout,
		ReplicaOnly:           false,
	})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// startSessiond runs sessiond in-process on rdb, with no per-user cap (so no
// session is evicted behind the ledger's back) and a request timeout of
// requestTimeout, and returns a gRPC client of it.
func startSessiond(t *testing.T, rdb redis.UniversalClient, requestTimeout, healthInterval time.Duration) (sessionauthv1.SessionAuthorityClient, *sessiondtest.Sessiond) {
	t.Helper()
	cfg := server.Config{RequestTimeout: requestTimeout}
	d := sessiondtest.StartWith(t, rdb, sessiondtest.Options{
		Store:          store.Config{KeyPrefix: keyPrefix, TouchInterval: time.Minute},
		Server:         cfg,
		HealthInterval: healthInterval,
	})
	t.Cleanup(func() {
		if t.Failed() {
			logTail(t, d.Logs.String(), 20)
		}
	})
	return sessionauthv1.NewSessionAuthorityClient(d.Conn), d
}

// logTail logs every error of a failed test's sessiond (an Internal answer
// has its cause there), and its last n warnings and health recoveries.
func logTail(t *testing.T, logs string, n int) {
	t.Helper()
	var errs, warns []string
	for line := range strings.SplitSeq(logs, "\n") {
		switch {
		case strings.Contains(line, "level=ERROR"):
			errs = append(errs, line)
		case strings.Contains(line, "level=WARN"), strings.Contains(line, "session store reachable"):
			warns = append(warns, line)
		}
	}
	warns = warns[max(0, len(warns)-n):]
	t.Logf("sessiond's errors (%d):\n%s\nits last %d warnings:\n%s", len(errs), strings.Join(errs, "\n"), len(warns), strings.Join(warns, "\n"))
}

// sessionKey is the Redis key of the session with this id (README, "Redis
// key layout": the id is "<tag>_<uuid>").
func sessionKey(t *testing.T, id string) string {
	t.Helper()
	tag, uuid, ok := strings.Cut(id, "_")
	if !ok {
		t.Fatalf("session id %q has no tag", id)
	}
	return keyPrefix + ":v1:{" + tag + "}:s:" + uuid
}

func users(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%03d", prefix, i)
	}
	return out
}

func create(ctx context.Context, c sessionauthv1.SessionAuthorityClient, user string) (*sessionauthv1.CreateSessionResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	return c.CreateSession(ctx, &sessionauthv1.CreateSessionRequest{UserId: user, ClientIp: "192.0.2.1", UserAgent: "faulttest"})
}

func validate(ctx context.Context, c sessionauthv1.SessionAuthorityClient, token string) codes.Code {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	_, err := c.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: token})
	return status.Code(err)
}

func revoke(ctx context.Context, c sessionauthv1.SessionAuthorityClient, token string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	r, err := c.RevokeSession(ctx, &sessionauthv1.RevokeSessionRequest{Target: &sessionauthv1.RevokeSessionRequest_Token{Token: token}})
	return r.GetRevoked(), err
}

type opKind uint8

const (
	opCreate opKind = iota
	opValidate
	opRevoke
	opProbe
)

func (o opKind) String() string {
	return [...]string{"create", "validate", "revoke", "probe"}[o]
}

// call is one RPC of a load or a probe.
type call struct {
	op         opKind
	user       string
	start, end time.Time
	code       codes.Code
}

// served reports whether sessiond answered from Redis (as opposed to failing
// because it could not reach it).
func (c call) served() bool { return c.code == codes.OK || c.code == codes.Unauthenticated }

// session is what a load worker knows of a session it created.
type session struct {
	user, id, token string
	createdAt       time.Time // when CreateSession returned OK
	revokeSent      time.Time // when the last RevokeSession was sent
	revokedAt       time.Time // when a RevokeSession returned OK; zero: none did
	revokeUnknown   bool      // a RevokeSession failed: it may or may not have happened
	rejectedLive    bool      // a validation before any revoke answered Unauthenticated
}

// acknowledgedLive: created, and never the target of a revoke.
func (s *session) acknowledgedLive() bool {
	return s.revokedAt.IsZero() && !s.revokeUnknown && s.revokeSent.IsZero()
}

// loadConfig bounds a load: it stops by itself after maxCalls calls or
// maxTime per worker, whichever comes first.
type loadConfig struct {
	users    []string
	workers  int
	maxCalls int
	maxTime  time.Duration
	// pause after a failed call, as a caller backing off would.
	pause time.Duration
}

// load is a mixed create/validate/revoke load from a few goroutines. Each
// worker keeps its own ledger of the sessions it created and revoked, and
// checks every answer against it as it goes.
type load struct {
	cfg     loadConfig
	c       sessionauthv1.SessionAuthorityClient
	stop    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
	workers []*worker
	created atomic.Int64 // acknowledged creates so far
	served  atomic.Int64 // calls answered from Redis so far
}

type worker struct {
	calls      []call
	sessions   []*session
	live       []*session // created, no revoke attempted
	revoked    []*session // revoke acknowledged
	violations []string
}

// allowed are the codes a caller may see from sessiond while Redis fails: an
// answer, or Unavailable. Anything else (Unknown, Internal, DeadlineExceeded,
// Aborted...) is a fault.
func allowed(op opKind, code codes.Code) bool {
	switch code {
	case codes.OK, codes.Unavailable:
		return true
	case codes.Unauthenticated:
		return op == opValidate || op == opProbe
	}
	return false
}

func startLoad(t *testing.T, c sessionauthv1.SessionAuthorityClient, cfg loadConfig) *load {
	t.Helper()
	l := &load{cfg: cfg, c: c, stop: make(chan struct{})}
	for i := range cfg.workers {
		w := &worker{}
		l.workers = append(l.workers, w)
		seed := uint64(time.Now().UnixNano()) + uint64(i)
		l.wg.Go(func() { l.run(w, rand.New(rand.NewPCG(seed, uint64(i)))) })
	}
	t.Cleanup(l.Stop)
	return l
}

// Stop ends the load and waits for its workers. Stopping twice is fine.
func (l *load) Stop() {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
}

func (l *load) stopped() bool {
	select {
	case <-l.stop:
		return true
	default:
		return false
	}
}

func (l *load) run(w *worker, rng *rand.Rand) {
	ctx := context.Background()
	deadline := time.Now().Add(l.cfg.maxTime)
	for range l.cfg.maxCalls {
		if l.stopped() || time.Now().After(deadline) {
			return
		}
		user := l.cfg.users[rng.IntN(len(l.cfg.users))]
		var c call
		switch r := rng.IntN(10); {
		case len(w.live) == 0 || r < 4:
			c = l.create(ctx, w, user)
		case r < 8:
			pool := w.live
			if len(w.revoked) > 0 && rng.IntN(2) == 0 {
				pool = w.revoked
			}
			c = l.validate(ctx, w, pool[rng.IntN(len(pool))])
		default:
			i := rng.IntN(len(w.live))
			s := w.live[i]
			w.live[i] = w.live[len(w.live)-1]
			w.live = w.live[:len(w.live)-1]
			c = l.revoke(ctx, w, s)
		}
		w.calls = append(w.calls, c)
		if !allowed(c.op, c.code) {
			w.violations = append(w.violations, fmt.Sprintf("%s for %s at %s: code %v", c.op, c.user, c.end.Format(time.StampMilli), c.code))
		}
		if c.served() {
			l.served.Add(1)
		} else {
			select {
			case <-l.stop:
			case <-time.After(l.cfg.pause):
			}
		}
	}
}

func (l *load) create(ctx context.Context, w *worker, user string) call {
	c := call{op: opCreate, user: user, start: time.Now()}
	resp, err := create(ctx, l.c, user)
	c.end, c.code = time.Now(), status.Code(err)
	if err == nil {
		s := &session{user: user, id: resp.GetSession().GetSessionId(), token: resp.GetToken(), createdAt: c.end}
		w.sessions = append(w.sessions, s)
		w.live = append(w.live, s)
		l.created.Add(1)
	}
	return c
}

func (l *load) validate(ctx context.Context, w *worker, s *session) call {
	c := call{op: opValidate, user: s.user, start: time.Now()}
	c.code = validate(ctx, l.c, s.token)
	c.end = time.Now()
	switch {
	case c.code == codes.OK && !s.revokedAt.IsZero():
		w.violations = append(w.violations, fmt.Sprintf("session %s validated at %s after its revocation was acknowledged at %s",
			s.id, c.end.Format(time.StampMilli), s.revokedAt.Format(time.StampMilli)))
	case c.code == codes.Unauthenticated && s.acknowledgedLive():
		s.rejectedLive = true
	}
	return c
}

func (l *load) revoke(ctx context.Context, w *worker, s *session) call {
	c := call{op: opRevoke, user: s.user, start: time.Now()}
	s.revokeSent = c.start
	_, err := revoke(ctx, l.c, s.token)
	c.end, c.code = time.Now(), status.Code(err)
	if err == nil {
		// Revoked or already gone (revoked=false): either way it must never
		// validate again.
		s.revokedAt = c.end
		w.revoked = append(w.revoked, s)
	} else {
		s.revokeUnknown = true
	}
	return c
}

// result merges the workers' ledgers once the load has stopped.
func (l *load) result() (calls []call, sessions []*session, violations []string) {
	l.Stop()
	for _, w := range l.workers {
		calls = append(calls, w.calls...)
		sessions = append(sessions, w.sessions...)
		violations = append(violations, w.violations...)
	}
	slices.SortFunc(calls, func(a, b call) int { return a.start.Compare(b.start) })
	return calls, sessions, violations
}

// waitFor polls cond every 10ms until it holds; it fails the test after
// timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// probe validates token every 20ms from start until a validation is served
// with OK, and returns every attempt; it fails the test after timeout.
func probe(t *testing.T, c sessionauthv1.SessionAuthorityClient, user, token string, timeout time.Duration) []call {
	t.Helper()
	var calls []call
	deadline := time.Now().Add(timeout)
	for {
		cl := call{op: opProbe, user: user, start: time.Now()}
		cl.code = validate(context.Background(), c, token)
		cl.end = time.Now()
		calls = append(calls, cl)
		if cl.code == codes.OK {
			return calls
		}
		if !allowed(opProbe, cl.code) || cl.code == codes.Unauthenticated {
			t.Errorf("probe of a live session of %s: %v", user, cl.code)
		}
		if time.Now().After(deadline) {
			t.Fatalf("service did not resume within %v", timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// gap is how an outage looked to the calls of the affected users.
type gap struct {
	failures  int
	firstFail time.Time // end of the first failed call after the fault
	lastFail  time.Time // end of the last failed call
	resumed   time.Time // end of the first served call started after lastFail
}

func measureGap(calls []call, fault time.Time, affected func(user string) bool) gap {
	var g gap
	for _, c := range calls {
		if c.start.Before(fault) || !affected(c.user) || c.served() {
			continue
		}
		g.failures++
		if g.firstFail.IsZero() || c.end.Before(g.firstFail) {
			g.firstFail = c.end
		}
		if c.end.After(g.lastFail) {
			g.lastFail = c.end
		}
	}
	for _, c := range calls {
		if affected(c.user) && c.served() && c.start.After(g.lastFail) && (g.resumed.IsZero() || c.end.Before(g.resumed)) {
			g.resumed = c.end
		}
	}
	return g
}

func (g gap) log(t *testing.T, fault time.Time, what string) {
	t.Helper()
	if g.failures == 0 {
		t.Logf("%s: no failed call after the fault", what)
		return
	}
	t.Logf("%s: %d failed calls (all Unavailable); first %v after the fault, last %v after; "+
		"first success %v after the last failure: service resumed %v after the fault",
		what, g.failures, g.firstFail.Sub(fault).Round(time.Millisecond), g.lastFail.Sub(fault).Round(time.Millisecond),
		g.resumed.Sub(g.lastFail).Round(time.Millisecond), g.resumed.Sub(fault).Round(time.Millisecond))
}

// verdict is the final check of a load's ledger.
type verdict struct {
	revoked     int // acknowledged revocations checked: must not validate
	resurrected int // of which validated (only counted where not trusted)
	live        int // acknowledged creates checked: must validate
	lost        int // of which did not (only counted where not trusted)
	skipped     int // a revoke failed: either answer is right
	untrusted   int // writes in the replication window, reported only
}

// verify validates every session of the ledger, after the fault, from a few
// goroutines. Revocations acknowledged and trusted must not validate; creates
// acknowledged, trusted and never revoked must. A write that is not trusted
// (acknowledged in the window in which it may not have been replicated) is
// counted, not asserted on.
func verify(t *testing.T, c sessionauthv1.SessionAuthorityClient, sessions []*session, trusted func(s *session, at time.Time) bool) verdict {
	t.Helper()
	var (
		mu sync.Mutex
		v  verdict
		wg sync.WaitGroup
	)
	const parallel = 4
	for p := range parallel {
		wg.Go(func() {
			for i := p; i < len(sessions); i += parallel {
				s := sessions[i]
				if s.revokeUnknown {
					mu.Lock()
					v.skipped++
					mu.Unlock()
					continue
				}
				code := validate(context.Background(), c, s.token)
				mu.Lock()
				switch {
				case code != codes.OK && code != codes.Unauthenticated:
					t.Errorf("final validation of %s: %v", s.id, code)
				case !s.revokedAt.IsZero():
					if trusted(s, s.revokedAt) {
						v.revoked++
						if code == codes.OK {
							t.Errorf("RESURRECTED: session %s of %s validates after its revocation was acknowledged at %s",
								s.id, s.user, s.revokedAt.Format(time.StampMilli))
						}
					} else {
						v.untrusted++
						if code == codes.OK {
							v.resurrected++
						}
					}
				case s.acknowledgedLive():
					if trusted(s, s.createdAt) {
						v.live++
						if code != codes.OK || s.rejectedLive {
							t.Errorf("LOST: session %s of %s, created (acknowledged) at %s, does not validate (%v, rejected during the load: %v)",
								s.id, s.user, s.createdAt.Format(time.StampMilli), code, s.rejectedLive)
						}
					} else {
						v.untrusted++
						if code != codes.OK || s.rejectedLive {
							v.lost++
						}
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return v
}

func countCodes(calls []call, keep func(call) bool) map[codes.Code]int {
	m := map[codes.Code]int{}
	for _, c := range calls {
		if keep(c) {
			m[c.code]++
		}
	}
	return m
}

func reportViolations(t *testing.T, violations []string) {
	t.Helper()
	for i, v := range violations {
		if i == 20 {
			t.Errorf("... and %d more", len(violations)-i)
			break
		}
		t.Errorf("load: %s", v)
	}
}

// markReplicated makes a write on master (to key, which must be in one of its
// slots) and waits for one replica to acknowledge it (WAIT 1): every write
// master acknowledged before the returned time is then on the replica.
func markReplicated(t *testing.T, addr, key string) time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rc := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer rc.Close()
	conn := rc.Conn()
	defer conn.Close()
	mark := time.Now()
	if err := conn.Set(ctx, key, mark.UnixNano(), time.Minute).Err(); err != nil {
		t.Fatalf("marking the replication offset: %v", err)
	}
	n, err := conn.Do(ctx, "WAIT", 1, 2000).Int()
	if err != nil || n < 1 {
		t.Fatalf("WAIT 1 on %s = %d, %v: the replica is not in sync", addr, n, err)
	}
	return mark
}

// healthWatch records every status the health service reports for
// sessiond's service, through its Watch stream, with the time it arrived.
type healthWatch struct {
	hc      healthpb.HealthClient
	mu      sync.Mutex
	changes []healthChange
}

type healthChange struct {
	at     time.Time
	status healthpb.HealthCheckResponse_ServingStatus
}

func watchHealth(t *testing.T, hc healthpb.HealthClient) *healthWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{Service: sessionauthv1.SessionAuthority_ServiceDesc.ServiceName})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	hw := &healthWatch{hc: hc}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			r, err := stream.Recv()
			if err != nil {
				return
			}
			hw.mu.Lock()
			hw.changes = append(hw.changes, healthChange{at: time.Now(), status: r.GetStatus()})
			hw.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return hw
}

// wait returns when the service first reported want after since, waiting
// up to 10s for it (it returns as soon as it has: the time is measured, not
// bounded here; health pings time out after one health interval, which a
// loaded machine can miss a few times in a row).
func (hw *healthWatch) wait(t *testing.T, want healthpb.HealthCheckResponse_ServingStatus, since time.Time) time.Time {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		hw.mu.Lock()
		for _, c := range hw.changes {
			if c.status == want && !c.at.Before(since) {
				hw.mu.Unlock()
				return c.at
			}
		}
		hw.mu.Unlock()
		if time.Now().After(deadline) {
			// The stream may have missed it: what does Check say now?
			hw.mu.Lock()
			seen := slices.Clone(hw.changes)
			hw.mu.Unlock()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			resp, err := hw.hc.Check(ctx, &healthpb.HealthCheckRequest{Service: sessionauthv1.SessionAuthority_ServiceDesc.ServiceName})
			cancel()
			if err == nil && resp.GetStatus() == want {
				t.Logf("health is %v by Check, but the Watch stream did not report it within 10s (changes seen: %v)", want, seen)
				return time.Now()
			}
			t.Fatalf("health of %s did not turn %v within 10s (Check: %v, %v; changes seen: %v)",
				sessionauthv1.SessionAuthority_ServiceDesc.ServiceName, want, resp.GetStatus(), err, seen)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// after summarises the statuses reported since t: how many times the
// service turned NOT_SERVING, and when it last turned SERVING (zero if it
// did not).
func (hw *healthWatch) after(since time.Time) (notServing int, servingAgain time.Time) {
	hw.mu.Lock()
	defer hw.mu.Unlock()
	for _, c := range hw.changes {
		if c.at.Before(since) {
			continue
		}
		switch c.status {
		case healthpb.HealthCheckResponse_NOT_SERVING:
			notServing++
			servingAgain = time.Time{}
		case healthpb.HealthCheckResponse_SERVING:
			servingAgain = c.at
		}
	}
	return notServing, servingAgain
}
