package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
)

// newLogger is the operational log on w.
func newLogger(c LogConfig, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.Level}
	if c.JSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// openAuditLog returns the audit logger for path (Config.AuditLog), and a
// function that closes its file. opLog is the operational log's writer.
func openAuditLog(path string, opLog io.Writer, log *slog.Logger) (*slog.Logger, func(), error) {
	var w io.Writer
	closeFile := func() {}
	switch path {
	case "":
		w = opLog
	case "-":
		w = os.Stdout
	default:
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, nil, fmt.Errorf("--audit-log: %w", err)
		}
		if fi, err := f.Stat(); err == nil && fi.Mode().Perm()&0o077 != 0 {
			log.Warn("the audit log file can be read or written by others than its owner", "path", path, "mode", fi.Mode().Perm().String())
		}
		w, closeFile = f, func() { _ = f.Close() }
	}
	dest := path
	switch dest {
	case "":
		dest = "stderr"
	case "-":
		dest = "stdout"
	}
	log.Info("audit log", "destination", dest)
	return slog.New(slog.NewJSONHandler(w, nil)), closeFile, nil
}

// lockedWriter serializes the writes of the loggers that share it (the
// operational log and the audit log on stderr).
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// redisLogger sends go-redis' own messages (reconnects, sentinel failovers)
// to slog at debug level instead of stderr.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
}
