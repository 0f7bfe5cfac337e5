package autopipe

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/sessiond/sessiond/internal/redistest"
)

// BenchmarkHGetAll compares, from 1, 16 and 64 concurrent callers, three
// ways to read a session hash: one HGETALL per call (direct), this
// package's Reader (autopipe), and go-redis' own experimental
// AutoPipeliner, blocking face, with its defaults (goredis-autopipeline).
// Alternate them with -count and compare medians:
//
//	go test -run '^$' -bench HGetAll -count 5 ./internal/autopipe
func BenchmarkHGetAll(b *testing.B) {
	srv := redistest.Start(b)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: 64})
	b.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	const keys = 1000
	for i := range keys {
		if err := rdb.HSet(ctx, "s:"+strconv.Itoa(i), "u", "user", "e", "1700000000000", "c", "1700000000000", "a", "Mozilla/5.0 (X11; Linux x86_64)").Err(); err != nil {
			b.Fatal(err)
		}
	}
	keyOf := func(i int64) string { return "s:" + strconv.FormatInt(i%keys, 10) }

	reader := New(rdb, Config{})
	rctx, stop := context.WithCancel(ctx)
	ran := make(chan struct{})
	go func() { reader.Run(rctx); close(ran) }()
	b.Cleanup(func() { stop(); <-ran })

	ap, err := rdb.AutoPipeline()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = ap.Close() })

	ways := []struct {
		name string
		read func(ctx context.Context, key string) (map[string]string, error)
	}{
		{"direct", func(ctx context.Context, key string) (map[string]string, error) {
			return rdb.HGetAll(ctx, key).Result()
		}},
		{"autopipe", reader.HGetAll},
		{"goredis-autopipeline", func(ctx context.Context, key string) (map[string]string, error) {
			return ap.HGetAll(ctx, key).Result()
		}},
	}
	for _, callers := range []int{1, 16, 64} {
		for _, w := range ways {
			b.Run(w.name+"/callers="+strconv.Itoa(callers), func(b *testing.B) {
				var next atomic.Int64
				var wg sync.WaitGroup
				b.ResetTimer()
				for range callers {
					wg.Go(func() {
						for {
							i := next.Add(1)
							if i > int64(b.N) {
								return
							}
							m, err := w.read(ctx, keyOf(i))
							if err != nil || m["u"] != "user" {
								b.Errorf("read %s: %v %v", keyOf(i), m, err)
								return
							}
						}
					})
				}
				wg.Wait()
			})
		}
	}
}
