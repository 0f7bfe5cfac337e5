package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/internal/daemon"
	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/internal/testutil"
	"github.com/sessiond/sessiond/server"
)

// testCA is a certificate authority for tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

var serial atomic.Int64

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// issue returns a certificate signed by ca (a server certificate for
// localhost when server is set, else a client certificate) and its key, in
// PEM.
func (ca *testCA) issue(t *testing.T, server bool, cn string, dns []string, uris ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: cn},
		DNSNames: dns, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = append(tmpl.DNSNames, "localhost")
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	for _, u := range uris {
		parsed, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, parsed)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

// clientCert is issue for a client, as a tls.Certificate.
func (ca *testCA) clientCert(t *testing.T, cn string, dns []string, uris ...string) tls.Certificate {
	t.Helper()
	c, k := ca.issue(t, false, cn, dns, uris...)
	cert, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// writeFile writes data to dir/name atomically (a rename), as a deployment
// tool would, and returns the path.
func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	return p
}

// serve runs sessiond in-process with args until the test ends, and
// returns its address and logs.
func serve(t *testing.T, args ...string) (string, *testutil.SyncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	logs := &testutil.SyncBuffer{}
	go func() {
		done <- run(ctx, append([]string{"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--forward-auth-listen", "127.0.0.1:0", "--log-level=debug", "--shutdown-drain-delay=0"}, args...), noEnv, logs, notify(ready))
	}()
	select {
	case addr := <-ready:
		t.Cleanup(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				t.Error("sessiond did not stop within 15s")
			}
		})
		return addr.String(), logs
	case err := <-done:
		cancel()
		t.Fatalf("run ended at start: %v\n%s", err, logs)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("sessiond did not start within 10s")
	}
	return "", nil
}

