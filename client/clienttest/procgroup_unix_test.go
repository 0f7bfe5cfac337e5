//go:build unix

package clienttest_test

import (
	"os/exec"
	"syscall"
)

// killGroupOnCancel makes cmd's cancellation kill its process group: the go
// command and the test binary it runs, which a signal to the go command
// alone would leave running.
func killGroupOnCancel(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
}
