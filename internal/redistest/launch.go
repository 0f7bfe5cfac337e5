package redistest

import (
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"
)

// LaunchCluster starts a Redis Cluster like StartCluster, for a TestMain or a
// fixture shared by a whole test binary (where there is no testing.TB that
// lives long enough). The caller must call stop, which ends every node and
// removes their directories; it is safe to call more than once. On error,
// nothing is left running.
//
// The Cluster's methods that fail a test when something goes wrong
// (WaitHealthy, MasterOf, and Restart on its nodes) panic instead on a
// launched cluster.
func LaunchCluster(masters, replicas int, args ...string) (c *Cluster, stop func(), err error) {
	l, err := newLauncher()
	if err != nil {
		return nil, nil, err
	}
	defer l.recover(&err)
	c = StartCluster(l, masters, replicas, args...)
	return c, l.stop, nil
}

// LaunchSentinel starts a Sentinel group like StartSentinel, for a TestMain
// or a fixture shared by a whole test binary. The caller must call stop, which
// ends every process and removes their directories; it is safe to call more
// than once. On error, nothing is left running.
//
// Methods that fail a test when something goes wrong (Restart on its
// servers) panic instead on a launched group.
func LaunchSentinel(args ...string) (g *SentinelGroup, stop func(), err error) {
	return LaunchSentinelDownAfter(time.Second, args...)
}

// LaunchSentinelDownAfter is LaunchSentinel with the sentinels'
// down-after-milliseconds set to downAfter, as StartSentinelDownAfter.
func LaunchSentinelDownAfter(downAfter time.Duration, args ...string) (g *SentinelGroup, stop func(), err error) {
	l, err := newLauncher()
	if err != nil {
		return nil, nil, err
	}
	defer l.recover(&err)
	g = StartSentinelDownAfter(l, downAfter, args...)
	return g, l.stop, nil
}

// launcher is the testing.TB that LaunchCluster and LaunchSentinel give to
// StartCluster and StartSentinel: its Fatal panics with a launchFailure (which
// the Launch function recovers into an error), Cleanup registers with stop,
// and TempDir makes directories under one root that stop removes. Only the
// methods below are implemented: the embedded testing.TB is nil.
type launcher struct {
	testing.TB

	root string

	mu       sync.Mutex
	cleanups []func()
	stopOnce sync.Once
}

// launchFailure is what a launcher's Fatal panics with.
type launchFailure struct{ msg string }

func newLauncher() (*launcher, error) {
	root, err := os.MkdirTemp("", "redistest-")
	if err != nil {
		return nil, err
	}
	return &launcher{root: root}, nil
}

// recover turns a launchFailure into *err after stopping whatever was started.
// Any other panic goes on.
func (l *launcher) recover(err *error) {
	r := recover()
	if r == nil {
		return
	}
	f, ok := r.(launchFailure)
	if !ok {
		l.stop()
		panic(r)
	}
	l.stop()
	*err = fmt.Errorf("redistest: %s", f.msg)
}

// stop runs the cleanups, last registered first, then removes the root.
func (l *launcher) stop() {
	l.stopOnce.Do(func() {
		l.mu.Lock()
		cleanups := slices.Clone(l.cleanups)
		l.mu.Unlock()
		for _, f := range slices.Backward(cleanups) {
			f()
		}
		_ = os.RemoveAll(l.root)
	})
}

func (l *launcher) Helper()      {}
func (l *launcher) Name() string { return "redistest.Launch" }

func (l *launcher) Cleanup(f func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cleanups = append(l.cleanups, f)
}

func (l *launcher) TempDir() string {
	dir, err := os.MkdirTemp(l.root, "node-")
	if err != nil {
		l.Fatal(err)
	}
	return dir
}

func (l *launcher) Fatal(args ...any) { panic(launchFailure{fmt.Sprint(args...)}) }

func (l *launcher) Fatalf(format string, args ...any) {
	panic(launchFailure{fmt.Sprintf(format, args...)})
}

func (l *launcher) Error(args ...any)                 { l.Fatal(args...) }
func (l *launcher) Errorf(format string, args ...any) { l.Fatalf(format, args...) }
func (l *launcher) Log(...any)                        {}
func (l *launcher) Logf(string, ...any)               {}
