// Package testutil holds the small helpers that several packages' tests share.
package testutil

import (
	"bytes"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Clock is an injected clock. It starts at the real time, so that absolute
// expiries computed from it lie in a real Redis' future, and moves only when
// told.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock set to now.
func NewClock() *Clock { return &Clock{t: time.Now()} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// SyncBuffer is a bytes.Buffer that concurrent writers (log handlers) can share.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Serve serves gs on a loopback TCP port until the test ends and returns a
// client connection to it.
func Serve(tb testing.TB, gs *grpc.Server) *grpc.ClientConn {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	served := make(chan struct{})
	go func() { _ = gs.Serve(lis); close(served) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = conn.Close()
		gs.Stop()
		<-served
	})
	return conn
}

// Tampered is tok with its last character changed (to x, or y when it was
// x): a well-formed token of the same session that is not its token.
// Appending a fixed character to tok[:len-1] would give tok itself once in
// 64 runs.
func Tampered(tok string) string {
	last := byte('x')
	if tok[len(tok)-1] == 'x' {
		last = 'y'
	}
	return tok[:len(tok)-1] + string(last)
}
