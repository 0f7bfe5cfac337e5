package daemon

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
)

// tlsFiles names the PEM files of the gRPC listener's TLS configuration.
type tlsFiles struct {
	// CertFile and KeyFile are the server's certificate (chain) and key.
	CertFile, KeyFile string
	// ClientCAFile, if set, holds the CAs that sign client certificates:
	// a client that presents a certificate must present one they signed,
	// and is identified by it (see Auth).
	ClientCAFile string
	// RequireClientCert refuses, during the handshake, clients without a
	// certificate (tls.RequireAndVerifyClientCert). When false a client
	// certificate is verified if given (tls.VerifyClientCertIfGiven), so
	// callers with an API key and no certificate can connect over TLS.
	RequireClientCert bool
}

// tlsReloader serves the TLS configuration read from tlsFiles, and reads it
// again on Reload: new connections get the new certificates, established
// ones keep theirs. The server's tls.Config (Config) reads the current one
// for each handshake (GetConfigForClient).
type tlsReloader struct {
	files tlsFiles
	cur   atomic.Pointer[tls.Config]
}

// newTLSReloader reads the files once; an error names the file at fault.
func newTLSReloader(files tlsFiles) (*tlsReloader, error) {
	if files.CertFile == "" || files.KeyFile == "" {
		return nil, errors.New("TLS needs a certificate and a key file")
	}
	if files.RequireClientCert && files.ClientCAFile == "" {
		return nil, errors.New("requiring client certificates needs a client CA file")
	}
	r := &tlsReloader{files: files}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload reads the files again. On error the configuration in use stays.
func (r *tlsReloader) Reload() error {
	cert, err := tls.LoadX509KeyPair(r.files.CertFile, r.files.KeyFile)
	if err != nil {
		return fmt.Errorf("TLS certificate %s / key %s: %w", r.files.CertFile, r.files.KeyFile, err)
	}
	conf := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.NoClientCert,
	}
	if r.files.ClientCAFile != "" {
		pool, err := readCAFile(r.files.ClientCAFile)
		switch {
		case errors.Is(err, errNoPEM):
			return fmt.Errorf("TLS client CA %s: %w", r.files.ClientCAFile, err)
		case err != nil:
			return fmt.Errorf("TLS client CA: %w", err)
		}
		conf.ClientCAs = pool
		conf.ClientAuth = tls.VerifyClientCertIfGiven
		if r.files.RequireClientCert {
			conf.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	r.cur.Store(conf)
	return nil
}

// Config returns the tls.Config for a listener of the application protocols
// protos (ALPN: "h2" for gRPC): each handshake uses the configuration most
// recently loaded.
func (r *tlsReloader) Config(protos ...string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			c := r.cur.Load().Clone()
			c.NextProtos = protos
			return c, nil
		},
	}
}

var errNoPEM = errors.New("no PEM certificate in the file")

// readCAFile reads a PEM file of CA certificates (a listener's client CAs,
// Redis' server CAs).
func readCAFile(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errNoPEM
	}
	return pool, nil
}
