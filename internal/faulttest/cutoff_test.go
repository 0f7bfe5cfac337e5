package faulttest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/internal/testutil"
)

// TestRevokeAllReachesEveryReplica runs two sessiond processes (the real
// binary) on one Redis and measures, on B, how long after RevokeAllSessions
// returned on A the sessions created before it stop validating: with the
// revocation stream (milliseconds), and with B's Redis subscription killed
// just before the call, when only B's periodic read of the cutoff can tell
// it (at most --cutoff-max-age, 1s). Sessions created after the cutoff keep
// validating on B throughout.
func TestRevokeAllReachesEveryReplica(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	bin := testutil.BuildSessiond(t)
	a := dialProcess(t, testutil.StartSessiond(t, bin, "--redis-url="+srv.URL()))
	pb := testutil.StartSessiond(t, bin, "--redis-url="+srv.URL(), "--rate-limit-failed-validations=0")
	b := dialProcess(t, pb)
	rdb := srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	const rounds, perRound, bound = 5, 20, time.Second
	var withEvents, withoutEvents []time.Duration
	for round := range 2 * rounds {
		killSubscription := round%2 == 1
		var tokens []string
		for i := range perRound {
			resp, err := create(ctx, a, fmt.Sprintf("cutoff-%d-%d", round, i))
			if err != nil {
				t.Fatalf("CreateSession through A: %v", err)
			}
			tokens = append(tokens, resp.GetToken())
		}
		for _, tok := range tokens {
			if code := validate(ctx, b, tok); code != codes.OK {
				t.Fatalf("round %d: ValidateSession through B before the cutoff: %v", round, code)
			}
		}
		if !killSubscription {
			// B resubscribed after the previous round's kill.
			waitFor(t, 10*time.Second, "B's revocation subscription", func() bool {
				return metricValue(t, pb.AdminAddr, "sessiond_revocation_subscription_up") == 1
			})
		} else {
			// B misses the event: only its periodic read can tell it.
			if err := rdb.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
				t.Fatal(err)
			}
		}
		cut, err := a.RevokeAllSessions(ctx, &sessionauthv1.RevokeAllSessionsRequest{})
		if err != nil {
			t.Fatalf("RevokeAllSessions through A: %v", err)
		}
		returned := time.Now()
		// Every old session refused on B, measured from the call's return.
		var (
			mu      sync.Mutex
			refused []time.Duration
			wg      sync.WaitGroup
		)
		for _, tok := range tokens {
			wg.Go(func() {
				for time.Since(returned) < 5*time.Second {
					if code := validate(ctx, b, tok); code == codes.Unauthenticated {
						mu.Lock()
						refused = append(refused, time.Since(returned))
						mu.Unlock()
						return
					} else if code != codes.OK {
						t.Errorf("round %d: B answered %v for a session before the cutoff", round, code)
						return
					}
					time.Sleep(2 * time.Millisecond)
				}
			})
		}
		wg.Wait()
		if len(refused) != len(tokens) {
			t.Fatalf("round %d: %d of %d sessions created before the cutoff still validated on B 5s after it", round, len(tokens)-len(refused), len(tokens))
		}
		worst := slices.Max(refused)
		if killSubscription {
			withoutEvents = append(withoutEvents, worst)
		} else {
			withEvents = append(withEvents, worst)
		}
		if worst > bound {
			t.Errorf("round %d (subscription killed: %v): the last old session was refused on B %v after the cutoff, want at most %v", round, killSubscription, worst, bound)
		}
		// Sessions created after the cutoff live on B.
		time.Sleep(time.Until(cut.GetIssuedBefore().AsTime()))
		fresh, err := create(ctx, a, fmt.Sprintf("after-%d", round))
		if err != nil {
			t.Fatal(err)
		}
		if code := validate(ctx, b, fresh.GetToken()); code != codes.OK {
			t.Fatalf("round %d: a session created after the cutoff: %v on B", round, code)
		}
	}
	t.Logf("last old session refused on B after RevokeAllSessions returned on A: with the revocation stream median %v (max %v); "+
		"with B's subscription killed median %v (max %v); bound %v",
		median(withEvents), slices.Max(withEvents), median(withoutEvents), slices.Max(withoutEvents), bound)
}

// metricValue reads an unlabelled metric from a sessiond's /metrics (-1 if
// it cannot).
func metricValue(t *testing.T, adminAddr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return -1
	}
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