// dialTLS connects to addr over TLS, trusting roots, with cert as client
// certificate if it is not nil.
func dialTLS(t *testing.T, addr string, roots *x509.CertPool, cert *tls.Certificate) *grpc.ClientConn {
	t.Helper()
	conf := &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	if cert != nil {
		// Present it whatever CAs the server asks for (crypto/tls would
		// otherwise leave out a certificate the server's CAs did not sign).
		conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(conf)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// newAPIKey returns a random API key and its keys-file line.
func newAPIKey(t *testing.T, name, roles string) (key, line string) {
	t.Helper()
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	key = hex.EncodeToString(b)
	sum := sha256.Sum256([]byte(key))
	return key, strings.TrimSpace(fmt.Sprintf("%s %s %s", name, hex.EncodeToString(sum[:]), roles))
}

// TestSecurityMatrix walks every kind of caller through every RPC against a
// real sessiond, over TLS with client certificates verified if given, with
// API keys and a policy, on a real redis-server. Each allowed call is built
// to succeed (OK), so any other code comes from authentication or
// authorization.
func TestSecurityMatrix(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	dir := t.TempDir()
	ca := newTestCA(t, "matrix CA")
	srvCert, srvKey := ca.issue(t, true, "sessiond", nil)

	keyValidator, l1 := newAPIKey(t, "edge-proxy", "validator")
	keyIssuer, l2 := newAPIKey(t, "login-backend", "issuer")
	keyAdmin, l3 := newAPIKey(t, "ops-cli", "admin")
	keySupport, l4 := newAPIKey(t, "support-desk", "support")
	keysFile := writeFile(t, dir, "keys", []byte("# name sha256 roles\n"+l1+"\n"+l2+"\n\n"+l3+"\n"+l4+"\n"))
	policy := writeFile(t, dir, "policy.json", []byte(`{"rules": [
		{"callers": ["spiffe://test.example/ns/prod/sa/*"], "grant": ["validator"]},
		{"callers": ["login.test.example"], "grant": ["issuer"]},
		{"callers": ["ops-admin"], "grant": ["admin"]},
		{"roles": ["support"], "grant": ["sessionauth.v1.SessionAuthority/ListUserSessions"]}
	]}`))
	addr, logs := serve(t, "--redis-url="+srv.URL(),
		"--tls-cert-file="+writeFile(t, dir, "server.pem", srvCert), "--tls-key-file="+writeFile(t, dir, "server.key", srvKey),
		"--tls-client-ca-file="+writeFile(t, dir, "ca.pem", ca.pem),
		"--api-keys-file="+keysFile, "--policy-file="+policy)

	roots := ca.pool()
	certValidator := ca.clientCert(t, "gateway", []string{"gateway.test.example"}, "spiffe://test.example/ns/prod/sa/gateway")
	certIssuer := ca.clientCert(t, "login", []string{"login.test.example", "other.test.example"})
	certAdmin := ca.clientCert(t, "ops-admin", nil)
	certStranger := ca.clientCert(t, "stranger", nil)

	const (
		create   = "CreateSession"
		validate = "ValidateSession"
		revoke   = "RevokeSession"
		rotate   = "RotateSession"
		list     = "ListUserSessions"
		revokeU  = "RevokeUserSessions"
		watch    = "WatchRevocations"
		check    = "ext_authz Check"
		health   = "Health Check"
		reflect  = "reflection"
	)
	all := []string{create, validate, revoke, rotate, list, revokeU, watch, check, health, reflect}
	type identity struct {
		name    string
		cert    *tls.Certificate
		key     string
		allowed []string
		denied  codes.Code // the code of every call not allowed
	}
	identities := []identity{
		{"anonymous", nil, "", []string{health}, codes.Unauthenticated},
		{"cert validator (SPIFFE ID)", &certValidator, "", []string{validate, watch, check, health}, codes.PermissionDenied},
		{"cert issuer (DNS SAN)", &certIssuer, "", []string{create, revoke, rotate, health}, codes.PermissionDenied},
		{"cert admin (CN)", &certAdmin, "", all, codes.OK},
		{"key validator", nil, keyValidator, []string{validate, watch, check, health}, codes.PermissionDenied},
		{"key issuer", nil, keyIssuer, []string{create, revoke, rotate, health}, codes.PermissionDenied},
		{"key admin", nil, keyAdmin, all, codes.OK},
		{"key with a policy role", nil, keySupport, []string{list, health}, codes.PermissionDenied},
		{"wrong key", nil, "not-a-key-" + keyAdmin, []string{health}, codes.Unauthenticated},
		{"cert of an unknown identity", &certStranger, "", []string{health}, codes.PermissionDenied},
		// A certificate wins over a key: the stranger stays a stranger.
		{"unknown cert with an admin key", &certStranger, keyAdmin, []string{health}, codes.PermissionDenied},
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	adminConn := dialTLS(t, addr, roots, &certAdmin)
	admin := sessionauthv1.NewSessionAuthorityClient(adminConn)
	fresh := func() *sessionauthv1.CreateSessionResponse {
		t.Helper()
		r, err := admin.CreateSession(ctx, &sessionauthv1.CreateSessionRequest{UserId: "matrix-user"})
		if err != nil {
			t.Fatalf("creating a session as admin: %v", err)
		}
		return r
	}
	live := fresh()

	calls := map[string]func(ctx context.Context, conn *grpc.ClientConn) error{
		create: func(ctx context.Context, conn *grpc.ClientConn) error {
			_, err := sessionauthv1.NewSessionAuthorityClient(conn).CreateSession(ctx, &sessionauthv1.CreateSessionRequest{UserId: "matrix-user"})
			return err
		},
		validate: func(ctx context.Context, conn *grpc.ClientConn) error {
			_, err := sessionauthv1.NewSessionAuthorityClient(conn).ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: live.GetToken()})
			return err
		},
		revoke: func(ctx context.Context, conn *grpc.ClientConn) error {
			target := &sessionauthv1.RevokeSessionRequest_SessionId{SessionId: fresh().GetSession().GetSessionId()}
			r, err := sessionauthv1.NewSessionAuthorityClient(conn).RevokeSession(ctx, &sessionauthv1.RevokeSessionRequest{Target: target})
			if err == nil && !r.GetRevoked() {
				return fmt.Errorf("revoked=false for a live session")
			}
			return err
		},
		rotate: func(ctx context.Context, conn *grpc.ClientConn) error {
			_, err := sessionauthv1.NewSessionAuthorityClient(conn).RotateSession(ctx, &sessionauthv1.RotateSessionRequest{Token: fresh().GetToken()})
			return err
		},
		list: func(ctx context.Context, conn *grpc.ClientConn) error {
			r, err := sessionauthv1.NewSessionAuthorityClient(conn).ListUserSessions(ctx, &sessionauthv1.ListUserSessionsRequest{UserId: "matrix-user", PageSize: 1})
			if err == nil && len(r.GetSessions()) == 0 {
				return fmt.Errorf("no session listed")
			}
			return err
		},
		revokeU: func(ctx context.Context, conn *grpc.ClientConn) error {
			_, err := sessionauthv1.NewSessionAuthorityClient(conn).RevokeUserSessions(ctx, &sessionauthv1.RevokeUserSessionsRequest{UserId: "matrix-nobody"})
			return err
		},
		watch: func(ctx context.Context, conn *grpc.ClientConn) error {
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			stream, err := sessionauthv1.NewSessionAuthorityClient(conn).WatchRevocations(ctx, &sessionauthv1.WatchRevocationsRequest{})
			if err != nil {
				return err
			}
			if md, err := stream.Header(); err == nil && len(md.Get(server.WatchReadyHeader)) > 0 {
				return nil // subscribed
			}
			_, err = stream.Recv()
			return err
		},
		check: func(ctx context.Context, conn *grpc.ClientConn) error {
			req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
				Http: &authv3.AttributeContext_HttpRequest{Headers: map[string]string{"authorization": "Bearer " + live.GetToken()}},
			}}}
			r, err := authv3.NewAuthorizationClient(conn).Check(ctx, req)
			if err == nil && codes.Code(r.GetStatus().GetCode()) != codes.OK {
				return fmt.Errorf("the check denied a live session: %v", r.GetStatus())
			}
			return err
		},
		health: func(ctx context.Context, conn *grpc.ClientConn) error {
			_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
			return err
		},
		reflect: func(ctx context.Context, conn *grpc.ClientConn) error {
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
			if err != nil {
				return err
			}
			if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
				_, err = stream.Recv()
				return err
			}
			_, err = stream.Recv()
			return err
		},
	}

	// WatchRevocations is Unavailable until sessiond's own subscription is
	// live: wait for it (as admin) so that the "watch" entries test access,
	// not startup.
	for deadline := time.Now().Add(10 * time.Second); calls[watch](ctx, adminConn) != nil; {
		if time.Now().After(deadline) {
			t.Fatalf("WatchRevocations as admin: %v after 10s, want the %s header", calls[watch](ctx, adminConn), server.WatchReadyHeader)
		}
		time.Sleep(20 * time.Millisecond)
	}

	for _, id := range identities {
		conn := dialTLS(t, addr, roots, id.cert)
		callCtx := ctx
		if id.key != "" {
			callCtx = metadata.AppendToOutgoingContext(ctx, "x-api-key", id.key)
		}
		for _, rpc := range all {
			want := id.denied
			for _, a := range id.allowed {
				if a == rpc {
					want = codes.OK
				}
			}
			err := calls[rpc](callCtx, conn)
			if got := status.Code(err); got != want {
				t.Errorf("%s × %s: %v, want %v", id.name, rpc, err, want)
			}
		}
	}

	// A request over the receive limit is refused before it is decoded.
	_, err := admin.CreateSession(ctx, &sessionauthv1.CreateSessionRequest{UserId: "u", UserAgent: strings.Repeat("x", daemon.DefaultLimits.MaxRecvMsgSize)})
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a request over --max-recv-msg-size: %v, want ResourceExhausted", err)
	}

	out := logs.String()
	for _, key := range []string{keyValidator, keyIssuer, keyAdmin, keySupport} {
		if strings.Contains(out, key) {
			t.Fatal("an API key is in the log")
		}
	}
	for _, want := range []string{`call refused by the policy`, `caller.name=stranger`, `client_certs="verified if given"`, "api_keys=4", "authorization=policy"} {
		if !strings.Contains(out, want) {
			t.Errorf("the log lacks %q", want)
		}
	}
}

