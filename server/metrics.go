package server

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/sessiond/sessiond/server/store"
)

// latencyBuckets (seconds) resolve what a Redis round trip costs on a LAN,
// from 100µs, up to the default request timeout.
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}

// Metrics is the service's Prometheus instrumentation: the gRPC calls
// (grpcmetrics.go: go-grpc-middleware's metric names, with handling-time
// histograms), the store's operations, and the revocation streams. It is a
// prometheus.Collector: register it on the registry the process serves.
// Give it to New in Config.Metrics, and put its Interceptors first in the
// server's chain. One Metrics serves one Server.
type Metrics struct {
	grpc *grpcMetrics

	storeLatency *prometheus.HistogramVec
	observers    [numStoreOps][numOutcomes]prometheus.Observer

	watchers         prometheus.Gauge
	subscriptionUp   prometheus.Gauge
	revocationEvents prometheus.Counter
	watchersLagged   prometheus.Counter
	reuseDetected    *prometheus.CounterVec
}

// NewMetrics returns the service's metrics, all at zero.
func NewMetrics() *Metrics {
	m := &Metrics{
		grpc: newGRPCMetrics(),
		storeLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sessiond_store_operation_duration_seconds",
			Help:    "Time one session store operation took (Redis round trips included), by operation and outcome.",
			Buckets: latencyBuckets,
		}, []string{"operation", "outcome"}),
		watchers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sessiond_revocation_watchers",
			Help: "WatchRevocations streams open on this process.",
		}),
		subscriptionUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sessiond_revocation_subscription_up",
			Help: "1 while this process's Redis subscription to revocation events is live (WatchRevocations streams are served), 0 otherwise.",
		}),
		revocationEvents: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sessiond_revocation_events_total",
			Help: "Revocation events received from Redis and fanned out to the WatchRevocations streams.",
		}),
		watchersLagged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sessiond_revocation_watchers_lagged_total",
			Help: "WatchRevocations streams ended because their client fell too far behind.",
		}),
		reuseDetected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessiond_reuse_detected_total",
			Help: "Rotated-away tokens presented again after the rotation grace (a stolen copy, probably), by whether the chain's newest session was revoked (revoked) or none was live (none).",
		}, []string{"outcome"}),
	}
	m.reuseDetected.WithLabelValues("revoked")
	m.reuseDetected.WithLabelValues("none")
	// Resolve every series now: the hot path then observes without a lookup,
	// and every series is exported from the start.
	for op := range numStoreOps {
		for oc := range numOutcomes {
			m.observers[op][oc] = m.storeLatency.WithLabelValues(storeOp(op).String(), outcome(oc).String())
		}
	}
	return m
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.collectors() {
		c.Collect(ch)
	}
}

func (m *Metrics) collectors() []prometheus.Collector {
	return append(m.grpc.collectors(), m.storeLatency, m.watchers, m.subscriptionUp, m.revocationEvents, m.watchersLagged, m.reuseDetected)
}

// Interceptors returns the interceptors that measure the gRPC calls, to go
// first in the server's chain so that refused calls count too; none when m
// is nil.
func (m *Metrics) Interceptors() ([]grpc.UnaryServerInterceptor, []grpc.StreamServerInterceptor) {
	if m == nil {
		return nil, nil
	}
	return []grpc.UnaryServerInterceptor{m.grpc.unary}, []grpc.StreamServerInterceptor{m.grpc.stream}
}

// UnaryCall is one unary call counted in the gRPC metrics by StartUnary and
// Finish: what the unary interceptor of Interceptors counts, for a server
// that runs its interceptors' steps in one function of its own.
type UnaryCall struct {
	m     *methodMetrics
	start time.Time
}

// StartUnary counts a unary call to fullMethod as started, its request
// received (nothing when m is nil).
func (m *Metrics) StartUnary(fullMethod string) UnaryCall {
	if m == nil {
		return UnaryCall{}
	}
	return m.grpc.startUnary(fullMethod)
}

