package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/internal/redistest"
)

// exercise runs a create, validate, list, revoke cycle through sessiond.
func exercise(t *testing.T, conn *grpc.ClientConn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := sessionauthv1.NewSessionAuthorityClient(conn)
	var created *sessionauthv1.CreateSessionResponse
	var err error
	// The first call may wait for a connection to Redis.
	for deadline := time.Now().Add(10 * time.Second); ; {
		created, err = c.CreateSession(ctx, &sessionauthv1.CreateSessionRequest{UserId: "mode-user"})
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	if _, err := c.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: created.GetToken()}); err != nil {
		t.Fatalf("ValidateSession: %v", err)
	}
	list, err := c.ListUserSessions(ctx, &sessionauthv1.ListUserSessionsRequest{UserId: "mode-user"})
	if err != nil || len(list.GetSessions()) != 1 {
		t.Fatalf("ListUserSessions = %v, %v", list, err)
	}
	if r, err := c.RevokeSession(ctx, &sessionauthv1.RevokeSessionRequest{Target: &sessionauthv1.RevokeSessionRequest_Token{Token: created.GetToken()}}); err != nil || !r.GetRevoked() {
		t.Fatalf("RevokeSession = %v, %v", r, err)
	}
	if _, err := c.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: created.GetToken()}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("ValidateSession after revoke: %v", err)
	}
}

func TestRunOnCluster(t *testing.T) {
	t.Parallel()
	// No failover here: a longer node timeout than redistest's default keeps
	// a busy machine from triggering one.
	cluster := redistest.StartCluster(t, 3, 0, "--cluster-node-timeout", "5000")
	conn, logs, _ := startRun(t, []string{"--redis-cluster-addrs=" + strings.Join(cluster.Addrs()[:2], ",")}, noEnv)
	exercise(t, conn)
	if !strings.Contains(logs.String(), "redis_mode=cluster") {
		t.Fatalf("not in cluster mode:\n%s", logs)
	}
}

func TestRunOnSentinel(t *testing.T) {
	t.Parallel()
	group := redistest.StartSentinelDownAfter(t, 5*time.Second) // no failover here
	env := map[string]string{
		"SESSIOND_REDIS_SENTINEL_ADDRS":  strings.Join(group.Addrs(), ","),
		"SESSIOND_REDIS_SENTINEL_MASTER": redistest.SentinelMaster,
	}
	conn, logs, _ := startRun(t, nil, func(k string) string { return env[k] })
	exercise(t, conn)
	if !strings.Contains(logs.String(), "redis_mode=sentinel") {
		t.Fatalf("not in sentinel mode:\n%s", logs)
	}
}

func TestRunWithACLUser(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx0, cancel0 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel0()
	for _, cmd := range [][]any{{"ACL", "SETUSER", "sessiond", "on", ">s3cret", "~sessiond:*", "&sessiond:*", "+@read", "+@write", "+@transaction", "+@pubsub", "+ping", "+info"}, {"ACL", "SETUSER", "default", "off"}} {
		if err := admin.Do(ctx0, cmd...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	env := map[string]string{"SESSIOND_REDIS_PASSWORD": "s3cret"}
	conn, _, _ := startRun(t, []string{"--redis-url=" + srv.URL(), "--redis-username=sessiond"}, func(k string) string { return env[k] })
	exercise(t, conn)

	// A wrong password fails closed, without the password in any message.
	bad := map[string]string{"SESSIOND_REDIS_PASSWORD": "wrong-password"}
	conn2, logs2, _ := startRun(t, []string{"--redis-url=" + srv.URL(), "--redis-username=sessiond", "--request-timeout=1s"}, func(k string) string { return bad[k] })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := sessionauthv1.NewSessionAuthorityClient(conn2).CreateSession(ctx, &sessionauthv1.CreateSessionRequest{UserId: "u"})
	if code := status.Code(err); code != codes.Unavailable && code != codes.Internal {
		t.Fatalf("with a wrong Redis password: %v", err)
	}
	if strings.Contains(logs2.String(), "wrong-password") || strings.Contains(err.Error(), "wrong-password") {
		t.Fatal("the Redis password was logged or sent")
	}
}

func TestRunOverTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	caFile, certFile, keyFile := writeTestCerts(t, dir)
	port := redistest.FreePort(t)
	// Redis requires a client certificate signed by the CA.
	redistest.Start(t, "--tls-port", strconv.Itoa(port), "--tls-cert-file", certFile, "--tls-key-file", keyFile,
		"--tls-ca-cert-file", caFile, "--tls-auth-clients", "yes")
	url := "rediss://" + net.JoinHostPort("localhost", strconv.Itoa(port))
	conn, _, _ := startRun(t, []string{"--redis-url=" + url, "--redis-tls-ca-file=" + caFile,
		"--redis-tls-cert-file=" + certFile, "--redis-tls-key-file=" + keyFile}, noEnv)
	exercise(t, conn)

	// Without the client certificate Redis refuses the handshake: fail closed.
	conn2, _, _ := startRun(t, []string{"--redis-url=" + url, "--redis-tls-ca-file=" + caFile, "--request-timeout=1s"}, noEnv)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := sessionauthv1.NewSessionAuthorityClient(conn2).CreateSession(ctx, &sessionauthv1.CreateSessionRequest{UserId: "u"})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("without a client certificate: %v, want Unavailable", err)
	}
}

// writeTestCerts writes a CA and a server certificate for localhost signed by
// it, and returns the three PEM files.
func writeTestCerts(t *testing.T, dir string) (ca, cert, key string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sessiond test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srvTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caTmpl, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(srvKey)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("server.pem", "CERTIFICATE", srvDER), write("server.key", "EC PRIVATE KEY", keyDER)
}
