package daemon

import (
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"
)

// HTTP/2 rapid reset (CVE-2023-44487): a client that opens streams and
// resets them at once makes the server start (and cancel) a handler per
// stream while never holding more than a few streams open, so the concurrent
// streams limit does not stop it. grpc-go bounds neither the rate nor the
// count of resets, and one client doing ~30k resets a second on two
// connections took another client's ValidateSession from 0.65 ms to over
// 100 ms.
//
// sessiond watches the frames each connection sends (after TLS, below
// grpc-go): past a token bucket of RST_STREAM frames (Limits.StreamResets),
// it sends the client GOAWAY with ENHANCE_YOUR_CALM ("too_many_resets") and
// closes the connection. The GOAWAY is written between two of grpc-go's own
// frames (the outgoing frames are followed too), so the client reads a
// well-formed connection to its end.

// ResetLimit is a token bucket of the RST_STREAM frames the connections
// from one client address may send: Burst at once, then PerSecond. It is
// kept per address, not per connection, so that reconnecting does not buy
// a new burst.
type ResetLimit struct {
	PerSecond float64
	Burst     int
}

// resetCreds wraps a server's transport credentials so that every
// connection's resets are limited.
type resetCreds struct {
	credentials.TransportCredentials
	buckets *resetBuckets
	log     *slog.Logger
}

func newResetCreds(creds credentials.TransportCredentials, limit ResetLimit, log *slog.Logger) resetCreds {
	return resetCreds{TransportCredentials: creds, buckets: &resetBuckets{limit: limit, byAddr: map[string]*resetBucket{}}, log: log}
}

// errResetsSpent refuses a connection from an address whose resets are
// spent: a client cut off for resetting too many streams does not get a new
// connection (and grpc-go's work to set one up) until its bucket refills.
var errResetsSpent = errors.New("connection refused: this address reset too many streams; retry later")

// ServerHandshake implements credentials.TransportCredentials.
func (c resetCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	host, _, _ := net.SplitHostPort(raw.RemoteAddr().String())
	bucket := c.buckets.of(host)
	if bucket.spent(c.buckets.limit) {
		_ = raw.Close()
		return nil, nil, errResetsSpent
	}
	conn, info, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		return conn, info, err
	}
	return &resetConn{Conn: conn, log: c.log, bucket: bucket, limit: c.buckets.limit, preface: len(clientPreface)}, info, nil
}

// Clone implements credentials.TransportCredentials.
func (c resetCreds) Clone() credentials.TransportCredentials {
	return resetCreds{TransportCredentials: c.TransportCredentials.Clone(), buckets: c.buckets, log: c.log}
}

// resetBuckets are the reset buckets of the client addresses.
type resetBuckets struct {
	limit  ResetLimit
	mu     sync.Mutex
	byAddr map[string]*resetBucket
}

// maxResetBuckets bounds the addresses remembered; past it, the full
// buckets (addresses that have not reset anything for a while) are
// forgotten.
const maxResetBuckets = 10_000

func (b *resetBuckets) of(addr string) *resetBucket {
	b.mu.Lock()
	defer b.mu.Unlock()
	if k, ok := b.byAddr[addr]; ok {
		return k
	}
	if len(b.byAddr) >= maxResetBuckets {
		now := time.Now()
		for a, k := range b.byAddr {
			if k.full(now, b.limit) {
				delete(b.byAddr, a)
			}
		}
	}
	k := &resetBucket{tokens: float64(b.limit.Burst), last: time.Now()}
	b.byAddr[addr] = k
	return k
}

// resetBucket is one address's token bucket.
type resetBucket struct {
	mu     sync.Mutex
	tokens float64
	last   time.Time
}

// take spends a token, reporting whether there was one.
func (k *resetBucket) take(limit ResetLimit) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := time.Now()
	k.tokens = min(float64(limit.Burst), k.tokens+now.Sub(k.last).Seconds()*limit.PerSecond)
	k.last = now
	if k.tokens < 1 {
		return false
	}
	k.tokens--
	return true
}

