package daemon

import (
	"context"
	"log/slog"
	"os"
	"time"
)

// fileWatcher reloads sets of files when they change (the listener's TLS
// certificates, the API keys, the policy), polling every interval: a
// Kubernetes secret volume updates through symlinks, which inotify misses.
type fileWatcher struct {
	interval time.Duration
	sets     []*watchedFiles
}

// watchedFiles is a set of files read together, with what they looked like
// when they were last read.
type watchedFiles struct {
	what   string
	paths  []string
	reload func() error
	stamps []fileStamp
}

type fileStamp struct {
	mtime time.Time
	size  int64
	err   bool
}

// watch adds a set of files, read by reload.
func (fw *fileWatcher) watch(what string, reload func() error, paths ...string) {
	var ps []string
	for _, p := range paths {
		if p != "" {
			ps = append(ps, p)
		}
	}
	w := &watchedFiles{what: what, paths: ps, reload: reload}
	w.stamps = w.stat()
	fw.sets = append(fw.sets, w)
}

func (w *watchedFiles) stat() []fileStamp {
	out := make([]fileStamp, len(w.paths))
	for i, p := range w.paths {
		fi, err := os.Stat(p) // follows symlinks, as Kubernetes' secret volumes need
		if err != nil {
			out[i] = fileStamp{err: true}
			continue
		}
		out[i] = fileStamp{mtime: fi.ModTime(), size: fi.Size()}
	}
	return out
}

// run checks the files every interval until ctx ends, and reloads a set
// when one of its files changed (modification time or size). A reload that
// fails is logged and leaves the previous configuration in force; it is
// tried again at the next change.
func (fw *fileWatcher) run(ctx context.Context, log *slog.Logger) {
	if len(fw.sets) == 0 {
		return
	}
	t := time.NewTicker(fw.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, w := range fw.sets {
			now := w.stat()
			if equalStamps(now, w.stamps) {
				continue
			}
			w.stamps = now
			if err := w.reload(); err != nil {
				log.Error("reloading "+w.what+" failed: keeping the previous ones", "error", err)
				continue
			}
			log.Info("reloaded "+w.what, "files", w.paths)
		}
	}
}

func equalStamps(a, b []fileStamp) bool {
	for i := range a {
		if a[i].err != b[i].err || a[i].size != b[i].size || !a[i].mtime.Equal(b[i].mtime) {
			return false
		}
	}
	return true
}
