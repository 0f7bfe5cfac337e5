package access

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/peer"
)

// Caller is who is calling sessiond: the identity the transport or an API
// key established, with its roles. It is what authorization, rate limits and
// the audit log speak about.
type Caller struct {
	// Name identifies the caller: a SPIFFE ID, a DNS name or a certificate
	// CN, an API key's name, or "anonymous" when sessiond authenticates no
	// one (the caller's address is then in Addr).
	Name string
	// Roles are the roles the caller holds.
	Roles []string
	// Addr is the caller's network address.
	Addr string
	// EndUser is the address of the end user the call is made for, as the
	// caller reports it in EndUserHeader: set only when the caller may speak
	// for end users (RoleEndUserProxy, or every caller when authorization is
	// off). Failed validations are limited per end user, under the caller's
	// own limit.
	EndUser string
}

// EndUserHeader is the metadata key in which a caller that validates tokens
// for end users (a protected service, a gateway) names the end user's IP
// address.
const EndUserHeader = "x-sessiond-end-user"

// Anonymous is the Name of a caller that presented no identity.
const Anonymous = "anonymous"

type callerKey struct{}

// callerCtx is a context carrying a caller. It is what context.WithValue
// would make, in one allocation where WithValue takes two (its node, and
// the Caller boxed in an interface): every call makes one.
type callerCtx struct {
	context.Context
	caller Caller
}

func (c *callerCtx) Value(key any) any {
	if key == (callerKey{}) {
		return &c.caller
	}
	return c.Context.Value(key)
}

// ContextWithCaller returns ctx carrying c.
func ContextWithCaller(ctx context.Context, c Caller) context.Context {
	return &callerCtx{Context: ctx, caller: c}
}

// CallerFromContext returns the caller of the current call: the one an
// authentication interceptor established, or an anonymous caller with the
// peer's address.
func CallerFromContext(ctx context.Context) Caller {
	if c, ok := ctx.Value(callerKey{}).(*Caller); ok {
		return *c
	}
	c := Caller{Name: Anonymous}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		c.Addr = p.Addr.String()
	}
	return c
}

// LogValue logs a caller as its name and address.
func (c Caller) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", c.Name), slog.String("addr", c.Addr))
}

// RateLimitKey is whom a rate limit counts a call against: the caller's name,
// or for an anonymous caller its IP address (see AddrKey).
func RateLimitKey(ctx context.Context) string {
	c := CallerFromContext(ctx)
	if c.Name != "" && c.Name != Anonymous {
		return "name:" + c.Name
	}
	return AddrKey(c.Addr)
}

// EndUserKey is the rate limit key of the end user at addr, among the
// callers' whose key is callerKey: an end user's share never spans callers.
func EndUserKey(callerKey, addr string) string {
	return callerKey + "|client:" + AddrKey(addr)
}

// AddrKey is the rate limit key of a network address: its IP, or for IPv6
// its /64, which one host usually holds whole.
func AddrKey(addr string) string {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		ip = ip.Unmap()
		if ip.Is6() {
			if p, err := ip.Prefix(64); err == nil {
				return "ip:" + p.String()
			}
		}
		return "ip:" + ip.String()
	}
	return "addr:" + host
}

// addrTexts formats the callers' network addresses, each connection's once:
// gRPC gives every call of a connection the same *net.TCPAddr, and
// formatting one takes two allocations, which every call would pay.
type addrTexts struct {
	m sync.Map // *net.TCPAddr → its String()
	n atomic.Int32
}

// maxAddrTexts bounds an addrTexts: past it, it starts over, which also
// drops the entries of connections that have closed.
const maxAddrTexts = 4096

// of returns a.String().
func (t *addrTexts) of(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	if s, ok := t.m.Load(tcp); ok {
		return s.(string)
	}
	s := tcp.String()
	if t.n.Add(1) > maxAddrTexts {
		t.m.Clear()
		t.n.Store(1)
	}
	t.m.Store(tcp, s)
	return s
}
