package clienttest_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that what Start and New start is stopped: no goroutine of
// sessiond, its store or its connections outlives the tests.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
