// Command sessionbench measures sessiond under load and compares it with
// the floors that bound it, measured in the same run on the same Redis.
//
// Workloads: validate (ValidateSession of live tokens), forward-auth (GET
// /authz/auth-request with the same tokens over HTTP/1.1 keep-alive, a
// connection a caller: a gateway's check), create (CreateSession), mixed
// (90% validate, 5% create, 5% revoke), interceptor (a protected gRPC
// service: unprotected, protected, protected with the client cache).
// Floors: grpc-echo (gRPC alone), redis-hgetall (go-redis alone),
// grpc-hgetall (a bare gRPC handler doing one HGETALL a call),
// grpc-hgetall-batched (the same handler with its reads coalesced by
// internal/autopipe, as sessiond's are), grpc-create-tx (a bare gRPC handler
// running the raw create transaction).
//
// It measures what ships: with no --target it builds cmd/sessiond (or runs
// --sessiond PATH) in a process of its own, with its production defaults
// and only its Redis, its listeners and raised rate limits given; the
// floors and the protected service run in another process (this binary,
// re-executed as `sessionbench serve-floors`); the load generator's process
// serves nothing. It starts its own redis-server (unless --redis-url) and,
// with --cluster, runs everything again on a 3-master Redis Cluster it
// starts (unless --redis-cluster-addrs). With --target it drives a running
// sessiond instead (forward-auth only with --forward-auth-target, WATCH
// retries only with --target-admin). Within a setup, runs alternate between
// workloads, round after round, and the report takes each figure's median
// over the rounds.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/wrapperspb"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/server/forwardauth"
)

type benchConfig struct {
	target       string
	faTarget     string
	targetAdmin  string
	sessiondBin  string
	redisURL     string
	clusterAddrs []string
	single       bool
	cluster      bool
	concurrency  []int
	duration     time.Duration
	warmup       time.Duration
	rounds       int
	workloads    []string
	outDir       string
	poolSize     int
}

