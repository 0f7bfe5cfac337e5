package server

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/server/store"
)

// A page token is the store's cursor (for ListUserSessions, the id of the
// last session of the previous page; for ListSessions, where the walk
// stands), authenticated so that sessiond accepts only the tokens it issued,
// for the request it issued them for:
//
//	base64url(prefix + cursor + "." + base64url(mac))
//	mac = HMAC-SHA256(page key, prefix + "\x00" + scope + "\x00" + cursor)[:16]
//
// where the prefix names the RPC ("p2:", "l1:"), the scope is the user the
// listing is for (ListUserSessions; "" for ListSessions), and the page key
// is a secret every sessiond on the Redis shares (store.PageKey). A token of
// one user's listing is refused for another's, even when the two users'
// 32-bit routing tags collide, and a cursor made up by a caller is refused.

const pageMACLen = 16

// errBadPageToken: a page token this RPC did not issue for this request.
var errBadPageToken = errors.New("not a page token issued for this request")

func pageMAC(key []byte, prefix, scope, cursor string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(prefix + "\x00" + scope + "\x00" + cursor))
	return m.Sum(nil)[:pageMACLen]
}

// pageTokenForm splits a page token into its cursor and MAC, checking only
// its form (no key needed): "", "", true for the empty token.
func pageTokenForm(prefix, tok string) (cursor string, mac []byte, ok bool) {
	if tok == "" {
		return "", nil, true
	}
	if len(tok) > maxPageTokenBytes {
		return "", nil, false
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(tok)
	if err != nil {
		return "", nil, false
	}
	body, found := strings.CutPrefix(string(b), prefix)
	i := strings.LastIndexByte(body, '.')
	if !found || i <= 0 {
		return "", nil, false
	}
	mac, err = base64.RawURLEncoding.Strict().DecodeString(body[i+1:])
	if err != nil || len(mac) != pageMACLen {
		return "", nil, false
	}
	return body[:i], mac, true
}

// encodePageToken wraps a store cursor ("" for none) into a page token.
func (s *Server) encodePageToken(ctx context.Context, prefix, scope, cursor string) (string, error) {
	if cursor == "" {
		return "", nil
	}
	key, err := s.store.PageKey(ctx)
	if err != nil {
		return "", err
	}
	mac := base64.RawURLEncoding.EncodeToString(pageMAC(key, prefix, scope, cursor))
	return base64.RawURLEncoding.EncodeToString([]byte(prefix + cursor + "." + mac)), nil
}

// checkPageToken returns the cursor of a well-formed page token (see
// pageTokenForm) once its MAC checks out for this scope: against the key
// this sessiond knows, else against the one in Redis (read again: it may
// have changed). errBadPageToken if it does not (nothing is written), or
// the store's error if the key cannot be read.
func (s *Server) checkPageToken(ctx context.Context, prefix, scope, cursor string, mac []byte) (string, error) {
	if cursor == "" {
		return "", nil
	}
	var known []byte
	for _, reread := range []bool{false, true} {
		key, err := s.store.CurrentPageKey(ctx, reread)
		if err != nil {
			return "", err
		}
		if key == nil || bytes.Equal(key, known) {
			break
		}
		if hmac.Equal(mac, pageMAC(key, prefix, scope, cursor)) {
			return cursor, nil
		}
		known = key
	}
	return "", errBadPageToken
}

// page serves one page of a listing: it checks the page token's cursor and
// MAC (see pageTokenForm, checked with the request's other fields before),
// lists from the cursor, and wraps the next cursor in a token. A token that
// does not check out is the field violation badToken, in v.
func (s *Server) page(ctx context.Context, v *invalid, prefix, scope, badToken, cursor string, mac []byte,
	list func(cursor string) ([]*store.Session, string, error)) (sessions []*sessionauthv1.Session, nextToken string, err error) {
	cursor, err = s.checkPageToken(ctx, prefix, scope, cursor, mac)
	var (
		found []*store.Session
		next  string
	)
	if err == nil {
		found, next, err = list(cursor)
	}
	if err == nil {
		nextToken, err = s.encodePageToken(ctx, prefix, scope, next)
	}
	switch {
	case errors.Is(err, errBadPageToken), errors.Is(err, store.ErrMalformedCursor):
		v.add("page_token", "%s", badToken)
		return nil, "", v.err()
	case err != nil:
		return nil, "", s.toStatus(ctx, err)
	}
	for _, sess := range found {
		sessions = append(sessions, toProto(sess))
	}
	return sessions, nextToken, nil
}
