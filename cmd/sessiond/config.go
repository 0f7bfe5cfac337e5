package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/sessiond/sessiond/internal/credential"
	"github.com/sessiond/sessiond/server"
)

// envPrefix: every flag --some-name falls back to $SESSIOND_SOME_NAME.
const envPrefix = "SESSIOND_"

type config struct {
	listen             string
	redisURL           string
	redisCluster       []string
	redisSentinels     []string
	redisSentinelName  string
	redisUsername      string
	redisPassword      string
	sentinelPassword   string
	redisTLS           bool
	redisTLSCAFile     string
	redisTLSCertFile   string
	redisTLSKeyFile    string
	redisDialTimeout   time.Duration
	redisTimeout       time.Duration
	redisPoolSize      int
	defaultTTL         time.Duration
	maxTTL             time.Duration
	idleTimeout        time.Duration
	touchInterval      time.Duration
	maxSessionsPerUser int
	keyPrefix          string
	requestTimeout     time.Duration
	healthInterval     time.Duration
	shutdownTimeout    time.Duration
	reflection         bool
	logLevel           slog.Level
	logFormat          string
	extAuthz           bool
	authz              server.ExtAuthzConfig
	security           securityConfig // TLS, API keys, policy, limits: security.go
	// per-caller rate limits (ratelimit.go) and the audit log (audit.go)
	rateLimits rateLimitConfig
	audit      auditConfig
	admin      adminConfig // the admin HTTP listener: admin.go
}

