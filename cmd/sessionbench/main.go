// Command sessionbench measures sessiond under load and compares it with
// the floors that bound it, measured in the same run on the same Redis.
//
// Workloads: validate (ValidateSession of live tokens), forward-auth (GET
// /authz/auth-request with the same tokens over HTTP/1.1 keep-alive, a
// connection a caller: a gateway's check), create (CreateSession), mixed
// (90% validate, 5% create, 5% revoke), interceptor (a protected gRPC
// service: unprotected, protected, protected with the client cache).
// Floors: redis-hgetall (go-redis alone), grpc-hgetall (a bare gRPC handler
// doing one HGETALL), grpc-echo (gRPC alone), grpc-create-tx (a bare gRPC
// handler running the raw create transaction).
//
// With no --target it starts its own redis-server (unless --redis-url) and
// an in-process sessiond (with its forward-auth listener). With --target,
// forward-auth runs only if --forward-auth-target names that sessiond's
// forward-auth listener. Runs alternate between workloads, round after
// round, and the report takes each figure's median over the rounds.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
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
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sessiond/sessiond/client"
	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/server/forwardauth"
)

type benchConfig struct {
	target      string
	faTarget    string
	redisURL    string
	concurrency []int
	duration    time.Duration
	warmup      time.Duration
	rounds      int
	workloads   []string
	outDir      string
	poolSize    int
}

var allWorkloads = []string{"grpc-echo", "redis-hgetall", "grpc-hgetall", "validate", "forward-auth", "create", "grpc-create-tx", "mixed", "unprotected", "protected", "protected-cache"}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "sessionbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	cfg := &benchConfig{}
	fs := flag.NewFlagSet("sessionbench", flag.ContinueOnError)
	fs.StringVar(&cfg.target, "target", "", "address of a running sessiond (empty: start one in-process)")
	fs.StringVar(&cfg.faTarget, "forward-auth-target", "", "with --target: host:port of its forward-auth listener (--forward-auth-listen); empty: no forward-auth workload")
	fs.StringVar(&cfg.redisURL, "redis-url", "", "Redis for the floors (and for the in-process sessiond); empty: start a redis-server")
	conc := fs.String("concurrency", "16,64", "comma-separated numbers of concurrent callers")
	fs.DurationVar(&cfg.duration, "duration", 3*time.Second, "measured time of one run")
	fs.DurationVar(&cfg.warmup, "warmup", 500*time.Millisecond, "unmeasured time before each run")
	fs.IntVar(&cfg.rounds, "rounds", 3, "rounds over all workloads; figures are medians over rounds")
	wl := fs.String("workloads", strings.Join(allWorkloads, ","), "comma-separated workloads")
	fs.StringVar(&cfg.outDir, "out", "bench/results", "directory for the JSON report and the SVG chart")
	fs.IntVar(&cfg.poolSize, "redis-pool-size", 0, "go-redis pool size (0: 10 per CPU, as sessiond)")
	if err := fs.Parse(args); err != nil {
		return err
	}
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
	if cfg.faTarget != "" && cfg.target == "" {
		return fmt.Errorf("--forward-auth-target is for a running sessiond: give its --target too")
	}
	if len(cfg.workloads) == 0 {
		return fmt.Errorf("--workloads: none to run")
	}
	if cfg.rounds < 1 || cfg.duration <= 0 {
		return fmt.Errorf("--rounds and --duration must be positive")
	}

	env, err := newEnv(cfg)
	if err != nil {
		return err
	}
	defer env.close()
	b, err := newBench(ctx, env, cfg)
	if err != nil {
		return err
	}
	defer b.close()

	fmt.Printf("sessionbench: %d CPUs, %s, workloads %s, concurrency %v, %d rounds of %v\n",
		runtime.NumCPU(), runtime.Version(), strings.Join(cfg.workloads, ","), cfg.concurrency, cfg.rounds, cfg.duration)
	var results []runResult
	for r := range cfg.rounds {
		for _, c := range cfg.concurrency {
			for _, w := range cfg.workloads {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				res := runLoad(ctx, w, c, cfg.warmup, cfg.duration, b.op(w), os.Stderr)
				fmt.Fprintf(os.Stderr, "  round %d %-16s c=%-4d %9.0f ops/s  p99 %6.2fms  errors %d\n", r+1, w, c, res.Total.OpsPerSec, res.Total.P99ms, res.Total.Errors)
				results = append(results, res)
			}
		}
	}
	rep := newReport(cfg, results)
	rep.print(os.Stdout)
	if err := os.MkdirAll(cfg.outDir, 0o755); err != nil {
		return err
	}
	js, _ := json.MarshalIndent(rep, "", "  ")
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

