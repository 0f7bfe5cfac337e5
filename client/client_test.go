package client_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sessiond/sessiond/client"
	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/internal/sessiondtest"
)

func TestClient(t *testing.T) {
	t.Parallel()
	c := client.New(sessiondtest.Start(t).Conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var tokens []string
	var ids []string
	for range 5 {
		tok, s, err := c.Create(ctx, client.NewSession{UserID: "u1", Email: "u1@example.com", TTL: time.Hour, IdleTimeout: 10 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		if d := s.GetExpiresAt().AsTime().Sub(s.GetCreatedAt().AsTime()); d != time.Hour {
			t.Fatalf("ttl %v, want 1h", d)
		}
		tokens, ids = append(tokens, tok), append(ids, s.GetSessionId())
	}
	s, err := c.Validate(ctx, tokens[0])
	if err != nil || s.GetSessionId() != ids[0] {
		t.Fatalf("Validate = %v, %v", s, err)
	}
	var listed []string
	for s, err := range c.UserSessions(ctx, "u1", 2) {
		if err != nil {
			t.Fatal(err)
		}
		listed = append(listed, s.GetSessionId())
	}
	if len(listed) != 5 || listed[0] != ids[4] || listed[4] != ids[0] {
		t.Fatalf("UserSessions listed %v, want all 5 newest first", listed)
	}
	if ok, err := c.Revoke(ctx, tokens[0]); !ok || err != nil {
		t.Fatalf("Revoke = %v, %v", ok, err)
	}
	if _, err := c.Validate(ctx, tokens[0]); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("Validate after Revoke: %v", err)
	}
	if ok, err := c.RevokeByID(ctx, ids[1]); !ok || err != nil {
		t.Fatalf("RevokeByID = %v, %v", ok, err)
	}
	if n, err := c.RevokeUser(ctx, "u1", ids[4]); n != 2 || err != nil {
		t.Fatalf("RevokeUser = %d, %v; want 2", n, err)
	}
	if _, err := c.Validate(ctx, tokens[4]); err != nil {
		t.Fatalf("the kept session: %v", err)
	}
	// A watcher sees revocations made after its stream is established: keep
	// revoking fresh sessions until one is reported. The stream is Unavailable
	// until sessiond's own subscription is live, so it is opened again until
	// it is; an event may arrive after the next revocation, so any session
	// revoked so far counts.
	events := make(chan *client.RevocationEvent, 100)
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go func() {
		for watchCtx.Err() == nil {
			for ev, err := range c.Revocations(watchCtx) {
				if err != nil {
					break
				}
				select {
				case events <- ev:
				case <-watchCtx.Done():
					return
				}
			}
			select {
			case <-watchCtx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	revokedIDs := map[string]bool{}
	deadline := time.Now().Add(10 * time.Second)
	for seen := false; !seen; {
		_, s, err := c.Create(ctx, client.NewSession{UserID: "u2"})
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := c.RevokeByID(ctx, s.GetSessionId()); !ok || err != nil {
			t.Fatalf("RevokeByID = %v, %v", ok, err)
		}
		revokedIDs[s.GetSessionId()] = true
		timeout := time.After(50 * time.Millisecond)
	drain:
		for {
			select {
			case ev := <-events:
				if ev.GetUserId() == "u2" && len(ev.GetSessionIds()) == 1 && revokedIDs[ev.GetSessionIds()[0]] &&
					ev.GetReason() == sessionauthv1.RevocationEvent_REASON_REVOKED {
					seen = true
					break drain
				}
			case <-timeout:
				break drain
			}
		}
		if !seen && time.Now().After(deadline) {
			t.Fatal("no revocation event reached the watcher within 10s")
		}
	}
	if _, _, err := c.Create(ctx, client.NewSession{}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("Create without user: %v", err)
	}
}