var allWorkloads = []string{"grpc-echo", "redis-hgetall", "grpc-hgetall", "grpc-hgetall-batched", "validate", "alternating", "forward-auth",
	"create", "grpc-create-tx", "mixed", "unprotected", "protected", "protected-cache", "cache-alternating"}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var err error
	if len(os.Args) > 1 && os.Args[1] == serveFloorsCmd {
		err = serveFloors(ctx, os.Args[2:], os.Stdout)
	} else {
		err = run(ctx, os.Args[1:])
	}
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "sessionbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	cfg := &benchConfig{}
	fs := flag.NewFlagSet("sessionbench", flag.ContinueOnError)
	fs.StringVar(&cfg.target, "target", "", "address of a running sessiond (empty: run the sessiond binary, see --sessiond)")
	fs.StringVar(&cfg.faTarget, "forward-auth-target", "", "with --target: host:port of its forward-auth listener (--forward-auth-listen); empty: no forward-auth workload")
	fs.StringVar(&cfg.targetAdmin, "target-admin", "", "with --target: host:port of its admin listener (--admin-listen), to count WATCH retries; empty: not counted")
	fs.StringVar(&cfg.sessiondBin, "sessiond", "", "the sessiond binary to run (empty: go build ./cmd/sessiond into a temporary directory)")
	fs.StringVar(&cfg.redisURL, "redis-url", "", "the single Redis for sessiond and the floors (empty: start a redis-server)")
	clusterAddrs := fs.String("redis-cluster-addrs", "", "with --cluster: the Redis Cluster's seed nodes, host:port,... (empty: start a Cluster of 3 masters)")
	fs.BoolVar(&cfg.single, "single", true, "run the workloads on a single Redis")
	fs.BoolVar(&cfg.cluster, "cluster", false, "run the workloads on a Redis Cluster of 3 masters too, after the single Redis (--single=false: the Cluster only)")
	conc := fs.String("concurrency", "1,16,64", "comma-separated numbers of concurrent callers")
	fs.DurationVar(&cfg.duration, "duration", 2*time.Second, "measured time of one run")
	fs.DurationVar(&cfg.warmup, "warmup", 500*time.Millisecond, "unmeasured time before each run")
	fs.IntVar(&cfg.rounds, "rounds", 5, "rounds over all workloads; figures are medians over rounds, ratios medians of the rounds' own ratios")
	wl := fs.String("workloads", strings.Join(allWorkloads, ","), "comma-separated workloads")
	fs.StringVar(&cfg.outDir, "out", "bench/results", "directory for the JSON report and the SVG chart")
	fs.IntVar(&cfg.poolSize, "redis-pool-size", 0, "go-redis pool size of sessiond and the floors (0: sessiond's default, 10 per CPU)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	cfg.clusterAddrs = splitList(*clusterAddrs)
	for _, c := range strings.Split(*conc, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 || n > 4096 {
			return fmt.Errorf("--concurrency: %q is not a number from 1 to 4096", c)
		}
		cfg.concurrency = append(cfg.concurrency, n)
	}
	for _, w := range strings.Split(*wl, ",") {
		if w = strings.TrimSpace(w); !slices.Contains(allWorkloads, w) {
			return fmt.Errorf("--workloads: unknown %q (known: %s)", w, strings.Join(allWorkloads, ", "))
		}
		if w == "forward-auth" && cfg.target != "" && cfg.faTarget == "" {
			fmt.Fprintln(os.Stderr, "sessionbench: skipping forward-auth: --target without --forward-auth-target")
			continue
		}
		cfg.workloads = append(cfg.workloads, w)
	}
	if (cfg.faTarget != "" || cfg.targetAdmin != "") && cfg.target == "" {
		return fmt.Errorf("--forward-auth-target and --target-admin are for a running sessiond: give its --target too")
	}
	if cfg.target != "" && cfg.sessiondBin != "" {
		return fmt.Errorf("--sessiond runs a sessiond, --target drives a running one: give one of them")
	}
	if len(cfg.clusterAddrs) > 0 && !cfg.cluster {
		return fmt.Errorf("--redis-cluster-addrs is the Cluster of --cluster: give --cluster too")
	}
	var setups []string
	if cfg.single {
		setups = append(setups, "single")
	}
	if cfg.cluster {
		setups = append(setups, "cluster")
	}
	if len(setups) == 0 {
		return fmt.Errorf("--single=false without --cluster: nothing to run")
	}
	if cfg.target != "" && len(setups) > 1 {
		return fmt.Errorf("--target is one sessiond on one Redis: give --single=false --cluster (with the --redis-cluster-addrs it uses) or no --cluster")
	}
	if len(cfg.workloads) == 0 {
		return fmt.Errorf("--workloads: none to run")
	}
	if cfg.rounds < 1 || cfg.duration <= 0 {
		return fmt.Errorf("--rounds and --duration must be positive")
	}

	bin := cfg.sessiondBin
	if cfg.target == "" && bin == "" {
		dir, err := os.MkdirTemp("", "sessionbench-build-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		fmt.Fprintln(os.Stderr, "sessionbench: building cmd/sessiond")
		if bin, err = buildSessiond(ctx, dir); err != nil {
			return err
		}
	}

	fmt.Printf("sessionbench: %d CPUs, %s, setups %s, workloads %s, concurrency %v, %d rounds of %v\n",
		runtime.NumCPU(), runtime.Version(), strings.Join(setups, ","), strings.Join(cfg.workloads, ","), cfg.concurrency, cfg.rounds, cfg.duration)
	rep := newReport(cfg)
	for _, setup := range setups {
		sr, err := runSetup(ctx, cfg, setup, bin)
		if err != nil {
			return fmt.Errorf("%s: %w", setup, err)
		}
		rep.Setups = append(rep.Setups, sr)
	}
	rep.print(os.Stdout)
	if err := os.MkdirAll(cfg.outDir, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	stamp := time.Now().UTC().Format("20060102T150405Z")
	for _, name := range []string{stamp + ".json", "latest.json"} {
		if err := os.WriteFile(filepath.Join(cfg.outDir, name), append(js, '\n'), 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(cfg.outDir, "chart.svg"), []byte(rep.svg()), 0o644); err != nil {
		return err
	}
	fmt.Printf("\nwrote %s/{%s.json,latest.json,chart.svg}\n", cfg.outDir, stamp)
	return nil
}

// runSetup starts the processes of one setup (single Redis or Cluster),
// runs every workload at every concurrency, round after round, and stops
// them.
func runSetup(ctx context.Context, cfg *benchConfig, setup, sessiondBin string) (*setupReport, error) {
	fmt.Fprintf(os.Stderr, "sessionbench: %s: starting Redis, sessiond and the floors\n", setup)
	env, err := newEnv(ctx, cfg, setup, sessiondBin)
	if err != nil {
		return nil, err
	}
	defer env.close()
	b, err := newBench(ctx, env, cfg)
	if err != nil {
		return nil, err
	}
	defer b.close()
	sr := &setupReport{Redis: setup, RedisDescription: env.redisDesc, SessiondArgs: env.sessiondArgs}
	if cfg.target != "" {
		sr.Sessiond = "--target " + cfg.target
	} else {
		sr.Sessiond = sessiondBin + " (own process, production defaults)"
	}
	fmt.Fprintf(os.Stderr, "sessionbench: %s: %s\n", setup, env.redisDesc)
	for r := range cfg.rounds {
		sr.LoadAvg = append(sr.LoadAvg, loadAvg())
		fmt.Fprintf(os.Stderr, "  round %d, load average %s\n", r+1, sr.LoadAvg[len(sr.LoadAvg)-1])
		for _, c := range cfg.concurrency {
			for _, w := range cfg.workloads {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				if w == "alternating" && c != 1 {
					continue // a lone caller's measure: n callers would validate n/2 at a time
				}
				res := b.measure(ctx, w, c, cfg)
				fmt.Fprintf(os.Stderr, "  %s round %d %-20s c=%-4d %9.0f ops/s  p99 %6.2fms  errors %d\n", setup, r+1, w, c, res.Total.OpsPerSec, res.Total.P99ms, res.Total.Errors)
				sr.Runs = append(sr.Runs, res)
			}
		}
	}
	sr.LoadAvg = append(sr.LoadAvg, loadAvg())
	sr.summarize(cfg)
	return sr, nil
}

// measure runs one workload at one concurrency. From sessiond's /metrics
// it counts, over the run (warm-up included, as are the calls they are
// divided by): for create, the WATCH retries; for validate, how its reads
// went to Redis (direct or in pipelines); for protected-cache, the
// validations that reached sessiond (the client cache's misses), after
// warming the cache.
func (b *bench) measure(ctx context.Context, w string, c int, cfg *benchConfig) runResult {
	var series []string
	switch {
	case b.env.adminAddr == "":
	case w == "create":
		series = []string{createRetriesSeries}
	case w == "validate":
		series = []string{directReadsSeries, pipelinedReadsSeries, readPipelinesSeries}
	case w == "protected-cache":
		series = []string{validationsSeries}
	}
	if w == "protected-cache" || w == "cache-alternating" {
		// The cache holds a session from its first validation for its TTL
		// (a minute): longer than a run, shorter than a round. Without this,
		// each run would begin with a cold cache, and at one caller the
		// warm-up does not reach every token.
		if err := b.warmCache(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "sessionbench: warming the client cache:", err)
		}
	}
	var before map[string]float64
	var creates0, cached0 int64
	if series != nil {
		var err error
		if before, err = b.scrape(ctx, series); err != nil {
			fmt.Fprintln(os.Stderr, "sessionbench: reading sessiond's /metrics:", err)
			series = nil
		}
		creates0, cached0 = b.creates.Load(), b.cachedCalls.Load()
	}
	res := runLoad(ctx, w, c, cfg.warmup, cfg.duration, b.op(w), os.Stderr, &b.env.cpu)
	if series != nil {
		after, err := b.scrape(ctx, series)
		if err != nil {
			fmt.Fprintln(os.Stderr, "sessionbench: reading sessiond's /metrics:", err)
			return res
		}
		delta := func(series string) int64 { return int64(after[series] - before[series]) }
		switch w {
		case "create":
			res.WatchRetries = &watchCount{Retries: delta(createRetriesSeries), Creates: b.creates.Load() - creates0}
		case "validate":
			res.Reads = &readCount{Direct: delta(directReadsSeries), Pipelined: delta(pipelinedReadsSeries), Pipelines: delta(readPipelinesSeries)}
		case "protected-cache":
			if _, ok := after[validationsSeries]; !ok {
				fmt.Fprintln(os.Stderr, "sessionbench: sessiond's /metrics has no", validationsSeries)
				return res
			}
			res.CacheMisses = &missCount{Validations: delta(validationsSeries), Calls: b.cachedCalls.Load() - cached0}
		}
	}
	return res
}

// warmCache makes one protected call with every token through the service
// with the client cache, 8 at a time, so that the cache holds every session
// the protected-cache workload presents.
func (b *bench) warmCache(ctx context.Context) error {
	var (
		call = b.app(b.cachedApp, "protected-cache") // caller 0's call i presents token i
		next atomic.Int64
		wg   sync.WaitGroup
		errs = make([]error, 8)
	)
	for w := range errs {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < len(b.tokens); i = int(next.Add(1)) - 1 {
				if _, err := call(ctx, 0, i); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// The series of sessiond's /metrics that the bench reads around a run.
const (
	createRetriesSeries  = `sessiond_store_watch_retries_total{operation="create"}`
	directReadsSeries    = `sessiond_store_validation_reads_total{path="direct"}`
	pipelinedReadsSeries = `sessiond_store_validation_reads_total{path="pipelined"}`
	readPipelinesSeries  = `sessiond_store_validation_read_pipelines_total`
	// The ValidateSession calls sessiond began: during protected-cache, the
	// client cache's misses.
	validationsSeries = `grpc_server_started_total{grpc_method="ValidateSession",grpc_service="sessionauth.v1.SessionAuthority",grpc_type="unary"}`
)

// scrape reads the values of series from sessiond's /metrics (0 for one it
// does not have yet).
func (b *bench) scrape(ctx context.Context, series []string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+b.env.adminAddr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	out := make(map[string]float64, len(series))
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || !slices.Contains(series, name) {
			continue
		}
		if out[name], err = strconv.ParseFloat(strings.Fields(value)[0], 64); err != nil {
			return nil, fmt.Errorf("/metrics: %s: %w", name, err)
		}
	}
	return out, sc.Err()
}

// loadAvg is the machine's load average (1, 5 and 15 minutes), or "?".
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "?"
}

// bench holds the clients and the data the workloads use.
type bench struct {
	env      *benchEnv
	conns    []*grpc.ClientConn
	sessiond sessionauthv1.SessionAuthorityClient
	floor    *grpc.ClientConn
	tokens   []string

	plainApp, protectedApp, cachedApp *grpc.ClientConn

	faURL    string       // the forward-auth endpoint; "" without a listener
	faClient *http.Client // HTTP/1.1 keep-alive, a connection a caller

	creates     atomic.Int64 // CreateSession calls that succeeded, warm-ups included
	cachedCalls atomic.Int64 // protected-cache calls, warm-ups included
	// createSeq numbers the creates of the whole bench: each goes to the
	// next of createUsers users in turn, so a user reaches the per-user cap
	// (and the create path that evicts) only after createUsers × the cap
	// creates, far more than a bench makes.
	createSeq atomic.Int64
	mu        sync.Mutex
	created   map[int][]string // per worker: tokens it created, for mixed's revokes
}

func (b *bench) close() {
	if b.faClient != nil {
		b.faClient.CloseIdleConnections()
	}
	for _, c := range b.conns {
		_ = c.Close()
	}
}

func (b *bench) dial(addr string) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err == nil {
		b.conns = append(b.conns, conn)
	}
	return conn, err
}

func newBench(ctx context.Context, env *benchEnv, cfg *benchConfig) (*bench, error) {
	b := &bench{env: env, created: map[int][]string{}}
	if env.forwardAuthAddr != "" {
		b.faURL = "http://" + env.forwardAuthAddr + forwardauth.AuthRequestPath
		b.faClient = &http.Client{Transport: &http.Transport{
			// A keep-alive connection for every caller, as a gateway's pool:
			// no idle one closed while there are callers (MaxIdleConns 0: no
			// overall limit), and HTTP/1.1 only (no TLSNextProto).
			MaxIdleConns:        0,
			MaxIdleConnsPerHost: slices.Max(cfg.concurrency),
			IdleConnTimeout:     time.Minute,
			DisableCompression:  true,
			ForceAttemptHTTP2:   false,
			TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{},
		}}
	}
	sd, err := b.dial(env.sessiondAddr)
	if err != nil {
		return nil, err
	}
	b.sessiond = sessionauthv1.NewSessionAuthorityClient(sd)
	for _, d := range []struct {
		conn **grpc.ClientConn
		addr string
	}{{&b.floor, env.floors.Floor}, {&b.plainApp, env.floors.Unprotected}, {&b.protectedApp, env.floors.Protected}, {&b.cachedApp, env.floors.Cached}} {
		if *d.conn, err = b.dial(d.addr); err != nil {
			return nil, err
		}
	}
	// Live sessions for the validate workloads, over many users.
	for i := range 1000 {
		resp, err := b.sessiond.CreateSession(ctx, &sessionauthv1.CreateSessionRequest{
			UserId: fmt.Sprint("bench-user-", i%100), Email: "user@example.com",
			UserAgent: "Mozilla/5.0 (X11; Linux x86_64) Firefox/140", Ttl: nil,
		})
		if err != nil {
			return nil, fmt.Errorf("creating the sessions to validate: %w", err)
		}
		b.tokens = append(b.tokens, resp.GetToken())
	}
	return b, nil
}

func (b *bench) token(w, i int) string { return b.tokens[(w*7919+i)%len(b.tokens)] }

func (b *bench) validate(ctx context.Context, w, i int) (string, error) {
	_, err := b.sessiond.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: b.token(w, i)})
	return "ValidateSession", err
}

