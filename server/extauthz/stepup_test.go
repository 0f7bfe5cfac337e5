package extauthz_test

import (
	"encoding/json"
	"maps"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/internal/assurance"
	"github.com/sessiond/sessiond/server/extauthz"
)

// routeReq is the CheckRequest Envoy sends for a request with these headers
// on a route whose ExtAuthzPerRoute sets the context_extensions ext.
func routeReq(headers, ext map[string]string) *authv3.CheckRequest {
	req := checkReq(headers)
	req.Attributes.ContextExtensions = ext
	return req
}

// wantShort checks the deny decision for a live session short of the
// route's requirement: PERMISSION_DENIED with the ErrorInfo, and 403 with
// Sessiond-Reason and the JSON body for the client.
func wantShort(t *testing.T, resp *authv3.CheckResponse, reason string, metadata map[string]string, what string) {
	t.Helper()
	wantDenied(t, resp, codes.PermissionDenied, typev3.StatusCode_Forbidden, "sessiond-reason", reason, what)
	st := status.FromProto(resp.GetStatus())
	info, ok := assurance.Denial(st.Err())
	if !ok || info.GetReason() != reason || !maps.Equal(info.GetMetadata(), metadata) || st.Message() == "" {
		t.Errorf("%s: rpc status %v (ErrorInfo %v), want the ErrorInfo %s %v", what, st, info, reason, metadata)
	}
	d := resp.GetDeniedResponse()
	headers := map[string]string{}
	for _, h := range d.GetHeaders() {
		headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	if headers["content-type"] != "application/json" || headers["x-content-type-options"] != "nosniff" || headers["www-authenticate"] != "" {
		t.Errorf("%s: headers %v", what, headers)
	}
	var b assurance.Body
	if err := json.Unmarshal([]byte(d.GetBody()), &b); err != nil || b.Error != reason || b.Message != st.Message() || !maps.Equal(b.Metadata, metadata) {
		t.Errorf("%s: body %q (%v)", what, d.GetBody(), err)
	}
}

// TestExtAuthzStepUp: a route whose context_extensions ask for assurance
// level 2 and an authentication within 5 minutes allows a session that
// meets them, denies one short of them with 403 and the reason (the session
// stays live), still 401 without a token, and allows the token of the login
// backend's step-up (RotateSession).
func TestExtAuthzStepUp(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{ExtAuthz: &extauthz.Config{}})
	low := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "low", AssuranceLevel: 1})
	high := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "high", AssuranceLevel: 2})
	levelMD := map[string]string{"required_assurance_level": "2", "assurance_level": "1"}
	bearer := func(tok string) map[string]string { return map[string]string{"authorization": "Bearer " + tok} }

	for _, maxAge := range []string{"300s", "5m", "300"} {
		ext := map[string]string{"min_assurance_level": "2", "max_auth_age": maxAge, "tenant": "a"}
		got := upstream(t, bearer(high.GetToken()), e.check(t, routeReq(bearer(high.GetToken()), ext)))
		if want := map[string]string{"x-session-id": high.GetSession().GetSessionId(), "x-user-id": "high"}; !maps.Equal(got, want) {
			t.Errorf("max_auth_age %s, level 2: upstream receives %v, want %v", maxAge, got, want)
		}
		cookie := map[string]string{"cookie": "a=1; __Host-session=" + high.GetToken()}
		upstream(t, cookie, e.check(t, routeReq(cookie, ext)))
		wantShort(t, e.check(t, routeReq(bearer(low.GetToken()), ext)), assurance.ReasonLevelTooLow, levelMD, "max_auth_age "+maxAge+", level 1")
		wantDenied(t, e.check(t, routeReq(nil, ext)), codes.Unauthenticated, typev3.StatusCode_Unauthorized, "www-authenticate", `Bearer realm="sessiond"`, "max_auth_age "+maxAge+", no token")
		wantDenied(t, e.check(t, routeReq(bearer("garbage"), ext)), codes.Unauthenticated, typev3.StatusCode_Unauthorized, "www-authenticate", `Bearer realm="sessiond"`, "max_auth_age "+maxAge+", a garbage token")
	}
	// The level alone; "0" asks nothing; the client's headers never ask.
	wantShort(t, e.check(t, routeReq(bearer(low.GetToken()), map[string]string{"min_assurance_level": "2"})), assurance.ReasonLevelTooLow, levelMD, "the level alone")
	upstream(t, nil, e.check(t, routeReq(bearer(low.GetToken()), map[string]string{"min_assurance_level": "0", "max_auth_age": "0"})))
	spoof := map[string]string{"authorization": "Bearer " + low.GetToken(), "x-sessiond-min-assurance-level": "3", "min_assurance_level": "3"}
	upstream(t, nil, e.check(t, routeReq(spoof, nil)))

	// Six minutes on, the level-2 session's authentication is too old; it
	// is still live.
	e.Clock.Advance(6 * time.Minute)
	ext := map[string]string{"min_assurance_level": "2", "max_auth_age": "5m"}
	resp := e.check(t, routeReq(bearer(high.GetToken()), ext))
	wantDenied(t, resp, codes.PermissionDenied, typev3.StatusCode_Forbidden, "sessiond-reason", assurance.ReasonReauthenticationRequired, "6 minutes on")
	if info, ok := assurance.Denial(status.FromProto(resp.GetStatus()).Err()); !ok || info.GetMetadata()["max_auth_age"] != "5m0s" {
		t.Errorf("6 minutes on: ErrorInfo %v", info)
	}
	upstream(t, nil, e.check(t, routeReq(bearer(high.GetToken()), nil)))

	// The step-up: the rotated sessions pass.
	ctx := callCtx(t)
	re, err := e.Client.RotateSession(ctx, &sessionauthv1.RotateSessionRequest{Token: high.GetToken(), Reauthenticated: true})
	if err != nil {
		t.Fatal(err)
	}
	up, err := e.Client.RotateSession(ctx, &sessionauthv1.RotateSessionRequest{Token: low.GetToken(), AssuranceLevel: 2, Reauthenticated: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := upstream(t, nil, e.check(t, routeReq(bearer(re.GetToken()), ext))); got["x-session-id"] != re.GetSession().GetSessionId() {
		t.Errorf("reauthenticated: upstream receives %v", got)
	}
	if got := upstream(t, nil, e.check(t, routeReq(bearer(up.GetToken()), ext))); got["x-user-id"] != "low" || got["x-session-id"] != up.GetSession().GetSessionId() {
		t.Errorf("stepped up: upstream receives %v", got)
	}
}

// TestExtAuthzMalformedRequirement: context_extensions that Envoy's
// configuration got wrong fail closed: a 500 that names the key and
// INVALID_ARGUMENT in the CheckResponse (never a gRPC error, which
// failure_mode_allow could let through), for a live session and without
// one, logged at error level.
func TestExtAuthzMalformedRequirement(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{ExtAuthz: &extauthz.Config{}})
	tok := e.create(t, &sessionauthv1.CreateSessionRequest{UserId: "u", AssuranceLevel: 3}).GetToken()
	for _, tc := range []struct {
		key string
		ext map[string]string
	}{
		{"min_assurance_level", map[string]string{"min_assurance_level": "4"}},
		{"min_assurance_level", map[string]string{"min_assurance_level": "-1"}},
		{"min_assurance_level", map[string]string{"min_assurance_level": "two"}},
		{"min_assurance_level", map[string]string{"min_assurance_level": " 2"}},
		{"min_assurance_level", map[string]string{"min_assurance_level": ""}},
		{"max_auth_age", map[string]string{"min_assurance_level": "2", "max_auth_age": "soon"}},
		{"max_auth_age", map[string]string{"max_auth_age": "-5m"}},
		{"max_auth_age", map[string]string{"max_auth_age": "5 m"}},
		{"max_auth_age", map[string]string{"max_auth_age": ""}},
	} {
		key, ext := tc.key, tc.ext
		for name, headers := range map[string]map[string]string{"a live session": {"authorization": "Bearer " + tok}, "no token": nil} {
			what := name + ", " + key + "=" + ext[key]
			resp := e.check(t, routeReq(headers, ext))
			wantDenied(t, resp, codes.InvalidArgument, typev3.StatusCode_InternalServerError, "content-type", "text/plain; charset=utf-8", what)
			for _, text := range []string{resp.GetDeniedResponse().GetBody(), resp.GetStatus().GetMessage()} {
				if !strings.Contains(text, "context_extensions "+key) {
					t.Errorf("%s: %q does not name the key", what, text)
				}
			}
		}
	}
	logs := e.Logs.String()
	if !strings.Contains(logs, `"level":"ERROR"`) || !strings.Contains(logs, "step-up requirement is malformed") || !strings.Contains(logs, `context_extensions max_auth_age \"soon\"`) {
		t.Errorf("no error-level line naming the key in the logs:\n%s", logs)
	}
	if strings.Contains(logs, tok[28:]) {
		t.Error("a token appears in the logs")
	}
}
