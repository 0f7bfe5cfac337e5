// Package gatewaytest runs real gateways (nginx, Caddy) as processes of a
// test, with the configurations that docs/gateways shows, in front of a
// header-recording upstream: the proof that the documented forward-auth
// setups do what the documentation says.
//
// A gateway binary that is not installed skips the test with a message,
// unless SESSIOND_TEST_GATEWAYS=1 (CI) makes that a failure. Every process
// is killed when the test ends (also on failure), and dies with the test
// binary if that is killed.
package gatewaytest

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sessiond/sessiond/internal/testutil"
)

// RequireEnv names the environment variable that, set to 1, turns a missing
// gateway binary from a skip into a failure.
const RequireEnv = "SESSIOND_TEST_GATEWAYS"

// startTimeout bounds a gateway's start.
const startTimeout = 15 * time.Second

// Binary returns the path of the gateway binary name ("nginx", "caddy"):
// $NGINX_BIN or $CADDY_BIN, else the one on PATH, else one in the sbin
// directories (nginx is in /usr/sbin, often not on a user's PATH). When
// there is none, the test is skipped, or fails when SESSIOND_TEST_GATEWAYS=1.
func Binary(tb testing.TB, name string) string {
	tb.Helper()
	if bin := os.Getenv(strings.ToUpper(name) + "_BIN"); bin != "" {
		return bin
	}
	if bin, err := exec.LookPath(name); err == nil {
		return bin
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/usr/local/bin", "/usr/local/nginx/sbin"} {
		bin := filepath.Join(dir, name)
		if fi, err := os.Stat(bin); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return bin
		}
	}
	pkg := map[string]string{"nginx": "nginx-light"}[name]
	if pkg == "" {
		pkg = name
	}
	msg := fmt.Sprintf("%s is not installed: these tests run the documented gateway configurations on a real %s.\n"+
		"Install it (Debian/Ubuntu: apt-get install -y %s) or point %s_BIN at the binary.",
		name, name, pkg, strings.ToUpper(name))
	if os.Getenv(RequireEnv) == "1" {
		tb.Fatalf("%s\n(%s=1: a missing gateway is a failure, not a skip)", msg, RequireEnv)
	}
	tb.Skip(msg)
	return ""
}

// Gateway is a gateway process started by a test.
type Gateway struct {
	// Addr is where it listens: 127.0.0.1:port.
	Addr string
	// URL is http://Addr.
	URL string

	logs *testutil.SyncBuffer
	cmd  *exec.Cmd
	done chan struct{}
}

// Logs is what the gateway wrote to its stdout and stderr so far (its error
// and access logs).
func (g *Gateway) Logs() string { return g.logs.String() }

// StartNginx runs nginx with site, the contents of an http {} block (the
// docs' nginx.conf, with its addresses replaced), which conf returns for
// the address the gateway is to listen on (127.0.0.1:port). The test wraps
// it in a configuration of its own: in the foreground, one process, the pid
// file, the logs (to the gateway's Logs) and the temp paths in a temp dir.
func StartNginx(tb testing.TB, conf func(addr string) string) *Gateway {
	tb.Helper()
	bin := Binary(tb, "nginx")
	return start(tb, "nginx", func(dir, addr string) (*exec.Cmd, func(*Gateway) bool, error) {
		if err := os.WriteFile(filepath.Join(dir, "site.conf"), []byte(conf(addr)), 0o600); err != nil {
			return nil, nil, err
		}
		var temps strings.Builder
		for _, p := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
			fmt.Fprintf(&temps, "    %s_temp_path %s;\n", p, filepath.Join(dir, p))
		}
		pid := filepath.Join(dir, "nginx.pid")
		top := "daemon off;\nmaster_process off;\npid " + pid + ";\nerror_log stderr notice;\n" +
			"events { worker_connections 256; }\n" +
			"http {\n    access_log /dev/stderr;\n" + temps.String() +
			"    include " + filepath.Join(dir, "site.conf") + ";\n}\n"
		if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(top), 0o600); err != nil {
			return nil, nil, err
		}
		cmd := exec.Command(bin, "-e", "stderr", "-p", dir, "-c", filepath.Join(dir, "nginx.conf"))
		// nginx writes its pid file once its listening sockets are bound.
		ready := func(g *Gateway) bool {
			b, err := os.ReadFile(pid)
			return err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(g.cmd.Process.Pid)
		}
		return cmd, ready, nil
	})
}

