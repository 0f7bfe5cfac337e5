package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/sessiond/sessiond/internal/credential"
	"github.com/sessiond/sessiond/internal/daemon"
	"github.com/sessiond/sessiond/server"
	"github.com/sessiond/sessiond/server/access"
	"github.com/sessiond/sessiond/server/extauthz"
	"github.com/sessiond/sessiond/server/store"
)

// envPrefix: every flag --some-name falls back to $SESSIOND_SOME_NAME.
const envPrefix = "SESSIOND_"

func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// flags is what the command line says beyond daemon.Config's own fields:
// the settings that are translated, and --insecure, which only the checks
// read.
type flags struct {
	clusterAddrs, sentinelAddrs string
	trustedProxies              string
	idleTimeout                 time.Duration // 0: none (daemon: negative)
	rotationGrace               time.Duration // 0: none (store: negative)
	logLevel, logFormat         string
	maxConcurrentStreams        uint
	maxConnectionAge            time.Duration
	insecure                    bool
}

// parseConfig reads flags from args and, for each flag not given there, its
// SESSIOND_ environment variable. It returns flag.ErrHelp for -h.
func parseConfig(args []string, getenv func(string) string, out io.Writer) (daemon.Config, error) {
	var c daemon.Config
	var f flags
	r, svc, st, sec := &c.Redis, &c.Service, &c.Store, &c.Security
	fs := flag.NewFlagSet("sessiond", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.Listen, "listen", daemon.DefaultListen, "gRPC listen address (host:port)")
	fs.StringVar(&r.URL, "redis-url", "", "Redis URL: redis://[[user]:password@]host:port[/db] or rediss:// for TLS;\nempty runs an embedded in-memory store for development (loses everything on exit)")
	fs.StringVar(&f.clusterAddrs, "redis-cluster-addrs", "", "Redis Cluster seed nodes, host:port,host:port,...")
	fs.StringVar(&f.sentinelAddrs, "redis-sentinel-addrs", "", "Redis Sentinel addresses, host:port,host:port,... (with --redis-sentinel-master)")
	fs.StringVar(&r.SentinelMaster, "redis-sentinel-master", "", "the master name the sentinels monitor")
	fs.StringVar(&r.Username, "redis-username", "", "Redis ACL user (all modes; overrides the one in --redis-url)")
	fs.StringVar(&r.Password, "redis-password", "", "Redis password (all modes; overrides the one in --redis-url); prefer the SESSIOND_REDIS_PASSWORD variable")
	fs.StringVar(&r.SentinelPassword, "redis-sentinel-password", "", "password of the sentinels themselves, if they require one")
	fs.BoolVar(&r.TLS, "redis-tls", false, "connect to Redis over TLS (all modes; implied by rediss://)")
	fs.StringVar(&r.TLSCAFile, "redis-tls-ca-file", "", "PEM file of the CAs that sign Redis' certificate (default: the system's)")
	fs.StringVar(&r.TLSCertFile, "redis-tls-cert-file", "", "PEM client certificate for Redis (with --redis-tls-key-file), if Redis asks for one")
	fs.StringVar(&r.TLSKeyFile, "redis-tls-key-file", "", "PEM key of --redis-tls-cert-file")
	fs.DurationVar(&r.DialTimeout, "redis-dial-timeout", daemon.DefaultRedisDialTimeout, "timeout for connecting to Redis")
	fs.DurationVar(&r.Timeout, "redis-timeout", daemon.DefaultRedisTimeout, "read and write timeout of one Redis command")
	fs.IntVar(&r.PoolSize, "redis-pool-size", 0, "Redis connections per sessiond process (0: 10 per CPU)")
	fs.DurationVar(&svc.DefaultTTL, "default-ttl", server.DefaultTTL, "absolute session lifetime when a CreateSession request sets none")
	fs.DurationVar(&svc.MaxTTL, "max-ttl", server.DefaultMaxTTL, "longest session lifetime a request may ask for (longer is rejected)")
	fs.DurationVar(&f.idleTimeout, "idle-timeout", server.DefaultIdleTimeout, "idle timeout when a request sets none (0: no idle timeout by default)")
	fs.DurationVar(&st.TouchInterval, "touch-interval", time.Minute, "a validation slides the idle timeout (one Redis write) at most once per this interval per session")
	fs.IntVar(&st.MaxSessionsPerUser, "max-sessions-per-user", 100, "live sessions per user; a create over the cap revokes the oldest (0: no cap)")
	fs.StringVar(&st.KeyPrefix, "key-prefix", "sessiond", "prefix of every Redis key")
	fs.DurationVar(&f.rotationGrace, "rotation-grace", store.DefaultRotationGrace, "a token RotateSession replaced and presented again within this time is just refused (two tabs racing);\nafter it, it is taken for a stolen copy and the session that replaced it is revoked too (0: no grace)")
	fs.IntVar(&st.MinReplicaAcks, "min-replica-acks", 0, "every write waits until this many replicas of its Redis master acknowledge it (Redis WAIT, after the EXEC);\nfewer within --replica-ack-timeout: Unavailable (the write reached the master but may not survive a failover),\nand readiness is NOT_SERVING while a master has fewer replicas online (0: acknowledged once the master applied it)")
	fs.DurationVar(&st.ReplicaAckTimeout, "replica-ack-timeout", store.DefaultReplicaAckTimeout, "how long a write waits for --min-replica-acks replicas")
	fs.DurationVar(&st.CutoffMaxAge, "cutoff-max-age", store.DefaultCutoffMaxAge, "how long the RevokeAllSessions cutoff read from Redis is trusted: every replica re-reads it 4 times in this\ninterval, and refuses to validate (Unavailable, not ready) while it cannot")
	fs.DurationVar(&svc.RequestTimeout, "request-timeout", server.DefaultRequestTimeout, "longest a call waits for Redis before failing with Unavailable")
	fs.DurationVar(&c.HealthInterval, "health-interval", daemon.DefaultHealthInterval, "how often Redis is pinged for the health service")
	fs.DurationVar(&c.DrainDelay, "shutdown-drain-delay", 3*time.Second, "on SIGINT/SIGTERM, how long sessiond serves on with its readiness NOT_SERVING before it closes its listener,\nso that load balancers stop sending first (raise it to what your balancer needs to notice; 0: none)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", daemon.DefaultShutdownTimeout, "on SIGINT/SIGTERM, once the listener is closed, how long in-flight calls may take to finish")
	fs.BoolVar(&c.Reflection, "reflection", true, "serve gRPC server reflection (for grpcurl)")
	fs.BoolVar(&c.ExtAuthz, "ext-authz", true, "serve Envoy's external authorization API (envoy.service.auth.v3.Authorization/Check)")
	fs.StringVar(&c.ExtAuthzConfig.CookieName, "authz-cookie-name", extauthz.DefaultCookieName, "ext_authz: the cookie that carries the token when there is no Authorization: Bearer header")
	fs.StringVar(&c.ExtAuthzConfig.SessionIDHeader, "authz-session-id-header", extauthz.DefaultSessionIDHeader, "ext_authz: the request header that tells the upstream the session id (lowercase)")
	fs.StringVar(&c.ExtAuthzConfig.UserIDHeader, "authz-user-id-header", extauthz.DefaultUserIDHeader, "ext_authz: the request header that tells the upstream the user id (lowercase)")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")

	fs.StringVar(&sec.TLSCertFile, "tls-cert-file", "", "PEM certificate (chain) of the gRPC listener; with --tls-key-file turns TLS on (reloaded when the file changes)")
	fs.StringVar(&sec.TLSKeyFile, "tls-key-file", "", "PEM key of --tls-cert-file")
	fs.StringVar(&sec.TLSClientCAFile, "tls-client-ca-file", "", "PEM CAs that sign client certificates: a client certificate, if given, must verify, and identifies the caller")
	fs.BoolVar(&sec.RequireClientCert, "tls-require-client-cert", false, "refuse TLS clients without a client certificate (then API keys are of no use)")
	fs.StringVar(&sec.APIKeysFile, "api-keys-file", "", `API keys file: one "name sha256hex [role,role...]" per line (hashes, never keys); turns authorization on`)
	fs.StringVar(&sec.APIKeyHeader, "api-key-header", access.DefaultAPIKeyHeader, "the metadata key that carries an API key")
	fs.StringVar(&sec.PolicyFile, "policy-file", "", "JSON policy: which callers and roles may call which RPCs; turns authorization on")
	fs.BoolVar(&f.insecure, "insecure", false, "allow listening on a non-loopback address with neither TLS nor a policy (anyone who reaches it may call anything)")
	fs.DurationVar(&sec.ReloadInterval, "reload-interval", daemon.DefaultReloadInterval, "how often the TLS, API keys and policy files are checked for changes")
	fs.IntVar(&sec.Limits.MaxRecvMsgSize, "max-recv-msg-size", daemon.DefaultLimits.MaxRecvMsgSize, "largest request message in bytes (larger: ResourceExhausted)")
	fs.DurationVar(&f.maxConnectionAge, "max-connection-age", daemon.DefaultLimits.Keepalive.MaxConnectionAge, "a client connection older than this (give or take 10%) is asked to reconnect, and closed a minute later,\nso that its credentials are checked again; it ends WatchRevocations streams, which clients reopen")
	fs.UintVar(&f.maxConcurrentStreams, "max-concurrent-streams", uint(daemon.DefaultLimits.MaxConcurrentStreams), "calls in flight per client connection (WatchRevocations streams included)")

	fs.Float64Var(&svc.CreateLimit.PerSecond, "rate-limit-create", 100, "CreateSession calls per second per caller, in each replica (0: no limit)")
	fs.IntVar(&svc.CreateLimit.Burst, "rate-limit-create-burst", 200, "CreateSession calls a caller may make at once before --rate-limit-create applies")
	fs.Float64Var(&svc.FailedValidationLimit.PerSecond, "rate-limit-failed-validations", 50, "failed validations (ValidateSession, ext_authz Check, RotateSession, RevokeSession by token) per second per caller,\nin each replica; over it the caller's failures are answered ResourceExhausted (HTTP 429) until the bucket refills,\nwhile live tokens still validate (0: no limit)")
	fs.IntVar(&svc.FailedValidationLimit.Burst, "rate-limit-failed-validations-burst", 200, "failed validations a caller may have at once before --rate-limit-failed-validations applies")
	fs.Float64Var(&svc.FailedValidationPerClientLimit.PerSecond, "rate-limit-failed-validations-per-client", 5, "each end user's share of its caller's failed validations, per second (the end user a caller names in\nx-sessiond-end-user, or ext_authz's source address), within --rate-limit-failed-validations (0: no per end user limit)")
	fs.IntVar(&svc.FailedValidationPerClientLimit.Burst, "rate-limit-failed-validations-per-client-burst", 20, "failed validations one end user may have at once before --rate-limit-failed-validations-per-client applies")
	fs.StringVar(&c.AuditLog, "audit-log", "", "audit log (JSON lines, one per session created, rotated or revoked): a file path (appended to, created 0600),\n\"-\" for stdout, or empty for stderr next to the operational log (every audit line has \"log_type\":\"audit\")")
	fs.StringVar(&c.ForwardAuth.Listen, "forward-auth-listen", "127.0.0.1:9091", "HTTP listen address (host:port) of the gateways' forward-auth endpoints (nginx auth_request, Traefik,\nCaddy, Envoy's HTTP ext_authz); TLS with --tls-cert-file when set; empty: no listener")
	fs.StringVar(&c.ForwardAuth.LoginURL, "forward-auth-login-url", "", "forward auth: where a browser navigation without a live session is sent, with the original URL in rd\n(the login page must check rd against its own allow-list); empty: 401")
	fs.StringVar(&f.trustedProxies, "forward-auth-trusted-proxies", "127.0.0.0/8,::1/128", "forward auth: the gateways (CIDRs or addresses) whose X-Forwarded-For names the end user, for the\nper-client failed-validation limit; from other peers the peer is the client")
	fs.StringVar(&c.AdminListen, "admin-listen", "127.0.0.1:9090", "admin HTTP listen address (host:port) for /metrics, /healthz and /readyz,\nseparate from gRPC; empty: no admin listener and no metrics")
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: sessiond [flags]\n\nsessiond is the session authority: a gRPC service that issues, validates and revokes\nuser sessions kept in Redis.\n\nEvery flag can also be set in the environment as %sNAME (--redis-url: %s).\n\nFlags:\n", envPrefix, envName("redis-url"))
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q (flags are written --name=value)", fs.Arg(0))
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
		return c, envErr
	}
	r.ClusterAddrs, r.SentinelAddrs = splitAddrs(f.clusterAddrs), splitAddrs(f.sentinelAddrs)
	proxies, err := daemon.ParseCIDRs(splitAddrs(f.trustedProxies))
	if err != nil {
		return c, fmt.Errorf("--forward-auth-trusted-proxies: %w", err)
	}
	c.ForwardAuth.TrustedProxies = proxies
	if err := c.Log.Level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return c, fmt.Errorf("--log-level %q: want debug, info, warn or error", f.logLevel)
	}
	c.Log.JSON = f.logFormat == "json"
	svc.DefaultIdleTimeout = f.idleTimeout
	if f.idleTimeout == 0 {
		svc.DefaultIdleTimeout = -1 // none
	}
	st.RotationGrace = f.rotationGrace
	if f.rotationGrace == 0 {
		st.RotationGrace = -1 // none
	}
	sec.Limits.MaxConcurrentStreams = uint32(min(f.maxConcurrentStreams, math.MaxUint32))
	sec.Limits.Keepalive = daemon.DefaultLimits.Keepalive
	sec.Limits.Keepalive.MaxConnectionAge = f.maxConnectionAge
	c.Getenv = getenv
	return c, check(&c, &f)
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

