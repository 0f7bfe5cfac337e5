package access

import (
	"context"
	"log/slog"
	"net"
	"net/netip"

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
}

// Anonymous is the Name of a caller that presented no identity.
const Anonymous = "anonymous"

type callerKey struct{}

// ContextWithCaller returns ctx carrying c.
func ContextWithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerFromContext returns the caller of the current call: the one an
// authentication interceptor established, or an anonymous caller with the
// peer's address.
func CallerFromContext(ctx context.Context) Caller {
	if c, ok := ctx.Value(callerKey{}).(Caller); ok {
		return c
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