// TestRequireClientCert: with --tls-require-client-cert a client without a
// certificate fails the handshake; so does one whose certificate another CA
// signed, whatever the mode.
func TestRequireClientCert(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, other := newTestCA(t, "CA"), newTestCA(t, "other CA")
	srvCert, srvKey := ca.issue(t, true, "sessiond", nil)
	tlsArgs := []string{"--tls-cert-file=" + writeFile(t, dir, "server.pem", srvCert), "--tls-key-file=" + writeFile(t, dir, "server.key", srvKey),
		"--tls-client-ca-file=" + writeFile(t, dir, "ca.pem", ca.pem)}
	required, _ := serve(t, append(tlsArgs, "--tls-require-client-cert")...)
	ifGiven, _ := serve(t, tlsArgs...)
	good := ca.clientCert(t, "client", nil)
	foreign := other.clientCert(t, "client", nil)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name string
		addr string
		cert *tls.Certificate
		ok   bool
	}{
		{"required, no cert", required, nil, false},
		{"required, cert", required, &good, true},
		{"required, foreign cert", required, &foreign, false},
		{"if given, no cert", ifGiven, nil, true},
		{"if given, foreign cert", ifGiven, &foreign, false},
	} {
		_, err := healthpb.NewHealthClient(dialTLS(t, tc.addr, ca.pool(), tc.cert)).Check(ctx, &healthpb.HealthCheckRequest{})
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && status.Code(err) != codes.Unavailable {
			t.Errorf("%s: %v, want Unavailable (handshake refused)", tc.name, err)
		}
	}
}

