package access

import (
	"context"
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