// createUsers are the users the create workload spreads its sessions over.
const createUsers = 100_000

func (b *bench) create(ctx context.Context, w, i int) (string, error) {
	resp, err := b.sessiond.CreateSession(ctx, &sessionauthv1.CreateSessionRequest{
		UserId: fmt.Sprint("bench-new-", b.createSeq.Add(1)%createUsers), UserAgent: "Mozilla/5.0 (X11; Linux x86_64) Firefox/140",
	})
	if err == nil {
		b.creates.Add(1)
		b.mu.Lock()
		if q := b.created[w]; len(q) < 1000 {
			b.created[w] = append(q, resp.GetToken())
		}
		b.mu.Unlock()
	}
	return "CreateSession", err
}

func (b *bench) revoke(ctx context.Context, w, i int) (string, error) {
	b.mu.Lock()
	q := b.created[w]
	var tok string
	if len(q) > 0 {
		tok, b.created[w] = q[len(q)-1], q[:len(q)-1]
	}
	b.mu.Unlock()
	if tok == "" {
		return b.create(ctx, w, i)
	}
	_, err := b.sessiond.RevokeSession(ctx, &sessionauthv1.RevokeSessionRequest{Target: &sessionauthv1.RevokeSessionRequest_Token{Token: tok}})
	return "RevokeSession", err
}

