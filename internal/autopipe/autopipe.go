// Package autopipe coalesces the Redis reads of concurrent callers into
// pipelines: what rueidis calls auto-pipelining, for the one read of
// sessiond's hot path (HGETALL of a session), over go-redis.
//
// go-redis v9.23 has an auto-pipeliner of its own (Client.AutoPipeline),
// marked experimental. BenchmarkHGetAll measures both: this small Reader
// did as well or better at 1, 16 and 64 callers (1.01, 1.42 and 3.30 × one
// HGETALL per call, against 0.96, 1.33 and 2.65 for go-redis', medians of
// five alternated runs on 2 cores), and it keeps what sessiond relies on:
// a lone caller reads on its own connection, a Cluster's reads are queued
// by master so that a hung master holds up only its own keys' reads, each
// caller fails alone, and the API will not change under it.
//
// Reads are queued by the Redis that holds their key: the one Redis (or a
// Sentinel's master), or on a Cluster each master. A caller that finds
// nothing else in flight to its Redis reads directly, on its own
// connection and under its own context: one caller at a time pays nothing
// for the batching. Otherwise it queues its read. A few lanes (goroutines)
// per Redis take what is queued, as much as there is (up to MaxBatch), send
// it as one pipeline, and hand each caller its own reply; while a lane
// waits for Redis, new reads pile up for the next pipeline. There is no
// timer: a lane sends as soon as it is free, so a read waits at most for
// the pipelines ahead of it, never for more reads to come.
//
// Each reply is the caller's own: a read that failed (the pipeline's
// connection broke, Redis answered an error, the master that holds its key
// is down or hung) fails that caller, never another, and never answers with
// anyone else's data. A caller whose context ends stops waiting at once
// (its read, queued or sent, is dropped on arrival). A pipeline is bounded
// by the client's read timeout, not by any one caller's deadline; while a
// master hangs, its lanes wait on it and the other masters' lanes go on. A
// read that finds its queue full (MaxBatch reads for each lane, queued
// behind pipelines that have not come back) reads directly instead, within
// the client's pool.
package autopipe

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// The defaults of Config.
const (
	DefaultLanes    = 2
	DefaultMaxBatch = 256
)

// Config configures a Reader. The zero value is the defaults.
type Config struct {
	// Lanes is how many pipelines may be in flight at once to each Redis
	// (each master of a Cluster); 0 means DefaultLanes.
	Lanes int
	// MaxBatch bounds the reads of one pipeline; 0 means DefaultMaxBatch.
	MaxBatch int
}

// minPruneAt is the fewest groups of a Cluster's at which idle ones are
// dropped.
const minPruneAt = 16

// errStopped fails the reads still queued when Run ends.
var errStopped = errors.New("autopipe: the reader has stopped")

// Reader coalesces concurrent HGETALLs. It reads directly until Run runs.
type Reader struct {
	rdb      redis.UniversalClient
	cluster  *redis.ClusterClient // rdb, on a Cluster: reads are queued by master
	lanes    int
	maxBatch int
	maxQueue int // reads queued for one Redis beyond which a caller reads directly

	running atomic.Bool
	mu      sync.Mutex // guards adding to groups, and running's changes
	one     *group     // the queue of a single Redis (or a Sentinel's master)
	groups  sync.Map   // on a Cluster: *redis.Client (the master's; nil: slots unknown) → *group
	ngroups int        // in groups
	pruneAt int        // ngroups at which idle groups are dropped
	lanesWG sync.WaitGroup

	direct, batched, pipelines atomic.Uint64 // Stats

	pool sync.Pool // of *read
}

// Stats counts a Reader's reads since New.
type Stats struct {
	// Direct is the reads sent on their own: by a caller that found no other
	// read in flight to its Redis (or its queue full), or while Run was not
	// running.
	Direct uint64
	// Batched is the reads sent in pipelines, and Pipelines the pipelines.
	Batched, Pipelines uint64
}