func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseConfig reads flags from args and, for each flag not given there, its
// SESSIOND_ environment variable. It returns flag.ErrHelp for -h.
func parseConfig(args []string, getenv func(string) string, out io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("sessiond", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.listen, "listen", "127.0.0.1:50051", "gRPC listen address (host:port)")
	fs.StringVar(&c.redisURL, "redis-url", "", "Redis URL: redis://[[user]:password@]host:port[/db] or rediss:// for TLS;\nempty runs an embedded in-memory store for development (loses everything on exit)")
	clusterAddrs := fs.String("redis-cluster-addrs", "", "Redis Cluster seed nodes, host:port,host:port,...")
	sentinelAddrs := fs.String("redis-sentinel-addrs", "", "Redis Sentinel addresses, host:port,host:port,... (with --redis-sentinel-master)")
	fs.StringVar(&c.redisSentinelName, "redis-sentinel-master", "", "the master name the sentinels monitor")
	fs.StringVar(&c.redisUsername, "redis-username", "", "Redis ACL user (all modes; overrides the one in --redis-url)")
	fs.StringVar(&c.redisPassword, "redis-password", "", "Redis password (all modes; overrides the one in --redis-url); prefer the SESSIOND_REDIS_PASSWORD variable")
	fs.StringVar(&c.sentinelPassword, "redis-sentinel-password", "", "password of the sentinels themselves, if they require one")
	fs.BoolVar(&c.redisTLS, "redis-tls", false, "connect to Redis over TLS (all modes; implied by rediss://)")
	fs.StringVar(&c.redisTLSCAFile, "redis-tls-ca-file", "", "PEM file of the CAs that sign Redis' certificate (default: the system's)")
	fs.StringVar(&c.redisTLSCertFile, "redis-tls-cert-file", "", "PEM client certificate for Redis (with --redis-tls-key-file), if Redis asks for one")
	fs.StringVar(&c.redisTLSKeyFile, "redis-tls-key-file", "", "PEM key of --redis-tls-cert-file")
	fs.DurationVar(&c.redisDialTimeout, "redis-dial-timeout", 2*time.Second, "timeout for connecting to Redis")
	fs.DurationVar(&c.redisTimeout, "redis-timeout", time.Second, "read and write timeout of one Redis command")
	fs.IntVar(&c.redisPoolSize, "redis-pool-size", 0, "Redis connections per sessiond process (0: 10 per CPU)")
	fs.DurationVar(&c.defaultTTL, "default-ttl", server.DefaultConfig.DefaultTTL, "absolute session lifetime when a CreateSession request sets none")
	fs.DurationVar(&c.maxTTL, "max-ttl", server.DefaultConfig.MaxTTL, "longest session lifetime a request may ask for (longer is rejected)")
	fs.DurationVar(&c.idleTimeout, "idle-timeout", server.DefaultConfig.DefaultIdleTimeout, "idle timeout when a request sets none (0: no idle timeout by default)")
	fs.DurationVar(&c.touchInterval, "touch-interval", time.Minute, "a validation slides the idle timeout (one Redis write) at most once per this interval per session")
	fs.IntVar(&c.maxSessionsPerUser, "max-sessions-per-user", 100, "live sessions per user; a create over the cap revokes the oldest (0: no cap)")
	fs.StringVar(&c.keyPrefix, "key-prefix", "sessiond", "prefix of every Redis key")
	fs.DurationVar(&c.requestTimeout, "request-timeout", server.DefaultConfig.RequestTimeout, "longest a call waits for Redis before failing with Unavailable")
	fs.DurationVar(&c.healthInterval, "health-interval", time.Second, "how often Redis is pinged for the health service")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 10*time.Second, "on SIGINT/SIGTERM, how long in-flight calls may take to finish")
	fs.BoolVar(&c.reflection, "reflection", true, "serve gRPC server reflection (for grpcurl)")
	fs.BoolVar(&c.extAuthz, "ext-authz", true, "serve Envoy's external authorization API (envoy.service.auth.v3.Authorization/Check)")
	fs.StringVar(&c.authz.CookieName, "authz-cookie-name", server.DefaultExtAuthzConfig.CookieName, "ext_authz: the cookie that carries the token when there is no Authorization: Bearer header")
	fs.StringVar(&c.authz.SessionIDHeader, "authz-session-id-header", server.DefaultExtAuthzConfig.SessionIDHeader, "ext_authz: the request header that tells the upstream the session id (lowercase)")
	fs.StringVar(&c.authz.UserIDHeader, "authz-user-id-header", server.DefaultExtAuthzConfig.UserIDHeader, "ext_authz: the request header that tells the upstream the user id (lowercase)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	c.security.register(fs)
	c.rateLimits.register(fs)
	c.audit.register(fs)
	c.admin.register(fs)
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: sessiond [flags]\n\nsessiond is the session authority: a gRPC service that issues, validates and revokes\nuser sessions kept in Redis.\n\nEvery flag can also be set in the environment as %sNAME (--redis-url: %s).\n\nFlags:\n", envPrefix, envName("redis-url"))
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (flags are written --name=value)", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || envErr != nil {
			return
		}
		if v := getenv(envName(f.Name)); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = fmt.Errorf("%s=%q: %w", envName(f.Name), v, err)
			}
		}
	})
	if envErr != nil {
		return nil, envErr
	}
	c.redisCluster, c.redisSentinels = splitAddrs(*clusterAddrs), splitAddrs(*sentinelAddrs)
	if err := c.logLevel.UnmarshalText([]byte(*logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", *logLevel)
	}
	return c, c.check()
}

