// Command sessionsoak runs sessiond (the real binary, in its own process)
// under a steady mixed load for a long while, with a revocation every
// --revoke-every and a restart of its Redis every --restart-every, and
// prints, once a minute (--report-every), what would show a leak: sessiond's
// resident memory, goroutines and open file descriptors (from its /metrics),
// and Redis' used_memory and key count. Flat figures mean no leak.
//
//	make soak                      # 10 minutes
//	go run ./cmd/sessionsoak --duration 2m --restart-every 30s
//
// The load runs at --load (default 0.5) of the capacity it measures first
// (--probe of unthrottled load): 90% validations of live sessions, 5%
// creates (sessions of --ttl, so that the keyspace reaches a steady size),
// 5% revocations by token. Redis keeps an append-only file (everysec), so a
// restart keeps the sessions.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
)

type config struct {
	duration, restartEvery, revokeEvery, probe, ttl, report time.Duration
	load                                                    float64
	workers, users                                          int
	sessiond                                                string
}

func main() {
	var c config
	flag.DurationVar(&c.duration, "duration", 10*time.Minute, "how long the soak runs")
	flag.DurationVar(&c.restartEvery, "restart-every", 2*time.Minute, "restart Redis this often (0: never)")
	flag.DurationVar(&c.revokeEvery, "revoke-every", 100*time.Millisecond, "revoke a session by id this often, on top of the load")
	flag.DurationVar(&c.probe, "probe", 10*time.Second, "how long the unthrottled load that measures capacity runs")
	flag.DurationVar(&c.ttl, "ttl", time.Minute, "the lifetime of the sessions the load creates")
	flag.DurationVar(&c.report, "report-every", time.Minute, "print a row of figures this often")
	flag.Float64Var(&c.load, "load", 0.5, "the fraction of the measured capacity to run at")
	flag.IntVar(&c.workers, "workers", 16, "concurrent callers")
	flag.IntVar(&c.users, "users", 2000, "distinct users")
	flag.StringVar(&c.sessiond, "sessiond", "", "the sessiond binary (default: built from ./cmd/sessiond)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "sessionsoak:", err)
		os.Exit(1)
	}
}

// proc is a child process, killed with this one.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func start(name string, args ...string) (*proc, error) {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// check refuses settings the soak cannot run with.
func (c config) check() error {
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"--duration", c.duration}, {"--revoke-every", c.revokeEvery}, {"--probe", c.probe}, {"--ttl", c.ttl}, {"--report-every", c.report}} {
		if d.v <= 0 {
			return fmt.Errorf("%s must be positive, not %v", d.flag, d.v)
		}
	}
	switch {
	case c.restartEvery < 0:
		return fmt.Errorf("--restart-every must be 0 (never) or positive, not %v", c.restartEvery)
	case c.load <= 0:
		return fmt.Errorf("--load must be positive, not %v", c.load)
	case c.workers < 1 || c.users < 1:
		return fmt.Errorf("--workers and --users must be at least 1")
	}
	return nil
}

