package daemon

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// Limits are the gRPC transport limits of the server; a zero field means
// DefaultLimits'. They bound what one
// client can make sessiond hold (memory, streams, idle connections, half-done
// handshakes) without getting in the way of well-behaved clients.
type Limits struct {
	// MaxRecvMsgSize is the largest request message, in bytes; a larger one
	// fails with ResourceExhausted before it is decoded. sessiond's own
	// requests are at most about 10 KiB (CreateSession with every field at
	// its limit); an ext_authz CheckRequest carries the HTTP request's
	// headers, which Envoy should be told to limit (allowed_headers).
	MaxRecvMsgSize int
	// MaxConcurrentStreams is the number of calls one connection may have
	// in flight; more wait on the client side (a gateway opens another
	// connection). Each WatchRevocations stream counts for the whole time
	// it is open.
	MaxConcurrentStreams uint32
	// MaxHeaderListSize bounds a call's metadata, in bytes.
	MaxHeaderListSize uint32
	// ConnectionTimeout bounds the TLS handshake of a new connection.
	ConnectionTimeout time.Duration
	// Enforcement is the keepalive policy for clients: a client that pings
	// more often than MinTime is disconnected (GOAWAY "too_many_pings").
	// PermitWithoutStream lets clients keep idle connections warm with
	// pings (MaxConnectionIdle still closes them).
	Enforcement keepalive.EnforcementPolicy
	// Keepalive: a connection without calls for MaxConnectionIdle is closed
	// (the client reconnects when it needs to); after Time without
	// activity the server pings the client and closes the connection if no
	// answer comes within Timeout, so a vanished client (and its
	// WatchRevocations stream) does not linger. A connection older than
	// MaxConnectionAge (give or take 10%) is asked to go away, and closed
	// MaxConnectionAgeGrace later with whatever is still open on it, so that
	// a caller's credentials are checked again at least that often: a
	// client certificate that was revoked or expired, an identity that a
	// reloaded CA no longer vouches for. It ends each WatchRevocations
	// stream (and the cache of the client behind it, which reconnects and
	// refills) once per age.
	Keepalive keepalive.ServerParameters
	// StreamResets bounds the RST_STREAM frames one connection may send
	// (HTTP/2 rapid reset, resets.go): past it, the connection gets GOAWAY
	// (ENHANCE_YOUR_CALM) and is closed. A well-behaved client resets a
	// stream only when it gives up on a call (a deadline, a cancellation).
	StreamResets ResetLimit
	// StreamWorkers is the number of goroutines kept to run calls (grpc's
	// NumStreamWorkers); a call that finds none idle gets a goroutine of its
	// own, as without workers. A kept goroutine keeps the stack a call grew
	// (an interceptor chain over a go-redis read is deep), which a new one
	// would grow again, copying it, on every call: about a tenth of the
	// CPU of a validation in a profile of the shipped binary.
	StreamWorkers uint32
	// StreamWindow and ConnWindow are the HTTP/2 flow-control windows, in
	// bytes, that a client may fill before sessiond has read: per call and
	// per connection. They are fixed. gRPC's default instead estimates each
	// connection's bandwidth-delay product, answering a burst of request
	// data with a PING (and a WINDOW_UPDATE) whenever none is out: with a
	// call or a few in flight, that is one more frame each way, and one
	// more read and write for both sides, on every call. sessiond's
	// requests are small (MaxRecvMsgSize), so a window that never grows
	// costs it nothing, and it bounds what one connection can have sessiond
	// buffer more tightly than an estimate that may grow to 16 MiB.
	StreamWindow int32
	ConnWindow   int32
}

// DefaultLimits are the limits sessiond runs with.
var DefaultLimits = Limits{
	MaxRecvMsgSize:       64 << 10,
	MaxConcurrentStreams: 1000,
	MaxHeaderListSize:    16 << 10,
	ConnectionTimeout:    10 * time.Second,
	Enforcement: keepalive.EnforcementPolicy{
		MinTime:             10 * time.Second,
		PermitWithoutStream: true,
	},
	Keepalive: keepalive.ServerParameters{
		MaxConnectionIdle:     5 * time.Minute,
		MaxConnectionAge:      time.Hour,
		MaxConnectionAgeGrace: time.Minute,
		Time:                  30 * time.Second,
		Timeout:               10 * time.Second,
	},
	StreamResets:  ResetLimit{PerSecond: 200, Burst: 1000},
	StreamWorkers: 64,
	StreamWindow:  256 << 10,
	ConnWindow:    1 << 20,
}

// withDefaults returns l with its zero fields replaced by DefaultLimits'.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.MaxRecvMsgSize <= 0 {
		l.MaxRecvMsgSize = d.MaxRecvMsgSize
	}
	if l.MaxConcurrentStreams == 0 {
		l.MaxConcurrentStreams = d.MaxConcurrentStreams
	}
	if l.MaxHeaderListSize == 0 {
		l.MaxHeaderListSize = d.MaxHeaderListSize
	}
	if l.ConnectionTimeout <= 0 {
		l.ConnectionTimeout = d.ConnectionTimeout
	}
	if l.Enforcement == (keepalive.EnforcementPolicy{}) {
		l.Enforcement = d.Enforcement
	}
	if l.Keepalive == (keepalive.ServerParameters{}) {
		l.Keepalive = d.Keepalive
	}
	if l.StreamResets.PerSecond <= 0 || l.StreamResets.Burst <= 0 {
		l.StreamResets = d.StreamResets
	}
	if l.StreamWorkers == 0 {
		l.StreamWorkers = d.StreamWorkers
	}
	if l.StreamWindow <= 0 {
		l.StreamWindow = d.StreamWindow
	}
	if l.ConnWindow <= 0 {
		l.ConnWindow = d.ConnWindow
	}
	return l
}

// serverOptions returns l as options for grpc.NewServer.
func (l Limits) serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(l.MaxRecvMsgSize),
		grpc.MaxConcurrentStreams(l.MaxConcurrentStreams),
		grpc.MaxHeaderListSize(l.MaxHeaderListSize),
		grpc.ConnectionTimeout(l.ConnectionTimeout),
		grpc.KeepaliveEnforcementPolicy(l.Enforcement),
		grpc.KeepaliveParams(l.Keepalive),
		grpc.NumStreamWorkers(l.StreamWorkers),
		grpc.StaticStreamWindowSize(l.StreamWindow),
		grpc.StaticConnWindowSize(l.ConnWindow),
	}
}
