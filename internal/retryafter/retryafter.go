// Package retryafter turns a gRPC status's google.rpc.RetryInfo into an
// HTTP Retry-After value, for every HTTP answer sessiond and its client
// give to a throttled request.
package retryafter

import (
	"math"
	"strconv"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
)

// Header is the Retry-After value (whole seconds, rounded up, at least 1)
// for st's RetryInfo detail; "1" without one.
func Header(st *status.Status) string {
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return strconv.FormatInt(int64(max(1, math.Ceil(ri.GetRetryDelay().AsDuration().Seconds()))), 10)
		}
	}
	return "1"
}
