package testutil

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// BuildSessiond compiles cmd/sessiond into a temporary directory of the test
// and returns the binary's path.
func BuildSessiond(tb testing.TB) string {
	tb.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	bin := filepath.Join(tb.TempDir(), "sessiond")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/sessiond")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("building sessiond: %v\n%s", err, out)
	}
	return bin
}

// Process is a sessiond process started by a test.
type Process struct {
	Addr      string // the gRPC address it listens on
	AdminAddr string // its admin HTTP address (/metrics, /healthz, /readyz)
	cmd       *exec.Cmd
	done      chan struct{}
}

// StartSessiond runs the sessiond binary with args (plus loopback gRPC and
// admin listen addresses and JSON logs) until the test ends, and waits until it serves.
func StartSessiond(tb testing.TB, bin string, args ...string) *Process {
	tb.Helper()
	cmd := exec.Command(bin, append([]string{"--listen=127.0.0.1:0", "--admin-listen=127.0.0.1:0", "--forward-auth-listen=127.0.0.1:0", "--log-format=json",
		"--shutdown-drain-delay=0"}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	p := &Process{cmd: cmd, done: make(chan struct{})}
	addr := make(chan [2]string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line struct {
				Msg, Listen string
				AdminListen string `json:"admin_listen"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "sessiond serving" {
				addr <- [2]string{line.Listen, line.AdminListen}
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	go func() { _ = cmd.Wait(); close(p.done) }()
	tb.Cleanup(p.Stop)
	select {
	case a := <-addr:
		p.Addr, p.AdminAddr = a[0], a[1]
	case <-p.done:
		tb.Fatal("sessiond exited at start")
	case <-time.After(10 * time.Second):
		tb.Fatal("sessiond did not serve within 10s")
	}
	return p
}

// Stop sends SIGTERM and waits (SIGKILL after 10s). Stopping twice is fine.
func (p *Process) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Signal sends sig to the process.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Kill kills the process (SIGKILL) and waits for it.
func (p *Process) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Exited is closed when the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.done }