// StartCaddy runs caddy with site, a Caddyfile without global options (the
// docs' Caddyfile, with its addresses replaced), which conf returns for the
// address the gateway is to listen on (127.0.0.1:port; site addresses
// http://127.0.0.1:port). The test adds the global options of its own: no
// admin endpoint, no automatic HTTPS, bound to loopback, and HOME and the
// XDG directories in a temp dir.
func StartCaddy(tb testing.TB, conf func(addr string) string) *Gateway {
	tb.Helper()
	bin := Binary(tb, "caddy")
	return start(tb, "caddy", func(dir, addr string) (*exec.Cmd, func(*Gateway) bool, error) {
		global := "{\n\tadmin off\n\tauto_https off\n\tdefault_bind 127.0.0.1\n}\n\n"
		file := filepath.Join(dir, "Caddyfile")
		if err := os.WriteFile(file, []byte(global+conf(addr)), 0o600); err != nil {
			return nil, nil, err
		}
		cmd := exec.Command(bin, "run", "--config", file, "--adapter", "caddyfile")
		cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_CONFIG_HOME="+filepath.Join(dir, "config"), "XDG_DATA_HOME="+filepath.Join(dir, "data"))
		// Caddy says so once its servers listen.
		ready := func(g *Gateway) bool { return strings.Contains(g.Logs(), "serving initial configuration") }
		return cmd, ready, nil
	})
}

// start starts a gateway that prepare configures for a free loopback
// address, until it is ready, retrying on another port if that one was
// taken meanwhile.
func start(tb testing.TB, name string, prepare func(dir, addr string) (*exec.Cmd, func(*Gateway) bool, error)) *Gateway {
	tb.Helper()
	var lastErr error
	for attempt := range 3 {
		dir := tb.TempDir()
		addr, err := freeAddr()
		if err != nil {
			tb.Fatalf("%s: free port: %v", name, err)
		}
		cmd, ready, err := prepare(dir, addr)
		if err != nil {
			tb.Fatalf("%s: configuring: %v", name, err)
		}
		g := &Gateway{Addr: addr, URL: "http://" + addr, logs: &testutil.SyncBuffer{}, cmd: cmd, done: make(chan struct{})}
		cmd.Dir = dir
		cmd.Stdout, cmd.Stderr = g.logs, g.logs
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			tb.Fatalf("%s: %v", name, err)
		}
		go func() { _ = cmd.Wait(); close(g.done) }()
		tb.Cleanup(func() {
			g.stop()
			if tb.Failed() {
				tb.Logf("%s (attempt %d) logged:\n%s", name, attempt+1, g.Logs())
			}
		})
		if lastErr = g.waitReady(ready); lastErr == nil {
			return g
		}
		g.stop()
		if !strings.Contains(strings.ToLower(g.Logs()), "address already in use") {
			break
		}
	}
	tb.Fatalf("%s did not start: %v (its log follows)", name, lastErr)
	return nil
}

func (g *Gateway) waitReady(ready func(*Gateway) bool) error {
	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-g.done:
			return fmt.Errorf("it exited (%v) before serving", g.cmd.ProcessState)
		case <-deadline.C:
			return fmt.Errorf("not serving on %s within %v", g.Addr, startTimeout)
		case <-tick.C:
			if ready(g) {
				return nil
			}
		}
	}
}

// stop kills the gateway and waits for it. Stopping twice is fine.
func (g *Gateway) stop() {
	select {
	case <-g.done:
		return
	default:
	}
	_ = g.cmd.Process.Kill()
	<-g.done
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Upstream is the application behind a gateway: it answers every request
// with 200 "upstream" and records the request's headers, by path.
type Upstream struct {
	// Addr is its address, 127.0.0.1:port.
	Addr string

	mu   sync.Mutex
	seen map[string][]http.Header // by r.URL.Path
}

// UpstreamBody is what Upstream answers.
const UpstreamBody = "upstream"

// NewUpstream starts an Upstream, closed when the test ends.
func NewUpstream(tb testing.TB) *Upstream {
	tb.Helper()
	u := &Upstream{seen: make(map[string][]http.Header)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.seen[r.URL.Path] = append(u.seen[r.URL.Path], r.Header.Clone())
		u.mu.Unlock()
		_, _ = w.Write([]byte(UpstreamBody))
	}))
	tb.Cleanup(srv.Close)
	u.Addr = strings.TrimPrefix(srv.URL, "http://")
	return u
}

// Seen returns the headers of each request for path that reached the
// upstream.
func (u *Upstream) Seen(path string) []http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]http.Header(nil), u.seen[path]...)
}

// DocsFile returns the contents of docs/gateways/name, the configuration
// the documentation shows.
func DocsFile(tb testing.TB, name string) string {
	tb.Helper()
	_, file, _, _ := runtime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "docs", "gateways", name))
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// Substitute replaces, in conf, each old string of the pairs old, new with
// its new one (every occurrence, in one pass: a new string is never
// replaced again). Each old string must be there, so that a test notices
// when the docs' configuration changed under it.
func Substitute(tb testing.TB, conf string, pairs ...string) string {
	tb.Helper()
	if len(pairs)%2 != 0 {
		tb.Fatal("Substitute: an odd number of strings")
	}
	for i := 0; i < len(pairs); i += 2 {
		if !strings.Contains(conf, pairs[i]) {
			tb.Fatalf("the configuration no longer contains %q, which the test replaces:\n%s", pairs[i], conf)
		}
	}
	return strings.NewReplacer(pairs...).Replace(conf)
}
