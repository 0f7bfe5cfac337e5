package store

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// The page-token key: the secret with which sessiond authenticates the
// cursors it hands out in page tokens (ListUserSessions, ListSessions), so
// that a token is accepted only as it was issued, and only for the request
// it was issued for. It is one key, sessiond:v1:pagekey (32 random bytes),
// created by the first sessiond that needs it and shared by every sessiond
// on the same Redis, so that a listing may go on through any replica. It
// never expires.

const pageKeyLen = 32

func (s *Store) pageKeyName() string { return s.prefix + ":v1:pagekey" }

// PageKey returns the page-token key to issue a token with: the one read
// before, else the one in Redis, which it creates if there is none.
func (s *Store) PageKey(ctx context.Context) ([]byte, error) {
	if k := s.pageKey.Load(); k != nil {
		return *k, nil
	}
	var mine [pageKeyLen]byte
	if _, err := rand.Read(mine[:]); err != nil {
		return nil, fmt.Errorf("page key: %w", err)
	}
	if err := s.rdb.SetNX(ctx, s.pageKeyName(), mine[:], 0).Err(); err != nil {
		return nil, wrapErr(ctx, "page key", err)
	}
	return s.CurrentPageKey(ctx, true)
}

// CurrentPageKey returns the page-token key to check a token against: the
// one read before, or (with reread, or if none was) the one in Redis, kept
// for PageKey; reread is for a token the key read before does not fit
// (Redis may have lost the key, and a sessiond made another). It returns
// nil, without an error, when there is none: no token can check out. It
// never writes.
func (s *Store) CurrentPageKey(ctx context.Context, reread bool) ([]byte, error) {
	if k := s.pageKey.Load(); k != nil && !reread {
		return *k, nil
	}
	key := s.pageKeyName()
	v, err := s.rdb.Get(ctx, key).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, nil
	case err != nil:
		return nil, wrapErr(ctx, "page key", err)
	case len(v) != pageKeyLen:
		return nil, fmt.Errorf("page key: %w: %s holds %d bytes, not %d (delete it: sessiond creates another)", ErrUnavailable, key, len(v), pageKeyLen)
	}
	s.pageKey.Store(&v)
	return v, nil
}

// pageKeyCache is the page-token key, once read.
type pageKeyCache = atomic.Pointer[[]byte]
