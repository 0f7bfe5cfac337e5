package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// newRedis returns the Redis client sessiond uses, and a function that
// releases it (and the embedded server, if one was started).
func newRedis(c *config, log *slog.Logger) (redis.UniversalClient, func(), error) {
	var opts *redis.Options
	var embedded *miniredis.Miniredis
	if c.redisURL == "" {
		// Development default: an in-process Redis-compatible server, so the
		// same go-redis code path runs. ClockTTL makes keys expire on the wall
		// clock, as on a real Redis.
		embedded = miniredis.NewMiniRedis()
		embedded.ClockTTL(true)
		if err := embedded.StartAddr("127.0.0.1:0"); err != nil {
			return nil, nil, fmt.Errorf("embedded store: %w", err)
		}
		log.Warn("no --redis-url given: using an embedded in-memory store, for development only; "+
			"every session is lost when sessiond exits and nothing is shared with other replicas", "addr", embedded.Addr())
		opts = &redis.Options{Addr: embedded.Addr()}
	} else {
		var err error
		if opts, err = redis.ParseURL(c.redisURL); err != nil {
			return nil, nil, fmt.Errorf("--redis-url: %s", redactURLError(c.redisURL, err))
		}
	}
	// go-redis' defaults ignore the caller's context deadline; sessiond's
	// calls must not outlive the gRPC deadline.
	opts.ContextTimeoutEnabled = true
	opts.DialTimeout = c.redisDialTimeout
	opts.ReadTimeout = c.redisTimeout
	opts.WriteTimeout = c.redisTimeout
	if c.redisPoolSize > 0 {
		opts.PoolSize = c.redisPoolSize
	}
	rdb := redis.NewClient(opts)
	return rdb, func() {
		_ = rdb.Close()
		if embedded != nil {
			embedded.Close()
		}
	}, nil
}

// redactURLError keeps a password in --redis-url out of the error message.
func redactURLError(raw string, err error) string {
	msg := err.Error()
	if u, perr := url.Parse(raw); perr == nil && u.User != nil {
		if p, ok := u.User.Password(); ok && p != "" {
			msg = strings.ReplaceAll(msg, p, "xxxxx")
		}
	}
	return msg
}

// redisLogger sends go-redis' own messages (reconnects and the like) to slog
// at debug level instead of stderr.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
}