// TestTLSReload replaces the certificate, key and client CA files under a
// running sessiond: new connections get the new server certificate and are
// verified against the new CA, without a restart; a broken file leaves the
// previous certificates in force.
func TestTLSReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca1, ca2 := newTestCA(t, "CA 1"), newTestCA(t, "CA 2")
	c1, k1 := ca1.issue(t, true, "server-1", nil)
	certFile, keyFile := writeFile(t, dir, "server.pem", c1), writeFile(t, dir, "server.key", k1)
	caFile := writeFile(t, dir, "ca.pem", ca1.pem)
	addr, logs := serve(t, "--tls-cert-file="+certFile, "--tls-key-file="+keyFile, "--tls-client-ca-file="+caFile, "--reload-interval=20ms")

	roots := ca1.pool()
	roots.AddCert(ca2.cert)
	client2 := ca2.clientCert(t, "client-2", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// served returns the CN of the server certificate a new connection gets,
	// or the error of its call.
	served := func(cert *tls.Certificate) (string, error) {
		var p peer.Peer
		conn := dialTLS(t, addr, roots, cert)
		defer conn.Close()
		if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p)); err != nil {
			return "", err
		}
		return p.AuthInfo.(credentials.TLSInfo).State.PeerCertificates[0].Subject.CommonName, nil
	}
	if cn, err := served(nil); err != nil || cn != "server-1" {
		t.Fatalf("before the reload: %q, %v", cn, err)
	}
	if _, err := served(&client2); err == nil {
		t.Fatal("a client certificate of CA 2 was accepted before CA 2 was configured")
	}

	c2, k2 := ca2.issue(t, true, "server-2", nil)
	writeFile(t, dir, "server.key", k2)
	writeFile(t, dir, "server.pem", c2)
	writeFile(t, dir, "ca.pem", ca2.pem)
	waitFor(t, "the new certificate", func() bool { cn, err := served(&client2); return err == nil && cn == "server-2" })

	// A broken certificate file is logged, and the last good one stays.
	writeFile(t, dir, "server.pem", []byte("not a certificate"))
	waitFor(t, "the failed reload in the log", func() bool { return strings.Contains(logs.String(), "reloading TLS certificates failed") })
	if cn, err := served(&client2); err != nil || cn != "server-2" {
		t.Fatalf("after a broken reload: %q, %v", cn, err)
	}
}

