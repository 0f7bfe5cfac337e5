// Package clienttest runs a real sessiond inside a Go test, so that a service
// protected by package client (its interceptors or HTTPMiddleware) can be
// tested without running sessiond or Redis:
//
//	func TestHello(t *testing.T) {
//		d := clienttest.Start(t) // stopped when the test ends
//		srv := httptest.NewServer(newHandler(client.New(d.Conn())))
//		defer srv.Close()
//		token, _ := d.CreateSession(t, "user-42")
//		// GET srv.URL with "Authorization: Bearer "+token: 200.
//		d.Revoke(t, token)
//		// Again: 401. After d.Stop(): 503.
//	}
//
// The sessiond is the production one (the same wiring as cmd/sessiond), in
// process, on a free loopback port, over its embedded in-memory store:
// nothing to install, and every sessiond starts empty. It has
// cmd/sessiond's defaults unless an Option says otherwise, no TLS and no
// caller policy: any caller may do anything.
package clienttest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sessiond/sessiond/client"
	"github.com/sessiond/sessiond/internal/daemon"
	"github.com/sessiond/sessiond/server"
	"github.com/sessiond/sessiond/server/store"
)

// The defaults of the options: cmd/sessiond's.
const (
	DefaultMaxSessionsPerUser = 100
	DefaultTTL                = server.DefaultTTL         // 24h
	DefaultIdleTimeout        = server.DefaultIdleTimeout // 1h
)

const (
	// callTimeout bounds each call the helpers make.
	callTimeout = 10 * time.Second
	// startTimeout bounds the wait for sessiond to serve.
	startTimeout = 10 * time.Second
	// shutdownTimeout is how long Stop lets calls in flight finish.
	shutdownTimeout = 200 * time.Millisecond
	// maxKeptLog is how much of sessiond's log Start keeps for a failed test.
	maxKeptLog = 1 << 20
)

// Option configures the sessiond of Start or New.
type Option func(*options)

type options struct {
	maxSessionsPerUser int
	defaultTTL         time.Duration
	idleTimeout        time.Duration
	logOutput          io.Writer
}

var defaultOptions = options{
	maxSessionsPerUser: DefaultMaxSessionsPerUser,
	defaultTTL:         DefaultTTL,
	idleTimeout:        DefaultIdleTimeout,
}

// WithMaxSessionsPerUser caps a user's live sessions: creating one over the
// cap revokes the user's oldest. 0 means no cap; default
// DefaultMaxSessionsPerUser (100).
func WithMaxSessionsPerUser(n int) Option {
	return func(o *options) { o.maxSessionsPerUser = n }
}

// WithDefaultTTL sets the absolute lifetime of a session whose creation asks
// for none (at least a second); default DefaultTTL (24h). Requests may ask
// for up to 30 days, or up to d if it is longer.
func WithDefaultTTL(d time.Duration) Option {
	return func(o *options) { o.defaultTTL = d }
}

// WithIdleTimeout sets the idle timeout of a session whose creation asks for
// none: the session ends once it has not been validated for d (at least a
// second). 0 means no idle timeout; default DefaultIdleTimeout (1h).
// Validations slide the idle expiry at most once a minute, as in
// production, or once per tenth of d if that is shorter.
func WithIdleTimeout(d time.Duration) Option {
	return func(o *options) { o.idleTimeout = d }
}

// WithLogOutput sends sessiond's log (text lines at debug level, audit
// events included; never a token) to w. sessiond serializes its writes; a
// test that reads w while sessiond runs must make w safe for that. Default:
// Start keeps the log and writes it to the test's log if the test fails;
// New discards it.
func WithLogOutput(w io.Writer) Option {
	return func(o *options) { o.logOutput = w }
}

// Sessiond is a sessiond started by Start or New. Its methods are safe for
// concurrent use.
type Sessiond struct {
	// Addr is sessiond's gRPC address (127.0.0.1:port), for a service under
	// test that dials sessiond itself.
	Addr string

	conn   *grpc.ClientConn
	client *client.Client
	cancel context.CancelFunc
	done   chan error // daemon.Run's result

	stopOnce  sync.Once
	runErr    error
	closeOnce sync.Once
}

// Start starts a sessiond for the test (see the package documentation), and
// registers with t.Cleanup a Close that waits for it to stop. It fails the
// test if sessiond does not start.
func Start(t testing.TB, opts ...Option) *Sessiond {
	t.Helper()
	o := defaultOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.logOutput == nil {
		kept := &logBuffer{max: maxKeptLog}
		o.logOutput = kept
		t.Cleanup(func() { // registered first, so it runs after Close
			if t.Failed() {
				t.Logf("clienttest: sessiond's log:\n%s", kept)
			}
		})
	}
	d, err := start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	})
	return d
}

// New is Start for a TestMain or an Example, which have no testing.TB: the
// caller stops the sessiond with Close.
func New(opts ...Option) (*Sessiond, error) {
	o := defaultOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.logOutput == nil {
		o.logOutput = io.Discard
	}
	return start(o)
}

