package server

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/server/store"
)

// WatchReadyHeader is the response header with which WatchRevocations says
// that its subscription is live. A trailers-only error response lacks it.
const WatchReadyHeader = "sessiond-revocations"

// watcherBuffer is how many events a WatchRevocations stream may fall behind
// before it is ended (its client then drops its cache and reconnects).
const watcherBuffer = 1024

// revocations fans the revocation events of one Redis subscription out to
// every WatchRevocations stream of this process. Streams are only accepted
// while the subscription is live; when it breaks, every stream is ended, so
// that no client trusts a cache that may have missed an event.
type revocations struct {
	mu       sync.Mutex
	live     bool
	watchers map[*watcher]struct{}
	metrics  *Metrics // nil: not measured
}

type watcher struct {
	events chan *sessionauthv1.RevocationEvent
	done   chan struct{} // closed when the watcher is dropped
	err    error         // why, set before done is closed
}

func (r *revocations) setLive(live bool, why error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.live = live
	r.metrics.setSubscribed(live)
	if !live {
		for w := range r.watchers {
			r.dropLocked(w, why)
		}
	}
}

func (r *revocations) dropLocked(w *watcher, why error) {
	if _, ok := r.watchers[w]; !ok {
		return
	}
	delete(r.watchers, w)
	r.metrics.watcherAdded(-1)
	w.err = why
	close(w.done)
}

func (r *revocations) add() (*watcher, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.live {
		return nil, false
	}
	w := &watcher{events: make(chan *sessionauthv1.RevocationEvent, watcherBuffer), done: make(chan struct{})}
	if r.watchers == nil {
		r.watchers = map[*watcher]struct{}{}
	}
	r.watchers[w] = struct{}{}
	r.metrics.watcherAdded(1)
	return w, true
}

func (r *revocations) remove(w *watcher) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.watchers[w]; ok {
		delete(r.watchers, w)
		r.metrics.watcherAdded(-1)
	}
}

func (r *revocations) publish(ev *sessionauthv1.RevocationEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.metrics.revocationPublished()
	for w := range r.watchers {
		select {
		case w.events <- ev:
		default:
			r.metrics.watcherLagged()
			r.dropLocked(w, status.Error(codes.Unavailable, "revocation stream fell too far behind; reconnect"))
		}
	}
}

func (r *revocations) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.watchers)
}

// RunRevocations keeps this process subscribed to the revocation events of
// Redis until ctx ends, resubscribing with backoff when the subscription
// breaks. WatchRevocations streams are served only while it runs; when it
// returns, every stream has been ended.
func (s *Server) RunRevocations(ctx context.Context) {
	lost := status.Error(codes.Unavailable, "sessiond lost its revocation subscription; reconnect")
	defer s.revocations.setLive(false, status.Error(codes.Unavailable, "sessiond is shutting down"))
	backoff := 50 * time.Millisecond
	for {
		started := time.Now()
		err := s.store.WatchRevocations(ctx,
			func() {
				s.revocations.setLive(true, nil)
				s.log.Info("revocation stream subscribed")
			},
			func(r store.Revocation) { s.revocations.publish(revocationToProto(r)) })
		s.revocations.setLive(false, lost)
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("revocation subscription lost: watchers ended", "error", err)
		if time.Since(started) > time.Minute {
			backoff = 50 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff/2 + rand.N(backoff/2+1)):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// WatchRevocations implements SessionAuthority.WatchRevocations.
func (s *Server) WatchRevocations(_ *sessionauthv1.WatchRevocationsRequest, stream grpc.ServerStreamingServer[sessionauthv1.RevocationEvent]) error {
	w, ok := s.revocations.add()
	if !ok {
		return status.Error(codes.Unavailable, "revocation stream not available yet (no Redis subscription); retry")
	}
	defer s.revocations.remove(w)
	// The headers tell the client that the subscription is live: events
	// committed from now on will reach it.
	if err := stream.SendHeader(metadata.Pairs(WatchReadyHeader, "subscribed")); err != nil {
		return err
	}
	ctx := stream.Context()
	for {
		select {
		case ev := <-w.events:
			if err := stream.Send(ev); err != nil {
				return err
			}
		case <-w.done:
			return w.err
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
}

func revocationToProto(r store.Revocation) *sessionauthv1.RevocationEvent {
	reason := sessionauthv1.RevocationEvent_REASON_UNSPECIFIED
	switch r.Reason {
	case store.ReasonLogout:
		reason = sessionauthv1.RevocationEvent_REASON_LOGOUT
	case store.ReasonRevoked:
		reason = sessionauthv1.RevocationEvent_REASON_REVOKED
	case store.ReasonUserRevoked:
		reason = sessionauthv1.RevocationEvent_REASON_USER_REVOKED
	case store.ReasonEvicted:
		reason = sessionauthv1.RevocationEvent_REASON_EVICTED
	case store.ReasonRotated:
		reason = sessionauthv1.RevocationEvent_REASON_ROTATED
	case store.ReasonUpdated:
		reason = sessionauthv1.RevocationEvent_REASON_UPDATED
	case store.ReasonReuseDetected:
		reason = sessionauthv1.RevocationEvent_REASON_REUSE_DETECTED
	case store.ReasonAllRevoked:
		reason = sessionauthv1.RevocationEvent_REASON_ALL_REVOKED
	}
	ev := &sessionauthv1.RevocationEvent{SessionIds: r.SessionIDs, UserId: r.UserID, Reason: reason, RevokedAt: timestamppb.New(r.At), ReusedSessionId: r.ReusedID}
	if !r.IssuedBefore.IsZero() {
		ev.IssuedBefore = timestamppb.New(r.IssuedBefore)
	}
	return ev
}
