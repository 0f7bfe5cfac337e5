package daemon_test

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/internal/daemon"
	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/internal/sessiondtest"
)

// rapidReset is one attacking connection's outcome.
type rapidReset struct {
	resets int
	goAway *http2.GoAwayFrame // what the server sent, if it did
}

// attackOnce opens a raw HTTP/2 connection to addr and, until ctx ends or
// the server sends GOAWAY or closes the connection, opens a stream (the
// HEADERS of a ValidateSession call) and resets it at once, as fast as it
// can: HTTP/2 rapid reset (CVE-2023-44487).
func attackOnce(ctx context.Context, addr string) (rapidReset, error) {
	var out rapidReset
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return out, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	bw := bufio.NewWriterSize(conn, 64<<10)
	var wmu sync.Mutex
	fr := http2.NewFramer(bw, conn)
	if _, err := bw.WriteString(http2.ClientPreface); err != nil {
		return out, err
	}
	if err := fr.WriteSettings(); err != nil {
		return out, err
	}
	var goAway atomic.Pointer[http2.GoAwayFrame]
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			switch f := f.(type) {
			case *http2.GoAwayFrame:
				g := *f
				g.FrameHeader = http2.FrameHeader{}
				g = http2.GoAwayFrame{LastStreamID: f.LastStreamID, ErrCode: f.ErrCode}
				goAway.Store(&g)
			case *http2.SettingsFrame:
				if !f.IsAck() {
					wmu.Lock()
					_ = fr.WriteSettingsAck()
					_ = bw.Flush()
					wmu.Unlock()
				}
			}
		}
	}()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for id := uint32(1); ctx.Err() == nil && goAway.Load() == nil; id += 2 {
		hb.Reset()
		for _, h := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":authority", addr},
			{":path", sessionauthv1.SessionAuthority_ValidateSession_FullMethodName}, {"content-type", "application/grpc"}, {"te", "trailers"}} {
			_ = enc.WriteField(hpack.HeaderField{Name: h[0], Value: h[1]})
		}
		wmu.Lock()
		err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndHeaders: true})
		if err == nil {
			err = fr.WriteRSTStream(id, http2.ErrCodeCancel)
		}
		if err == nil && id%64 == 1 {
			err = bw.Flush()
		}
		wmu.Unlock()
		if err != nil {
			break
		}
		out.resets++
	}
	_ = conn.Close()
	<-readDone
	out.goAway = goAway.Load()
	return out, nil
}

// attack runs attackers connections until ctx ends, each reconnecting when
// the server closes it, and returns every connection's outcome.
func attack(ctx context.Context, addr string, attackers int) []rapidReset {
	var (
		mu  sync.Mutex
		all []rapidReset
		wg  sync.WaitGroup
	)
	for range attackers {
		wg.Go(func() {
			for ctx.Err() == nil {
				r, err := attackOnce(ctx, addr)
				if err != nil {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				mu.Lock()
				all = append(all, r)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return all
}

// probe validates token for d and returns the calls' latencies (failed
// calls are errors in errs).
func probe(t *testing.T, c sessionauthv1.SessionAuthorityClient, token string, d time.Duration) (lat []time.Duration, errs int) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && len(lat) < 100_000 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		start := time.Now()
		_, err := c.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: token})
		cancel()
		if err != nil {
			errs++
			continue
		}
		lat = append(lat, time.Since(start))
	}
	return lat, errs
}

func p50(lat []time.Duration) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	return s[len(s)/2]
}

// TestRapidResetIsCutOff: a client resetting streams as fast as it can on
// two connections gets GOAWAY (ENHANCE_YOUR_CALM, "too_many_resets") and is
// disconnected, each time it reconnects, while another client's
// validations all succeed. The probe's latency before and during the
// attack, with the limit and (the same attack, in the same run) with it
// effectively off, is logged: docs/security.md quotes it.
func TestRapidResetIsCutOff(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	run := func(limit daemon.ResetLimit) (base, under []time.Duration, conns []rapidReset) {
		cfg := sessiondtest.Config(srv.Addr())
		cfg.Security.Limits.StreamResets = limit
		d := sessiondtest.Run(t, cfg)
		c := sessionauthv1.NewSessionAuthorityClient(d.Conn)
		resp, err := c.CreateSession(context.Background(), &sessionauthv1.CreateSessionRequest{UserId: "probe"})
		if err != nil {
			t.Fatal(err)
		}
		base, errs := probe(t, c, resp.GetToken(), 500*time.Millisecond)
		if errs > 0 {
			t.Fatalf("%d probe calls failed before the attack", errs)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		defer cancel()
		done := make(chan []rapidReset, 1)
		go func() { done <- attack(ctx, d.Addr, 2) }()
		time.Sleep(200 * time.Millisecond) // the attack under way
		under, errs = probe(t, c, resp.GetToken(), time.Second)
		conns = <-done
		if errs > 0 {
			t.Errorf("%d probe calls failed during the attack", errs)
		}
		return base, under, conns
	}

	limit := daemon.DefaultLimits.StreamResets
	base, under, conns := run(limit)
	resets, goAways := 0, 0
	for _, c := range conns {
		resets += c.resets
		if c.goAway != nil {
			goAways++
			if c.goAway.ErrCode != http2.ErrCodeEnhanceYourCalm {
				t.Errorf("GOAWAY with %v, want ENHANCE_YOUR_CALM", c.goAway.ErrCode)
			}
		}
	}
	// Two attackers that sessiond never cut would use two connections.
	if goAways == 0 || len(conns) <= 2 {
		t.Fatalf("%d resets on %d connections, %d GOAWAYs read: the attack was not cut", resets, len(conns), goAways)
	}
	offBase, offUnder, offConns := run(daemon.ResetLimit{PerSecond: 1e9, Burst: 1e9})
	offResets := 0
	for _, c := range offConns {
		offResets += c.resets
	}
	t.Logf("probe ValidateSession p50: %v before, %v (%d calls/s) under attack with the limit (%d resets sent on %d connections, %d GOAWAYs read); "+
		"without it %v before, %v (%d calls/s) under attack (%d resets on %d connections)",
		p50(base), p50(under), len(under), resets, len(conns), goAways,
		p50(offBase), p50(offUnder), len(offUnder), offResets, len(offConns))
}