func run(ctx context.Context, c config, out io.Writer) error {
	if err := c.check(); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "sessionsoak-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := c.sessiond
	if bin == "" {
		bin = filepath.Join(dir, "sessiond")
		if b, err := exec.Command("go", "build", "-o", bin, "./cmd/sessiond").CombinedOutput(); err != nil {
			return fmt.Errorf("building sessiond: %v\n%s", err, b)
		}
	}
	redisAddr, err := freeAddr()
	if err != nil {
		return err
	}
	_, port, _ := net.SplitHostPort(redisAddr)
	startRedis := func() (*proc, error) {
		p, err := start("redis-server", "--port", port, "--bind", "127.0.0.1", "--dir", dir, "--save", "",
			"--appendonly", "yes", "--appendfsync", "everysec", "--logfile", filepath.Join(dir, "redis.log"))
		if err != nil {
			return nil, fmt.Errorf("redis-server: %w (apt-get install -y redis-server)", err)
		}
		return p, nil
	}
	redisProc, err := startRedis()
	if err != nil {
		return err
	}
	defer func() { redisProc.stop() }()
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr, MaxRetries: -1})
	defer rdb.Close()
	waitUp := func() error {
		for deadline := time.Now().Add(10 * time.Second); rdb.Ping(ctx).Err() != nil; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) || ctx.Err() != nil {
				return errors.New("redis-server did not answer")
			}
		}
		return nil
	}
	if err := waitUp(); err != nil {
		return err
	}
	grpcAddr, err := freeAddr()
	if err != nil {
		return err
	}
	adminAddr, err := freeAddr()
	if err != nil {
		return err
	}
	sd, err := start(bin, "--redis-url=redis://"+redisAddr, "--listen="+grpcAddr, "--admin-listen="+adminAddr,
		"--forward-auth-listen=", "--rate-limit-create=0", "--rate-limit-failed-validations=0", "--log-level=warn")
	if err != nil {
		return err
	}
	defer sd.stop()
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	client := sessionauthv1.NewSessionAuthorityClient(conn)
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := scrape(adminAddr); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return errors.New("sessiond did not serve within 15s")
		}
	}

	l := &loadGen{c: client, cfg: c}
	// Capacity first, unthrottled; then the soak at a fraction of it.
	fmt.Fprintf(out, "measuring capacity for %v with %d callers...\n", c.probe, c.workers)
	probeCtx, cancel := context.WithTimeout(ctx, c.probe)
	l.run(probeCtx, 0)
	cancel()
	capacity := float64(l.ops.Swap(0)) / c.probe.Seconds()
	l.errs = sync.Map{}
	rate := capacity * c.load
	fmt.Fprintf(out, "capacity %.0f calls/s; soaking at %.0f calls/s for %v, a revocation every %v, Redis restarted every %v\n\n",
		capacity, rate, c.duration, c.revokeEvery, c.restartEvery)
	fmt.Fprintf(out, "%8s %9s %9s %10s %10s %6s %14s %8s %s\n", "elapsed", "calls/s", "failed", "rss MiB", "goroutines", "fds", "redis used MiB", "keys", "failures by code")

	soakCtx, cancel := context.WithTimeout(ctx, c.duration)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { l.run(soakCtx, rate) })
	wg.Go(func() { l.revokeEvery(soakCtx) })
	restarts := 0
	if c.restartEvery > 0 {
		wg.Go(func() {
			t := time.NewTicker(c.restartEvery)
			defer t.Stop()
			for {
				select {
				case <-soakCtx.Done():
					return
				case <-t.C:
				}
				redisProc.stop()
				p, err := startRedis()
				if err != nil {
					fmt.Fprintln(os.Stderr, "sessionsoak: restarting Redis:", err)
					return
				}
				redisProc = p
				restarts++
			}
		})
	}
	var rows [][]float64
	tick := time.NewTicker(c.report)
	defer tick.Stop()
	started := time.Now()
	soakStart := started
	for {
		select {
		case <-soakCtx.Done():
			wg.Wait()
			fmt.Fprintf(out, "\n%d Redis restarts; %d calls in all\n", restarts, l.total.Load())
			summarize(out, rows)
			return nil
		case <-tick.C:
		}
		ops, failed := l.ops.Swap(0), l.failed.Swap(0)
		elapsed := time.Since(soakStart).Round(min(c.report, time.Second))
		m, err := scrape(adminAddr)
		if err != nil {
			fmt.Fprintf(out, "%8v /metrics: %v\n", elapsed, err)
			continue
		}
		used, keys := -1.0, -1.0
		if info, err := rdb.Info(ctx, "memory").Result(); err == nil {
			used = infoNumber(info, "used_memory")
		}
		if n, err := rdb.DBSize(ctx).Result(); err == nil {
			keys = float64(n)
		}
		row := []float64{float64(ops) / time.Since(started).Seconds(), float64(failed), m["process_resident_memory_bytes"] / (1 << 20),
			m["go_goroutines"], m["process_open_fds"], used / (1 << 20), keys}
		started = time.Now()
		rows = append(rows, row)
		fmt.Fprintf(out, "%8v %9.0f %9.0f %10.1f %10.0f %6.0f %14.1f %8.0f %s\n", elapsed, row[0], row[1], row[2], row[3], row[4], row[5], row[6], l.errors())
	}
}

// summarize prints each figure's first and last row and its range.
func summarize(out io.Writer, rows [][]float64) {
	if len(rows) == 0 {
		return
	}
	names := []string{"calls/s", "failed", "rss MiB", "goroutines", "fds", "redis used MiB", "keys"}
	fmt.Fprintf(out, "\n%-15s %10s %10s %10s %10s\n", "", "first", "last", "min", "max")
	for i, n := range names {
		col := make([]float64, len(rows))
		for j, r := range rows {
			col[j] = r[i]
		}
		fmt.Fprintf(out, "%-15s %10.1f %10.1f %10.1f %10.1f\n", n, col[0], col[len(col)-1], slices.Min(col), slices.Max(col))
	}
}

