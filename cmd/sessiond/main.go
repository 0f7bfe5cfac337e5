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
	"runtime/debug"
	"syscall"

	"github.com/sessiond/sessiond/internal/daemon"
)

func main() {
	if pct, ok := gcPercent(os.Getenv); ok {
		debug.SetGCPercent(pct)
	}
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

// defaultGCPercent is the garbage collector's target when GOGC is not set:
// a new collection when the heap has grown by four times what the last one
// left live, not Go's once. sessiond's live heap is small (a few MiB: its
// connections, the rate limiters' buckets) and almost all it allocates is
// the garbage of calls, so at Go's default it collects very often; at 400
// the collector's share of the CPU of a validation fell by more than half
// and validations per second rose 6-10% at 16 and 64 callers, for a heap
// that peaks at five times the live one (docs/performance.md). GOGC, and
// GOMEMLIMIT in a container with a memory limit, override it.
const defaultGCPercent = 400

// gcPercent returns the GC target to set, and false when GOGC sets it.
func gcPercent(getenv func(string) string) (int, bool) {
	if getenv("GOGC") != "" {
		return 0, false
	}
	return defaultGCPercent, true
}
