package server

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/sessiond/sessiond/server/store"
)

func TestStoreOutcome(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want outcome
	}{
		{nil, outcomeOK},
		{fmt.Errorf("get: %w", store.ErrNotFound), outcomeNotFound},
		{fmt.Errorf("get: %w: %w", store.ErrUnavailable, errors.New("dial tcp: refused")), outcomeUnavailable},
		{fmt.Errorf("get: %w", context.DeadlineExceeded), outcomeTimeout},
		{fmt.Errorf("get: %w", context.Canceled), outcomeCanceled},
		{fmt.Errorf("create: %w", store.ErrConflict), outcomeConflict},
		{store.ErrMalformedSessionID, outcomeNotFound},
		{errors.New("ERR unknown command"), outcomeError},
	} {
		if got := outcomeOf(tc.err); got != tc.want {
			t.Errorf("outcomeOf(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	var m *Metrics
	st := Store(nil)
	if m.instrumentStore(st) != st {
		t.Fatal("a nil *Metrics wrapped the store")
	}
	m = NewMetrics()
	wrapped := m.instrumentStore(meteredStore{})
	if _, ok := wrapped.(meteredStore); !ok || wrapped.(meteredStore).m != nil {
		t.Fatal("InstrumentStore wrapped a store twice")
	}
}
