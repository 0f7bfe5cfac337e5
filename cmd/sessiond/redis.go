package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// newRedis returns the Redis client sessiond uses, for the deployment the
// flags select (one code path: a redis.UniversalClient), and a function that
// releases it (and the embedded server, if one was started).
//
// Every mode reads and writes on masters only: a replica may still hold a
// session that was revoked on its master, so ValidateSession never reads
// from one (Cluster ReadOnly and Sentinel ReplicaOnly stay off).
func newRedis(c *config, log *slog.Logger) (redis.UniversalClient, func(), error) {
	tlsConf, err := c.redisTLSConfig()
	if err != nil {
		return nil, nil, err
	}
	var rdb redis.UniversalClient
	var embedded *miniredis.Miniredis
	switch c.redisMode() {
	case "cluster":
		rdb = redis.NewClusterClient(&redis.ClusterOptions{
			Addrs:                 c.redisCluster,
			Username:              c.redisUsername,
			Password:              c.redisPassword,
			TLSConfig:             tlsConf,
			ContextTimeoutEnabled: true,
			DialTimeout:           c.redisDialTimeout,
			ReadTimeout:           c.redisTimeout,
			WriteTimeout:          c.redisTimeout,
			PoolSize:              c.redisPoolSize,
			ReadOnly:              false,
			// go-redis reloads the slot map on MOVED replies and on this
			// timer only, not when a master stops answering: with its 60s
			// default, the users of a dead master stay unavailable for up to
			// a minute after its replica took over (measured in
			// internal/faulttest). One CLUSTER SLOTS a second is cheap.
			ClusterStateReloadInterval: clusterStateReloadInterval,
		})
	case "sentinel":
		rdb = redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName:            c.redisSentinelName,
			SentinelAddrs:         c.redisSentinels,
			SentinelPassword:      c.sentinelPassword,
			Username:              c.redisUsername,
			Password:              c.redisPassword,
			TLSConfig:             tlsConf,
			ContextTimeoutEnabled: true,
			DialTimeout:           c.redisDialTimeout,
			ReadTimeout:           c.redisTimeout,
			WriteTimeout:          c.redisTimeout,
			PoolSize:              c.redisPoolSize,
			ReplicaOnly:           false,
		})
	default:
		var opts *redis.Options
		if c.redisURL == "" {
			// Development default: an in-process Redis-compatible server, so the
			// same go-redis code path runs. ClockTTL makes keys expire on the wall
			// clock, as on a real Redis.
			embedded = miniredis.NewMiniRedis()
			embedded.ClockTTL(true)
			if err := embedded.StartAddr("127.0.0.1:0"); err != nil {
				return nil, nil, fmt.Errorf("embedded store: %w", err)
			}
			log.Warn("no Redis configured: using an embedded in-memory store, for development only; "+
				"every session is lost when sessiond exits and nothing is shared with other replicas", "addr", embedded.Addr())
			opts = &redis.Options{Addr: embedded.Addr()}
		} else {
			if opts, err = redis.ParseURL(c.redisURL); err != nil {
				return nil, nil, fmt.Errorf("--redis-url: %s", redactURLError(c.redisURL, err))
			}
			if c.redisUsername != "" {
				opts.Username = c.redisUsername
			}
			if c.redisPassword != "" {
				opts.Password = c.redisPassword
			}
			if tlsConf != nil {
				if opts.TLSConfig != nil { // rediss:// set the server name
					tlsConf.ServerName = opts.TLSConfig.ServerName
				}
				opts.TLSConfig = tlsConf
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
		rdb = redis.NewClient(opts)
	}
	return rdb, func() {
		_ = rdb.Close()
		if embedded != nil {
			embedded.Close()
		}
	}, nil
}

// clusterStateReloadInterval is how often the Cluster client reloads the
// slot map.
const clusterStateReloadInterval = time.Second

// redisTLSConfig is the TLS configuration the flags ask for, or nil.
func (c *config) redisTLSConfig() (*tls.Config, error) {
	rediss := strings.HasPrefix(c.redisURL, "rediss://")
	if !c.redisTLS && !rediss && c.redisTLSCAFile == "" && c.redisTLSCertFile == "" {
		return nil, nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.redisTLSCAFile != "" {
		pem, err := os.ReadFile(c.redisTLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("--redis-tls-ca-file: %w", err)
		}
		conf.RootCAs = x509.NewCertPool()
		if !conf.RootCAs.AppendCertsFromPEM(pem) {
			return nil, errors.New("--redis-tls-ca-file: no PEM certificate in the file")
		}
	}
	if c.redisTLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.redisTLSCertFile, c.redisTLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("--redis-tls-cert-file/--redis-tls-key-file: %w", err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
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

// redisLogger sends go-redis' own messages (reconnects, sentinel failovers)
// to slog at debug level instead of stderr.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
}