// start runs daemon.Run with the options and waits until it serves.
func start(o options) (*Sessiond, error) {
	cfg, err := o.config()
	if err != nil {
		return nil, err
	}
	started := make(chan daemon.Addrs, 1)
	cfg.Started = func(a daemon.Addrs) { started <- a }
	ctx, cancel := context.WithCancel(context.Background())
	d := &Sessiond{cancel: cancel, done: make(chan error, 1)}
	go func() { d.done <- daemon.Run(ctx, cfg) }()
	select {
	case a := <-started:
		d.Addr = a.GRPC.String()
	case err := <-d.done:
		cancel()
		return nil, fmt.Errorf("clienttest: sessiond did not start: %w", err)
	case <-time.After(startTimeout):
		cancel()
		<-d.done
		return nil, fmt.Errorf("clienttest: sessiond did not serve within %v", startTimeout)
	}
	if d.conn, err = grpc.NewClient(d.Addr, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		d.Stop()
		return nil, fmt.Errorf("clienttest: %w", err)
	}
	d.client = client.New(d.conn)
	return d, nil
}

// config is the daemon.Config of the options.
func (o options) config() (daemon.Config, error) {
	switch {
	case o.maxSessionsPerUser < 0:
		return daemon.Config{}, fmt.Errorf("clienttest: WithMaxSessionsPerUser(%d): must not be negative (0: no cap)", o.maxSessionsPerUser)
	case o.defaultTTL < time.Second:
		return daemon.Config{}, fmt.Errorf("clienttest: WithDefaultTTL(%v): must be at least 1s", o.defaultTTL)
	case o.idleTimeout != 0 && o.idleTimeout < time.Second:
		return daemon.Config{}, fmt.Errorf("clienttest: WithIdleTimeout(%v): must be 0 (none) or at least 1s", o.idleTimeout)
	}
	touch, idle := time.Minute, o.idleTimeout
	if idle == 0 {
		idle = -1 // server.Config's "none"
	} else {
		touch = min(touch, idle/10)
	}
	return daemon.Config{
		Listen:          "127.0.0.1:0",
		Redis:           daemon.RedisConfig{}, // the embedded store
		Store:           store.Config{MaxSessionsPerUser: o.maxSessionsPerUser, TouchInterval: touch},
		Service:         server.Config{DefaultTTL: o.defaultTTL, DefaultIdleTimeout: idle},
		Log:             daemon.LogConfig{Output: o.logOutput, Level: slog.LevelDebug},
		ShutdownTimeout: shutdownTimeout,
		// Tracing stays off whatever the test's OTEL_* environment says.
		Getenv: func(string) string { return "" },
	}, nil
}

// Conn is a connection to sessiond, for the service under test's
// client.New; Close closes it (Start's cleanup does).
func (d *Sessiond) Conn() *grpc.ClientConn { return d.conn }

// Client is a client of sessiond over Conn, without a cache: the login
// backend's view, to look behind the service's back.
func (d *Sessiond) Client() *client.Client { return d.client }

// CreateSession creates a session for userID with the defaults, and returns
// its token (what a user agent sends as "Authorization: Bearer <token>") and
// the session. It fails the test if sessiond refuses; call it, as t.Fatal,
// from the test's goroutine.
func (d *Sessiond) CreateSession(t testing.TB, userID string) (token string, s *client.Session) {
	t.Helper()
	return d.Create(t, client.NewSession{UserID: userID})
}

// Create is CreateSession with every field of the session chosen: email,
// attributes, lifetimes.
func (d *Sessiond) Create(t testing.TB, ns client.NewSession) (token string, s *client.Session) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	token, s, err := d.client.Create(ctx, ns)
	if err != nil {
		t.Fatalf("clienttest: create a session for %q: %v", ns.UserID, err)
	}
	return token, s
}

// Revoke ends the session of token, as a logout would, and reports whether
// it was live. It fails the test if sessiond cannot answer.
func (d *Sessiond) Revoke(t testing.TB, token string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	revoked, err := d.client.Revoke(ctx, token)
	if err != nil {
		t.Fatalf("clienttest: revoke a session: %v", err)
	}
	return revoked
}

// RevokeUser ends every session of userID ("log out everywhere") and
// returns how many were live. It fails the test if sessiond cannot answer.
func (d *Sessiond) RevokeUser(t testing.TB, userID string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	n, err := d.client.RevokeUser(ctx, userID, "")
	if err != nil {
		t.Fatalf("clienttest: revoke the sessions of %q: %v", userID, err)
	}
	return n
}

// Stop stops sessiond as SIGTERM would, and waits until it has: the
// service under test sees sessiond down (its calls fail with Unavailable,
// HTTPMiddleware answers 503). Conn stays open; every session is gone with
// the embedded store. Stopping twice does nothing.
func (d *Sessiond) Stop() {
	d.stopOnce.Do(func() {
		d.cancel()
		d.runErr = <-d.done
	})
}

// Close stops sessiond (see Stop) and closes Conn. It returns an error if
// sessiond had stopped serving by itself (Start's cleanup, which calls
// Close, fails the test then). Closing twice does nothing.
func (d *Sessiond) Close() error {
	d.Stop()
	var err error
	if d.runErr != nil {
		err = fmt.Errorf("clienttest: sessiond: %w", d.runErr)
	}
	d.closeOnce.Do(func() {
		if cerr := d.conn.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("clienttest: %w", cerr))
		}
	})
	return err
}

// logBuffer keeps the first max bytes written to it.
type logBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	max     int
	dropped bool
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := l.max - l.b.Len(); len(p) > room {
		l.b.Write(p[:max(room, 0)])
		l.dropped = true
	} else {
		l.b.Write(p)
	}
	return len(p), nil
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dropped {
		return l.b.String() + fmt.Sprintf("\n[clienttest: the rest of the log is dropped past %d bytes]\n", l.max)
	}
	return l.b.String()
}
