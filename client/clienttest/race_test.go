//go:build race

package clienttest_test

// raceEnabled: this test binary is built with -race, and so is the other
// module's.
const raceEnabled = true
