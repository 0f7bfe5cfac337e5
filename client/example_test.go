package client_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sessiond/sessiond/client"
)

// A login backend, once it has checked the user's password, creates a
// session and hands the token to the browser; every later request is
// validated; logout revokes it everywhere.
func Example() {
	conn, err := grpc.NewClient(sessiondAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	sessions := client.New(conn)
	ctx := context.Background()

	token, _, err := sessions.Create(ctx, client.NewSession{
		UserID:    "user-42",
		Email:     "ada@example.com",
		ClientIP:  "203.0.113.7",
		UserAgent: "Mozilla/5.0",
		TTL:       8 * time.Hour,
	})
	if err != nil {
		log.Fatal(err)
	}
	// Set token in an HttpOnly cookie; never log it.

	s, err := sessions.Validate(ctx, token)
	switch status.Code(err) {
	case codes.OK:
		fmt.Println("request by", s.GetUserId())
	case codes.Unauthenticated:
		fmt.Println("401: not logged in")
	default:
		fmt.Println("503: sessiond unavailable; never let the request through")
	}

	revoked, _ := sessions.Revoke(ctx, token)
	fmt.Println("logged out:", revoked)
	_, err = sessions.Validate(ctx, token)
	fmt.Println("after logout:", status.Code(err))
	// Output:
	// request by user-42
	// logged out: true
	// after logout: Unauthenticated
}

// A service that validates on every request can cache validations: a warm
// token costs no call to sessiond, and a revocation anywhere evicts it within
// milliseconds.
func ExampleWithCache() {
	conn, err := grpc.NewClient(sessiondAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	cached := client.New(conn, client.WithCache(100_000, time.Minute))
	defer cached.Close()
	ctx := context.Background()

	token, _, err := cached.Create(ctx, client.NewSession{UserID: "user-7"})
	if err != nil {
		log.Fatal(err)
	}
	for !cached.CacheStats().Live { // the revocation stream is being established
		time.Sleep(time.Millisecond)
	}
	s, _ := cached.Validate(ctx, token) // asks sessiond, then caches
	s, _ = cached.Validate(ctx, token)  // from the cache
	fmt.Println("valid:", s.GetUserId())

	// Another instance of the login backend logs the user out...
	other := client.New(conn)
	if _, err := other.Revoke(ctx, token); err != nil {
		log.Fatal(err)
	}
	// ...and the cached entry is gone as soon as the event arrives.
	for {
		if _, err := cached.Validate(ctx, token); status.Code(err) == codes.Unauthenticated {
			break
		}
		time.Sleep(time.Millisecond)
	}
	fmt.Println("revoked everywhere")
	// Output:
	// valid: user-7
	// revoked everywhere
}

// An HTTP service (or gateway) protected by sessiond: the session comes from
// the client.DefaultCookieName cookie or an Authorization: Bearer header.
func ExampleHTTPMiddleware() {
	conn, err := grpc.NewClient(sessiondAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	sessions := client.New(conn)

	me := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := client.SessionFromContext(r.Context())
		fmt.Fprintln(w, "hello", s.GetUserId())
	})
	srv := httptest.NewServer(client.HTTPMiddleware(sessions)(me))
	defer srv.Close()

	token, _, err := sessions.Create(context.Background(), client.NewSession{UserID: "user-9"})
	if err != nil {
		log.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/me", nil)
	req.AddCookie(&http.Cookie{Name: client.DefaultCookieName, Value: token})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Print(resp.StatusCode, " ", string(body))

	resp, err = http.Get(srv.URL + "/me")
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	// Output:
	// 200 hello user-9
	// 401 Bearer realm="sessiond"
}

// A gRPC service protected by sessiond: every method but the health service
// and the public ones needs "authorization: Bearer <token>"; handlers read
// the session from the context, and calls to other protected services carry
// the caller's token.
func ExampleUnaryServerInterceptor() {
	conn, err := grpc.NewClient(sessiondAddr, append(client.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	sessions := client.New(conn, client.WithCache(100_000, 30*time.Second))
	defer sessions.Close()

	// The service: shop.v1.Orders, whose handlers call
	//   s, _ := client.SessionFromContext(ctx)
	// and whose downstream connections forward the caller's token with
	//   grpc.NewClient(addr, grpc.WithChainUnaryInterceptor(client.UnaryClientInterceptor()))
	shop, stop := serveOrders(nil,
		grpc.ChainUnaryInterceptor(client.UnaryServerInterceptor(sessions, client.WithPublicMethods("shop.v1.Auth/Login"))),
		grpc.ChainStreamInterceptor(client.StreamServerInterceptor(sessions)),
	)
	defer stop()

	ctx := context.Background()
	_, err = listOrders(ctx, shop)
	fmt.Println("without a session:", status.Code(err))
	token, _, err := sessions.Create(ctx, client.NewSession{UserID: "user-7"})
	if err != nil {
		log.Fatal(err)
	}
	got, err := listOrders(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token), shop)
	fmt.Println(got, err)
	// Output:
	// without a session: Unauthenticated
	// orders of user-7 <nil>
}

// "Your devices": a user's live sessions, newest first.
func ExampleClient_UserSessions() {
	conn, err := grpc.NewClient(sessiondAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	sessions := client.New(conn)
	ctx := context.Background()
	for _, ua := range []string{"Firefox/140", "Safari/19"} {
		if _, _, err := sessions.Create(ctx, client.NewSession{UserID: "user-3", UserAgent: ua}); err != nil {
			log.Fatal(err)
		}
	}
	for s, err := range sessions.UserSessions(ctx, "user-3", 0) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(s.GetUserAgent())
	}
	// Output:
	// Safari/19
	// Firefox/140
}

// A route that needs more than a session: deleting the account needs a
// second factor (assurance level 2) proved within the last five minutes.
// That route's handler gets a middleware of its own with the requirement; a
// weaker session gets 403 with the reason, and once the user has proved a
// second factor the login backend steps the session up and the new token
// passes.
func ExampleClient_StepUp() {
	conn, err := grpc.NewClient(sessiondAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	sessions := client.New(conn)

	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := client.SessionFromContext(r.Context())
		fmt.Fprintln(w, "hello", s.GetUserId())
	})
	mux := http.NewServeMux()
	mux.Handle("/account", client.HTTPMiddleware(sessions)(hello))
	mux.Handle("/account/delete", client.HTTPMiddleware(sessions,
		client.WithMinAssuranceLevel(2), client.WithMaxAuthAge(5*time.Minute))(hello))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	get := func(path, token string) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Print(path, ": ", resp.StatusCode, " ", resp.Header.Get(client.StepUpReasonHeader), " ", string(body))
	}

	ctx := context.Background()
	token, _, err := sessions.Create(ctx, client.NewSession{UserID: "user-5", AuthMethods: []string{"password"}, AssuranceLevel: 1})
	if err != nil {
		log.Fatal(err)
	}
	get("/account", token)
	get("/account/delete", token)

	// The user enters a TOTP code; the login backend checks it, then:
	token, s, err := sessions.StepUp(ctx, token, client.Reauthentication{Methods: []string{"totp"}, AssuranceLevel: 2})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("stepped up:", s.GetAuthMethods(), "level", s.GetAssuranceLevel())
	get("/account/delete", token) // the new token, set in place of the old
	// Output:
	// /account: 200  hello user-5
	// /account/delete: 403 ASSURANCE_LEVEL_TOO_LOW {"error":"ASSURANCE_LEVEL_TOO_LOW","message":"this needs assurance level 2 and the session has 1: authenticate with a stronger method","metadata":{"assurance_level":"1","required_assurance_level":"2"}}
	// stepped up: [password totp] level 2
	// /account/delete: 200  hello user-5
}

// A gRPC method that needs more than a session: a second interceptor with
// the requirement, behind go-grpc-middleware's selector, guards it alone.
// The caller gets PermissionDenied with the reason in an ErrorInfo.
func ExampleWithMinAssuranceLevel() {
	conn, err := grpc.NewClient(sessiondAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	sessions := client.New(conn, client.WithCache(100_000, time.Minute))
	defer sessions.Close()

	needsAAL2 := selector.MatchFunc(func(_ context.Context, m interceptors.CallMeta) bool {
		return m.FullMethod() == "/shop.v1.Orders/List" // orders show payment details
	})
	shop, stop := serveOrders(nil, grpc.ChainUnaryInterceptor(
		client.UnaryServerInterceptor(sessions),
		selector.UnaryServerInterceptor(client.UnaryServerInterceptor(sessions, client.WithMinAssuranceLevel(2)), needsAAL2),
	))
	defer stop()

	ctx := context.Background()
	token, _, err := sessions.Create(ctx, client.NewSession{UserID: "user-6", AuthMethods: []string{"password"}})
	if err != nil {
		log.Fatal(err)
	}
	_, err = listOrders(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token), shop)
	if info, ok := client.StepUpDenial(err); ok {
		fmt.Println(status.Code(err), info.GetReason(), "needs", info.GetMetadata()["required_assurance_level"])
	}
	token, _, err = sessions.StepUp(ctx, token, client.Reauthentication{Methods: []string{"webauthn"}, AssuranceLevel: 2})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(listOrders(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token), shop))
	// Output:
	// PermissionDenied ASSURANCE_LEVEL_TOO_LOW needs 2
	// orders of user-6 <nil>
}

// Before a sensitive action, a backend demands that the user authenticated
// recently; a session that did not gets a denial saying so.
func ExampleStepUpDenial() {
	conn, err := grpc.NewClient(sessiondAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	sessions := client.New(conn)
	ctx := context.Background()
	token, _, err := sessions.Create(ctx, client.NewSession{UserID: "user-8", AuthMethods: []string{"password", "totp"}, AssuranceLevel: 2})
	if err != nil {
		log.Fatal(err)
	}

	_, err = sessions.Validate(ctx, token, client.WithMinAssuranceLevel(2), client.WithMaxAuthAge(10*time.Minute))
	fmt.Println("just logged in:", status.Code(err))

	_, err = sessions.Validate(ctx, token, client.WithMinAssuranceLevel(3))
	switch info, ok := client.StepUpDenial(err); {
	case !ok:
		fmt.Println(status.Code(err))
	case info.GetReason() == client.ReasonAssuranceLevelTooLow:
		fmt.Println("ask for a security key, then StepUp")
	case info.GetReason() == client.ReasonReauthenticationRequired:
		fmt.Println("ask for the password again, then StepUp")
	}
	// Output:
	// just logged in: OK
	// ask for a security key, then StepUp
}