// TestPolicyAndKeysReload: a changed keys file or policy file takes effect
// without a restart.
func TestPolicyAndKeysReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, line := newAPIKey(t, "late-key", "")
	keysFile := writeFile(t, dir, "keys", nil)
	policy := writeFile(t, dir, "policy.json", []byte(`{}`))
	addr, _ := serve(t, "--api-keys-file="+keysFile, "--policy-file="+policy, "--reload-interval=20ms")
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "x-api-key", key), 20*time.Second)
	defer cancel()
	call := func() codes.Code {
		_, err := sessionauthv1.NewSessionAuthorityClient(conn).ListUserSessions(ctx, &sessionauthv1.ListUserSessionsRequest{UserId: "u"})
		return status.Code(err)
	}
	if c := call(); c != codes.Unauthenticated {
		t.Fatalf("an unknown key: %v, want Unauthenticated", c)
	}
	writeFile(t, dir, "keys", []byte(line+"\n"))
	waitFor(t, "the new key", func() bool { return call() == codes.PermissionDenied })
	writeFile(t, dir, "policy.json", []byte(`{"rules": [{"callers": ["late-*"], "grant": ["sessionauth.v1.SessionAuthority/ListUserSessions"]}]}`))
	waitFor(t, "the new policy", func() bool { return call() == codes.OK })
}

