package server

import (
	"fmt"
	"testing"
	"time"

	"github.com/sessiond/sessiond/internal/testutil"
)

func TestLimiterRefillsAndCharges(t *testing.T) {
	t.Parallel()
	clock := testutil.NewClock()
	l := newLimiter("calls", RateLimit{PerSecond: 2, Burst: 4}, 0, clock.Now)
	for i := range 4 {
		if err := l.take("k"); err != nil {
			t.Fatalf("take %d: %v", i, err)
		}
	}
	if err := l.take("k"); err == nil {
		t.Fatal("take past the burst succeeded")
	}
	clock.Advance(500 * time.Millisecond)
	if err := l.take("k"); err != nil {
		t.Fatalf("take after 500ms at 2/s: %v", err)
	}

	// check never spends; charge always does, past zero when calls raced.
	if err := l.check("other"); err != nil {
		t.Fatal(err)
	}
	if l.size() != 1 {
		t.Fatalf("check of an unknown key made a bucket: %d buckets", l.size())
	}
	for range 10 {
		l.charge("c")
	}
	if err := l.check("c"); err == nil {
		t.Fatal("check after 10 charges allowed")
	}
	// 10 charges from 4: -4 at most (one burst of debt); 1 token takes 2.5s.
	clock.Advance(2499 * time.Millisecond)
	if err := l.check("c"); err == nil {
		t.Fatal("allowed after 2.499s, want 2.5s")
	}
	clock.Advance(time.Millisecond)
	if err := l.check("c"); err != nil {
		t.Fatalf("after 2.5s: %v", err)
	}

	// A clock that goes back refills nothing and breaks nothing.
	for range 3 {
		_ = l.take("back")
	}
	clock.Advance(-time.Hour)
	if err := l.take("back"); err != nil {
		t.Fatalf("take with the clock gone back: %v", err)
	}
	if err := l.take("back"); err == nil {
		t.Fatal("a clock gone back refilled the bucket")
	}

	var nilLimiter *limiter
	if nilLimiter.take("x") != nil || nilLimiter.check("x") != nil {
		t.Fatal("the nil limiter limits")
	}
	nilLimiter.charge("x")
	for _, rl := range []RateLimit{{}, {PerSecond: -1, Burst: 5}, {Burst: 10}} {
		if newLimiter("x", rl, 0, clock.Now) != nil {
			t.Errorf("%+v is a limit, want none", rl)
		}
	}
	if b := (RateLimit{PerSecond: 2.5}).burst(); b != 3 {
		t.Errorf("default burst of 2.5/s = %v, want 3", b)
	}
	if b := (RateLimit{PerSecond: 0.1}).burst(); b != 1 {
		t.Errorf("default burst of 0.1/s = %v, want 1", b)
	}
}

// TestLimiterMemoryIsBounded: a flood of distinct callers never holds more
// than maxKeys buckets, idle buckets go on their own, and the callers being
// limited are the last to be forgotten.
func TestLimiterMemoryIsBounded(t *testing.T) {
	t.Parallel()
	clock := testutil.NewClock()
	const maxKeys = 100
	l := newLimiter("calls", RateLimit{PerSecond: 1, Burst: 2}, maxKeys, clock.Now)
	// A caller at its limit.
	for range 3 {
		_ = l.take("limited")
	}
	for i := range 100_000 {
		key := fmt.Sprintf("k%d", i)
		if err := l.take(key); err != nil {
			t.Fatalf("a new caller %s was limited: %v", key, err)
		}
		if i%1000 == 0 {
			clock.Advance(time.Millisecond)
		}
		if n := l.size(); n > maxKeys {
			t.Fatalf("%d buckets after %d callers, want at most %d", n, i+1, maxKeys)
		}
	}
	if err := l.take("limited"); err == nil {
		t.Fatal("the limited caller was forgotten to make room for one-call callers")
	}

	// Past the sweep interval, refilled buckets are dropped.
	clock.Advance(rateLimitSweepEvery)
	_ = l.take("one-more")
	if n := l.size(); n != 1 {
		t.Fatalf("%d buckets after every other caller went idle, want 1", n)
	}
}
