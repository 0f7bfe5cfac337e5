package store

import (
	"context"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Walking every session (List) is a SCAN of each master's keyspace for
// session keys, master after master in the order of the lowest slot each
// owns (one "master" on a single Redis or Sentinel). A list cursor says
// where the walk stands:
//
//	l2.<slot>.<scan cursor>.<next scan cursor>.<session id>
//
// the master by its lowest slot, the SCAN cursor of the batch the walk is
// in, and, when a page ended inside that batch, the cursor SCAN returned
// after it and the last session of the batch already listed (else 0 and
// ""): a batch that holds more sessions than a page is read again by the
// next page, which skips what the previous one listed. A batch's sessions
// are listed in the order of their ids.
//
// The same SCAN cursor reads the same batch only while the keys around it
// stay put: once keys were added or removed there, or Redis resized its
// table of keys, the batch read again may end further than the first read
// did, with keys that the first read did not see, some with smaller ids than
// the last one listed: skipped now, and no later batch would return them. A
// SCAN ends where the cursor it returns starts (in the reverse-binary order
// of SCAN cursors), so the walk goes on from whichever of the two reads
// ended first: what the other read saw beyond that end is read again by the
// next batch (a walk may repeat a session, never miss one).
//
// Each SCAN call examines about scanCount keys and a page makes at most
// maxScansPerPage calls, so no page reads the whole keyspace in one blocking
// call (or in one page): a page may hold fewer sessions than asked, even
// none, with the walk not done.
const (
	listCursorVersion = "l2"
	scanCount         = 256
	maxScansPerPage   = 16
)

// listCursor is where the walk stands.
type listCursor struct {
	slot   int
	cursor uint64
	next   uint64 // the cursor SCAN returned after the batch at cursor, if after is set
	after  string // the last session id listed from the batch at cursor
}

func (c listCursor) String() string {
	return listCursorVersion + "." + strconv.Itoa(c.slot) + "." + strconv.FormatUint(c.cursor, 10) + "." +
		strconv.FormatUint(c.next, 10) + "." + c.after
}

func parseListCursor(s string) (listCursor, error) {
	var c listCursor
	if s == "" {
		return c, nil
	}
	parts := strings.Split(s, ".")
	if len(parts) != 5 || parts[0] != listCursorVersion {
		return c, ErrMalformedCursor
	}
	slot, err1 := strconv.Atoi(parts[1])
	cursor, err2 := strconv.ParseUint(parts[2], 10, 64)
	next, err3 := strconv.ParseUint(parts[3], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || slot < 0 || slot > 16383 {
		return c, ErrMalformedCursor
	}
	if parts[4] != "" {
		if _, err := parseSessionID(parts[4]); err != nil {
			return c, ErrMalformedCursor
		}
	}
	return listCursor{slot: slot, cursor: cursor, next: next, after: parts[4]}, nil
}

// List returns up to limit live sessions of every user, in no particular
// order, from where cursor says the walk stands ("" for the start), and the
// cursor of the rest of the walk ("" when it is done). A page may hold fewer
// sessions than limit (even none) while next is not empty. A session that
// exists for the whole walk is returned at least once; one created or ended
// during it may or may not be. A cursor List did not return gives
// ErrMalformedCursor.
func (s *Store) List(ctx context.Context, limit int, cursor string) (sessions []*Session, next string, err error) {
	pos, err := parseListCursor(cursor)
	if err != nil {
		return nil, "", err
	}
	if err := s.ensureCutoff(ctx); err != nil {
		return nil, "", err
	}
	nodes, err := s.masters(ctx)
	if err != nil {
		return nil, "", err
	}
	// The master the walk is on: the one whose lowest slot the cursor names,
	// or (the Cluster changed since) the next one after it.
	i := slices.IndexFunc(nodes, func(n master) bool { return n.lowest >= pos.slot })
	if i < 0 {
		return nil, "", nil
	}
	if nodes[i].lowest != pos.slot {
		pos = listCursor{slot: nodes[i].lowest}
	}
	match := globEscape(s.prefix) + ":v1:{*}:s:*"
	for range maxScansPerPage {
		node := nodes[i]
		keys, after, err := node.c.Scan(ctx, pos.cursor, match, scanCount).Result()
		if err != nil {
			return nil, "", wrapErr(ctx, "list", err)
		}
		if pos.after != "" && scanEnd(pos.next) < scanEnd(after) {
			after = pos.next // this read ends further than the one the previous page listed from
		}
		batch, err := s.readBatch(ctx, node.c, keys, pos.after)
		if err != nil {
			return nil, "", err
		}
		for j, sess := range batch {
			sessions = append(sessions, sess)
			if len(sessions) == limit && j < len(batch)-1 {
				pos.next, pos.after = after, sess.ID // more of this batch for the next page
				return sessions, pos.String(), nil
			}
		}
		pos.cursor, pos.next, pos.after = after, 0, ""
		if after == 0 { // this master is done
			if i++; i == len(nodes) {
				return sessions, "", nil
			}
			pos.slot = nodes[i].lowest
		}
		if len(sessions) == limit {
			break
		}
	}
	return sessions, pos.String(), nil
}

// scanEnd is where, in SCAN's reverse-binary order of the keyspace, a SCAN
// that returned cursor ends: cursor 0 is the end of the keyspace.
func scanEnd(cursor uint64) uint64 {
	if cursor == 0 {
		return math.MaxUint64
	}
	return bits.Reverse64(cursor)
}

// readBatch returns the live sessions of one SCAN batch (session keys), in
// the order of their ids, after the id after ("" for all), reading them in
// one round trip.
func (s *Store) readBatch(ctx context.Context, c redis.Cmdable, keys []string, after string) ([]*Session, error) {
	type item struct {
		id  string
		key string
	}
	var items []item
	for _, k := range keys {
		if id, ok := s.sessionIDOfKey(k); ok && id > after {
			items = append(items, item{id, k})
		}
	}
	if len(items) == 0 {
		return nil, nil
	}
	slices.SortFunc(items, func(a, b item) int { return strings.Compare(a.id, b.id) })
	items = slices.CompactFunc(items, func(a, b item) bool { return a.id == b.id })
	cmds := make([]*redis.MapStringStringCmd, len(items))
	if _, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, it := range items {
			cmds[i] = p.HGetAll(ctx, it.key)
		}
		return nil
	}); err != nil {
		return nil, wrapErr(ctx, "list", err)
	}
	now := s.now()
	var out []*Session
	for i, cmd := range cmds {
		if len(cmd.Val()) == 0 {
			continue // ended since the SCAN
		}
		rec, err := decodeRecord(items[i].id, cmd.Val())
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", items[i].id, err)
		}
		if s.alive(rec, now) {
			out = append(out, &rec.Session)
		}
	}
	return out, nil
}

// sessionIDOfKey returns the session id of a session key of this store.
func (s *Store) sessionIDOfKey(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, s.prefix+":v1:{")
	if !ok || len(rest) != 2*tagLen+len("}:s:")+36 || rest[2*tagLen:2*tagLen+4] != "}:s:" {
		return "", false
	}
	id := rest[:2*tagLen] + "_" + rest[2*tagLen+4:]
	if _, err := parseSessionID(id); err != nil {
		return "", false
	}
	return id, true
}

// globEscape escapes the characters that Redis' glob patterns (SCAN MATCH)
// treat specially.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
