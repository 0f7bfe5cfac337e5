package faulttest

import (
	"bytes"
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/internal/sessiondtest"
	"github.com/sessiond/sessiond/server"
	"github.com/sessiond/sessiond/server/store"
)

// execCutter is a TCP proxy to Redis that, when armed, forwards the next
// EXEC to Redis and then cuts that connection before the reply reaches the
// client: the transaction is applied, and its caller never hears so.
type execCutter struct {
	l      net.Listener
	target string
	armed  atomic.Bool
	cuts   atomic.Int32
	wg     sync.WaitGroup
}

var execCmd = []byte("\r\nexec\r\n") // go-redis spells commands in lowercase

func startExecCutter(t *testing.T, target string) *execCutter {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &execCutter{l: l, target: target}
	p.wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.wg.Go(func() { p.serve(c) })
		}
	})
	t.Cleanup(func() { _ = l.Close(); p.wg.Wait() })
	return p
}

func (p *execCutter) serve(client net.Conn) {
	defer client.Close()
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer server.Close()
	var cut atomic.Bool
	done := make(chan struct{})
	go func() { // Redis → client, until the cut
		defer close(done)
		buf := make([]byte, 32<<10)
		for {
			n, err := server.Read(buf)
			if cut.Load() {
				_ = client.Close()
				return
			}
			if n > 0 {
				if _, werr := client.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := client.Read(buf)
		b := buf[:n]
		if i := bytes.Index(bytes.ToLower(b), execCmd); i >= 0 && p.armed.CompareAndSwap(true, false) {
			cut.Store(true) // before Redis can answer
			p.cuts.Add(1)
			_, _ = server.Write(b[:i+len(execCmd)])
			<-done
			return
		}
		if n > 0 {
			if _, werr := server.Write(b); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// TestLostExecReply: a write applied by Redis whose reply is lost (the
// connection cut between EXEC and its reply) is answered Unavailable, is
// never applied twice (go-redis does not retry a transaction), and the
// caller's retry of a revoke-user or a rotation leaves the state one call
// leaves: nothing more revoked, no second session, no reuse alarm.
func TestLostExecReply(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	proxy := startExecCutter(t, srv.Addr())
	rdb := redis.NewClient(&redis.Options{Addr: proxy.l.Addr().String(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = rdb.Close() })
	d := sessiondtest.StartWith(t, rdb, sessiondtest.Options{Store: store.Config{TouchInterval: time.Minute}, Server: server.Config{RequestTimeout: 5 * time.Second}})
	c := sessionauthv1.NewSessionAuthorityClient(d.Conn)
	direct := srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	create := func(user string) *sessionauthv1.CreateSessionResponse {
		t.Helper()
		r, err := c.CreateSession(ctx, &sessionauthv1.CreateSessionRequest{UserId: user})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	// The revocation events of the run, read straight from Redis.
	sub := direct.Subscribe(ctx, store.DefaultKeyPrefix+":v1:revocations")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	events := func() int {
		n := 0
		for {
			msg, err := sub.ReceiveTimeout(ctx, 200*time.Millisecond)
			if err != nil {
				return n
			}
			if _, ok := msg.(*redis.Message); ok {
				n++
			}
		}
	}

	// RevokeUserSessions: applied, reply lost, retried.
	for range 3 {
		create("lost-revoke-user")
	}
	keep := create("lost-revoke-user-bystander")
	proxy.armed.Store(true)
	_, err := c.RevokeUserSessions(ctx, &sessionauthv1.RevokeUserSessionsRequest{UserId: "lost-revoke-user"})
	if status.Code(err) != codes.Unavailable || proxy.cuts.Load() != 1 {
		t.Fatalf("RevokeUserSessions with its EXEC reply lost: %v (%d cuts), want Unavailable", err, proxy.cuts.Load())
	}
	r, err := c.RevokeUserSessions(ctx, &sessionauthv1.RevokeUserSessionsRequest{UserId: "lost-revoke-user"})
	if err != nil || r.GetRevokedCount() != 0 {
		t.Fatalf("the retried RevokeUserSessions = %v, %v; want OK with nothing left to revoke", r, err)
	}
	if n := events(); n != 1 {
		t.Fatalf("%d revocation events for one revoke-user applied once, want 1", n)
	}
	if _, err := c.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: keep.GetToken()}); err != nil {
		t.Fatalf("another user's session: %v", err)
	}

	// RotateSession: applied, reply lost, retried with the old token.
	old := create("lost-rotate")
	proxy.armed.Store(true)
	_, err = c.RotateSession(ctx, &sessionauthv1.RotateSessionRequest{Token: old.GetToken()})
	if status.Code(err) != codes.Unavailable || proxy.cuts.Load() != 2 {
		t.Fatalf("RotateSession with its EXEC reply lost: %v, want Unavailable", err)
	}
	_, err = c.RotateSession(ctx, &sessionauthv1.RotateSessionRequest{Token: old.GetToken()})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("the retried RotateSession: %v, want Unauthenticated (the first one was applied)", err)
	}
	list, err := c.ListUserSessions(ctx, &sessionauthv1.ListUserSessionsRequest{UserId: "lost-rotate"})
	if err != nil || len(list.GetSessions()) != 1 || list.GetSessions()[0].GetSessionId() == old.GetSession().GetSessionId() {
		t.Fatalf("the user's sessions after a rotation applied once and retried: %v, %v; want the one new session", list, err)
	}
	if n := events(); n != 1 {
		t.Fatalf("%d events for one rotation applied once (and a retry within the grace), want 1 (no reuse alarm)", n)
	}
}
