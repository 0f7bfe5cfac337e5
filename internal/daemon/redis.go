package daemon

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// The defaults of RedisConfig.
const (
	DefaultRedisDialTimeout = 2 * time.Second
	DefaultRedisTimeout     = time.Second
)

// RedisConfig selects the Redis deployment: exactly one of URL (a single
// Redis), ClusterAddrs (a Cluster) and SentinelAddrs with SentinelMaster
// (Sentinel), or none of them for the embedded in-memory store
// (development only: nothing is kept or shared). The credentials and TLS
// settings apply to every mode.
type RedisConfig struct {
	URL            string   // --redis-url: redis://[[user]:password@]host:port[/db], rediss:// for TLS
	ClusterAddrs   []string // --redis-cluster-addrs: seed nodes
	SentinelAddrs  []string // --redis-sentinel-addrs
	SentinelMaster string   // --redis-sentinel-master: the name the sentinels monitor

	Username         string // --redis-username: overrides the one in URL
	Password         string // --redis-password: overrides the one in URL
	SentinelPassword string // --redis-sentinel-password: the sentinels' own

	TLS         bool   // --redis-tls: implied by rediss:// and by the files below
	TLSCAFile   string // --redis-tls-ca-file: "" means the system's CAs
	TLSCertFile string // --redis-tls-cert-file: a client certificate, with TLSKeyFile
	TLSKeyFile  string // --redis-tls-key-file

	// DialTimeout bounds connecting (--redis-dial-timeout); 0 means
	// DefaultRedisDialTimeout.
	DialTimeout time.Duration
	// Timeout bounds reading and writing one command (--redis-timeout); 0
	// means DefaultRedisTimeout.
	Timeout time.Duration
	// PoolSize is the connections per process (--redis-pool-size); 0 means
	// go-redis' 10 per CPU.
	PoolSize int

	// Client, if not nil, is used instead of a client built from the fields
	// above (which are then ignored), and is not closed by Run: for tests
	// that need a client of their own settings.
	Client redis.UniversalClient
}

func (c RedisConfig) withDefaults() RedisConfig {
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultRedisDialTimeout
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultRedisTimeout
	}
	return c
}

// mode names the Redis deployment c selects.
func (c RedisConfig) mode() string {
	switch {
	case c.Client != nil:
		return "client"
	case len(c.ClusterAddrs) > 0:
		return "cluster"
	case len(c.SentinelAddrs) > 0:
		return "sentinel"
	case c.URL != "":
		return "single"
	}
	return "embedded"
}

// newRedis returns the Redis client sessiond uses, for the deployment the
// flags select (one code path: a redis.UniversalClient), and a function that
// releases it (and the embedded server, if one was started).
//
// Every mode reads and writes on masters only: a replica may still hold a
// session that was revoked on its master, so ValidateSession never reads
// from one (Cluster ReadOnly and Sentinel ReplicaOnly stay off).
func newRedis(c RedisConfig, log *slog.Logger) (redis.UniversalClient, func(), error) {
	if c.Client != nil {
		return c.Client, func() {}, nil
	}
	tlsConf, err := c.tlsConfig()
	if err != nil {
		return nil, nil, err
	}
	var rdb redis.UniversalClient
	var embedded *miniredis.Miniredis
	// One set of options for every mode, as go-redis' UniversalOptions
	// builds each kind of client.
	common := &redis.UniversalOptions{
		Addrs:                 c.ClusterAddrs,
		MasterName:            c.SentinelMaster,
		SentinelPassword:      c.SentinelPassword,
		Username:              c.Username,
		Password:              c.Password,
		TLSConfig:             tlsConf,
		ContextTimeoutEnabled: true,
		DialTimeout:           c.DialTimeout,
		ReadTimeout:           c.Timeout,
		WriteTimeout:          c.Timeout,
		PoolSize:              c.PoolSize,
		ReadOnly:              false,
	}
	if tlsConf == nil {
		common.Dialer = plainDialer(c.DialTimeout)
	}
	switch c.mode() {
	case "cluster":
		opts := common.Cluster()
		// go-redis reloads the slot map on MOVED replies and on this timer
		// only, not when a master stops answering: with its 60s default, the
		// users of a dead master stay unavailable for up to a minute after
		// its replica took over (measured in internal/faulttest). One
		// CLUSTER SLOTS a second is cheap.
		opts.ClusterStateReloadInterval = clusterStateReloadInterval
		rdb = redis.NewClusterClient(opts)
	case "sentinel":
		common.Addrs = c.SentinelAddrs
		opts := common.Failover()
		opts.ReplicaOnly = false
		rdb = redis.NewFailoverClient(opts)
	default:
		var opts *redis.Options
		if c.URL == "" {
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
			if opts, err = redis.ParseURL(c.URL); err != nil {
				return nil, nil, fmt.Errorf("--redis-url: %s", redactURLError(c.URL, err))
			}
			if c.Username != "" {
				opts.Username = c.Username
			}
			if c.Password != "" {
				opts.Password = c.Password
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
		opts.DialTimeout = c.DialTimeout
		opts.ReadTimeout = c.Timeout
		opts.WriteTimeout = c.Timeout
		if c.PoolSize > 0 {
			opts.PoolSize = c.PoolSize
		}
		if opts.TLSConfig == nil {
			opts.Dialer = plainDialer(c.DialTimeout)
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

// plainDialer dials Redis over TCP as go-redis does (its dial timeout, 5
// minutes of TCP keep-alive), and hides the connection's file descriptor
// from go-redis. go-redis checks every connection it takes from its pool for
// a command with a non-blocking recvfrom(MSG_PEEK) (one system call and two
// allocations per command on the hot path), but only a connection that
// exposes its descriptor, which a TLS connection already does not; a
// connection found dead on use instead fails that command, which go-redis
// retries on a fresh connection (single commands and plain pipelines; a
// transaction answers Unavailable, like any write that hits a dead
// connection).
func plainDialer(timeout time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout, KeepAlive: 5 * time.Minute}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return opaqueConn{conn}, nil
	}
}

// opaqueConn is a connection without SyscallConn.
type opaqueConn struct{ net.Conn }

// clusterStateReloadInterval is how often the Cluster client reloads the
// slot map.
const clusterStateReloadInterval = time.Second

// tlsConfig is the TLS configuration c asks for, or nil.
func (c RedisConfig) tlsConfig() (*tls.Config, error) {
	rediss := strings.HasPrefix(c.URL, "rediss://")
	if !c.TLS && !rediss && c.TLSCAFile == "" && c.TLSCertFile == "" {
		return nil, nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.TLSCAFile != "" {
		pool, err := readCAFile(c.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("--redis-tls-ca-file: %w", err)
		}
		conf.RootCAs = pool
	}
	if c.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
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