// Finish counts the call's end: its answer sent if err is nil, its code
// and its duration.
func (c UnaryCall) Finish(err error) {
	if c.m == nil {
		return
	}
	if err == nil {
		c.m.sent.Inc()
	}
	c.m.finish(c.start, err)
}

// InitializeMetrics exports a zero series for every method of gs (nothing
// when m is nil).
func (m *Metrics) InitializeMetrics(gs *grpc.Server) {
	if m != nil {
		m.grpc.initialize(gs)
	}
}

// The revocation hooks do nothing on a nil *Metrics.

func (m *Metrics) setSubscribed(live bool) {
	if m == nil {
		return
	}
	if live {
		m.subscriptionUp.Set(1)
	} else {
		m.subscriptionUp.Set(0)
	}
}

func (m *Metrics) watcherAdded(n int) {
	if m != nil {
		m.watchers.Add(float64(n))
	}
}

func (m *Metrics) revocationPublished() {
	if m != nil {
		m.revocationEvents.Inc()
	}
}

func (m *Metrics) reuse(revoked bool) {
	if m == nil {
		return
	}
	if revoked {
		m.reuseDetected.WithLabelValues("revoked").Inc()
	} else {
		m.reuseDetected.WithLabelValues("none").Inc()
	}
}

func (m *Metrics) watcherLagged() {
	if m != nil {
		m.watchersLagged.Inc()
	}
}

// storeOp names an operation of the store in the latency histogram.
type storeOp int

const (
	opCreate storeOp = iota
	opGet
	opTouch
	opRevokeToken
	opRevoke
	opRevokeUser
	opRotate
	opListUser
	opPing
	opGetByID
	opUpdate
	opExtend
	opList
	opRevokeAll
	numStoreOps
)

func (o storeOp) String() string {
	return [...]string{"create", "get", "touch", "revoke_token", "revoke", "revoke_user", "rotate", "list_user", "ping",
		"get_by_id", "update", "extend", "list", "revoke_all"}[o]
}

// outcome classifies an operation's error as the status mapping does.
type outcome int

const (
	outcomeOK outcome = iota
	outcomeNotFound
	outcomeUnavailable
	outcomeTimeout
	outcomeCanceled
	outcomeConflict
	outcomeError
	outcomeRefused       // Redis refused the write (out of memory, read-only, ...)
	outcomeNotReplicated // applied, but too few replicas acknowledged it in time
	numOutcomes
)

func (o outcome) String() string {
	return [...]string{"ok", "not_found", "unavailable", "timeout", "canceled", "conflict", "error", "refused", "not_replicated"}[o]
}

// outcomeOf is an operation's outcome, from the one classification of
// errors (classify). Malformed ids, foreign sessions and cursors are the
// caller's mistakes, answered without a Redis error: they count as not found
// rather than as faults.
func outcomeOf(err error) outcome {
	switch classify(err) {
	case classOK:
		return outcomeOK
	case classNotFound, classMalformed:
		return outcomeNotFound
	case classTimeout:
		return outcomeTimeout
	case classCanceled:
		return outcomeCanceled
	case classUnavailable:
		switch {
		case errors.Is(err, store.ErrWritesRefused):
			return outcomeRefused
		case errors.Is(err, store.ErrNotReplicated):
			return outcomeNotReplicated
		}
		return outcomeUnavailable
	case classConflict:
		return outcomeConflict
	}
	return outcomeError
}

// observe records one operation that started at start.
func (m *Metrics) observe(op storeOp, start time.Time, err error) {
	m.observers[op][outcomeOf(err)].Observe(time.Since(start).Seconds())
}

// meteredStore times every operation of the Store it wraps. It is how the
// store is measured without server/store knowing about Prometheus.
type meteredStore struct {
	Store
	m *Metrics
}

