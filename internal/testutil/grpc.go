package testutil

import (
	"context"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// CallCtx is a call context of the test: 10 seconds at most.
func CallCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// WantCode fails the test unless err has the code, and returns its status.
func WantCode(t testing.TB, err error, code codes.Code, what string) *status.Status {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code {
		t.Fatalf("%s: code %v (%q), want %v", what, st.Code(), st.Message(), code)
	}
	return st
}

// CheckRequest is the CheckRequest Envoy's ext_authz HTTP filter sends for a
// request with these (lowercase) headers.
func CheckRequest(headers map[string]string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Id: "req-1", Method: "GET", Path: "/orders", Host: "app.example.com", Protocol: "HTTP/1.1", Headers: headers},
	}}}
}

// WantDenied checks a deny decision: its rpc code, HTTP status, a body, and
// the header the client needs.
func WantDenied(t testing.TB, resp *authv3.CheckResponse, code codes.Code, httpCode typev3.StatusCode, header, value, what string) {
	t.Helper()
	d := resp.GetDeniedResponse()
	if got := codes.Code(resp.GetStatus().GetCode()); got != code || d == nil {
		t.Fatalf("%s: rpc status %v %q (ok_response %v), want %v and a denied response", what, got, resp.GetStatus().GetMessage(), resp.GetOkResponse(), code)
	}
	if d.GetStatus().GetCode() != httpCode {
		t.Errorf("%s: HTTP %v, want %v", what, d.GetStatus().GetCode(), httpCode)
	}
	if d.GetBody() == "" {
		t.Errorf("%s: no body", what)
	}
	if header == "" {
		return
	}
	for _, h := range d.GetHeaders() {
		if h.GetHeader().GetKey() == header {
			if h.GetHeader().GetValue() != value {
				t.Errorf("%s: %s: %q, want %q", what, header, h.GetHeader().GetValue(), value)
			}
			return
		}
	}
	t.Errorf("%s: no %s header in %v", what, header, d.GetHeaders())
}
