package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/redis/go-redis/v9"
)

// Reason says why sessions were revoked.
type Reason int

// The reasons, as in the API's RevocationEvent.Reason.
const (
	ReasonLogout      Reason = 1 // RevokeToken
	ReasonRevoked     Reason = 2 // Revoke by session id
	ReasonUserRevoked Reason = 3 // RevokeUser
	ReasonEvicted     Reason = 4 // over the per-user cap, by Create
	ReasonRotated     Reason = 5 // replaced by a new session, by Rotate
	// ReasonUpdated is not a revocation: the session lives on, but its data
	// changed (Update, Extend), so that caches drop their copy.
	ReasonUpdated       Reason = 6
	ReasonReuseDetected Reason = 7 // a rotated-away token presented again: its successor revoked
	ReasonAllRevoked    Reason = 8 // RevokeAll: every session created before IssuedBefore
)

// Revocation is one event of the revocation channel: sessions of one user
// that one call revoked (or, ReasonUpdated, changed), or the revoke-all
// cutoff. It never carries a token.
type Revocation struct {
	SessionIDs []string  `json:"s,omitempty"`
	UserID     string    `json:"u,omitempty"`
	Reason     Reason    `json:"r"`
	At         time.Time `json:"t"`
	// IssuedBefore is the cutoff of ReasonAllRevoked.
	IssuedBefore time.Time `json:"ib,omitzero"`
	// ReusedID is, for ReasonReuseDetected, the session whose rotated-away
	// token was presented again.
	ReusedID string `json:"ru,omitempty"`
}

// revocationChannel is the pub/sub channel of revocation events.
func (s *Store) revocationChannel() string { return s.prefix + ":v1:revocations" }

// publishRevocation queues, inside the write's MULTI, the PUBLISH of its
// event: the event goes out if and only if the write commits.
func (s *Store) publishRevocation(ctx context.Context, p redis.Pipeliner, r Revocation) {
	payload, err := json.Marshal(r)
	if err != nil {
		return // cannot happen: strings, ints and a time
	}
	p.Publish(ctx, s.revocationChannel(), payload)
}

// pubsubCheckInterval is how long a quiet subscription waits before it pings
// Redis to check that the connection is still alive.
const pubsubCheckInterval = 2 * time.Second

// WatchRevocations subscribes to revocation events and calls onEvent for each,
// in order, until ctx ends or the subscription breaks. It calls ready once the
// subscription is confirmed: events committed from then on are delivered. It
// always returns an error (ctx's, or why the subscription broke), after which
// events may have been missed. A ReasonAllRevoked event raises this Store's
// cutoff before onEvent sees it.
func (s *Store) WatchRevocations(ctx context.Context, ready func(), onEvent func(Revocation)) error {
	ps := s.rdb.Subscribe(ctx)
	defer ps.Close()
	// A blocked read does not watch ctx: closing the subscription ends it.
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()
	channel := s.revocationChannel()
	if err := ps.Subscribe(ctx, channel); err != nil {
		return wrapErr(ctx, "watch revocations", err)
	}
	lastHeard := time.Now()
	for {
		msg, err := ps.ReceiveTimeout(ctx, pubsubCheckInterval)
		if err != nil {
			var ne net.Error
			if ctx.Err() == nil && errors.As(err, &ne) && ne.Timeout() {
				// Quiet: ping, and give up if even the last ping went unanswered.
				if time.Since(lastHeard) > 2*pubsubCheckInterval+time.Second {
					return fmt.Errorf("watch revocations: %w: no answer to ping", ErrUnavailable)
				}
				if err := ps.Ping(ctx); err != nil {
					return wrapErr(ctx, "watch revocations", err)
				}
				continue
			}
			return wrapErr(ctx, "watch revocations", err)
		}
		lastHeard = time.Now()
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" && m.Channel == channel {
				ready()
			}
		case *redis.Message:
			var r Revocation
			if json.Unmarshal([]byte(m.Payload), &r) == nil {
				if r.Reason == ReasonAllRevoked {
					s.cutoff.raise(r.IssuedBefore.UnixMilli())
				}
				onEvent(r)
			}
		}
	}
}
