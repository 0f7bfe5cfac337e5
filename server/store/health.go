package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Ping is the health check: it succeeds while this store can serve. On a
// single Redis or Sentinel, the master must answer, accept a write (SET XX of
// a key that never exists, sessiond:v1:{<tag>}:probe, so that nothing is
// written: a master out of memory, read-only or refusing writes after a
// failed save refuses it all the same, and is not ready),
// have at least Config.MinReplicaAcks replicas connected (INFO replication;
// fewer would fail every write), and the revoke-all cutoff must be read
// (which refreshes it): without it, nothing validates.
//
// On a Cluster, a master that does not answer is tolerated as long as one
// does: it makes its own users fail (Unavailable) until its replica takes
// over, and every sessiond replica alike, so readiness must not flap with
// whichever node a ping happened to reach. But a master that answers and
// refuses writes, or has too few replicas, makes this store not ready, as
// does the cutoff's master not answering.
func (s *Store) Ping(ctx context.Context) error {
	// The masters of slots that are changing hands are left out of this
	// check (go-redis is asked to reload its slot map), so that a failover
	// does not make readiness flap more than the calls do.
	masters, _, err := s.clusterMasters(ctx)
	if err != nil {
		return err
	}
	var (
		mu        sync.Mutex
		answered  int
		firstErr  error
		cutoffErr error
		wg        sync.WaitGroup
	)
	// The cutoff is read beside the checks, not after them: a master that
	// hangs holds its check to ctx's deadline, which must not leave the
	// cutoff's read no time.
	wg.Go(func() { cutoffErr = s.RefreshCutoff(ctx) })
	for _, m := range masters {
		wg.Go(func() {
			answers, err := s.checkMaster(ctx, m)
			mu.Lock()
			defer mu.Unlock()
			if answers {
				answered++
			}
			if err != nil && (firstErr == nil || answers) {
				firstErr = err // a master that answers and refuses is the error to tell
			}
		})
	}
	wg.Wait()
	switch {
	case answered == 0:
		if firstErr == nil {
			firstErr = errors.New("no master answered")
		}
		return wrapErr(ctx, "ping", firstErr)
	case firstErr != nil && !isTransport(firstErr):
		return firstErr
	}
	return cutoffErr
}

// isTransport reports whether err is a master not answering (tolerated on a
// Cluster), as opposed to one answering that it cannot serve.
func isTransport(err error) bool {
	var rerr redis.Error
	return !errors.As(err, &rerr) && !errors.Is(err, ErrWritesRefused) && !errors.Is(err, ErrNotReplicated)
}

// checkMaster pings m, writes its probe key and, with MinReplicaAcks,
// counts its replicas. answers reports whether it answered at all.
func (s *Store) checkMaster(ctx context.Context, m master) (answers bool, err error) {
	if err := m.c.Ping(ctx).Err(); err != nil {
		return false, err
	}
	// SET ... XX of a key that never exists: refused like any write (out of
	// memory, read-only, a failed save), and writes nothing.
	if err := m.c.SetXX(ctx, s.keyBase(m.probeTag)+"probe", 1, time.Minute).Err(); err != nil && !errors.Is(err, redis.Nil) {
		if r := refusedBy(err); r != nil {
			return true, fmt.Errorf("ping %s: %w", m.addr, r)
		}
		return true, wrapErr(ctx, "ping", err)
	}
	if s.minAcks == 0 {
		return true, nil
	}
	info, err := m.c.Info(ctx, "replication").Result()
	if err != nil {
		return true, wrapErr(ctx, "ping", err)
	}
	if n := onlineReplicas(info); n < s.minAcks {
		return true, fmt.Errorf("ping %s: %w: %w: %d replicas online, and every write waits for %d (--min-replica-acks)",
			m.addr, ErrUnavailable, ErrNotReplicated, n, s.minAcks)
	}
	return true, nil
}

// onlineReplicas counts the replicas INFO replication reports online
// ("slave0:ip=...,port=...,state=online,offset=...,lag=...").
func onlineReplicas(info string) int {
	n := 0
	for line := range strings.Lines(info) {
		if strings.HasPrefix(line, "slave") && strings.Contains(line, "state=online") {
			n++
		}
	}
	return n
}

// master is one master of the deployment: its client, and a hash tag whose
// keys it holds (the probe's).
type master struct {
	addr     string
	c        redis.Cmdable
	lowest   int // the lowest slot it owns (0 outside a Cluster)
	probeTag tag
}

