package testutil

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
)

// H2Frames counts HTTP/2 frames that went one way over a connection: the
// PINGs (not their ACKs), and the HEADERS, to show the recording saw the
// calls.
type H2Frames struct {
	Pings, Headers int
}

// H2Conn records what a client connection reads and writes, so that a test
// can count the HTTP/2 frames each side sent.
type H2Conn struct {
	net.Conn
	mu            sync.Mutex
	read, written bytes.Buffer
}

func (c *H2Conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.keep(&c.read, p[:n])
	return n, err
}

func (c *H2Conn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.keep(&c.written, p[:n])
	return n, err
}

func (c *H2Conn) keep(b *bytes.Buffer, p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b.Write(p)
}

// FromServer counts the frames the server has sent so far.
func (c *H2Conn) FromServer(tb testing.TB) H2Frames {
	tb.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	return countFrames(tb, c.read.Bytes())
}

// FromClient counts the frames the client has sent so far (after its
// connection preface).
func (c *H2Conn) FromClient(tb testing.TB) H2Frames {
	tb.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := bytes.CutPrefix(c.written.Bytes(), []byte(http2.ClientPreface))
	if !ok {
		tb.Fatalf("the client did not start with the HTTP/2 preface")
	}
	return countFrames(tb, b)
}

// countFrames counts the whole frames in b (a frame still arriving at its
// end is left out).
func countFrames(tb testing.TB, b []byte) H2Frames {
	tb.Helper()
	fr := http2.NewFramer(io.Discard, bytes.NewReader(b))
	fr.SetMaxReadFrameSize(1 << 24)
	var n H2Frames
	for {
		f, err := fr.ReadFrame()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return n
		}
		if err != nil {
			tb.Fatalf("reading the recorded HTTP/2 frames: %v", err)
		}
		switch f := f.(type) {
		case *http2.PingFrame:
			if !f.IsAck() {
				n.Pings++
			}
		case *http2.HeadersFrame:
			n.Headers++
		}
	}
}

// H2Recorder records the connections of a client that dials with its
// DialOption.
type H2Recorder struct {
	mu    sync.Mutex
	conns []*H2Conn
}

// DialOption makes a client dial through r.
func (r *H2Recorder) DialOption() grpc.DialOption {
	return grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		rc := &H2Conn{Conn: c}
		r.mu.Lock()
		r.conns = append(r.conns, rc)
		r.mu.Unlock()
		return rc, nil
	})
}

// Only returns the one connection the client made.
func (r *H2Recorder) Only(tb testing.TB) *H2Conn {
	tb.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.conns) != 1 {
		tb.Fatalf("the client made %d connections, want 1", len(r.conns))
	}
	return r.conns[0]
}
