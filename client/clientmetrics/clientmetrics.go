// Package clientmetrics exports the validation cache of a sessiond client
// (client.WithCache) to Prometheus. It is a separate package so that the
// client itself does not depend on Prometheus.
//
//	sessions := client.New(conn, client.WithCache(10_000, 30*time.Second))
//	reg.MustRegister(clientmetrics.NewCacheCollector(sessions, nil))
//
// The metrics, read from (*client.Client).CacheStats at each scrape:
//
//	sessiond_client_cache_hits_total                 validations answered from the cache
//	sessiond_client_cache_misses_total               validations that asked sessiond
//	sessiond_client_cache_revocation_evictions_total cached sessions evicted because they were revoked
//	sessiond_client_cache_update_evictions_total     cached sessions evicted because their data changed
//	sessiond_client_cache_capacity_evictions_total   cached sessions evicted to make room
//	sessiond_client_cache_drops_total                times the whole cache was emptied (revocation stream lost)
//	sessiond_client_cache_live                       1 while the cache is in use (revocation stream up)
//	sessiond_client_cache_entries                    sessions cached now
//
// The hit ratio is rate(hits) / (rate(hits) + rate(misses)).
package clientmetrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessiond/sessiond/client"
)

// StatsSource is what the collector reads; *client.Client is one.
type StatsSource interface {
	CacheStats() client.CacheStats
}

// CacheCollector is a prometheus.Collector over a client's cache statistics.
type CacheCollector struct {
	src                                                                StatsSource
	hits, misses, revocations, updates, capacity, drops, live, entries *prometheus.Desc
}

// NewCacheCollector returns a collector of src's cache statistics. labels,
// if not nil, are added to every metric (to tell apart several clients in
// one process: {"sessiond": "eu-west"}).
func NewCacheCollector(src StatsSource, labels prometheus.Labels) *CacheCollector {
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("sessiond_client_cache_"+name, help, nil, labels)
	}
	return &CacheCollector{
		src:         src,
		hits:        desc("hits_total", "Validations answered from the client's cache."),
		misses:      desc("misses_total", "Validations that asked sessiond: not cached, expired from the cache, or the cache was not live."),
		revocations: desc("revocation_evictions_total", "Cached sessions evicted because they were revoked."),
		updates:     desc("update_evictions_total", "Cached sessions evicted because their data changed (UpdateSession, ExtendSession)."),
		capacity:    desc("capacity_evictions_total", "Cached sessions evicted to make room (least recently used)."),
		drops:       desc("drops_total", "Times the whole cache was emptied because its revocation stream broke (or the client was closed)."),
		live:        desc("live", "1 while the cache is in use (its revocation stream is established), 0 otherwise."),
		entries:     desc("entries", "Sessions in the cache now."),
	}
}

// Describe implements prometheus.Collector.
func (c *CacheCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.hits, c.misses, c.revocations, c.updates, c.capacity, c.drops, c.live, c.entries} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *CacheCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.CacheStats()
	live := 0.0
	if s.Live {
		live = 1
	}
	ch <- prometheus.MustNewConstMetric(c.hits, prometheus.CounterValue, float64(s.Hits))
	ch <- prometheus.MustNewConstMetric(c.misses, prometheus.CounterValue, float64(s.Misses))
	ch <- prometheus.MustNewConstMetric(c.revocations, prometheus.CounterValue, float64(s.RevocationEvictions))
	ch <- prometheus.MustNewConstMetric(c.updates, prometheus.CounterValue, float64(s.UpdateEvictions))
	ch <- prometheus.MustNewConstMetric(c.capacity, prometheus.CounterValue, float64(s.CapacityEvictions))
	ch <- prometheus.MustNewConstMetric(c.drops, prometheus.CounterValue, float64(s.Drops))
	ch <- prometheus.MustNewConstMetric(c.live, prometheus.GaugeValue, live)
	ch <- prometheus.MustNewConstMetric(c.entries, prometheus.GaugeValue, float64(s.Entries))
}
