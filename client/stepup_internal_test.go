package client

import (
	"testing"

	"github.com/sessiond/sessiond/internal/assurance"
)

// The exported names are sessiond's (internal/assurance), spelled out for
// the documentation.
func TestStepUpNamesAreSessiondsOwn(t *testing.T) {
	t.Parallel()
	for got, want := range map[string]string{
		ReasonAssuranceLevelTooLow:     assurance.ReasonLevelTooLow,
		ReasonReauthenticationRequired: assurance.ReasonReauthenticationRequired,
		StepUpReasonHeader:             assurance.HTTPHeader,
	} {
		if got != want {
			t.Errorf("%q, sessiond's is %q", got, want)
		}
	}
}