// TestRetiredKeyEndsItsStreams: a WatchRevocations stream opened with an
// API key ends (PermissionDenied) when the key is removed from the keys file,
// or when the policy withdraws its grant; a stream opened with a key that
// stays is not disturbed.
func TestRetiredKeyEndsItsStreams(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	retired, retiredLine := newAPIKey(t, "retired", "validator")
	kept, keptLine := newAPIKey(t, "kept", "validator")
	demoted, demotedLine := newAPIKey(t, "demoted", "")
	keysFile := writeFile(t, dir, "keys", []byte(retiredLine+"\n"+keptLine+"\n"+demotedLine+"\n"))
	grant := `{"rules": [{"callers": ["demoted"], "grant": ["validator"]}]}`
	policy := writeFile(t, dir, "policy.json", []byte(grant))
	addr, logs := serve(t, "--api-keys-file="+keysFile, "--policy-file="+policy, "--reload-interval=20ms")
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	watch := func(key string) <-chan error {
		t.Helper()
		stream, err := sessionauthv1.NewSessionAuthorityClient(conn).WatchRevocations(metadata.AppendToOutgoingContext(ctx, "x-api-key", key), &sessionauthv1.WatchRevocationsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		// Wait for its headers: sessiond's subscription (and the stream's
		// authorization) is in place.
		if _, err := stream.Header(); err != nil {
			t.Fatal(err)
		}
		ended := make(chan error, 1)
		go func() {
			for {
				if _, err := stream.Recv(); err != nil {
					ended <- err
					return
				}
			}
		}()
		return ended
	}
	var retiredEnd, keptEnd, demotedEnd <-chan error
	waitFor(t, "the revocation subscription", func() bool {
		retiredEnd = watch(retired)
		select {
		case err := <-retiredEnd:
			return status.Code(err) != codes.Unavailable // not subscribed yet: again
		case <-time.After(100 * time.Millisecond):
			return true
		}
	})
	keptEnd, demotedEnd = watch(kept), watch(demoted)
	ended := func(ch <-chan error, what string) {
		t.Helper()
		select {
		case err := <-ch:
			if status.Code(err) != codes.PermissionDenied || !strings.Contains(status.Convert(err).Message(), "withdrawn") {
				t.Fatalf("%s: the stream ended with %v, want PermissionDenied saying access was withdrawn", what, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the stream is still open 10s later", what)
		}
	}

	writeFile(t, dir, "keys", []byte(keptLine+"\n"+demotedLine+"\n"))
	ended(retiredEnd, "the retired key")
	writeFile(t, dir, "policy.json", []byte(`{}`))
	ended(demotedEnd, "the key whose grant was withdrawn")
	select {
	case err := <-keptEnd:
		t.Fatalf("the stream of a key that stays ended: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	if !strings.Contains(logs.String(), "open stream ended: access withdrawn") {
		t.Fatal("no log line for the ended streams")
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestInsecureRefusal: with neither TLS nor a policy, sessiond refuses a
// non-loopback listen address unless --insecure says so, and says why.
func TestInsecureRefusal(t *testing.T) {
	t.Parallel()
	for _, listen := range []string{"0.0.0.0:50051", ":50051", "[::]:50051", "10.1.2.3:50051", "sessiond.internal:50051"} {
		err := run(context.Background(), []string{"--listen=" + listen}, noEnv, &bytes.Buffer{}, nil)
		if err == nil || !strings.Contains(err.Error(), "refusing to listen on "+listen) || !strings.Contains(err.Error(), "--insecure") {
			t.Errorf("--listen=%s: %v, want a refusal naming --insecure", listen, err)
		}
	}
	for _, args := range [][]string{
		{"--listen=0.0.0.0:50051", "--insecure"},
		{"--listen=0.0.0.0:50051", "--policy-file=p.json"},
		{"--listen=0.0.0.0:50051", "--tls-cert-file=c.pem", "--tls-key-file=k.pem"},
		{"--listen=localhost:50051"},
		{"--listen=[::1]:50051"},
		{"--listen=127.0.0.2:50051"},
	} {
		if _, err := parseConfig(args, noEnv, &bytes.Buffer{}); err != nil {
			t.Errorf("%v: %v", args, err)
		}
	}
}

// TestSecurityConfigErrors: malformed security files and flags stop
// sessiond at start, with a message naming the flag and the line.
func TestSecurityConfigErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, good := newAPIKey(t, "good", "validator")
	pastedKey := "sk_live_0123456789abcdef"
	keys := writeFile(t, dir, "keys", []byte(good+"\n# comment\nlonely\ngood "+strings.Repeat("ab", 32)+" validator\nbad-hash "+pastedKey+" issuer\nx "+strings.Repeat("cd", 32)+" Admin\n"))
	policy := writeFile(t, dir, "policy.json", []byte(`{"rules": [{"callers": ["a"], "grant": ["superuser"]}]}`))
	unknownField := writeFile(t, dir, "policy2.json", []byte(`{"rules": [{"caller": ["a"], "grant": ["admin"]}]}`))
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--api-keys-file=" + keys}, []string{"--api-keys-file", "line 3:", "line 4: name \"good\" is already used on line 1", "line 5: the second field must be the SHA-256", "line 6: role \"Admin\""}},
		{[]string{"--api-keys-file=" + filepath.Join(dir, "missing")}, []string{"--api-keys-file", "no such file"}},
		{[]string{"--policy-file=" + policy}, []string{"--policy-file", `rule 1: grant "superuser"`}},
		{[]string{"--policy-file=" + unknownField}, []string{"--policy-file", `unknown field "caller"`}},
		{[]string{"--tls-cert-file=c.pem"}, []string{"--tls-cert-file and --tls-key-file go together"}},
		{[]string{"--tls-client-ca-file=ca.pem"}, []string{"--tls-client-ca-file needs TLS"}},
		{[]string{"--tls-cert-file=" + filepath.Join(dir, "missing.pem"), "--tls-key-file=k.pem"}, []string{"--tls-cert-file"}},
		{[]string{"--api-key-header=Authorization"}, []string{"--api-key-header"}},
		{[]string{"--api-key-header=grpc-key"}, []string{"--api-key-header"}},
		{[]string{"--max-recv-msg-size=10"}, []string{"--max-recv-msg-size"}},
	} {
		err := run(context.Background(), tc.args, noEnv, &bytes.Buffer{}, nil)
		for _, want := range tc.want {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%v: %v, want an error with %q", tc.args, err, want)
			}
		}
		if err != nil && strings.Contains(err.Error(), pastedKey) {
			t.Errorf("the error echoes what may be a key: %v", err)
		}
	}
}
