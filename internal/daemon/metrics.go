package daemon

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/sessiond/sessiond/server/store"
)

// newRegistry returns the registry /metrics serves: a dedicated one (not
// Prometheus' global), with the Go runtime and process collectors, sessiond's
// (the service's, the forward-auth endpoints') and the Redis connection
// pool's.
func newRegistry(own []prometheus.Collector, rdb redis.UniversalClient) (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	for _, c := range append([]prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newPoolCollector(rdb),
	}, own...) {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return reg, nil
}

// poolCollector exports the go-redis connection pool's statistics
// (rdb.PoolStats(), read at each scrape). On a Cluster they are the sum over
// the nodes. pool="main" is the pool of single commands and transactions'
// WATCH; pool="pipeline" the dedicated pool of pipelines (MULTI/EXEC), when
// go-redis has one.
type poolCollector struct {
	rdb                                               redis.UniversalClient
	hits, misses, timeouts, waits, waitSeconds, stale *prometheus.Desc
	conns, idle                                       *prometheus.Desc
}

func newPoolCollector(rdb redis.UniversalClient) *poolCollector {
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("sessiond_redis_pool_"+name, help, []string{"pool"}, nil)
	}
	return &poolCollector{
		rdb:         rdb,
		hits:        desc("hits_total", "Times a free connection was found in the pool."),
		misses:      desc("misses_total", "Times no free connection was in the pool (a new one was dialed, or the call waited)."),
		timeouts:    desc("timeouts_total", "Times a call gave up waiting for a connection (pool exhausted for PoolTimeout): the call failed with Unavailable."),
		waits:       desc("waits_total", "Times a call waited for a connection."),
		waitSeconds: desc("wait_seconds_total", "Total time calls spent waiting for a connection."),
		stale:       desc("stale_connections_total", "Connections removed from the pool as stale (idle too long, or broken)."),
		conns:       desc("connections", "Connections in the pool now (idle and in use)."),
		idle:        desc("idle_connections", "Idle connections in the pool now."),
	}
}

// Describe implements prometheus.Collector.
func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.hits, c.misses, c.timeouts, c.waits, c.waitSeconds, c.stale, c.conns, c.idle} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.rdb.PoolStats()
	if s == nil {
		return
	}
	c.collect(ch, "main", (*redis.PoolStats)(s))
	if s.PipelineStats != nil {
		c.collect(ch, "pipeline", (*redis.PoolStats)(s.PipelineStats))
	}
}

func (c *poolCollector) collect(ch chan<- prometheus.Metric, pool string, s *redis.PoolStats) {
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, pool)
	}
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, pool)
	}
	counter(c.hits, float64(s.Hits))
	counter(c.misses, float64(s.Misses))
	counter(c.timeouts, float64(s.Timeouts))
	counter(c.waits, float64(s.WaitCount))
	counter(c.waitSeconds, float64(s.WaitDurationNs)/1e9)
	counter(c.stale, float64(s.StaleConns))
	gauge(c.conns, float64(s.TotalConns))
	gauge(c.idle, float64(s.IdleConns))
}

// retriesCollector exports the store's lost WATCH races
// (sessiond_store_watch_retries_total), read at each scrape.
type retriesCollector struct {
	retries func() map[string]uint64
	desc    *prometheus.Desc
}

func newRetriesCollector(retries func() map[string]uint64) *retriesCollector {
	return &retriesCollector{retries: retries, desc: prometheus.NewDesc("sessiond_store_watch_retries_total",
		"Writes that lost the optimistic-locking race (WATCH) to a concurrent write for the same user or session and were tried again, by operation.",
		[]string{"operation"}, nil)}
}

// Describe implements prometheus.Collector.
func (c *retriesCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *retriesCollector) Collect(ch chan<- prometheus.Metric) {
	for op, n := range c.retries() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(n), op)
	}
}

// readsCollector exports how the validations' reads went to Redis
// (store.ReadStats, read at each scrape): sessiond_store_validation_reads_total
// by path (direct: on their own; pipelined: in a shared pipeline) and
// sessiond_store_validation_read_pipelines_total. Pipelined reads over
// pipelines is the mean batch.
type readsCollector struct {
	stats            func() store.ReadStats
	reads, pipelines *prometheus.Desc
}

func newReadsCollector(stats func() store.ReadStats) *readsCollector {
	return &readsCollector{
		stats: stats,
		reads: prometheus.NewDesc("sessiond_store_validation_reads_total",
			"Reads of a session by validations (ValidateSession, ext_authz, forward auth), by path: direct (sent on its own, when no other read was in flight to its Redis) or pipelined (sent in a pipeline shared with concurrent validations).",
			[]string{"path"}, nil),
		pipelines: prometheus.NewDesc("sessiond_store_validation_read_pipelines_total",
			"Pipelines of concurrent validations' reads sent to Redis; pipelined reads over pipelines is the mean batch.",
			nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *readsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.reads; ch <- c.pipelines }

// Collect implements prometheus.Collector.
func (c *readsCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	ch <- prometheus.MustNewConstMetric(c.reads, prometheus.CounterValue, float64(s.Direct), "direct")
	ch <- prometheus.MustNewConstMetric(c.reads, prometheus.CounterValue, float64(s.Batched), "pipelined")
	ch <- prometheus.MustNewConstMetric(c.pipelines, prometheus.CounterValue, float64(s.Pipelines))
}