// probeTag is the tag of the probe key outside a Cluster.
var probeTag = tag{'p', 'r', 'o', 'b'}

// masters returns the masters to walk, in the order of their lowest slot:
// one outside a Cluster. On a Cluster whose masters are changing (the slot
// map a master answers names a master go-redis does not route those slots
// to yet), it fails: retry.
func (s *Store) masters(ctx context.Context) ([]master, error) {
	out, changing, err := s.clusterMasters(ctx)
	if err == nil && changing > 0 {
		err = wrapErr(ctx, "cluster masters", errors.New("the Cluster's masters changed while they were listed; retry"))
	}
	return out, err
}

// clusterMasters returns the masters whose slots go-redis routes as a
// master says (in the order of their lowest slot; the one master outside a
// Cluster), and how many masters it left out because they do not.
//
// Nothing in it waits on one node: the slot map is asked of every master
// known from the last call at once, the first answer taken (a master that
// hangs, as behind a partition, would otherwise hold a call asked of it to
// ctx's deadline), and each master's client comes from go-redis' cached
// slot map (its ForEachMaster would reload the map first, asking the nodes
// one at a time).
func (s *Store) clusterMasters(ctx context.Context) (out []master, changing int, err error) {
	cc, ok := s.rdb.(*redis.ClusterClient)
	if !ok {
		return []master{{c: s.rdb, probeTag: probeTag}}, 0, nil
	}
	slots, err := s.clusterSlots(ctx, cc)
	if err != nil {
		return nil, 0, wrapErr(ctx, "cluster slots", err)
	}
	ranges := map[string][][2]int{} // master address → its slot ranges
	for _, r := range slots {
		if len(r.Nodes) > 0 {
			ranges[r.Nodes[0].Addr] = append(ranges[r.Nodes[0].Addr], [2]int{r.Start, r.End})
		}
	}
	for addr, rs := range ranges {
		m := master{addr: addr, lowest: 16384, probeTag: tagInSlots(rs)}
		for _, r := range rs {
			m.lowest = min(m.lowest, r[0])
		}
		c, err := cc.MasterForKey(ctx, s.keyBase(m.probeTag)+"probe")
		if err != nil || c.Options().Addr != addr {
			changing++
			continue
		}
		m.c = c
		out = append(out, m)
	}
	if changing > 0 {
		cc.ReloadState(ctx)
	}
	slices.SortFunc(out, func(a, b master) int { return a.lowest - b.lowest })
	s.known.Store(&out)
	return out, changing, nil
}

// clusterSlots asks the slot map (CLUSTER SLOTS) of every master the last
// clusterMasters found, at once, and returns the first answer; before
// there is a last one, or when none of them answers, of any node.
func (s *Store) clusterSlots(ctx context.Context, cc *redis.ClusterClient) ([]redis.ClusterSlot, error) {
	known := s.known.Load()
	if known == nil || len(*known) == 0 {
		return cc.ClusterSlots(ctx).Result()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // the others stop waiting (a hung one at ctx's deadline)
	type answer struct {
		slots []redis.ClusterSlot
		err   error
	}
	answers := make(chan answer, len(*known))
	for _, m := range *known {
		go func() {
			slots, err := m.c.ClusterSlots(ctx).Result()
			answers <- answer{slots, err}
		}()
	}
	for range *known {
		if a := <-answers; a.err == nil {
			return a.slots, nil
		}
	}
	// None answered: perhaps they are all gone (every master replaced at
	// once); go-redis knows the nodes it has seen since.
	return cc.ClusterSlots(ctx).Result()
}

// tagInSlots returns a tag whose keys hash to one of the slot ranges (the
// tag's text, in hex, is the Cluster hash tag).
func tagInSlots(ranges [][2]int) tag {
	var t tag
	for i := range uint32(1 << 24) {
		binary.BigEndian.PutUint32(t[:], i)
		slot := int(crc16([]byte(t.String())) % 16384)
		for _, r := range ranges {
			if r[0] <= slot && slot <= r[1] {
				return t
			}
		}
	}
	return t // cannot happen: 16384 slots among far fewer tags tried
}

// crc16 is Redis Cluster's key hash (CRC-16/XMODEM).
func crc16(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc ^= uint16(c) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
