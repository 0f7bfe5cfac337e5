// Package extauthz serves Envoy's external authorization API
// (envoy.service.auth.v3.Authorization/Check) over the SessionAuthority
// service's validation, so that a gateway checks each HTTP request's session
// before the upstream sees it. It is the only package that imports Envoy's
// go-control-plane.
package extauthz

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sessiond/sessiond/internal/assurance"
	"github.com/sessiond/sessiond/internal/credential"
	"github.com/sessiond/sessiond/internal/retryafter"
	"github.com/sessiond/sessiond/server"
)

// The defaults of Config.
const (
	DefaultCookieName      = "__Host-session"
	DefaultSessionIDHeader = "x-session-id"
	DefaultUserIDHeader    = "x-user-id"
)

// Config configures the Check API. The zero value is the defaults.
type Config struct {
	// CookieName is the cookie that carries the token when the request has no
	// "Authorization: Bearer" header; "" means DefaultCookieName ("session").
	CookieName string
	// SessionIDHeader is the request header, in lowercase, that tells the
	// upstream the session id; "" means DefaultSessionIDHeader
	// ("x-session-id").
	SessionIDHeader string
	// UserIDHeader is the request header, in lowercase, that tells the
	// upstream the user id; "" means DefaultUserIDHeader ("x-user-id").
	UserIDHeader string
	// Logger receives a debug line per decision (never a token); nil means
	// none.
	Logger *slog.Logger
}

// Server implements Check over the session store, through svc's validation
// (server.Server.ValidateToken: the same rate limits, touches and metrics as
// ValidateSession).
//
// A request with a live session is allowed: the upstream receives the session
// and user ids in two headers that overwrite any the client sent, and no
// longer receives the credential. Anything else is denied, failing closed: no
// or a dead token gives 401, an unreachable Redis 503, any other fault 500.
// The decision is in the CheckResponse: Check returns a gRPC error only for a
// request without HTTP attributes.
//
// A route can demand a strong or recent enough authentication (step-up) with
// the context_extensions min_assurance_level (0 to 3) and max_auth_age ("300s",
// "5m" or seconds), set per virtual host or route in Envoy's ExtAuthzPerRoute.
// A live session that falls short is denied with 403, the reason in the
// Sessiond-Reason header and a JSON body (internal/assurance), and the status
// PERMISSION_DENIED with its google.rpc.ErrorInfo; the session stays live. A
// malformed requirement is denied with 500 and INVALID_ARGUMENT naming the
// key, whatever the request carries: never allowed, and never a gRPC error,
// which failure_mode_allow could turn into an allow.
type Server struct {
	authv3.UnimplementedAuthorizationServer
	svc *server.Server
	cfg Config
	log *slog.Logger
}

