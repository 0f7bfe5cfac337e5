package client_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"time"

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
