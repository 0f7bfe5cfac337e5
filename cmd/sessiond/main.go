// Command sessiond is the session authority: a gRPC service that issues,
// validates, lists and revokes user sessions kept in Redis.
//
// Run `sessiond -h` for its flags; each has a SESSIOND_ environment fallback.
// The process itself is internal/daemon: this command turns flags into its
// Config.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/sessiond/sessiond/internal/daemon"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stderr, func(c *daemon.Config) {
		c.GlobalLoggers = true // the one sessiond of this process
	})
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
	case err != nil:
		fmt.Fprintln(os.Stderr, "sessiond:", err)
		os.Exit(1)
	}
}

// run is sessiond: it parses the configuration and runs the daemon until ctx
// ends. adjust, if not nil, changes the configuration before it runs (main
// sets the process-wide loggers; tests learn the listening addresses).
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer, adjust func(*daemon.Config)) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	cfg.Log.Output = stderr
	if adjust != nil {
		adjust(&cfg)
	}
	return daemon.Run(ctx, cfg)
}
