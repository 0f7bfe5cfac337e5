package access

import (
	"context"
	"errors"
	"net"
	"testing"
)

func TestRateLimitKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		caller Caller
		want   string
	}{
		{Caller{Name: "spiffe://example.org/login", Addr: "10.0.0.1:4000"}, "name:spiffe://example.org/login"},
		{Caller{Name: Anonymous, Addr: "10.0.0.1:4000"}, "ip:10.0.0.1"},
		{Caller{Name: Anonymous, Addr: "10.0.0.1:5000"}, "ip:10.0.0.1"},
		{Caller{Name: Anonymous, Addr: "[::ffff:10.0.0.1]:5000"}, "ip:10.0.0.1"},
		{Caller{Name: Anonymous, Addr: "[2001:db8:1:2:3:4:5:6]:443"}, "ip:2001:db8:1:2::/64"},
		{Caller{Name: Anonymous, Addr: "[2001:db8:1:2:ffff::1]:443"}, "ip:2001:db8:1:2::/64"},
		{Caller{Name: Anonymous, Addr: "@"}, "addr:@"},
		{Caller{Name: "", Addr: ""}, "addr:"},
	} {
		ctx := ContextWithCaller(context.Background(), tc.caller)
		if got := RateLimitKey(ctx); got != tc.want {
			t.Errorf("RateLimitKey(%+v) = %q, want %q", tc.caller, got, tc.want)
		}
	}
}

func TestContextWithCaller(t *testing.T) {
	t.Parallel()
	type otherKey struct{}
	want := Caller{Name: "login", Roles: []string{"validator"}, Addr: "10.0.0.1:4000", EndUser: "192.0.2.7"}
	parent, cancel := context.WithCancelCause(context.WithValue(context.Background(), otherKey{}, "kept"))
	ctx := ContextWithCaller(parent, want)

	got := CallerFromContext(ctx)
	if got.Name != want.Name || got.Addr != want.Addr || got.EndUser != want.EndUser || len(got.Roles) != 1 || got.Roles[0] != "validator" {
		t.Errorf("CallerFromContext = %+v, want %+v", got, want)
	}
	got.Name = "changed" // a copy: the context's caller stays as it was
	if CallerFromContext(ctx).Name != want.Name {
		t.Error("changing the returned Caller changed the context's")
	}
	if ctx.Value(otherKey{}) != "kept" {
		t.Error("the parent's values are lost")
	}
	// A context derived from it still ends with the call's.
	child, stop := context.WithCancel(ctx)
	defer stop()
	errGone := errors.New("caller went away")
	cancel(errGone)
	<-child.Done()
	if !errors.Is(context.Cause(child), errGone) || !errors.Is(context.Cause(ctx), errGone) {
		t.Errorf("causes %v, %v; want %v", context.Cause(child), context.Cause(ctx), errGone)
	}
	if c := CallerFromContext(context.Background()); c.Name != Anonymous {
		t.Errorf("no caller: got %+v, want an anonymous one", c)
	}
}

func TestAddrTexts(t *testing.T) { // not parallel: it counts allocations
	var texts addrTexts
	a := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 4000}
	b := &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 443}
	u := &net.UnixAddr{Name: "/run/sessiond.sock", Net: "unix"}
	for range 2 { // formatted, then from the table
		for _, addr := range []net.Addr{a, b, u} {
			if got, want := texts.of(addr), addr.String(); got != want {
				t.Errorf("of(%v) = %q, want %q", addr, got, want)
			}
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = texts.of(a) }); n != 0 {
		t.Errorf("a known connection's address: %v allocations, want 0", n)
	}
	// The table starts over once full: it never holds more than its bound.
	for i := range 2*maxAddrTexts + 10 {
		addr := &net.TCPAddr{IP: net.IPv4(10, 1, byte(i>>8), byte(i)), Port: i}
		if got, want := texts.of(addr), addr.String(); got != want {
			t.Fatalf("of(%v) = %q, want %q", addr, got, want)
		}
	}
	held := 0
	texts.m.Range(func(any, any) bool { held++; return true })
	if held > maxAddrTexts {
		t.Errorf("the table holds %d addresses, more than its bound %d", held, maxAddrTexts)
	}
}
