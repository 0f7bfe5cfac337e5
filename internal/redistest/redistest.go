// Package redistest starts real redis-server processes for tests, on free
// loopback ports, and stops them when the test ends (also on failure; and a
// server dies with the test binary if that is killed).
//
// It never touches a Redis it did not start. When redis-server is missing the
// test fails with a message saying how to install it: nothing is skipped.
package redistest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is one redis-server process started by a test.
type Server struct {
	tb   testing.TB
	bin  string
	dir  string
	port int
	args []string

	// argv, when set, replaces the default command line (a sentinel's).
	argv func() []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been reaped
}

// Binary returns the redis-server to run: $REDIS_SERVER_BIN or the one on PATH.
func Binary(tb testing.TB) string {
	tb.Helper()
	bin, err := binary()
	if err != nil {
		tb.Fatal(err)
	}
	return bin
}

func binary() (string, error) {
	if bin := os.Getenv("REDIS_SERVER_BIN"); bin != "" {
		return bin, nil
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", errors.New("redis-server is not installed: the tests run against a real Redis they start themselves.\n" +
			"Install it (Debian/Ubuntu: apt-get install -y redis-server; macOS: brew install redis)\n" +
			"or point REDIS_SERVER_BIN at a redis-server binary.")
	}
	return bin, nil
}

// Launch starts a redis-server like Start, for a TestMain (where there is no
// testing.TB): the caller must Stop it. Restart is not available on it.
func Launch(args ...string) (*Server, error) {
	bin, err := binary()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "redistest-")
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin, dir: dir, args: args}
	for range 5 {
		l, lerr := net.Listen("tcp", "127.0.0.1:0")
		if lerr != nil {
			return nil, lerr
		}
		s.port = l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if err = s.start(); err == nil {
			return s, nil
		}
	}
	return nil, err
}

// Start starts a redis-server with no persistence on a free loopback port and
// registers its shutdown with tb.Cleanup. Extra args are passed through
// (e.g. "--appendonly", "yes").
func Start(tb testing.TB, args ...string) *Server {
	tb.Helper()
	return startServer(tb, &Server{tb: tb, bin: Binary(tb), dir: tb.TempDir(), args: args}, func() int { return FreePort(tb) })
}

// startServer starts s on a port from port, trying a few in case one is
// taken between the check and the start.
func startServer(tb testing.TB, s *Server, port func() int) *Server {
	tb.Helper()
	var lastErr error
	for range 5 {
		s.port = port()
		if lastErr = s.start(); lastErr == nil {
			tb.Cleanup(s.Stop)
			return s
		}
	}
	tb.Fatalf("redistest: cannot start redis-server: %v", lastErr)
	return nil
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Port is the server's TCP port.
func (s *Server) Port() int { return s.port }

// Dir is the server's working directory (its log, AOF and config files).
func (s *Server) Dir() string { return s.dir }

// URL is the server's redis:// URL.
func (s *Server) URL() string { return "redis://" + s.Addr() }

// Client returns a go-redis client for the server, closed at the end of the test.
func (s *Server) Client(tb testing.TB) *redis.Client {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

func (s *Server) start() error {
	if s.argv != nil {
		return s.run(s.argv())
	}
	return s.run(append([]string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--save", "",
		"--appendonly", "no",
		"--daemonize", "no",
		"--logfile", filepath.Join(s.dir, "redis.log"),
	}, s.args...))
}

func (s *Server) run(args []string) error {
	cmd := exec.Command(s.bin, args...)
	// The server dies with the test binary, even when that is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		info, err := c.Info(ctx, "server").Result()
		cancel()
		if err == nil && infoField(info, "process_id") == strconv.Itoa(cmd.Process.Pid) {
			s.mu.Lock()
			s.cmd, s.exited = cmd, exited
			s.mu.Unlock()
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("redis-server exited at start (port %d taken?); log:\n%s", s.port, s.log())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("redis-server on port %d did not answer within 10s; log:\n%s", s.port, s.log())
		}
	}
}

func (s *Server) log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	return string(b)
}

// Stop ends the server (SIGTERM, then SIGKILL after 5s) and waits for it.
// Stopping a stopped server does nothing.
func (s *Server) Stop() { s.signal(syscall.SIGTERM) }

// Kill ends the server with SIGKILL, as a crash would, and waits for it.
func (s *Server) Kill() { s.signal(syscall.SIGKILL) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
	if s.tb == nil { // launched: nobody else cleans its directory
		_ = os.RemoveAll(s.dir)
	}
}

// Freeze stops the server (SIGSTOP) without ending it: it holds its
// connections and answers nothing until Thaw.
func (s *Server) Freeze() { s.pause(syscall.SIGSTOP) }

// Thaw lets a frozen server go on (SIGCONT).
func (s *Server) Thaw() { s.pause(syscall.SIGCONT) }

func (s *Server) pause(sig syscall.Signal) {
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Signal(sig)
	}
}

// Restart starts the server again on the same port, with the same data
// directory (so an append-only file, if enabled, is replayed).
func (s *Server) Restart() {
	s.tb.Helper()
	s.Stop()
	var err error
	for range 50 {
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond) // the port may linger for a moment
	}
	s.tb.Fatalf("redistest: restart on port %d: %v", s.port, err)
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("redistest: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func infoField(info, name string) string {
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// Info returns one field of INFO from the server (for example
// "total_commands_processed").
func (s *Server) Info(tb testing.TB, section, field string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	defer c.Close()
	info, err := c.Info(ctx, section).Result()
	if err != nil {
		tb.Fatalf("redistest: INFO %s: %v", section, err)
	}
	return infoField(info, field)
}
