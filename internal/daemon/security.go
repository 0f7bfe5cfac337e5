package daemon

import (
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sessiond/sessiond/server/access"
)

// The defaults of SecurityConfig.
const DefaultReloadInterval = 5 * time.Second

// SecurityConfig is the gRPC listener's security: TLS, who the callers are,
// what they may call, and the transport limits. The zero value is plaintext,
// every caller anonymous and allowed, and DefaultLimits.
type SecurityConfig struct {
	TLSCertFile       string // --tls-cert-file: with TLSKeyFile turns TLS on
	TLSKeyFile        string // --tls-key-file
	TLSClientCAFile   string // --tls-client-ca-file: verifies and identifies client certificates
	RequireClientCert bool   // --tls-require-client-cert
	// APIKeysFile is the keys file (--api-keys-file, see access.ParseAPIKeys);
	// it turns authorization on.
	APIKeysFile string
	// APIKeyHeader is the metadata key of API keys (--api-key-header); ""
	// means access.DefaultAPIKeyHeader.
	APIKeyHeader string
	// PolicyFile is the JSON policy (--policy-file, see access.ParsePolicy);
	// it turns authorization on.
	PolicyFile string
	// ReloadInterval is how often the files above are checked for changes
	// (--reload-interval); 0 means DefaultReloadInterval.
	ReloadInterval time.Duration
	// Limits are the transport limits (--max-recv-msg-size,
	// --max-concurrent-streams); a zero field means DefaultLimits'.
	Limits Limits
}

func (c SecurityConfig) withDefaults() SecurityConfig {
	if c.ReloadInterval <= 0 {
		c.ReloadInterval = DefaultReloadInterval
	}
	c.Limits = c.Limits.withDefaults()
	return c
}

// Loopback reports whether the host of listen is a loopback address (or
// localhost). An empty host or 0.0.0.0 listens on every interface.
func Loopback(listen string) bool {
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

// security is the listener's security, built from the configuration.
type security struct {
	// auth establishes callers and, when a policy or keys are configured,
	// authorizes their calls.
	auth *access.Auth
	// serverOptions are the TLS credentials (if any) and the limits.
	serverOptions []grpc.ServerOption
	// files are reloaded when they change.
	files *fileWatcher
	// httpTLS is the TLS configuration of the HTTP listeners that serve
	// with the gRPC listener's certificate (forward auth); nil without TLS.
	httpTLS *tls.Config
}

// newSecurity reads the TLS, API keys and policy files, and logs what the
// listener enforces. An error names the flag of the file at fault.
func newSecurity(cfg Config, log *slog.Logger) (*security, error) {
	s := cfg.Security
	sec := &security{files: &fileWatcher{interval: s.ReloadInterval}}
	sec.serverOptions = s.Limits.serverOptions()

	clientCerts := "off"
	creds := insecure.NewCredentials()
	if s.TLSCertFile != "" {
		r, err := newTLSReloader(tlsFiles{CertFile: s.TLSCertFile, KeyFile: s.TLSKeyFile,
			ClientCAFile: s.TLSClientCAFile, RequireClientCert: s.RequireClientCert})
		if err != nil {
			return nil, fmt.Errorf("--tls-cert-file/--tls-key-file/--tls-client-ca-file: %w", err)
		}
		creds = credentials.NewTLS(r.Config("h2"))
		sec.httpTLS = r.Config("h2", "http/1.1")
		sec.files.watch("TLS certificates", r.Reload, s.TLSCertFile, s.TLSKeyFile, s.TLSClientCAFile)
		switch {
		case s.RequireClientCert:
			clientCerts = "required"
		case s.TLSClientCAFile != "":
			clientCerts = "verified if given"
		}
	}
	sec.serverOptions = append(sec.serverOptions, grpc.Creds(newResetCreds(creds, s.Limits.StreamResets, log)))

	var keys *access.APIKeys
	var policy *access.Policy
	var err error
	if s.APIKeysFile != "" {
		if keys, err = readAPIKeys(s.APIKeysFile); err != nil {
			return nil, err
		}
	}
	if s.PolicyFile != "" {
		if policy, err = readPolicy(s.PolicyFile); err != nil {
			return nil, err
		}
	}
	enforce := s.APIKeysFile != "" || s.PolicyFile != ""
	sec.auth = access.New(access.Config{APIKeyHeader: s.APIKeyHeader, Enforce: enforce, Keys: keys, Policy: policy, Logger: log})
	if s.APIKeysFile != "" {
		sec.files.watch("API keys", func() error {
			k, err := readAPIKeys(s.APIKeysFile)
			if err == nil {
				sec.auth.SetAPIKeys(k)
			}
			return err
		}, s.APIKeysFile)
	}
	if s.PolicyFile != "" {
		sec.files.watch("policy", func() error {
			p, err := readPolicy(s.PolicyFile)
			if err == nil {
				sec.auth.SetPolicy(p)
			}
			return err
		}, s.PolicyFile)
	}

	authz := "off: every caller may call every RPC"
	switch {
	case s.PolicyFile != "":
		authz = "policy"
	case enforce:
		authz = "built-in roles of API keys"
	}
	log.Info("gRPC listener security", "tls", s.TLSCertFile != "", "client_certs", clientCerts,
		"api_keys", keys.Len(), "authorization", authz, "max_recv_msg_size", s.Limits.MaxRecvMsgSize,
		"max_concurrent_streams", s.Limits.MaxConcurrentStreams)
	if !Loopback(cfg.Listen) {
		switch {
		case s.TLSCertFile == "" && s.PolicyFile == "":
			log.Warn("--insecure: serving on a non-loopback address with neither TLS nor a policy; anyone who can reach it may call every RPC", "listen", cfg.Listen)
		case s.TLSCertFile == "":
			log.Warn("serving without TLS on a non-loopback address: API keys and session tokens cross the network in clear text", "listen", cfg.Listen)
		case !enforce:
			log.Warn("no --policy-file or --api-keys-file: every caller that completes the TLS handshake may call every RPC", "listen", cfg.Listen)
		}
	}
	return sec, nil
}

func readAPIKeys(path string) (*access.APIKeys, error) {
	return readFile("--api-keys-file", path, access.ParseAPIKeys)
}

func readPolicy(path string) (*access.Policy, error) {
	return readFile("--policy-file", path, access.ParsePolicy)
}

// readFile parses the file at path; an error names the flag that gave it.
func readFile[T any](flag, path string, parse func(io.Reader) (T, error)) (T, error) {
	var zero T
	f, err := os.Open(path)
	if err != nil {
		return zero, fmt.Errorf("%s: %w", flag, err)
	}
	defer f.Close()
	v, err := parse(f)
	if err != nil {
		return zero, fmt.Errorf("%s %s: %w", flag, path, err)
	}
	return v, nil
}