// bench holds the clients and the data the workloads use.
type bench struct {
	env      *benchEnv
	conns    []*grpc.ClientConn
	sessiond sessionauthv1.SessionAuthorityClient
	floor    *grpc.ClientConn
	tokens   []string

	plainApp, protectedApp, cachedApp *grpc.ClientConn
	cached                            *client.Client

	faURL    string       // the forward-auth endpoint; "" without a listener
	faClient *http.Client // HTTP/1.1 keep-alive, a connection a caller

	mu      sync.Mutex
	created map[int][]string // per worker: tokens it created, for mixed's revokes
}

func (b *bench) close() {
	if b.faClient != nil {
		b.faClient.CloseIdleConnections()
	}
	if b.cached != nil {
		_ = b.cached.Close()
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
	if b.floor, err = b.dial(env.floorAddr); err != nil {
		return nil, err
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
	// The protected service: unprotected, protected, protected with the cache.
	plain := client.New(sd)
	b.cached = client.New(sd, client.WithCache(100_000, time.Minute))
	for _, target := range []struct {
		conn **grpc.ClientConn
		opts []grpc.ServerOption
	}{
		{&b.plainApp, nil},
		{&b.protectedApp, []grpc.ServerOption{grpc.UnaryInterceptor(client.UnaryServerInterceptor(plain))}},
		{&b.cachedApp, []grpc.ServerOption{grpc.UnaryInterceptor(client.UnaryServerInterceptor(b.cached))}},
	} {
		gs := grpc.NewServer(target.opts...)
		registerApp(gs)
		addr, err := serve(env, gs)
		if err != nil {
			return nil, err
		}
		if *target.conn, err = b.dial(addr); err != nil {
			return nil, err
		}
	}
	for deadline := time.Now().Add(10 * time.Second); !b.cached.CacheStats().Live; {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the client cache's revocation stream did not come up")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return b, nil
}

func (b *bench) token(w, i int) string { return b.tokens[(w*7919+i)%len(b.tokens)] }

func (b *bench) validate(ctx context.Context, w, i int) (string, error) {
	_, err := b.sessiond.ValidateSession(ctx, &sessionauthv1.ValidateSessionRequest{Token: b.token(w, i)})
	return "ValidateSession", err
}

func (b *bench) create(ctx context.Context, w, i int) (string, error) {
	resp, err := b.sessiond.CreateSession(ctx, &sessionauthv1.CreateSessionRequest{
		UserId: fmt.Sprint("bench-new-", (w*100_003+i)%10_000), UserAgent: "Mozilla/5.0 (X11; Linux x86_64) Firefox/140",
	})
	if err == nil {
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

func (b *bench) app(conn *grpc.ClientConn) op {
	return func(ctx context.Context, w, i int) (string, error) {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+b.token(w, i))
		return "App/Echo", invoke(ctx, conn, "/"+appService+"/Echo", "hi")
	}
}

// op returns the call a workload makes.
func (b *bench) op(workload string) op {
	switch workload {
	case "validate":
		return b.validate
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
	case "grpc-echo":
		return func(ctx context.Context, w, i int) (string, error) {
			return "Floor/Echo", invoke(ctx, b.floor, "/"+floorService+"/Echo", "hi")
		}
	case "grpc-create-tx":
		return func(ctx context.Context, w, i int) (string, error) {
			return "Floor/Create", invoke(ctx, b.floor, "/"+floorService+"/Create", strconv.Itoa(floorKeys+(w*100_003+i)%1_000_000))
		}
	case "unprotected":
		return b.app(b.plainApp)
	case "protected":
		return b.app(b.protectedApp)
	case "protected-cache":
		return b.app(b.cachedApp)
	}
	panic("unknown workload " + workload) // the flag check lists them all
}