func (s meteredStore) Create(ctx context.Context, ns store.NewSession) (*store.Created, error) {
	start := time.Now()
	c, err := s.Store.Create(ctx, ns)
	s.m.observe(opCreate, start, err)
	return c, err
}

func (s meteredStore) Get(ctx context.Context, token string) (*store.Session, error) {
	start := time.Now()
	sess, err := s.Store.Get(ctx, token)
	s.m.observe(opGet, start, err)
	return sess, err
}

func (s meteredStore) Touch(ctx context.Context, sess *store.Session) (*store.Session, error) {
	start := time.Now()
	t, err := s.Store.Touch(ctx, sess)
	s.m.observe(opTouch, start, err)
	return t, err
}

func (s meteredStore) RevokeToken(ctx context.Context, token string) (*store.Revocation, error) {
	start := time.Now()
	r, err := s.Store.RevokeToken(ctx, token)
	s.m.observe(opRevokeToken, start, err)
	return r, err
}

func (s meteredStore) Revoke(ctx context.Context, sessionID string) (*store.Revocation, error) {
	start := time.Now()
	r, err := s.Store.Revoke(ctx, sessionID)
	s.m.observe(opRevoke, start, err)
	return r, err
}

func (s meteredStore) RevokeUser(ctx context.Context, userID, exceptID string) (*store.Revocation, error) {
	start := time.Now()
	r, err := s.Store.RevokeUser(ctx, userID, exceptID)
	s.m.observe(opRevokeUser, start, err)
	return r, err
}

func (s meteredStore) Rotate(ctx context.Context, token string, step store.Step) (*store.Created, error) {
	start := time.Now()
	c, err := s.Store.Rotate(ctx, token, step)
	s.m.observe(opRotate, start, err)
	return c, err
}

func (s meteredStore) ListUser(ctx context.Context, userID string, limit int, cursor string) ([]*store.Session, string, error) {
	start := time.Now()
	list, next, err := s.Store.ListUser(ctx, userID, limit, cursor)
	s.m.observe(opListUser, start, err)
	return list, next, err
}

func (s meteredStore) GetByID(ctx context.Context, sessionID string) (*store.Session, error) {
	start := time.Now()
	sess, err := s.Store.GetByID(ctx, sessionID)
	s.m.observe(opGetByID, start, err)
	return sess, err
}

func (s meteredStore) Update(ctx context.Context, ref store.Ref, ch store.AttributeChange) (*store.Session, error) {
	start := time.Now()
	sess, err := s.Store.Update(ctx, ref, ch)
	s.m.observe(opUpdate, start, err)
	return sess, err
}

func (s meteredStore) Extend(ctx context.Context, sessionID string, ttl time.Duration) (*store.Session, error) {
	start := time.Now()
	sess, err := s.Store.Extend(ctx, sessionID, ttl)
	s.m.observe(opExtend, start, err)
	return sess, err
}

func (s meteredStore) List(ctx context.Context, limit int, cursor string) ([]*store.Session, string, error) {
	start := time.Now()
	list, next, err := s.Store.List(ctx, limit, cursor)
	s.m.observe(opList, start, err)
	return list, next, err
}

func (s meteredStore) RevokeAll(ctx context.Context, before time.Time) (time.Time, *store.Revocation, error) {
	start := time.Now()
	at, ev, err := s.Store.RevokeAll(ctx, before)
	s.m.observe(opRevokeAll, start, err)
	return at, ev, err
}

func (s meteredStore) Ping(ctx context.Context) error {
	start := time.Now()
	err := s.Store.Ping(ctx)
	s.m.observe(opPing, start, err)
	return err
}

// instrumentStore returns st with its operations timed by m; with a nil m it
// returns st.
func (m *Metrics) instrumentStore(st Store) Store {
	if m == nil {
		return st
	}
	if _, ok := st.(meteredStore); ok {
		return st
	}
	return meteredStore{Store: st, m: m}
}