func splitAddrs(s string) []string {
	var out []string
	for a := range strings.SplitSeq(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// redisMode names the Redis deployment the flags select.
func (c *config) redisMode() string {
	switch {
	case len(c.redisCluster) > 0:
		return "cluster"
	case len(c.redisSentinels) > 0:
		return "sentinel"
	case c.redisURL != "":
		return "single"
	}
	return "embedded"
}

func (c *config) check() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	modes := 0
	for _, given := range []bool{c.redisURL != "", len(c.redisCluster) > 0, len(c.redisSentinels) > 0} {
		if given {
			modes++
		}
	}
	if modes > 1 {
		bad("give exactly one of --redis-url, --redis-cluster-addrs and --redis-sentinel-addrs (or none, for the embedded development store)")
	}
	if (len(c.redisSentinels) > 0) != (c.redisSentinelName != "") {
		bad("--redis-sentinel-addrs and --redis-sentinel-master go together")
	}
	for _, a := range append(append([]string{}, c.redisCluster...), c.redisSentinels...) {
		if _, _, err := net.SplitHostPort(a); err != nil {
			bad("Redis address %q: want host:port", a)
		}
	}
	if modes == 0 && (c.redisUsername != "" || c.redisPassword != "" || c.redisTLS || c.redisTLSCAFile != "" || c.redisTLSCertFile != "") {
		bad("Redis credentials or TLS settings given without a Redis (--redis-url, --redis-cluster-addrs or --redis-sentinel-addrs)")
	}
	if (c.redisTLSCertFile != "") != (c.redisTLSKeyFile != "") {
		bad("--redis-tls-cert-file and --redis-tls-key-file go together")
	}
	if _, _, err := net.SplitHostPort(c.listen); err != nil {
		bad("--listen %q: want host:port", c.listen)
	}
	if c.defaultTTL < time.Second {
		bad("--default-ttl %v: must be at least 1s", c.defaultTTL)
	}
	if c.maxTTL < c.defaultTTL {
		bad("--max-ttl %v: must not be shorter than --default-ttl %v", c.maxTTL, c.defaultTTL)
	}
	if c.idleTimeout != 0 && (c.idleTimeout < time.Second || c.idleTimeout > c.maxTTL) {
		bad("--idle-timeout %v: must be 0 (none) or between 1s and --max-ttl", c.idleTimeout)
	}
	if c.touchInterval < 0 || (c.idleTimeout > 0 && c.touchInterval >= c.idleTimeout) {
		bad("--touch-interval %v: must not be negative, and must be shorter than --idle-timeout %v", c.touchInterval, c.idleTimeout)
	}
	if c.maxSessionsPerUser < 0 {
		bad("--max-sessions-per-user %d: must not be negative (0: no cap)", c.maxSessionsPerUser)
	}
	if c.keyPrefix == "" || len(c.keyPrefix) > 64 || strings.ContainsAny(c.keyPrefix, "{} \t\r\n") {
		bad("--key-prefix %q: want 1 to 64 characters, without braces or spaces", c.keyPrefix)
	}
	for name, d := range map[string]time.Duration{"--redis-dial-timeout": c.redisDialTimeout, "--redis-timeout": c.redisTimeout,
		"--request-timeout": c.requestTimeout, "--health-interval": c.healthInterval, "--shutdown-timeout": c.shutdownTimeout} {
		if d <= 0 {
			bad("%s %v: must be positive", name, d)
		}
	}
	if c.redisPoolSize < 0 {
		bad("--redis-pool-size %d: must not be negative", c.redisPoolSize)
	}
	if c.logFormat != "text" && c.logFormat != "json" {
		bad("--log-format %q: want text or json", c.logFormat)
	}
	if !credential.ValidCookieName(c.authz.CookieName) {
		bad("--authz-cookie-name %q: want a cookie name (letters, digits and !#$%%&'*+-.^_`|~)", c.authz.CookieName)
	}
	for _, h := range []struct{ flag, name string }{
		{"--authz-session-id-header", c.authz.SessionIDHeader}, {"--authz-user-id-header", c.authz.UserIDHeader}} {
		if !server.ValidHeaderName(h.name) {
			bad("%s %q: want a lowercase header name (a-z, 0-9 and !#$%%&'*+-.^_`|~), not authorization, cookie, host, content-type, content-length or a hop-by-hop header", h.flag, h.name)
		}
	}
	if c.authz.SessionIDHeader == c.authz.UserIDHeader {
		bad("--authz-user-id-header %q: must differ from --authz-session-id-header", c.authz.UserIDHeader)
	}
	errs = append(errs, c.security.check(c.listen)...)
	errs = append(errs, c.rateLimits.check()...)
	errs = append(errs, c.admin.check()...)
	return errors.Join(errs...)
}
