package client_test

import (
	"context"
	"fmt"
	"log"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/sessiond/sessiond/client"
)

// A login backend, once it has checked the user's password, creates a
// session and sets the token in a cookie; every later request is validated.
func Example() {
	conn, err := grpc.NewClient("127.0.0.1:50051", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	sessions := client.New(conn)
	ctx := context.Background()

	token, session, err := sessions.Create(ctx, client.NewSession{
		UserID:    "user-42",
		Email:     "ada@example.com",
		ClientIP:  "203.0.113.7",
		UserAgent: "Mozilla/5.0",
	})
	if err != nil {
		log.Fatal(err)
	}
	_ = token // set it in an HttpOnly cookie; never log it
	fmt.Println("session", session.GetSessionId())

	s, err := sessions.Validate(ctx, token)
	switch status.Code(err) {
	case codes.OK:
		fmt.Println("request by", s.GetUserId())
	case codes.Unauthenticated:
		fmt.Println("not logged in: 401")
	default:
		fmt.Println("sessiond unavailable: 503, never let the request through")
	}
}

// "Your devices": list a user's live sessions, newest first.
func ExampleClient_UserSessions() {
	conn, err := grpc.NewClient("127.0.0.1:50051", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	for s, err := range client.New(conn).UserSessions(context.Background(), "user-42", 0) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(s.GetSessionId(), s.GetUserAgent(), s.GetLastSeenAt().AsTime())
	}
}
