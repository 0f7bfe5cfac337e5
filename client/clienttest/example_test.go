package clienttest_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"

	"github.com/sessiond/sessiond/client"
	"github.com/sessiond/sessiond/client/clienttest"
)

// A test of an HTTP service protected by sessiond. In a test function,
// clienttest.Start(t) starts sessiond and stops it at the test's end, and
// d.CreateSession(t, "user-42") mints a token; an Example has no t, so it
// calls New, Close and the Client.
func Example() {
	d, err := clienttest.New()
	if err != nil {
		log.Fatal(err)
	}
	defer d.Close()

	// The service under test, with its own client of sessiond.
	protect := client.HTTPMiddleware(client.New(d.Conn()))
	srv := httptest.NewServer(protect(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := client.SessionFromContext(r.Context())
		fmt.Fprintf(w, "hello, %s", s.GetUserId())
	})))
	defer srv.Close()

	get := func(token string) {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			log.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusOK {
			fmt.Println(resp.Status, string(body))
		} else {
			fmt.Println(resp.Status)
		}
	}

	ctx := context.Background()
	token, _, err := d.Client().Create(ctx, client.NewSession{UserID: "user-42"})
	if err != nil {
		log.Fatal(err)
	}
	get(token) // a live session
	get("")    // no token

	if _, err := d.Client().Revoke(ctx, token); err != nil {
		log.Fatal(err)
	}
	get(token) // logged out

	d.Stop() // sessiond down
	get(token)
	// Output:
	// 200 OK hello, user-42
	// 401 Unauthorized
	// 401 Unauthorized
	// 503 Service Unavailable
}
