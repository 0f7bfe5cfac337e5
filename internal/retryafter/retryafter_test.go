package retryafter

import (
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

func TestHeader(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		delay time.Duration
		want  string
	}{{0, "1"}, {time.Millisecond, "1"}, {time.Second, "1"}, {1001 * time.Millisecond, "2"}, {90 * time.Second, "90"}} {
		st, err := status.New(codes.ResourceExhausted, "x").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(tc.delay)})
		if err != nil {
			t.Fatal(err)
		}
		if got := Header(st); got != tc.want {
			t.Errorf("Header(RetryInfo %v) = %q, want %q", tc.delay, got, tc.want)
		}
	}
	if got := Header(status.New(codes.ResourceExhausted, "x")); got != "1" {
		t.Errorf("Header without RetryInfo = %q, want 1", got)
	}
}