// forwardAuth asks as nginx's auth_request does: GET /authz/auth-request
// with the token as a bearer credential; anything but 200 is an error.
func (b *bench) forwardAuth(ctx context.Context, w, i int) (string, error) {
	const rpc = "GET " + forwardauth.AuthRequestPath
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.faURL, nil)
	if err != nil {
		return rpc, err
	}
	req.Header.Set("Authorization", "Bearer "+b.token(w, i))
	resp, err := b.faClient.Do(req)
	if err != nil {
		return rpc, err
	}
	// Read to the end, so that the connection is kept for the next call.
	_, err = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("forward auth: %s", resp.Status)
	}
	return rpc, err
}

func invoke(ctx context.Context, conn *grpc.ClientConn, method, value string) error {
	return conn.Invoke(ctx, method, wrapperspb.String(value), new(wrapperspb.StringValue))
}

// app calls the protected service's Echo on conn with a token, reported as
// the RPC rpc (the workload's name: the three services share the method).
func (b *bench) app(conn *grpc.ClientConn, rpc string) op {
	return func(ctx context.Context, w, i int) (string, error) {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+b.token(w, i))
		return rpc, invoke(ctx, conn, "/"+appService+"/Echo", "hi")
	}
}

// alternate makes each caller's calls take turns: a's, then b's (each
// their own call i/2), so that both see the same moments of a noisy
// machine. The two must report different RPC names.
func alternate(a, b op) op {
	return func(ctx context.Context, w, i int) (string, error) {
		if i%2 == 1 {
			return b(ctx, w, i/2)
		}
		return a(ctx, w, i/2)
	}
}

