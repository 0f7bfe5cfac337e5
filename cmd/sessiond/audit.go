package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
)

// auditConfig is where the audit log goes (server.Config.Audit).
type auditConfig struct {
	path string
}

func (a *auditConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&a.path, "audit-log", "", "audit log (JSON lines, one per session created, rotated or revoked): a file path (appended to, created 0600),\n\"-\" for stdout, or empty for stderr next to the operational log (every audit line has \"log_type\":\"audit\")")
}

// openAuditLog returns the audit logger, and a function that closes its
// file. stderr is the operational log's writer.
func openAuditLog(cfg auditConfig, stderr io.Writer, log *slog.Logger) (*slog.Logger, func(), error) {
	var w io.Writer
	closeFile := func() {}
	switch cfg.path {
	case "":
		w = stderr
	case "-":
		w = os.Stdout
	default:
		f, err := os.OpenFile(cfg.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, nil, fmt.Errorf("--audit-log: %w", err)
		}
		if fi, err := f.Stat(); err == nil && fi.Mode().Perm()&0o077 != 0 {
			log.Warn("the audit log file can be read or written by others than its owner", "path", cfg.path, "mode", fi.Mode().Perm().String())
		}
		w, closeFile = f, func() { _ = f.Close() }
	}
	dest := cfg.path
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