// check returns what is wrong with the flags, naming them.
func check(c *daemon.Config, f *flags) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	r, svc, st, sec := c.Redis, c.Service, c.Store, c.Security
	modes := 0
	for _, given := range []bool{r.URL != "", len(r.ClusterAddrs) > 0, len(r.SentinelAddrs) > 0} {
		if given {
			modes++
		}
	}
	if modes > 1 {
		bad("give exactly one of --redis-url, --redis-cluster-addrs and --redis-sentinel-addrs (or none, for the embedded development store)")
	}
	if (len(r.SentinelAddrs) > 0) != (r.SentinelMaster != "") {
		bad("--redis-sentinel-addrs and --redis-sentinel-master go together")
	}
	for _, a := range append(append([]string{}, r.ClusterAddrs...), r.SentinelAddrs...) {
		if _, _, err := net.SplitHostPort(a); err != nil {
			bad("Redis address %q: want host:port", a)
		}
	}
	if modes == 0 && (r.Username != "" || r.Password != "" || r.TLS || r.TLSCAFile != "" || r.TLSCertFile != "") {
		bad("Redis credentials or TLS settings given without a Redis (--redis-url, --redis-cluster-addrs or --redis-sentinel-addrs)")
	}
	if (r.TLSCertFile != "") != (r.TLSKeyFile != "") {
		bad("--redis-tls-cert-file and --redis-tls-key-file go together")
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("--listen %q: want host:port", c.Listen)
	}
	if svc.DefaultTTL < time.Second {
		bad("--default-ttl %v: must be at least 1s", svc.DefaultTTL)
	}
	if svc.MaxTTL < svc.DefaultTTL {
		bad("--max-ttl %v: must not be shorter than --default-ttl %v", svc.MaxTTL, svc.DefaultTTL)
	}
	if f.idleTimeout != 0 && (f.idleTimeout < time.Second || f.idleTimeout > svc.MaxTTL) {
		bad("--idle-timeout %v: must be 0 (none) or between 1s and --max-ttl", f.idleTimeout)
	}
	if st.TouchInterval < 0 || (f.idleTimeout > 0 && st.TouchInterval >= f.idleTimeout) {
		bad("--touch-interval %v: must not be negative, and must be shorter than --idle-timeout %v", st.TouchInterval, f.idleTimeout)
	}
	if st.MinReplicaAcks > 0 && modes == 0 {
		bad("--min-replica-acks %d needs a Redis with replicas (--redis-url, --redis-cluster-addrs or --redis-sentinel-addrs), not the embedded store", st.MinReplicaAcks)
	}
	if st.MinReplicaAcks < 0 || st.MinReplicaAcks > 16 {
		bad("--min-replica-acks %d: want 0 to 16", st.MinReplicaAcks)
	}
	if st.ReplicaAckTimeout < time.Millisecond || st.ReplicaAckTimeout > time.Minute {
		bad("--replica-ack-timeout %v: want 1ms to 1m", st.ReplicaAckTimeout)
	}
	if st.MinReplicaAcks > 0 && (st.ReplicaAckTimeout >= svc.RequestTimeout || st.ReplicaAckTimeout >= r.Timeout) {
		bad("--replica-ack-timeout %v: must be shorter than --request-timeout %v and --redis-timeout %v, or writes time out before they learn whether they were replicated",
			st.ReplicaAckTimeout, svc.RequestTimeout, r.Timeout)
	}
	if f.rotationGrace < 0 {
		bad("--rotation-grace %v: must not be negative (0: no grace)", f.rotationGrace)
	}
	if c.DrainDelay < 0 {
		bad("--shutdown-drain-delay %v: must not be negative", c.DrainDelay)
	}
	if st.CutoffMaxAge < 100*time.Millisecond || st.CutoffMaxAge > time.Minute {
		bad("--cutoff-max-age %v: want 100ms to 1m", st.CutoffMaxAge)
	}
	if st.MaxSessionsPerUser < 0 {
		bad("--max-sessions-per-user %d: must not be negative (0: no cap)", st.MaxSessionsPerUser)
	}
	if st.KeyPrefix == "" || len(st.KeyPrefix) > 64 || strings.ContainsAny(st.KeyPrefix, "{} \t\r\n") {
		bad("--key-prefix %q: want 1 to 64 characters, without braces or spaces", st.KeyPrefix)
	}
	for name, d := range map[string]time.Duration{"--redis-dial-timeout": r.DialTimeout, "--redis-timeout": r.Timeout,
		"--request-timeout": svc.RequestTimeout, "--health-interval": c.HealthInterval, "--shutdown-timeout": c.ShutdownTimeout,
		"--reload-interval": sec.ReloadInterval} {
		if d <= 0 {
			bad("%s %v: must be positive", name, d)
		}
	}
	if r.PoolSize < 0 {
		bad("--redis-pool-size %d: must not be negative", r.PoolSize)
	}
	if f.logFormat != "text" && f.logFormat != "json" {
		bad("--log-format %q: want text or json", f.logFormat)
	}
	if !credential.ValidCookieName(c.ExtAuthzConfig.CookieName) {
		bad("--authz-cookie-name %q: want a cookie name (letters, digits and !#$%%&'*+-.^_`|~)", c.ExtAuthzConfig.CookieName)
	}
	for _, h := range []struct{ flag, name string }{
		{"--authz-session-id-header", c.ExtAuthzConfig.SessionIDHeader}, {"--authz-user-id-header", c.ExtAuthzConfig.UserIDHeader}} {
		if !extauthz.ValidHeaderName(h.name) {
			bad("%s %q: want a lowercase header name (a-z, 0-9 and !#$%%&'*+-.^_`|~), not authorization, cookie, host, content-type, content-length or a hop-by-hop header", h.flag, h.name)
		}
	}
	if c.ExtAuthzConfig.SessionIDHeader == c.ExtAuthzConfig.UserIDHeader {
		bad("--authz-user-id-header %q: must differ from --authz-session-id-header", c.ExtAuthzConfig.UserIDHeader)
	}
	errs = append(errs, checkSecurity(c, f)...)
	for _, l := range []struct {
		flag  string
		limit server.RateLimit
	}{{"--rate-limit-create", svc.CreateLimit}, {"--rate-limit-failed-validations", svc.FailedValidationLimit},
		{"--rate-limit-failed-validations-per-client", svc.FailedValidationPerClientLimit}} {
		if math.IsNaN(l.limit.PerSecond) || math.IsInf(l.limit.PerSecond, 0) || l.limit.PerSecond < 0 {
			bad("%s %v: want a number of calls per second, 0 or more (0: no limit)", l.flag, l.limit.PerSecond)
		}
		if l.limit.Burst < 1 && l.limit.PerSecond != 0 {
			bad("%s-burst %d: must be at least 1", l.flag, l.limit.Burst)
		}
	}
	if c.AdminListen != "" {
		if _, _, err := net.SplitHostPort(c.AdminListen); err != nil {
			bad("--admin-listen %q: want host:port (or empty to turn it off)", c.AdminListen)
		}
	}
	if fa := c.ForwardAuth; fa.Listen != "" {
		if _, _, err := net.SplitHostPort(fa.Listen); err != nil {
			bad("--forward-auth-listen %q: want host:port (or empty to turn it off)", fa.Listen)
		} else if c.Security.TLSCertFile == "" && !f.insecure && !daemon.Loopback(fa.Listen) {
			bad("refusing to serve forward auth on %s without TLS (--tls-cert-file): session cookies would cross the network in clear text; "+
				"listen on a loopback address, configure TLS, or give --insecure if the network itself is trusted", fa.Listen)
		}
		if u, err := url.Parse(fa.LoginURL); fa.LoginURL != "" && (err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "") {
			bad("--forward-auth-login-url %q: want an absolute http(s) URL", fa.LoginURL)
		}
	}
	return errors.Join(errs...)
}

