package clientmetrics_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sessiond/sessiond/client"
	"github.com/sessiond/sessiond/client/clientmetrics"
	"github.com/sessiond/sessiond/internal/sessiondtest"
)

// TestCacheCollector: a caching client on a real sessiond counts its hits,
// misses and revocations, and the collector exports them.
func TestCacheCollector(t *testing.T) {
	t.Parallel()
	d := sessiondtest.Start(t)
	c := client.New(d.Conn, client.WithCache(100, time.Minute), client.WithReconnectBackoff(10*time.Millisecond, 100*time.Millisecond))
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for deadline := time.Now().Add(10 * time.Second); !c.CacheStats().Live; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the cache never went live")
		}
	}
	token, s, err := c.Create(ctx, client.NewSession{UserID: "cached"})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 { // a miss, then two hits
		if _, err := c.Validate(ctx, token); err != nil {
			t.Fatal(err)
		}
	}
	// Revoked through another client: the event evicts it from the cache.
	if _, err := client.New(d.Conn).RevokeByID(ctx, s.GetSessionId()); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); c.CacheStats().RevocationEvictions == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the revocation never evicted the session: %+v", c.CacheStats())
		}
	}
	if _, err := c.Validate(ctx, token); status.Code(err) != codes.Unauthenticated { // a miss
		t.Fatalf("a revoked session: %v", err)
	}
	got := c.CacheStats()
	want := client.CacheStats{Enabled: true, Live: true, Hits: 2, Misses: 2, RevocationEvictions: 1}
	if got != want {
		t.Fatalf("CacheStats = %+v, want %+v", got, want)
	}

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(clientmetrics.NewCacheCollector(c, prometheus.Labels{"sessiond": "test"}))
	expected := `
# HELP sessiond_client_cache_hits_total Validations answered from the client's cache.
# TYPE sessiond_client_cache_hits_total counter
sessiond_client_cache_hits_total{sessiond="test"} 2
# HELP sessiond_client_cache_misses_total Validations that asked sessiond: not cached, expired from the cache, or the cache was not live.
# TYPE sessiond_client_cache_misses_total counter
sessiond_client_cache_misses_total{sessiond="test"} 2
# HELP sessiond_client_cache_revocation_evictions_total Cached sessions evicted because they were revoked.
# TYPE sessiond_client_cache_revocation_evictions_total counter
sessiond_client_cache_revocation_evictions_total{sessiond="test"} 1
# HELP sessiond_client_cache_live 1 while the cache is in use (its revocation stream is established), 0 otherwise.
# TYPE sessiond_client_cache_live gauge
sessiond_client_cache_live{sessiond="test"} 1
# HELP sessiond_client_cache_entries Sessions in the cache now.
# TYPE sessiond_client_cache_entries gauge
sessiond_client_cache_entries{sessiond="test"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(expected),
		"sessiond_client_cache_hits_total", "sessiond_client_cache_misses_total", "sessiond_client_cache_revocation_evictions_total",
		"sessiond_client_cache_live", "sessiond_client_cache_entries"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(clientmetrics.NewCacheCollector(c, nil)); n != 8 {
		t.Fatalf("%d metrics, want 8", n)
	}

	// Drops: sessiond goes away, the stream breaks, the cache is emptied.
	d.Stop()
	for deadline := time.Now().Add(5 * time.Second); c.CacheStats().Drops == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no drop after sessiond stopped: %+v", c.CacheStats())
		}
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP sessiond_client_cache_live 1 while the cache is in use (its revocation stream is established), 0 otherwise.
# TYPE sessiond_client_cache_live gauge
sessiond_client_cache_live{sessiond="test"} 0
# HELP sessiond_client_cache_drops_total Times the whole cache was emptied because its revocation stream broke (or the client was closed).
# TYPE sessiond_client_cache_drops_total counter
sessiond_client_cache_drops_total{sessiond="test"} 1
`), "sessiond_client_cache_live", "sessiond_client_cache_drops_total"); err != nil {
		t.Fatal(err)
	}
}
