// Command login is an example login backend on top of sessiond: it checks
// email and password itself (bcrypt, in an in-memory user store), asks
// sessiond for a session, and hands the token to the browser in a cookie.
//
//	go run ./examples/login --sessiond=127.0.0.1:50051
//
// Endpoints: POST /login, GET /me, GET /sessions, DELETE /sessions/{id},
// POST /logout and POST /logout-all. See the README's "Examples" section.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sessiond/sessiond/client"
)

// The demo user, seeded at start. Its password is hashed like any other.
const (
	demoUserID   = "user-1"
	demoEmail    = "demo@example.com"
	demoPassword = "correct-horse-battery"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "login:", err)
		os.Exit(1)
	}
}

// run serves the login backend until ctx ends.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("login", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8080", "HTTP listen address")
	sessiondAddr := fs.String("sessiond", "127.0.0.1:50051", "sessiond's gRPC address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))

	users, err := demoUsers(bcrypt.DefaultCost)
	if err != nil {
		return err
	}
	// Plaintext for the example; in production dial sessiond with TLS.
	conn, err := grpc.NewClient(*sessiondAddr, append(client.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		return fmt.Errorf("--sessiond: %w", err)
	}
	defer conn.Close()

	srv := &http.Server{
		Handler:           newApp(client.New(conn), users, log),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	log.Info("login example serving", "listen", lis.Addr().String(), "sessiond", *sessiondAddr,
		"cookie", client.DefaultCookieName, "demo_user", demoEmail)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = srv.Shutdown(shutdownCtx)
	log.Info("login example stopped")
	return err
}

// demoUsers returns the user store with the demo user, hashing its password
// at the given bcrypt cost.
func demoUsers(cost int) (*users, error) {
	u, err := newUsers(cost)
	if err != nil {
		return nil, err
	}
	if err := u.add(demoUserID, demoEmail, demoPassword); err != nil {
		return nil, err
	}
	return u, nil
}