// checkSecurity returns what is wrong with the listener's security flags.
func checkSecurity(c *daemon.Config, f *flags) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	s := c.Security
	if (s.TLSCertFile != "") != (s.TLSKeyFile != "") {
		bad("--tls-cert-file and --tls-key-file go together")
	}
	if s.TLSClientCAFile != "" && s.TLSCertFile == "" {
		bad("--tls-client-ca-file needs TLS: give --tls-cert-file and --tls-key-file")
	}
	if s.RequireClientCert && s.TLSClientCAFile == "" {
		bad("--tls-require-client-cert needs --tls-client-ca-file")
	}
	if !extauthz.ValidHeaderName(s.APIKeyHeader) || strings.HasPrefix(s.APIKeyHeader, "grpc-") || strings.HasSuffix(s.APIKeyHeader, "-bin") {
		bad("--api-key-header %q: want a lowercase metadata key (a-z, 0-9 and !#$%%&'*+-.^_`|~), not authorization, cookie, grpc-* or *-bin", s.APIKeyHeader)
	}
	if s.Limits.MaxRecvMsgSize < 4<<10 || s.Limits.MaxRecvMsgSize > 16<<20 {
		bad("--max-recv-msg-size %d: want 4096 to 16777216 bytes", s.Limits.MaxRecvMsgSize)
	}
	if f.maxConnectionAge < time.Minute {
		bad("--max-connection-age %v: want at least 1m", f.maxConnectionAge)
	}
	if f.maxConcurrentStreams < 1 || f.maxConcurrentStreams > 1<<20 {
		bad("--max-concurrent-streams %d: want 1 to 1048576", f.maxConcurrentStreams)
	}
	if s.TLSCertFile == "" && s.PolicyFile == "" && !f.insecure && !daemon.Loopback(c.Listen) {
		bad("refusing to listen on %s with neither TLS (--tls-cert-file) nor a policy (--policy-file): "+
			"anyone who can reach it could create, validate and revoke every session; "+
			"configure one of them, listen on a loopback address, or give --insecure if the network itself is trusted", c.Listen)
	}
	return errs
}
