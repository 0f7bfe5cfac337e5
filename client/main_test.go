package client_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/internal/sessiondtest"
)

// sessiondAddr is the address of the sessiond the examples talk to: in your
// code, wherever sessiond runs ("127.0.0.1:50051" for `make run`).
var sessiondAddr string

// TestMain runs one sessiond, on a real redis-server, for the examples.
func TestMain(m *testing.M) {
	os.Exit(runWithSessiond(m))
}

func runWithSessiond(m *testing.M) int {
	rs, err := redistest.Launch()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer rs.Stop()
	d, err := sessiondtest.Launch(sessiondtest.Config(rs.Addr()))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer d.Stop()
	sessiondAddr = d.Addr
	return m.Run()
}
