package store

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// Session is a live session as the store knows it. It never holds the token.
type Session struct {
	ID          string
	UserID      string
	Email       string
	ClientIP    string
	UserAgent   string
	Attributes  map[string]string
	CreatedAt   time.Time
	ExpiresAt   time.Time // absolute expiry
	LastSeenAt  time.Time // last recorded validation (recorded at most once per touch interval)
	IdleTimeout time.Duration
	// AuthenticatedAt is when the user last proved who they are: the
	// creation, or a rotation that reauthenticated.
	AuthenticatedAt time.Time
	// AuthMethods are the authentication methods completed, in order.
	AuthMethods []string
	// AssuranceLevel is the authenticator assurance level, 1 to 3.
	AssuranceLevel int

	touchDue    bool   // set by Get: see TouchDue
	rotatedFrom string // the UUID of the session this one was rotated from, if any
	family      string // the UUID of the first session of its rotation chain, if it was rotated from one
}

// TouchDue reports whether the validation that read the session (Get) should
// be recorded with Touch: the store's TouchInterval has passed since the last
// recorded one. It is false for a session that Get did not return.
func (s *Session) TouchDue() bool { return s.touchDue }

// IdleExpiresAt is when the session ends unless it is validated before: the
// last validation plus the idle timeout, never later than the absolute expiry.
func (s *Session) IdleExpiresAt() time.Time {
	if s.IdleTimeout <= 0 {
		return s.ExpiresAt
	}
	t := s.LastSeenAt.Add(s.IdleTimeout)
	if t.After(s.ExpiresAt) {
		return s.ExpiresAt
	}
	return t
}

// EndsAt is when the session stops being valid if nothing happens: the earlier
// of its absolute and idle expiry. Its Redis key expires then, and it is the
// session's score in the user's index.
func (s *Session) EndsAt() time.Time { return s.IdleExpiresAt() }

// ActiveAt reports whether the session is valid at t.
func (s *Session) ActiveAt(t time.Time) bool { return t.Before(s.EndsAt()) }

// The fields of a session's Redis hash. Short names keep a session small; times
// are Unix milliseconds.
const (
	fieldTokenHash   = "h"
	fieldUserID      = "u"
	fieldEmail       = "e"
	fieldClientIP    = "ip"
	fieldUserAgent   = "ua"
	fieldCreated     = "c"
	fieldExpires     = "x"
	fieldIdleTimeout = "i"
	fieldLastSeen    = "l"
	fieldAuthAt      = "at" // absent: the creation time
	fieldAuthMethods = "am" // comma-separated; absent when none
	fieldAssurance   = "al" // absent: 1
	fieldRotatedFrom = "rf" // the UUID of the rotated-away session; absent when none
	fieldFamily      = "f"  // the UUID of the first session of the rotation chain; absent when none or rf
	attrFieldPrefix  = "a:"
)

// record is a session with its token hash: the content of its Redis hash.
type record struct {
	Session
	tokenHash string
}

func (r *record) fields() map[string]any {
	f := map[string]any{
		fieldTokenHash:   r.tokenHash,
		fieldUserID:      r.UserID,
		fieldCreated:     r.CreatedAt.UnixMilli(),
		fieldExpires:     r.ExpiresAt.UnixMilli(),
		fieldIdleTimeout: r.IdleTimeout.Milliseconds(),
		fieldLastSeen:    r.LastSeenAt.UnixMilli(),
	}
	// The common case costs no bytes: authenticated at creation, level 1.
	if !r.AuthenticatedAt.Equal(r.CreatedAt) {
		f[fieldAuthAt] = r.AuthenticatedAt.UnixMilli()
	}
	if r.AssuranceLevel > 1 {
		f[fieldAssurance] = r.AssuranceLevel
	}
	for k, v := range map[string]string{fieldEmail: r.Email, fieldClientIP: r.ClientIP, fieldUserAgent: r.UserAgent,
		fieldAuthMethods: strings.Join(r.AuthMethods, ","), fieldRotatedFrom: r.rotatedFrom} {
		if v != "" {
			f[k] = v
		}
	}
	if r.family != r.rotatedFrom { // the first rotation's: the same, not stored
		f[fieldFamily] = r.family
	}
	for k, v := range r.Attributes {
		f[attrFieldPrefix+k] = v
	}
	return f
}

var errCorrupt = errors.New("corrupt session record")

// decodeRecord reads a session hash as HGETALL returns it. An empty map means
// the key does not exist.
func decodeRecord(id string, m map[string]string) (*record, error) {
	r := &record{Session: Session{ID: id, AssuranceLevel: 1}}
	var created, expires, idle, lastSeen, authAt int64
	var err error
	for k, v := range m {
		switch k {
		case fieldTokenHash:
			r.tokenHash = v
		case fieldUserID:
			r.UserID = v
		case fieldEmail:
			r.Email = v
		case fieldClientIP:
			r.ClientIP = v
		case fieldUserAgent:
			r.UserAgent = v
		case fieldCreated:
			created, err = strconv.ParseInt(v, 10, 64)
		case fieldExpires:
			expires, err = strconv.ParseInt(v, 10, 64)
		case fieldIdleTimeout:
			idle, err = strconv.ParseInt(v, 10, 64)
		case fieldLastSeen:
			lastSeen, err = strconv.ParseInt(v, 10, 64)
		case fieldAuthAt:
			authAt, err = strconv.ParseInt(v, 10, 64)
		case fieldAuthMethods:
			r.AuthMethods = strings.Split(v, ",")
		case fieldAssurance:
			r.AssuranceLevel, err = strconv.Atoi(v)
		case fieldRotatedFrom:
			r.rotatedFrom = v
		case fieldFamily:
			r.family = v
		default:
			if name, ok := strings.CutPrefix(k, attrFieldPrefix); ok {
				if r.Attributes == nil {
					r.Attributes = make(map[string]string)
				}
				r.Attributes[name] = v
			}
		}
		if err != nil {
			return nil, errCorrupt
		}
	}
	if r.tokenHash == "" || r.UserID == "" || created == 0 || expires == 0 || lastSeen == 0 {
		return nil, errCorrupt
	}
	r.CreatedAt = time.UnixMilli(created)
	r.ExpiresAt = time.UnixMilli(expires)
	r.IdleTimeout = time.Duration(idle) * time.Millisecond
	r.LastSeenAt = time.UnixMilli(lastSeen)
	if r.family == "" {
		r.family = r.rotatedFrom
	}
	r.AuthenticatedAt = r.CreatedAt
	if authAt != 0 {
		r.AuthenticatedAt = time.UnixMilli(authAt)
	}
	return r, nil
}
