package client

import (
	"context"
	"errors"
	"testing"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
)

// withSession's context answers for the session and the token, passes
// every other key to its parent, and is cancelled with it, also through
// contexts derived from it.
func TestWithSessionContext(t *testing.T) {
	type otherKey struct{}
	parent, cancel := context.WithCancelCause(context.WithValue(context.Background(), otherKey{}, "parent's"))
	s := &sessionauthv1.Session{SessionId: "s1"}
	ctx := withSession(parent, s, "tok")
	derived, stop := context.WithCancel(context.WithValue(ctx, otherKey{}, "derived's"))
	defer stop()

	if got, ok := SessionFromContext(derived); !ok || got != s {
		t.Errorf("SessionFromContext = %v, %v; want the session", got, ok)
	}
	if got := derived.Value(tokenCtxKey{}); got != "tok" {
		t.Errorf("the token = %v, want tok", got)
	}
	if got := ctx.Value(otherKey{}); got != "parent's" {
		t.Errorf("another key = %v, want the parent's value", got)
	}
	if _, ok := SessionFromContext(parent); ok {
		t.Error("the parent has a session")
	}
	cause := errors.New("the call ended")
	cancel(cause)
	select {
	case <-derived.Done():
	default:
		t.Fatal("a context derived from it was not cancelled with the parent")
	}
	if got := context.Cause(derived); got != cause {
		t.Errorf("Cause = %v, want the parent's", got)
	}
}
