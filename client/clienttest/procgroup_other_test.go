//go:build !unix

package clienttest_test

import "os/exec"

// killGroupOnCancel leaves exec's default, killing the go command: its test
// binary ends at its own -timeout.
func killGroupOnCancel(*exec.Cmd) {}