// spent reports whether the bucket holds less than one token.
func (k *resetBucket) spent(limit ResetLimit) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.tokens+time.Since(k.last).Seconds()*limit.PerSecond < 1
}

func (k *resetBucket) full(now time.Time, limit ResetLimit) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.tokens+now.Sub(k.last).Seconds()*limit.PerSecond >= float64(limit.Burst)
}

// HTTP/2 framing (RFC 9113).
const (
	clientPreface   = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	frameHeaderLen  = 9
	frameHeaders    = 0x1
	frameRSTStream  = 0x3
	frameGoAway     = 0x7
	errEnhanceCalm  = 0xb
	goAwayDebugData = "too_many_resets"
)

var errTooManyResets = errors.New("too many stream resets: connection closed with GOAWAY (ENHANCE_YOUR_CALM)")

// resetConn is a server connection whose incoming frames are counted.
type resetConn struct {
	net.Conn
	log    *slog.Logger
	bucket *resetBucket
	limit  ResetLimit

	// The reading side (one reader: grpc-go's).
	in      frameScanner
	preface int    // bytes of the client preface still to skip
	lastID  uint32 // the highest stream id the client opened
	tripped bool

	// The writing side: grpc-go's writes and the GOAWAY, one at a time.
	wmu     sync.Mutex
	out     frameScanner
	pending bool // the GOAWAY is to be written at the next frame boundary
	done    bool // the connection is closed: nothing more is written
}

// Read passes the client's bytes to grpc-go, counting its RST_STREAM frames.
// When one is over the limit, grpc-go gets the bytes before that frame and,
// from its next Read, an error.
func (c *resetConn) Read(p []byte) (int, error) {
	if c.tripped {
		return 0, errTooManyResets
	}
	n, err := c.Conn.Read(p)
	b := p[:n]
	off := 0
	if c.preface > 0 {
		off = min(c.preface, len(b))
		c.preface -= off
	}
	cut := -1
	c.in.scan(b[off:], func(typ byte, stream uint32, start int) bool {
		switch typ {
		case frameHeaders:
			c.lastID = max(c.lastID, stream)
		case frameRSTStream:
			if !c.bucket.take(c.limit) {
				cut = max(off+start, 0)
				return false
			}
		}
		return true
	})
	if cut < 0 {
		return n, err
	}
	c.tripped = true
	c.log.Warn("client reset too many streams: connection closed with GOAWAY", "peer.address", c.RemoteAddr().String(),
		"resets_per_second", c.limit.PerSecond, "burst", c.limit.Burst)
	c.goAway()
	return cut, nil
}

// goAway writes GOAWAY (ENHANCE_YOUR_CALM) between two of grpc-go's frames
// and closes the connection: now if grpc-go is not in the middle of writing
// a frame, else at the end of that frame (the next Write), or 100ms later
// without a GOAWAY if no Write comes.
func (c *resetConn) goAway() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.done {
		return
	}
	if c.out.boundary() {
		c.writeGoAwayAndClose()
		return
	}
	c.pending = true
	time.AfterFunc(100*time.Millisecond, func() {
		c.wmu.Lock()
		defer c.wmu.Unlock()
		if !c.done {
			c.closeLingering()
		}
	})
}

// Close closes the connection, unless it is closing already (lingering after
// a GOAWAY): grpc-go closes it as soon as its next Read fails.
func (c *resetConn) Close() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	switch {
	case c.done:
		return nil
	case c.pending:
		c.closeLingering()
		return nil
	}
	c.done = true
	return c.Conn.Close()
}

// closeLingering ends the connection the way that lets the client read
// what was sent last (c.wmu held): closing a socket with unread input makes
// the kernel answer TCP RST, which can drop the GOAWAY before the client
// reads it. So it shuts the sending side, and reads and discards what the
// client still sends (up to half a second, and 4 MiB) before closing.
func (c *resetConn) closeLingering() {
	c.done = true
	cw, ok := c.Conn.(interface{ CloseWrite() error })
	if !ok {
		_ = c.Conn.Close()
		return
	}
	_ = cw.CloseWrite()
	go func() {
		_ = c.Conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		_, _ = io.CopyN(io.Discard, c.Conn, 4<<20)
		_ = c.Conn.Close()
	}()
}