// op returns the call a workload makes.
func (b *bench) op(workload string) op {
	switch workload {
	case "validate":
		return b.validate
	case "alternating":
		return alternate(b.op("grpc-hgetall"), b.validate)
	case "cache-alternating":
		return alternate(b.app(b.plainApp, "unprotected"), b.app(b.cachedApp, "protected-cache"))
	case "forward-auth":
		return b.forwardAuth
	case "create":
		return b.create
	case "mixed":
		return func(ctx context.Context, w, i int) (string, error) {
			switch r := rand.IntN(100); {
			case r < 90:
				return b.validate(ctx, w, i)
			case r < 95:
				return b.create(ctx, w, i)
			default:
				return b.revoke(ctx, w, i)
			}
		}
	case "redis-hgetall":
		return func(ctx context.Context, w, i int) (string, error) {
			return "HGETALL", b.env.rdb.HGetAll(ctx, floorKey((w*7919+i)%floorKeys)).Err()
		}
	case "grpc-hgetall":
		return func(ctx context.Context, w, i int) (string, error) {
			return "Floor/Get", invoke(ctx, b.floor, "/"+floorService+"/Get", floorKey((w*7919+i)%floorKeys))
		}
	case "grpc-hgetall-batched":
		return func(ctx context.Context, w, i int) (string, error) {
			return "Floor/GetBatched", invoke(ctx, b.floor, "/"+floorService+"/GetBatched", floorKey((w*7919+i)%floorKeys))
		}
	case "grpc-echo":
		return func(ctx context.Context, w, i int) (string, error) {
			return "Floor/Echo", invoke(ctx, b.floor, "/"+floorService+"/Echo", "hi")
		}
	case "grpc-create-tx":
		return func(ctx context.Context, w, i int) (string, error) {
			return "Floor/Create", invoke(ctx, b.floor, "/"+floorService+"/Create", strconv.Itoa(floorKeys+(w*100_003+i)%1_000_000))
		}
	case "unprotected":
		return b.app(b.plainApp, "unprotected")
	case "protected":
		return b.app(b.protectedApp, "protected")
	case "protected-cache":
		call := b.app(b.cachedApp, "protected-cache")
		return func(ctx context.Context, w, i int) (string, error) {
			b.cachedCalls.Add(1)
			return call(ctx, w, i)
		}
	}
	panic("unknown workload " + workload) // the flag check lists them all
}