// Stats returns the Reader's counts so far.
func (r *Reader) Stats() Stats {
	return Stats{Direct: r.direct.Load(), Batched: r.batched.Load(), Pipelines: r.pipelines.Load()}
}

// group is the queue of the reads of one Redis, and its lanes.
type group struct {
	// inflight counts the direct reads and the pipelines on their way: a
	// caller reads directly only when it is 0.
	inflight atomic.Int32

	mu      sync.Mutex
	ready   sync.Cond // lanes wait on it (with mu) for reads to send
	queue   []*read
	lanes   int  // started, at most Reader.lanes
	idle    int  // of lanes, waiting on ready
	retired bool // Run has ended, or the group was dropped as idle: lanes end, nothing more is queued
}

func newGroup() *group {
	g := &group{}
	g.ready.L = &g.mu
	return g
}

// read is one queued HGETALL.
type read struct {
	key   string
	reply map[string]string
	err   error
	done  chan struct{} // receives once, when reply and err are set
}

// New returns a Reader over rdb. It starts nothing: see Run.
func New(rdb redis.UniversalClient, cfg Config) *Reader {
	if cfg.Lanes <= 0 {
		cfg.Lanes = DefaultLanes
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	r := &Reader{rdb: rdb, lanes: cfg.Lanes, maxBatch: cfg.MaxBatch, maxQueue: cfg.Lanes * cfg.MaxBatch, pruneAt: minPruneAt}
	r.cluster, _ = rdb.(*redis.ClusterClient)
	r.pool.New = func() any { return &read{done: make(chan struct{}, 1)} }
	return r
}

// Run batches reads until ctx ends, then waits for the pipelines on their
// way. Reads still queued when ctx ends fail.
func (r *Reader) Run(ctx context.Context) {
	r.mu.Lock()
	r.one = newGroup()
	r.running.Store(true)
	r.mu.Unlock()

	<-ctx.Done()

	r.mu.Lock()
	r.running.Store(false)
	groups := []*group{r.one}
	r.groups.Range(func(k, g any) bool {
		groups = append(groups, g.(*group))
		r.groups.Delete(k)
		return true
	})
	r.ngroups = 0
	r.mu.Unlock()
	for _, g := range groups {
		g.mu.Lock()
		g.retired = true
		g.ready.Broadcast()
		queued := g.queue
		g.queue = nil
		g.mu.Unlock()
		for _, rd := range queued {
			rd.reply, rd.err = nil, errStopped
			rd.done <- struct{}{}
		}
	}
	r.lanesWG.Wait()
}

// HGetAll is rdb.HGetAll(ctx, key).Result(), through a pipeline when other
// reads are in flight to the Redis that holds key.
func (r *Reader) HGetAll(ctx context.Context, key string) (map[string]string, error) {
	for r.running.Load() {
		g := r.groupOf(ctx, key)
		if g == nil {
			break // Run has ended
		}
		if g.inflight.CompareAndSwap(0, 1) { // nothing else in flight: no batching to wait for
			m, err := r.readDirect(ctx, key)
			g.inflight.Add(-1)
			return m, err
		}
		rd := r.pool.Get().(*read)
		rd.key = key
		switch r.enqueue(g, rd) {
		case queueRetired:
			r.pool.Put(rd)
			continue // dropped as idle just now: its master's new group
		case queueFull:
			r.pool.Put(rd)
			return r.readDirect(ctx, key)
		}
		select {
		case <-rd.done:
			m, err := rd.reply, rd.err
			rd.reply, rd.err = nil, nil
			r.pool.Put(rd)
			return m, err
		case <-ctx.Done():
			// A lane (or Run) still owns rd: it answers into done, unread,
			// and rd is left to the garbage collector.
			return nil, ctx.Err()
		}
	}
	return r.readDirect(ctx, key)
}

// readDirect reads key on its own, under the caller's ctx.
func (r *Reader) readDirect(ctx context.Context, key string) (map[string]string, error) {
	r.direct.Add(1)
	return r.rdb.HGetAll(ctx, key).Result()
}

// groupOf returns the group of the Redis that holds key, or nil once Run
// has ended.
func (r *Reader) groupOf(ctx context.Context, key string) *group {
	if r.cluster == nil {
		return r.one
	}
	master, err := r.cluster.MasterForKey(ctx, key)
	if err != nil {
		master = nil // slots unknown: its pipelines go out through go-redis' routing
	}
	if g, ok := r.groups.Load(master); ok {
		return g.(*group)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.running.Load() {
		return nil
	}
	if g, ok := r.groups.Load(master); ok {
		return g.(*group)
	}
	if r.ngroups >= r.pruneAt {
		// Masters come and go (failovers, resharding): drop the groups that
		// are idle, so that past topologies' are not kept. A caller that
		// holds one finds it retired and looks again. Pruning when the
		// groups have doubled keeps it rare.
		r.groups.Range(func(k, v any) bool {
			g := v.(*group)
			g.mu.Lock()
			if g.idle == g.lanes && len(g.queue) == 0 {
				g.retired = true
				g.ready.Broadcast()
				r.groups.Delete(k)
				r.ngroups--
			}
			g.mu.Unlock()
			return true
		})
		r.pruneAt = max(minPruneAt, 2*r.ngroups)
	}
	g := newGroup()
	r.groups.Store(master, g)
	r.ngroups++
	return g
}

type queued int

const (
	queueOK queued = iota
	queueFull
	queueRetired
)

// enqueue queues rd in g, for a waiting lane, or a new one if fewer than
// r.lanes run.
func (r *Reader) enqueue(g *group, rd *read) queued {
	g.mu.Lock()
	switch {
	case g.retired:
		g.mu.Unlock()
		return queueRetired
	case len(g.queue) >= r.maxQueue:
		g.mu.Unlock()
		return queueFull
	}
	g.queue = append(g.queue, rd)
	start := false
	switch {
	case g.idle > 0:
		g.ready.Signal()
	case g.lanes < r.lanes:
		g.lanes++
		r.lanesWG.Add(1) // under g.mu, before Run retires g and waits
		start = true
	}
	g.mu.Unlock()
	if start {
		go r.lane(g)
	}
	return queueOK
}

// lane sends what g has queued as one pipeline, again and again, until g
// is retired.
func (r *Reader) lane(g *group) {
	defer r.lanesWG.Done()
	var batch []*read // the queue's slice, swapped with the queue's each time
	cmds := make([]*redis.MapStringStringCmd, r.maxBatch)
	g.mu.Lock()
	for {
		for len(g.queue) == 0 && !g.retired {
			g.idle++
			g.ready.Wait()
			g.idle--
		}
		if g.retired { // Run fails what is queued
			g.lanes--
			g.mu.Unlock()
			return
		}
		if len(g.queue) <= r.maxBatch { // all of it: swap the slices
			batch, g.queue = g.queue, batch[:0]
		} else {
			batch = append(batch[:0], g.queue[:r.maxBatch]...)
			rest := copy(g.queue, g.queue[r.maxBatch:])
			clear(g.queue[rest:])
			g.queue = g.queue[:rest]
		}
		g.inflight.Add(1)
		g.mu.Unlock()

		// Counted before the callers are answered, so that a caller's read
		// is in Stats by the time it returns.
		r.batched.Add(uint64(len(batch)))
		r.pipelines.Add(1)
		r.send(batch, cmds)
		g.inflight.Add(-1)
		g.mu.Lock()
	}
}

// send sends batch as one pipeline and answers each read (cmds: room for
// the commands, at least len(batch)).
func (r *Reader) send(batch []*read, cmds []*redis.MapStringStringCmd) {
	// The pipeline is nobody's call: no caller's deadline bounds it, the
	// client's read timeout does.
	ctx := context.Background()
	_, _ = r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, rd := range batch {
			cmds[i] = p.HGetAll(ctx, rd.key)
		}
		return nil
	})
	for i, rd := range batch {
		rd.reply, rd.err = cmds[i].Result()
		cmds[i] = nil
		batch[i] = nil
		rd.done <- struct{}{}
	}
}
