package server

import (
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// RateLimit is a token bucket per caller: a caller may make Burst calls at
// once, then PerSecond calls a second. The zero value is no limit.
//
// The buckets live in the memory of one sessiond process: with N replicas
// behind a load balancer a caller gets up to N times the limit.
type RateLimit struct {
	// PerSecond is the sustained rate; 0 (or less) disables the limit.
	PerSecond float64
	// Burst is the bucket's size; 0 means max(1, ceil(PerSecond)).
	Burst int
}

// maxRateLimitKeys is how many callers a limit tracks at most.
const maxRateLimitKeys = 10_000

// rateLimitSweepEvery is how often, at most, the idle buckets are dropped
// from memory (on the next call; no goroutine).
const rateLimitSweepEvery = time.Minute

func (l RateLimit) burst() float64 {
	if l.Burst > 0 {
		return float64(l.Burst)
	}
	return max(1, math.Ceil(l.PerSecond))
}

func (l RateLimit) String() string {
	return fmt.Sprintf("%s/s, burst %d", strconv.FormatFloat(l.PerSecond, 'f', -1, 64), int(l.burst()))
}

// limiter is a map of token buckets keyed by caller, bounded in memory: a
// bucket that has refilled is the same as no bucket and is dropped on the
// next sweep, and past maxKeys buckets the fullest one makes room for a new
// caller. A nil *limiter allows everything.
type limiter struct {
	what    string // what is limited, for the error message
	limit   RateLimit
	burst   float64
	maxKeys int
	now     func() time.Time

	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time
}

type bucket struct {
	tokens float64   // may be negative: failures charged after the fact
	at     time.Time // when tokens was computed
}

// newLimiter returns a limiter for l, or nil if l is no limit.
func newLimiter(what string, l RateLimit, maxKeys int, now func() time.Time) *limiter {
	if !(l.PerSecond > 0) || math.IsInf(l.PerSecond, 0) {
		return nil
	}
	if maxKeys <= 0 {
		maxKeys = maxRateLimitKeys
	}
	return &limiter{what: what, limit: l, burst: l.burst(), maxKeys: maxKeys, now: now,
		buckets: map[string]*bucket{}, lastSweep: now()}
}

// level is b's tokens at now.
func (l *limiter) level(b *bucket, now time.Time) float64 {
	elapsed := now.Sub(b.at).Seconds()
	if elapsed <= 0 { // a clock that went back refills nothing
		return b.tokens
	}
	return min(l.burst, b.tokens+elapsed*l.limit.PerSecond)
}

// wait is how long a bucket at tokens takes to hold one token again, rounded
// up to the millisecond.
func (l *limiter) wait(tokens float64) time.Duration {
	secs := min((1-tokens)/l.limit.PerSecond, 24*60*60) // bounded: a tiny rate must not overflow
	return time.Duration(math.Ceil(secs*1000)) * time.Millisecond
}

// take spends one token of key's bucket, or reports the error to answer if it
// has none.
func (l *limiter) take(key string) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.maybeSweep(now)
	b := l.bucket(key, now)
	b.tokens, b.at = l.level(b, now), now
	if b.tokens < 1 {
		return l.exhausted(l.wait(b.tokens))
	}
	b.tokens--
	return nil
}

// check reports the error to answer if key's bucket holds no token, without
// spending one: the call goes ahead, and charge spends the token if its
// outcome counts.
func (l *limiter) check(key string) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		return nil
	}
	if tokens := l.level(b, l.now()); tokens < 1 {
		return l.exhausted(l.wait(tokens))
	}
	return nil
}

// charge spends one token of key's bucket after the fact. Calls that passed
// check together may take the bucket below zero (to -burst at most): the
// caller then waits longer.
func (l *limiter) charge(key string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.maybeSweep(now)
	b := l.bucket(key, now)
	b.tokens, b.at = max(-l.burst, l.level(b, now)-1), now
}

// bucket returns key's bucket, making room for it if it is new.
func (l *limiter) bucket(key string, now time.Time) *bucket {
	if b, ok := l.buckets[key]; ok {
		return b
	}
	if len(l.buckets) >= l.maxKeys {
		l.sweep(now)
	}
	if len(l.buckets) >= l.maxKeys {
		// Every tracked caller is limited: forget the one closest to full.
		var fullest string
		best := math.Inf(-1)
		for k, b := range l.buckets {
			if lv := l.level(b, now); lv > best {
				fullest, best = k, lv
			}
		}
		delete(l.buckets, fullest)
	}
	b := &bucket{tokens: l.burst, at: now}
	l.buckets[key] = b
	return b
}

func (l *limiter) maybeSweep(now time.Time) {
	if now.Sub(l.lastSweep) >= rateLimitSweepEvery {
		l.sweep(now)
	}
}

// sweep drops the buckets that have refilled.
func (l *limiter) sweep(now time.Time) {
	for k, b := range l.buckets {
		if l.level(b, now) >= l.burst {
			delete(l.buckets, k)
		}
	}
	l.lastSweep = now
}

// size is how many buckets are in memory.
func (l *limiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// exhausted is the ResourceExhausted answer, with a google.rpc.RetryInfo
// detail saying when to retry. The delay is not in the message: one cause,
// one message.
func (l *limiter) exhausted(retry time.Duration) error {
	st := status.Newf(codes.ResourceExhausted, "rate limit exceeded: too many %s (limit %v, per sessiond replica); retry later",
		l.what, l.limit)
	if withInfo, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(retry)}); err == nil {
		st = withInfo
	}
	return &rateLimitedError{st: st}
}

// rateLimitedError is a call refused by a rate limit. toStatus answers it as
// its status.
type rateLimitedError struct {
	st *status.Status
}

func (e *rateLimitedError) Error() string              { return e.st.Message() }
func (e *rateLimitedError) GRPCStatus() *status.Status { return e.st }
