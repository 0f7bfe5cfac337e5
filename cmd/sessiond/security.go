package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/sessiond/sessiond/server"
)

// securityConfig is the flags of the gRPC listener's security: TLS, who the
// callers are, what they may call, and the transport limits.
type securityConfig struct {
	tlsCertFile          string
	tlsKeyFile           string
	tlsClientCAFile      string
	tlsRequireClientCert bool
	apiKeysFile          string
	apiKeyHeader         string
	policyFile           string
	insecure             bool
	reloadInterval       time.Duration
	maxRecvMsgSize       int
	maxConcurrentStreams uint
}

func (s *securityConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&s.tlsCertFile, "tls-cert-file", "", "PEM certificate (chain) of the gRPC listener; with --tls-key-file turns TLS on (reloaded when the file changes)")
	fs.StringVar(&s.tlsKeyFile, "tls-key-file", "", "PEM key of --tls-cert-file")
	fs.StringVar(&s.tlsClientCAFile, "tls-client-ca-file", "", "PEM CAs that sign client certificates: a client certificate, if given, must verify, and identifies the caller")
	fs.BoolVar(&s.tlsRequireClientCert, "tls-require-client-cert", false, "refuse TLS clients without a client certificate (then API keys are of no use)")
	fs.StringVar(&s.apiKeysFile, "api-keys-file", "", `API keys file: one "name sha256hex [role,role...]" per line (hashes, never keys); turns authorization on`)
	fs.StringVar(&s.apiKeyHeader, "api-key-header", server.DefaultAPIKeyHeader, "the metadata key that carries an API key")
	fs.StringVar(&s.policyFile, "policy-file", "", "JSON policy: which callers and roles may call which RPCs; turns authorization on")
	fs.BoolVar(&s.insecure, "insecure", false, "allow listening on a non-loopback address with neither TLS nor a policy (anyone who reaches it may call anything)")
	fs.DurationVar(&s.reloadInterval, "reload-interval", 5*time.Second, "how often the TLS, API keys and policy files are checked for changes")
	fs.IntVar(&s.maxRecvMsgSize, "max-recv-msg-size", server.DefaultLimits.MaxRecvMsgSize, "largest request message in bytes (larger: ResourceExhausted)")
	fs.UintVar(&s.maxConcurrentStreams, "max-concurrent-streams", uint(server.DefaultLimits.MaxConcurrentStreams), "calls in flight per client connection (WatchRevocations streams included)")
}

// check returns what is wrong with the flags, given the listen address.
func (s *securityConfig) check(listen string) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if (s.tlsCertFile != "") != (s.tlsKeyFile != "") {
		bad("--tls-cert-file and --tls-key-file go together")
	}
	if s.tlsClientCAFile != "" && s.tlsCertFile == "" {
		bad("--tls-client-ca-file needs TLS: give --tls-cert-file and --tls-key-file")
	}
	if s.tlsRequireClientCert && s.tlsClientCAFile == "" {
		bad("--tls-require-client-cert needs --tls-client-ca-file")
	}
	if !server.ValidHeaderName(s.apiKeyHeader) || strings.HasPrefix(s.apiKeyHeader, "grpc-") || strings.HasSuffix(s.apiKeyHeader, "-bin") {
		bad("--api-key-header %q: want a lowercase metadata key (a-z, 0-9 and !#$%%&'*+-.^_`|~), not authorization, cookie, grpc-* or *-bin", s.apiKeyHeader)
	}
	if s.reloadInterval <= 0 {
		bad("--reload-interval %v: must be positive", s.reloadInterval)
	}
	if s.maxRecvMsgSize < 4<<10 || s.maxRecvMsgSize > 16<<20 {
		bad("--max-recv-msg-size %d: want 4096 to 16777216 bytes", s.maxRecvMsgSize)
	}
	if s.maxConcurrentStreams < 1 || s.maxConcurrentStreams > 1<<20 {
		bad("--max-concurrent-streams %d: want 1 to 1048576", s.maxConcurrentStreams)
	}
	if s.tlsCertFile == "" && s.policyFile == "" && !s.insecure && !loopback(listen) {
		bad("refusing to listen on %s with neither TLS (--tls-cert-file) nor a policy (--policy-file): "+
			"anyone who can reach it could create, validate and revoke every session; "+
			"configure one of them, listen on a loopback address, or give --insecure if the network itself is trusted", listen)
	}
	return errs
}

// loopback reports whether the host of listen is a loopback address (or
// localhost). An empty host or 0.0.0.0 listens on every interface.
func loopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// security is the listener's security, built from the flags.
type security struct {
	// auth establishes callers and, when a policy or keys are configured,
	// authorizes their calls.
	auth *server.Auth
	// serverOptions are the TLS credentials (if any) and the limits.
	serverOptions []grpc.ServerOption
	// watched are the files reloaded when they change.
	watched []*watchedFiles
	// reloadInterval is how often they are checked.
	reloadInterval time.Duration
}