// scrape reads the unlabelled samples of a sessiond's /metrics.
func scrape(adminAddr string) (map[string]float64, error) {
	resp, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && !strings.HasPrefix(f[0], "#") && !strings.Contains(f[0], "{") {
			v, err := strconv.ParseFloat(f[1], 64)
			if err == nil {
				m[f[0]] = v
			}
		}
	}
	return m, sc.Err()
}

func infoNumber(info, field string) float64 {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return n
		}
	}
	return -1
}

// loadGen is the mixed load: 90% validations, 5% creates, 5% revocations.
type loadGen struct {
	c   sessionauthv1.SessionAuthorityClient
	cfg config

	mu     sync.Mutex
	tokens []string // live (as far as the load knows)
	ids    []string

	ops, failed, total atomic.Int64
	errs               sync.Map // codes.Code → *atomic.Int64
}

func (l *loadGen) errors() string {
	var parts []string
	l.errs.Range(func(k, v any) bool {
		if n := v.(*atomic.Int64).Swap(0); n > 0 {
			parts = append(parts, fmt.Sprintf("%v:%d", k, n))
		}
		return true
	})
	slices.Sort(parts)
	return strings.Join(parts, " ")
}

func (l *loadGen) count(err error) {
	l.ops.Add(1)
	l.total.Add(1)
	if err == nil || status.Code(err) == codes.Unauthenticated {
		return // a revoked or expired session: the load's own doing
	}
	l.failed.Add(1)
	v, _ := l.errs.LoadOrStore(status.Code(err), new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

func (l *loadGen) pick(r *rand.Rand) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.tokens) == 0 {
		return "", false
	}
	return l.tokens[r.IntN(len(l.tokens))], true
}

// run calls sessiond until ctx ends, at rate calls/s in all (0: as fast as
// it can).
func (l *loadGen) run(ctx context.Context, rate float64) {
	var wg sync.WaitGroup
	for w := range l.cfg.workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			var every time.Duration
			if rate > 0 {
				every = time.Duration(float64(time.Second) * float64(l.cfg.workers) / rate)
			}
			next := time.Now()
			for ctx.Err() == nil {
				if every > 0 {
					next = next.Add(every)
					if d := time.Until(next); d > 0 {
						select {
						case <-ctx.Done():
							return
						case <-time.After(d):
						}
					}
				}
				l.once(ctx, r)
			}
		})
	}
	wg.Wait()
}

func (l *loadGen) once(ctx context.Context, r *rand.Rand) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	tok, ok := l.pick(r)
	switch n := r.IntN(100); {
	case !ok || n < 5:
		resp, err := l.c.CreateSession(cctx, &sessionauthv1.CreateSessionRequest{
			UserId: fmt.Sprint("soak-", r.IntN(l.cfg.users)), Ttl: durationpb.New(l.cfg.ttl)})
		if ctx.Err() != nil {
			return
		}
		l.count(err)
		if err == nil {
			l.mu.Lock()
			l.tokens = append(l.tokens, resp.GetToken())
			l.ids = append(l.ids, resp.GetSession().GetSessionId())
			if len(l.tokens) > 50_000 { // keep the newest
				l.tokens, l.ids = l.tokens[10_000:], l.ids[10_000:]
			}
			l.mu.Unlock()
		}
	case n < 10:
		_, err := l.c.RevokeSession(cctx, &sessionauthv1.RevokeSessionRequest{Target: &sessionauthv1.RevokeSessionRequest_Token{Token: tok}})
		if ctx.Err() == nil {
			l.count(err)
		}
	default:
		_, err := l.c.ValidateSession(cctx, &sessionauthv1.ValidateSessionRequest{Token: tok})
		if ctx.Err() == nil {
			l.count(err)
		}
	}
}

// revokeEvery revokes a session by id every cfg.revokeEvery until ctx ends.
func (l *loadGen) revokeEvery(ctx context.Context) {
	t := time.NewTicker(l.cfg.revokeEvery)
	defer t.Stop()
	r := rand.New(rand.NewPCG(7, 7))
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l.mu.Lock()
		id := ""
		if len(l.ids) > 0 {
			id = l.ids[r.IntN(len(l.ids))]
		}
		l.mu.Unlock()
		if id == "" {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := l.c.RevokeSession(cctx, &sessionauthv1.RevokeSessionRequest{Target: &sessionauthv1.RevokeSessionRequest_SessionId{SessionId: id}})
		cancel()
		if ctx.Err() == nil {
			l.count(err)
		}
	}
}