// writeGoAwayAndClose writes the GOAWAY and closes the connection (c.wmu
// held).
func (c *resetConn) writeGoAwayAndClose() {
	frame := make([]byte, frameHeaderLen+8+len(goAwayDebugData))
	putFrameHeader(frame, len(frame)-frameHeaderLen, frameGoAway, 0, 0)
	binary.BigEndian.PutUint32(frame[9:], c.lastID&0x7fffffff)
	binary.BigEndian.PutUint32(frame[13:], errEnhanceCalm)
	copy(frame[17:], goAwayDebugData)
	_ = c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = c.Conn.Write(frame)
	c.closeLingering()
}

// Write passes grpc-go's bytes to the client, following its frames; with a
// GOAWAY pending, only up to the end of the frame in progress, then the
// GOAWAY.
func (c *resetConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.done {
		return 0, net.ErrClosed
	}
	if c.pending {
		k := c.out.untilBoundary(p)
		n, err := c.Conn.Write(p[:k])
		c.out.scan(p[:n], nil)
		if err == nil && c.out.boundary() {
			c.writeGoAwayAndClose()
		}
		return n, errTooManyResets
	}
	n, err := c.Conn.Write(p)
	c.out.scan(p[:n], nil)
	return n, err
}

// frameScanner follows a stream of HTTP/2 frames fed to it in pieces.
type frameScanner struct {
	header [frameHeaderLen]byte
	have   int // bytes of the current frame's header read
	skip   int // bytes of the current frame's payload still to come
}

// boundary reports whether the bytes fed so far end a frame.
func (s *frameScanner) boundary() bool { return s.have == 0 && s.skip == 0 }

// untilBoundary returns how many bytes of b end the frame in progress: 0 at
// a boundary, len(b) if b does not reach the end of the frame.
func (s *frameScanner) untilBoundary(b []byte) int {
	probe := *s
	for i := 0; ; {
		if probe.boundary() {
			return i
		}
		if i == len(b) {
			return len(b)
		}
		if probe.skip > 0 {
			n := min(probe.skip, len(b)-i)
			probe.skip -= n
			i += n
			continue
		}
		n := copy(probe.header[probe.have:], b[i:])
		probe.have += n
		i += n
		if probe.have == frameHeaderLen {
			probe.have = 0
			probe.skip = int(probe.header[0])<<16 | int(probe.header[1])<<8 | int(probe.header[2])
		}
	}
}

// scan feeds b. For each frame whose header completes in b, it calls seen
// (if not nil) with the frame's type and stream and the offset in b at which
// the frame started (negative if it started before b); scan stops, leaving
// the rest of b unfed, when seen returns false.
func (s *frameScanner) scan(b []byte, seen func(typ byte, stream uint32, start int) bool) {
	for i := 0; i < len(b); {
		if s.skip > 0 {
			n := min(s.skip, len(b)-i)
			s.skip -= n
			i += n
			continue
		}
		start := i - s.have
		n := copy(s.header[s.have:], b[i:])
		s.have += n
		i += n
		if s.have < frameHeaderLen {
			return
		}
		s.have = 0
		s.skip = int(s.header[0])<<16 | int(s.header[1])<<8 | int(s.header[2])
		if seen != nil && !seen(s.header[3], binary.BigEndian.Uint32(s.header[5:])&0x7fffffff, start) {
			return
		}
	}
}

func putFrameHeader(b []byte, length int, typ, flags byte, stream uint32) {
	b[0], b[1], b[2] = byte(length>>16), byte(length>>8), byte(length)
	b[3], b[4] = typ, flags
	binary.BigEndian.PutUint32(b[5:], stream)
}