// New returns the Check API over svc. It does no I/O.
func New(svc *server.Server, cfg Config) *Server {
	if cfg.CookieName == "" {
		cfg.CookieName = DefaultCookieName
	}
	if cfg.SessionIDHeader == "" {
		cfg.SessionIDHeader = DefaultSessionIDHeader
	}
	if cfg.UserIDHeader == "" {
		cfg.UserIDHeader = DefaultUserIDHeader
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{svc: svc, cfg: cfg, log: log}
}

const (
	authorizationHeader = "authorization"
	cookieHeader        = "cookie"
	// wwwAuthenticate is the challenge of every 401 (RFC 6750 section 3).
	wwwAuthenticate = `Bearer realm="sessiond"`
	noTokenReason   = "no session token: want an Authorization: Bearer header or the session cookie"
)

// Check implements envoy.service.auth.v3.Authorization/Check.
func (a *Server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	httpReq := req.GetAttributes().GetRequest().GetHttp()
	if httpReq == nil {
		return nil, server.InvalidArgument("attributes.request.http", "is required (sessiond checks HTTP requests only)")
	}
	h := requestHeaders(httpReq)
	cred := findCredential(h[authorizationHeader], h[cookieHeader], a.cfg.CookieName)
	log := a.log.With("request_id", httpReq.GetId(), "credential", cred.source.String())
	// The route's requirement first: a mistake in Envoy's configuration
	// denies every request of the route, with or without a session, so that
	// it shows at once.
	need, err := requirement(req.GetAttributes().GetContextExtensions())
	if err != nil {
		log.ErrorContext(ctx, "ext_authz denied: the route's step-up requirement is malformed; fix Envoy's configuration", "error", err)
		return misconfigured(err), nil
	}
	if cred.source == noCredential {
		log.DebugContext(ctx, "ext_authz denied: no session token")
		return unauthenticated(noTokenReason), nil
	}
	// The end user is the downstream client the gateway saw: a failure counts
	// against its share of the gateway's budget, so one client sending bad
	// cookies does not get every user behind the gateway a 429.
	sess, err := a.svc.ValidateToken(ctx, cred.token, func() string {
		return req.GetAttributes().GetSource().GetAddress().GetSocketAddress().GetAddress()
	})
	if err != nil {
		st := status.Convert(err)
		log.DebugContext(ctx, "ext_authz denied", "code", st.Code().String())
		return denied(st), nil
	}
	if err := a.svc.Require(sess, need); err != nil {
		st := status.Convert(err)
		info, _ := assurance.Denial(err)
		log.DebugContext(ctx, "ext_authz denied: the session falls short of the route's requirement",
			slog.String("session_id", sess.ID), slog.String("user_id", sess.UserID), slog.String("reason", info.GetReason()))
		return denied(st), nil
	}
	log.DebugContext(ctx, "ext_authz allowed", slog.String("session_id", sess.ID), slog.String("user_id", sess.UserID))

	ok := &authv3.OkHttpResponse{
		Headers: []*corev3.HeaderValueOption{
			overwrite(a.cfg.SessionIDHeader, sess.ID),
			overwrite(a.cfg.UserIDHeader, sess.UserID),
		},
	}
	// The upstream never sees a sessiond credential: the Bearer header that
	// carried the token, and the session cookie whichever carried it.
	if cred.source == fromAuthorization {
		ok.HeadersToRemove = append(ok.HeadersToRemove, authorizationHeader)
	}
	if cookies := h[cookieHeader]; cookies != "" {
		if _, found := credential.CookieValue(cookies, a.cfg.CookieName); found {
			if rest := credential.WithoutCookie(cookies, a.cfg.CookieName); rest != "" {
				ok.Headers = append(ok.Headers, overwrite(cookieHeader, rest))
			} else {
				ok.HeadersToRemove = append(ok.HeadersToRemove, cookieHeader)
			}
		}
	}
	return &authv3.CheckResponse{
		Status:       &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: ok},
	}, nil
}

func unauthenticated(msg string) *authv3.CheckResponse {
	return denied(status.New(codes.Unauthenticated, msg))
}

// requirement is the route's demand of the session, from the
// context_extensions Envoy sends for it (assurance.ParseRoute: a value
// malformed or empty is an error).
func requirement(ext map[string]string) (assurance.Requirement, error) {
	given := func(key string) []string {
		if v, ok := ext[key]; ok {
			return []string{v}
		}
		return nil
	}
	need, err := assurance.ParseRoute(given(assurance.MinLevelParam), given(assurance.MaxAuthAgeParam))
	if err != nil {
		return need, fmt.Errorf("context_extensions %w", err)
	}
	return need, nil
}

// misconfigured is the deny decision for a route whose requirement is
// malformed: 500 to the client, with a body that names the key for whoever
// tries the route after changing Envoy's configuration.
func misconfigured(err error) *authv3.CheckResponse {
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: err.Error()},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode_InternalServerError},
			Headers: []*corev3.HeaderValueOption{overwrite("content-type", "text/plain; charset=utf-8")},
			Body:    "500 Internal Server Error: the route's step-up requirement is malformed: " + err.Error() + "\n",
		}},
	}
}