// newSecurity reads the TLS, API keys and policy files, and logs what the
// listener enforces. An error names the flag of the file at fault.
func newSecurity(cfg *config, log *slog.Logger) (*security, error) {
	s := &cfg.security
	sec := &security{reloadInterval: s.reloadInterval}
	limits := server.DefaultLimits
	limits.MaxRecvMsgSize = s.maxRecvMsgSize
	limits.MaxConcurrentStreams = uint32(s.maxConcurrentStreams)
	sec.serverOptions = limits.ServerOptions()

	clientCerts := "off"
	if s.tlsCertFile != "" {
		r, err := server.NewTLSReloader(server.TLSFiles{CertFile: s.tlsCertFile, KeyFile: s.tlsKeyFile,
			ClientCAFile: s.tlsClientCAFile, RequireClientCert: s.tlsRequireClientCert})
		if err != nil {
			return nil, fmt.Errorf("--tls-cert-file/--tls-key-file/--tls-client-ca-file: %w", err)
		}
		sec.serverOptions = append(sec.serverOptions, grpc.Creds(credentials.NewTLS(r.Config())))
		sec.watch("TLS certificates", r.Reload, s.tlsCertFile, s.tlsKeyFile, s.tlsClientCAFile)
		switch {
		case s.tlsRequireClientCert:
			clientCerts = "required"
		case s.tlsClientCAFile != "":
			clientCerts = "verified if given"
		}
	}

	var keys *server.APIKeys
	var policy *server.Policy
	var err error
	if s.apiKeysFile != "" {
		if keys, err = readAPIKeys(s.apiKeysFile); err != nil {
			return nil, err
		}
	}
	if s.policyFile != "" {
		if policy, err = readPolicy(s.policyFile); err != nil {
			return nil, err
		}
	}
	enforce := s.apiKeysFile != "" || s.policyFile != ""
	sec.auth = server.NewAuth(server.AuthConfig{APIKeyHeader: s.apiKeyHeader, Enforce: enforce}, keys, policy, log)
	if s.apiKeysFile != "" {
		sec.watch("API keys", func() error {
			k, err := readAPIKeys(s.apiKeysFile)
			if err == nil {
				sec.auth.SetAPIKeys(k)
			}
			return err
		}, s.apiKeysFile)
	}
	if s.policyFile != "" {
		sec.watch("policy", func() error {
			p, err := readPolicy(s.policyFile)
			if err == nil {
				sec.auth.SetPolicy(p)
			}
			return err
		}, s.policyFile)
	}

	authz := "off: every caller may call every RPC"
	switch {
	case s.policyFile != "":
		authz = "policy"
	case enforce:
		authz = "built-in roles of API keys"
	}
	log.Info("gRPC listener security", "tls", s.tlsCertFile != "", "client_certs", clientCerts,
		"api_keys", keys.Len(), "authorization", authz, "max_recv_msg_size", s.maxRecvMsgSize,
		"max_concurrent_streams", s.maxConcurrentStreams)
	if !loopback(cfg.listen) {
		switch {
		case s.tlsCertFile == "" && s.policyFile == "":
			log.Warn("--insecure: serving on a non-loopback address with neither TLS nor a policy; anyone who can reach it may call every RPC", "listen", cfg.listen)
		case s.tlsCertFile == "":
			log.Warn("serving without TLS on a non-loopback address: API keys and session tokens cross the network in clear text", "listen", cfg.listen)
		case !enforce:
			log.Warn("no --policy-file or --api-keys-file: every caller that completes the TLS handshake may call every RPC", "listen", cfg.listen)
		}
	}
	return sec, nil
}

func readAPIKeys(path string) (*server.APIKeys, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--api-keys-file: %w", err)
	}
	defer f.Close()
	keys, err := server.ParseAPIKeys(f)
	if err != nil {
		return nil, fmt.Errorf("--api-keys-file %s: %w", path, err)
	}
	return keys, nil
}

func readPolicy(path string) (*server.Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--policy-file: %w", err)
	}
	defer f.Close()
	p, err := server.ParsePolicy(f)
	if err != nil {
		return nil, fmt.Errorf("--policy-file %s: %w", path, err)
	}
	return p, nil
}

// watchedFiles is a set of files read together, with what they looked like
// when they were last read.
type watchedFiles struct {
	what   string
	paths  []string
	reload func() error
	stamps []fileStamp
}

type fileStamp struct {
	mtime time.Time
	size  int64
	err   bool
}

func (s *security) watch(what string, reload func() error, paths ...string) {
	var ps []string
	for _, p := range paths {
		if p != "" {
			ps = append(ps, p)
		}
	}
	w := &watchedFiles{what: what, paths: ps, reload: reload}
	w.stamps = w.stat()
	s.watched = append(s.watched, w)
}

func (w *watchedFiles) stat() []fileStamp {
	out := make([]fileStamp, len(w.paths))
	for i, p := range w.paths {
		fi, err := os.Stat(p) // follows symlinks, as Kubernetes' secret volumes need
		if err != nil {
			out[i] = fileStamp{err: true}
			continue
		}
		out[i] = fileStamp{mtime: fi.ModTime(), size: fi.Size()}
	}
	return out
}

// run checks the files every interval until ctx ends, and reloads a set
// when one of its files changed (modification time or size). A reload that
// fails is logged and leaves the previous configuration in force; it is
// tried again at the next change.
func (s *security) run(ctx context.Context, log *slog.Logger) {
	if len(s.watched) == 0 {
		return
	}
	t := time.NewTicker(s.reloadInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, w := range s.watched {
			now := w.stat()
			if equalStamps(now, w.stamps) {
				continue
			}
			w.stamps = now
			if err := w.reload(); err != nil {
				log.Error("reloading "+w.what+" failed: keeping the previous ones", "error", err)
				continue
			}
			log.Info("reloaded "+w.what, "files", w.paths)
		}
	}
}

func equalStamps(a, b []fileStamp) bool {
	for i := range a {
		if a[i].err != b[i].err || a[i].size != b[i].size || !a[i].mtime.Equal(b[i].mtime) {
			return false
		}
	}
	return true
}
