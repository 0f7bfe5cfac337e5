package client_test

import (
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sessiond/sessiond/client"
	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/internal/sessiondtest"
	"github.com/sessiond/sessiond/internal/testutil"
)

// validateOneByOne creates a session through conn and validates it n times,
// one call at a time: the traffic on which gRPC's bandwidth-delay estimate
// sends a PING per call.
func validateOneByOne(t *testing.T, conn *grpc.ClientConn, n int) {
	t.Helper()
	rpc := sessionauthv1.NewSessionAuthorityClient(conn)
	ctx := ctxT(t)
	created, err := rpc.CreateSession(ctx, &sessionauthv1.CreateSessionRequest{UserId: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		if _, err := rpc.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: created.GetToken()}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestNoFlowControlPingsPerCall: neither sessiond (its fixed windows) nor a
// client dialed with DialOptions sends a PING with each call; a client with
// gRPC's defaults does, which shows the count would catch it.
func TestNoFlowControlPingsPerCall(t *testing.T) {
	t.Parallel()
	sd := sessiondtest.Start(t)
	const calls = 20

	var rec testutil.H2Recorder
	conn, err := grpc.NewClient(sd.Addr, append(client.DialOptions(), rec.DialOption(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	validateOneByOne(t, conn, calls)
	c := rec.Only(t)
	fromServer, fromClient := c.FromServer(t), c.FromClient(t)
	if fromServer.Headers < 2*calls {
		t.Fatalf("counted %d HEADERS frames from sessiond after %d calls: the recording missed frames", fromServer.Headers, calls)
	}
	if fromServer.Pings != 0 {
		t.Errorf("sessiond sent %d PINGs over %d calls, want 0 (fixed flow-control windows)", fromServer.Pings, calls+1)
	}
	if fromClient.Pings != 0 {
		t.Errorf("a client dialed with DialOptions sent %d PINGs over %d calls, want 0", fromClient.Pings, calls+1)
	}

	var plainRec testutil.H2Recorder
	plain, err := grpc.NewClient(sd.Addr, plainRec.DialOption(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	validateOneByOne(t, plain, calls)
	if n := plainRec.Only(t).FromClient(t).Pings; n == 0 {
		t.Errorf("a client with gRPC's default windows sent no PING over %d calls: the count cannot tell", calls+1)
	}
}