// denied is the deny decision for st, a status of the validation: its code and
// generic message go to the gateway, an HTTP status and a short body to the
// client.
func denied(st *status.Status) *authv3.CheckResponse {
	resp := &authv3.DeniedHttpResponse{
		Headers: []*corev3.HeaderValueOption{overwrite("content-type", "text/plain; charset=utf-8")},
	}
	rpc := &rpcstatus.Status{Code: int32(st.Code()), Message: st.Message()}
	switch st.Code() {
	case codes.Unauthenticated:
		resp.Status = &typev3.HttpStatus{Code: typev3.StatusCode_Unauthorized}
		resp.Headers = append(resp.Headers, overwrite("www-authenticate", wwwAuthenticate))
		resp.Body = "401 Unauthorized: no valid session\n"
	case codes.PermissionDenied:
		// A live session short of the route's requirement: what the user must
		// do, for the client (the header and the JSON body of every gateway)
		// and for Envoy (the status with its ErrorInfo).
		body, reason := assurance.HTTPBody(st.Err())
		resp.Status = &typev3.HttpStatus{Code: typev3.StatusCode_Forbidden}
		resp.Headers = []*corev3.HeaderValueOption{
			overwrite("content-type", "application/json"),
			overwrite("x-content-type-options", "nosniff"),
			overwrite(strings.ToLower(assurance.HTTPHeader), reason),
		}
		resp.Body = string(body)
		rpc = st.Proto()
	case codes.ResourceExhausted:
		resp.Status = &typev3.HttpStatus{Code: typev3.StatusCode_TooManyRequests}
		resp.Headers = append(resp.Headers, overwrite("retry-after", retryafter.Header(st)))
		resp.Body = "429 Too Many Requests: too many failed session checks; retry later\n"
	case codes.Unavailable:
		resp.Status = &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable}
		resp.Headers = append(resp.Headers, overwrite("retry-after", "1"))
		resp.Body = "503 Service Unavailable: the session service is unavailable; retry later\n"
	default:
		resp.Status = &typev3.HttpStatus{Code: typev3.StatusCode_InternalServerError}
		resp.Body = "500 Internal Server Error: the session could not be checked\n"
	}
	if rpc.GetCode() == int32(codes.OK) { // never allow by accident
		rpc.Code = int32(codes.Internal)
	}
	return &authv3.CheckResponse{
		Status:       rpc,
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: resp},
	}
}

// overwrite sets header name to value, replacing every value the request
// (or response) had for it.
func overwrite(name, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: name, Value: value},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

// requestHeaders returns the authorization and cookie headers of an ext_authz
// HTTP request, keyed in lowercase. Envoy sends either the headers map
// (repeated headers merged with ",") or, with encode_raw_headers, header_map
// (one entry per header line, the value in raw_value); the map wins when both
// are set. Repeated cookie lines are joined with "; " as one Cookie header,
// repeated authorization lines with "," as Envoy's map has them (so two
// Bearer tokens make one malformed token, which is denied).
func requestHeaders(r *authv3.AttributeContext_HttpRequest) map[string]string {
	out := map[string]string{}
	if m := r.GetHeaders(); len(m) > 0 {
		for k, v := range m {
			if k = strings.ToLower(k); k == authorizationHeader || k == cookieHeader {
				out[k] = join(k, out[k], v)
			}
		}
		return out
	}
	for _, hv := range r.GetHeaderMap().GetHeaders() {
		k := strings.ToLower(hv.GetKey())
		if k != authorizationHeader && k != cookieHeader {
			continue
		}
		v := hv.GetValue()
		if len(hv.GetRawValue()) > 0 {
			v = string(hv.GetRawValue())
		}
		out[k] = join(k, out[k], v)
	}
	return out
}

func join(name, have, v string) string {
	switch {
	case have == "":
		return v
	case name == cookieHeader:
		return have + "; " + v
	default:
		return have + "," + v
	}
}

// credentialSource is where a request's session token came from.
type credentialSource int

const (
	noCredential credentialSource = iota
	fromAuthorization
	fromCookie
)

func (s credentialSource) String() string {
	switch s {
	case fromAuthorization:
		return "authorization"
	case fromCookie:
		return "cookie"
	default:
		return "none"
	}
}

type foundCredential struct {
	token  string
	source credentialSource
}

// findCredential picks a request's session token from its Authorization and
// Cookie header values: an "Authorization: Bearer" token wins; else the first
// cookie called cookieName, if it is not empty. It does not check the token's
// form: validation does, without a Redis call for a malformed one.
func findCredential(authorization, cookie, cookieName string) foundCredential {
	if tok, ok := credential.FromAuthorization(authorization, "Bearer"); ok {
		return foundCredential{token: tok, source: fromAuthorization}
	}
	if tok, ok := credential.CookieValue(cookie, cookieName); ok && tok != "" {
		return foundCredential{token: tok, source: fromCookie}
	}
	return foundCredential{}
}

// ValidHeaderName reports whether name can carry a session attribute to the
// upstream: a lowercase HTTP field name (RFC 9110 token), and not a header
// that the credential, the gateway or the framing of the request owns.
func ValidHeaderName(name string) bool {
	switch name {
	case "", authorizationHeader, cookieHeader, "proxy-authorization", "host", "content-length", "content-type",
		"transfer-encoding", "connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade":
		return false
	}
	for i := range len(name) {
		if c := name[i]; !credential.IsTokenChar(c) || ('A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}
