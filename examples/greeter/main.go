// Command greeter is an example gRPC service protected by sessiond: every
// call to greeter.v1.Greeter/SayHello must carry a live session's token
// ("authorization: Bearer <token>"), and gets "Hello, <user id>!".
//
//	go run ./examples/greeter --sessiond=127.0.0.1:50051
//
// See the README's "Examples" section for a grpcurl call.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sessiond/sessiond/client"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "greeter:", err)
		os.Exit(1)
	}
}

// run serves the greeter until ctx ends.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("greeter", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:50052", "gRPC listen address")
	sessiondAddr := fs.String("sessiond", "127.0.0.1:50051", "sessiond's gRPC address")
	cache := fs.Bool("cache", false, "cache validated sessions (10000 for 30s; evicted at once on revocation)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))

	// Plaintext for the example; in production dial sessiond with TLS.
	conn, err := grpc.NewClient(*sessiondAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("--sessiond: %w", err)
	}
	defer conn.Close()
	opts := []client.Option{client.WithLogger(log)}
	if *cache {
		opts = append(opts, client.WithCache(10000, 30*time.Second))
	}
	sessions := client.New(conn, opts...)
	defer sessions.Close()

	gs := newServer(sessions)
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	log.Info("greeter serving", "listen", lis.Addr().String(), "sessiond", *sessiondAddr, "cache", *cache)
	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		gs.Stop()
		<-stopped
	}
	log.Info("greeter stopped")
	return nil
}
