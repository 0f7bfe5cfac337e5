package autopipe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessiond/sessiond/internal/redistest"
)

// pipelineCounter counts the HGETALLs go-redis sends: in pipelines (and
// the pipelines), and alone (a connection's set-up commands are not
// counted).
type pipelineCounter struct {
	pipelines, piped, single atomic.Int64
}

func (c *pipelineCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *pipelineCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "hgetall" {
			c.single.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (c *pipelineCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		n := 0
		for _, cmd := range cmds {
			if cmd.Name() == "hgetall" {
				n++
			}
		}
		if n > 0 {
			c.pipelines.Add(1)
			c.piped.Add(int64(n))
		}
		return next(ctx, cmds)
	}
}

// running returns a Reader over rdb whose lanes run until the test ends.
func running(t *testing.T, rdb redis.UniversalClient, cfg Config) *Reader {
	t.Helper()
	r := New(rdb, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	for !r.running.Load() {
		time.Sleep(time.Millisecond)
	}
	return r
}

// TestEachCallerGetsItsOwnReply: 64 callers read 20,000 keys (a tenth of
// them missing, one holding a string: WRONGTYPE) at once; each gets its own
// key's fields, or its own error, and the reads went out in pipelines.
func TestEachCallerGetsItsOwnReply(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	const keys = 2000
	for i := range keys {
		if i%10 == 9 {
			continue // missing
		}
		if err := rdb.HSet(ctx, "k"+strconv.Itoa(i), "i", i, "x", "v"+strconv.Itoa(i)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := rdb.Set(ctx, "string", "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	var counted pipelineCounter
	rdb.AddHook(&counted)
	r := running(t, rdb, Config{})
	var wg sync.WaitGroup
	var bad atomic.Int64
	for w := range 64 {
		wg.Go(func() {
			for n := range 20_000 / 64 {
				i := (w*131 + n*17) % keys
				m, err := r.HGetAll(ctx, "k"+strconv.Itoa(i))
				switch {
				case err != nil:
					bad.Add(1)
					t.Errorf("k%d: %v", i, err)
				case i%10 == 9 && len(m) != 0:
					bad.Add(1)
					t.Errorf("missing k%d read as %v", i, m)
				case i%10 != 9 && (m["i"] != strconv.Itoa(i) || m["x"] != "v"+strconv.Itoa(i)):
					bad.Add(1)
					t.Errorf("k%d read as %v", i, m)
				}
				if n%50 == 0 {
					if _, err := r.HGetAll(ctx, "string"); err == nil || !redis.HasErrorPrefix(err, "WRONGTYPE") {
						t.Errorf("a read of a string: %v, want WRONGTYPE", err)
					}
				}
				if bad.Load() > 10 {
					return
				}
			}
		})
	}
	wg.Wait()
	p, piped, single := counted.pipelines.Load(), counted.piped.Load(), counted.single.Load()
	t.Logf("%d reads: %d direct, %d in %d pipelines (%.1f a pipeline)", single+piped, single, piped, p, float64(piped)/float64(max(p, 1)))
	if p == 0 || float64(piped)/float64(p) < 2 {
		t.Errorf("64 callers at once made %d pipelines of %d reads: no batching", p, piped)
	}
	// Every call is counted once, as direct or batched (the hook, as go-redis
	// sent them; go-redis retries nothing here).
	const calls = 64 * (20_000/64 + (20_000/64+49)/50) // each caller's reads, and its reads of "string"
	if st := r.Stats(); st.Direct+st.Batched != calls || st.Batched != uint64(piped) || st.Pipelines != uint64(p) || st.Direct != uint64(single) {
		t.Errorf("Stats() = %+v; the test made %d calls, and go-redis sent %d direct, %d in %d pipelines", st, calls, single, piped, p)
	}
}

// TestOneCallerReadsDirectly: alone, a caller's reads are plain HGETALLs
// under its own context (no pipeline, no lane in between).
func TestOneCallerReadsDirectly(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	var counted pipelineCounter
	rdb.AddHook(&counted)
	r := running(t, rdb, Config{})
	for range 200 {
		if _, err := r.HGetAll(context.Background(), "k"); err != nil {
			t.Fatal(err)
		}
	}
	if p, s := counted.pipelines.Load(), counted.single.Load(); p != 0 || s != 200 {
		t.Fatalf("one caller's 200 reads: %d pipelines, %d direct; want all direct", p, s)
	}
	if st := r.Stats(); st != (Stats{Direct: 200}) {
		t.Fatalf("Stats() = %+v after one caller's 200 reads, want 200 direct", st)
	}
}

// TestCallerDeadlineWhileRedisHangs: with Redis paused, a queued caller
// returns at its own deadline, not when the pipeline gives up; when Redis
// answers again, reads succeed.
func TestCallerDeadlineWhileRedisHangs(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1, ReadTimeout: 3 * time.Second})
	t.Cleanup(func() { _ = rdb.Close() })
	r := running(t, rdb, Config{})
	admin := srv.Client(t)
	if err := admin.Do(context.Background(), "CLIENT", "PAUSE", 1500, "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var late atomic.Int64
	for range 16 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, err := r.HGetAll(ctx, "k")
			if !errors.Is(err, context.DeadlineExceeded) && !errors.As(err, new(net.Error)) {
				t.Errorf("a read while Redis is paused: %v, want the caller's deadline", err)
			}
			if time.Since(start) > time.Second {
				late.Add(1)
			}
		})
	}
	wg.Wait()
	if late.Load() > 0 {
		t.Fatalf("%d callers with a 200ms deadline returned after more than 1s", late.Load())
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := r.HGetAll(context.Background(), "k"); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("reads after the pause: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFailsClosed: with Redis gone, every read of 32 concurrent callers
// fails; none answers a reply.
func TestFailsClosed(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	if err := rdb.HSet(context.Background(), "k", "f", "v").Err(); err != nil {
		t.Fatal(err)
	}
	r := running(t, rdb, Config{})
	srv.Stop()
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for range 20 {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				m, err := r.HGetAll(ctx, "k")
				cancel()
				if err == nil {
					t.Errorf("a read with Redis stopped answered %v", m)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestClusterNodeLossStaysWithItsKeys: on a Cluster with a master killed,
// batched reads of the keys of the other masters succeed, and those of the
// dead one's keys fail, each on its own.
func TestClusterNodeLossStaysWithItsKeys(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 3, 0, "--cluster-require-full-coverage", "no")
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs(), ContextTimeoutEnabled: true, MaxRetries: -1, DialTimeout: 100 * time.Millisecond, MaxRedirects: 1})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	const keys = 300
	node := map[string]*redistest.Server{}
	for i := range keys {
		k := fmt.Sprintf("{t%d}:k", i)
		if err := rdb.HSet(ctx, k, "i", i).Err(); err != nil {
			t.Fatal(err)
		}
		node[k] = cl.MasterOf(k)
	}
	dead := node["{t0}:k"]
	r := running(t, rdb, Config{})
	dead.Kill()
	var wg sync.WaitGroup
	var ok, failed, wrong atomic.Int64
	for w := range 32 {
		wg.Go(func() {
			for i := w; i < keys; i += 32 {
				k := fmt.Sprintf("{t%d}:k", i)
				cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				m, err := r.HGetAll(cctx, k)
				cancel()
				switch {
				case node[k] == dead && err == nil:
					wrong.Add(1)
				case node[k] != dead && (err != nil || m["i"] != strconv.Itoa(i)):
					t.Errorf("%s, on a live master: %v, %v", k, m, err)
					failed.Add(1)
				default:
					ok.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if wrong.Load() > 0 {
		t.Errorf("%d reads of the killed master's keys answered", wrong.Load())
	}
	t.Logf("after the kill: %d reads as expected (live masters' keys read, the dead one's failed), %d live ones failed", ok.Load(), failed.Load())
}

// TestClusterFrozenNodeStaysWithItsKeys: on a Cluster with a master that
// hangs (SIGSTOP: connected, answering nothing, as behind a partition),
// batched reads of the other masters' keys go on while reads of the hung
// master's keys wait in pipelines of their own. Reads of the hung master's
// keys keep coming, so that every batch would hold some.
func TestClusterFrozenNodeStaysWithItsKeys(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 3, 0, "--cluster-require-full-coverage", "no")
	// A read timeout far above the callers' deadlines: a pipeline to the hung
	// master is held that long.
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs(), ContextTimeoutEnabled: true, MaxRetries: -1, ReadTimeout: 3 * time.Second, MaxRedirects: 1})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	hung := cl.MasterOf("{t0}:k")
	var live, dead []string
	for i := range 300 {
		k := fmt.Sprintf("{t%d}:k", i)
		if err := rdb.HSet(ctx, k, "k", k).Err(); err != nil {
			t.Fatal(err)
		}
		if cl.MasterOf(k) == hung {
			dead = append(dead, k)
		} else {
			live = append(live, k)
		}
	}
	r := running(t, rdb, Config{})
	hung.Freeze()
	t.Cleanup(hung.Thaw) // before the Cluster stops: a stopped process ignores SIGTERM

	read := func(k string) error {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		m, err := r.HGetAll(cctx, k)
		if err == nil && m["k"] != k {
			err = fmt.Errorf("answered %v", m)
		}
		return err
	}
	var wg sync.WaitGroup
	var answered, failed atomic.Int64
	var firstErr atomic.Value
	stop := time.Now().Add(1500 * time.Millisecond)
	for w := range 8 { // the hung master's keys
		wg.Go(func() {
			for i := w; time.Now().Before(stop); i = (i + 8) % len(dead) {
				if err := read(dead[i]); err == nil {
					t.Errorf("%s, on the hung master, answered", dead[i])
				}
			}
		})
	}
	for w := range 24 { // the live masters' keys
		wg.Go(func() {
			for i := w; time.Now().Before(stop); i = (i + 24) % len(live) {
				if err := read(live[i]); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%s: %v", live[i], err))
				} else {
					answered.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if failed.Load() > 0 || answered.Load() == 0 {
		t.Fatalf("with one master hung, %d reads of the live masters' keys failed (%d answered); the first: %v", failed.Load(), answered.Load(), firstErr.Load())
	}
	t.Logf("with one master hung: %d reads of the live masters' keys, all answered", answered.Load())
}
