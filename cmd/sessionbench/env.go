package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// benchEnv is what one setup measures: a Redis (single or Cluster), a
// sessiond, and the process serving the floors and the protected service.
// Every server runs in a process of its own, none in the load generator's.
type benchEnv struct {
	setup           string // "single" or "cluster"
	redisDesc       string // what the Redis is, for the report
	rdb             redis.UniversalClient
	sessiondAddr    string
	forwardAuthAddr string // "" for none: no forward-auth workload
	adminAddr       string // sessiond's admin listener ("" unknown: no WATCH retries)
	sessiondArgs    []string
	floors          floorAddrs
	cpu             cpuMeter // the processes started for this setup
	tmp             string
	cleanups        []func()
}

func (e *benchEnv) close() {
	for i := len(e.cleanups) - 1; i >= 0; i-- {
		e.cleanups[i]()
	}
	e.cleanups = nil
}

// child is a process the bench started. Every child dies with the bench
// (Pdeathsig, even if the bench is killed) and is killed by close; it has a
// process group of its own, so that a Ctrl-C reaches the bench alone, which
// then stops its children itself.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed once it has exited
	err  error         // its exit status, once done
	log  string        // the file its output goes to ("" inherited)
}

// startChild starts bin with args. stdout, if not nil, receives its
// standard output; logFile, if not "", receives its standard error (and
// output if stdout is nil), else they are the bench's.
func startChild(e *benchEnv, name string, stdout io.Writer, logFile string, bin string, args ...string) (*child, error) {
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if logFile != "" {
		f, err := os.Create(logFile)
		if err != nil {
			return nil, err
		}
		defer f.Close() // the child has its own descriptor
		cmd.Stdout, cmd.Stderr = f, f
	}
	if stdout != nil {
		cmd.Stdout = stdout
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{}), log: logFile}
	go func() { c.err = cmd.Wait(); close(c.done) }()
	e.cleanups = append(e.cleanups, c.kill)
	return c, nil
}

func (c *child) kill() {
	_ = c.cmd.Process.Kill()
	<-c.done
}

// exited returns an error saying that c has stopped, with the end of its
// log, or nil while it runs.
func (c *child) exited() error {
	select {
	case <-c.done:
	default:
		return nil
	}
	msg := fmt.Sprintf("%s exited: %v", c.name, c.err)
	if c.log != "" {
		if b, err := os.ReadFile(c.log); err == nil {
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			msg += "\n" + string(b)
		}
	}
	return errors.New(msg)
}

// freePorts returns n distinct free loopback ports. (Another process may
// take one before it is used; the child that then fails to listen says so.)
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// redisServerArgs are the settings of every redis-server the bench starts:
// loopback, no persistence.
func redisServerArgs(port int, dir string) []string {
	return []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir, "--logfile", ""}
}

func redisBinaries() (server, cli string, err error) {
	server, err = exec.LookPath("redis-server")
	if err != nil {
		return "", "", errors.New("redis-server not found: install it (apt-get install -y redis-server) or pass --redis-url")
	}
	cli = filepath.Join(filepath.Dir(server), "redis-cli")
	if _, err := os.Stat(cli); err != nil {
		if cli, err = exec.LookPath("redis-cli"); err != nil {
			return "", "", errors.New("redis-cli not found: install it (apt-get install -y redis-tools)")
		}
	}
	return server, cli, nil
}

// startRedis starts a redis-server on a free loopback port and returns its
// URL.
func startRedis(ctx context.Context, e *benchEnv) (string, error) {
	bin, _, err := redisBinaries()
	if err != nil {
		return "", err
	}
	ports, err := freePorts(1)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(e.tmp, "redis")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", err
	}
	rc, err := startChild(e, "redis-server", nil, filepath.Join(dir, "log"), bin, redisServerArgs(ports[0], dir)...)
	if err != nil {
		return "", err
	}
	e.cpu.add(roleRedis, rc.cmd.Process.Pid)
	addr := loopback(ports[0])
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	if err := waitFor(ctx, 10*time.Second, func() error { return c.Ping(ctx).Err() }); err != nil {
		return "", fmt.Errorf("redis-server on %s: %w", addr, err)
	}
	return "redis://" + addr, nil
}

// startCluster starts a Redis Cluster of 3 masters and no replicas on
// loopback ports whose bus ports (+10000) are free too, as
// internal/redistest does, and returns the nodes' addresses once every node
// reports cluster_state:ok with all 16384 slots served.
func startCluster(ctx context.Context, e *benchEnv) ([]string, error) {
	bin, cli, err := redisBinaries()
	if err != nil {
		return nil, err
	}
	var addrs []string
	for i := range 3 {
		port, err := clusterPort(addrs)
		if err != nil {
			return nil, err
		}
		dir := filepath.Join(e.tmp, fmt.Sprint("cluster-", i))
		if err := os.Mkdir(dir, 0o700); err != nil {
			return nil, err
		}
		args := append(redisServerArgs(port, dir), "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000")
		rc, err := startChild(e, "redis-server (cluster)", nil, filepath.Join(dir, "log"), bin, args...)
		if err != nil {
			return nil, err
		}
		e.cpu.add(roleRedis, rc.cmd.Process.Pid)
		addrs = append(addrs, loopback(port))
	}
	for _, a := range addrs {
		c := redis.NewClient(&redis.Options{Addr: a, MaxRetries: -1})
		err := waitFor(ctx, 10*time.Second, func() error { return c.Ping(ctx).Err() })
		_ = c.Close()
		if err != nil {
			return nil, fmt.Errorf("cluster node %s: %w", a, err)
		}
	}
	create := append(append([]string{"--cluster", "create"}, addrs...), "--cluster-replicas", "0", "--cluster-yes")
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(cctx, cli, create...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("redis-cli --cluster create: %v\n%s", err, out)
	}
	err = waitFor(ctx, 30*time.Second, func() error {
		for _, a := range addrs {
			c := redis.NewClient(&redis.Options{Addr: a, MaxRetries: -1})
			info, err := c.ClusterInfo(ctx).Result()
			_ = c.Close()
			if err != nil {
				return err
			}
			if f := infoFields(info); f["cluster_state"] != "ok" || f["cluster_slots_ok"] != "16384" || f["cluster_known_nodes"] != "3" {
				return fmt.Errorf("%s: cluster_state %s, slots ok %s, known nodes %s", a, f["cluster_state"], f["cluster_slots_ok"], f["cluster_known_nodes"])
			}
		}
		return nil
	})
	return addrs, err
}

// clusterPort picks a port p such that p and its cluster bus port p+10000 are
// free, and not one of taken.
func clusterPort(taken []string) (int, error) {
	for range 200 {
		p := 20000 + rand.IntN(25000)
		if !portFree(p) || !portFree(p+10000) {
			continue
		}
		clash := false
		for _, a := range taken {
			_, ps, _ := net.SplitHostPort(a)
			q, _ := strconv.Atoi(ps)
			clash = clash || p == q || p == q+10000 || p+10000 == q
		}
		if !clash {
			return p, nil
		}
	}
	return 0, errors.New("no free port pair (port and port+10000) for a cluster node")
}

func portFree(p int) bool {
	l, err := net.Listen("tcp", loopback(p))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

func infoFields(info string) map[string]string {
	m := map[string]string{}
	for line := range strings.SplitSeq(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			m[k] = v
		}
	}
	return m
}

// permanent is an error waitFor does not wait past.
type permanent struct{ error }

// waitFor calls try until it succeeds or returns a permanent error, for at
// most d.
func waitFor(ctx context.Context, d time.Duration, try func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := try()
		if err == nil {
			return nil
		}
		if p, ok := err.(permanent); ok {
			return p.error
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %w", d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// redisTarget says which Redis a client talks to: a single one (url) or a
// Cluster (clusterAddrs).
type redisTarget struct {
	url          string
	clusterAddrs []string
}

// args are the flags that name it, to sessiond and to serve-floors.
func (t redisTarget) args() []string {
	if len(t.clusterAddrs) > 0 {
		return []string{"--redis-cluster-addrs=" + strings.Join(t.clusterAddrs, ",")}
	}
	return []string{"--redis-url=" + t.url}
}

// newRedisClient returns a client with sessiond's own settings (its
// defaults: the context's deadline honoured, 2s to dial, 1s a command, 10
// connections per CPU unless poolSize, and a Cluster's slot map reloaded
// every second), for like-for-like floors.
func newRedisClient(t redisTarget, poolSize int) (redis.UniversalClient, error) {
	if len(t.clusterAddrs) > 0 {
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: t.clusterAddrs, ContextTimeoutEnabled: true, DialTimeout: 2 * time.Second,
			ReadTimeout: time.Second, WriteTimeout: time.Second, PoolSize: poolSize,
			ClusterStateReloadInterval: time.Second,
		}), nil
	}
	opts, err := redis.ParseURL(t.url)
	if err != nil {
		return nil, fmt.Errorf("--redis-url: %w", err)
	}
	opts.ContextTimeoutEnabled = true
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = 2*time.Second, time.Second, time.Second
	if poolSize > 0 {
		opts.PoolSize = poolSize
	}
	return redis.NewClient(opts), nil
}

// newEnv starts (or connects to) the Redis of setup, then sessiond (unless
// --target), then the floors' process, and writes the floors' keys.
func newEnv(ctx context.Context, cfg *benchConfig, setup, sessiondBin string) (_ *benchEnv, err error) {
	e := &benchEnv{setup: setup}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	if e.tmp, err = os.MkdirTemp("", "sessionbench-"+setup+"-"); err != nil {
		return nil, err
	}
	e.cleanups = append(e.cleanups, func() { _ = os.RemoveAll(e.tmp) })

	var rt redisTarget
	switch {
	case setup == "cluster" && len(cfg.clusterAddrs) > 0:
		rt.clusterAddrs = cfg.clusterAddrs
		e.redisDesc = "Redis Cluster at " + strings.Join(cfg.clusterAddrs, ",")
	case setup == "cluster":
		if rt.clusterAddrs, err = startCluster(ctx, e); err != nil {
			return nil, err
		}
		e.redisDesc = "Redis Cluster of 3 masters, no replicas, started by the bench"
	case cfg.redisURL != "":
		rt.url = cfg.redisURL
		e.redisDesc = "single Redis given by --redis-url"
	default:
		if rt.url, err = startRedis(ctx, e); err != nil {
			return nil, err
		}
		e.redisDesc = "single Redis started by the bench"
	}
	if v, err := redisVersion(ctx, rt); err == nil {
		e.redisDesc += " (redis " + v + ")"
	}
	if e.rdb, err = newRedisClient(rt, cfg.poolSize); err != nil {
		return nil, err
	}
	rdb := e.rdb
	e.cleanups = append(e.cleanups, func() { _ = rdb.Close() })

	e.sessiondAddr, e.forwardAuthAddr, e.adminAddr = cfg.target, cfg.faTarget, cfg.targetAdmin
	if e.sessiondAddr == "" {
		if err := startSessiond(ctx, e, sessiondBin, rt, cfg.poolSize); err != nil {
			return nil, err
		}
	}
	if err := startFloors(ctx, e, rt, cfg.poolSize); err != nil {
		return nil, err
	}
	for i := range floorKeys {
		if err := rdb.HSet(ctx, floorKey(i), floorRecord(i)).Err(); err != nil {
			return nil, fmt.Errorf("preparing the floor keys: %w", err)
		}
	}
	return e, nil
}

func redisVersion(ctx context.Context, rt redisTarget) (string, error) {
	addr := ""
	if len(rt.clusterAddrs) > 0 {
		addr = rt.clusterAddrs[0]
	} else {
		opts, err := redis.ParseURL(rt.url)
		if err != nil {
			return "", err
		}
		c := redis.NewClient(opts)
		defer c.Close()
		info, err := c.Info(ctx, "server").Result()
		return infoFields(info)["redis_version"], err
	}
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	info, err := c.Info(ctx, "server").Result()
	return infoFields(info)["redis_version"], err
}

// floorKeys is how many hashes the floors read (sessionbench:{fN}:s:N: a
// hash tag each, spread over a Cluster's slots).
const floorKeys = 1000

// buildSessiond builds cmd/sessiond into dir with the go command on PATH.
func buildSessiond(ctx context.Context, dir string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", errors.New("the go command is not on PATH to build cmd/sessiond: give --sessiond PATH")
	}
	out := filepath.Join(dir, "sessiond")
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", out, "github.com/sessiond/sessiond/cmd/sessiond")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/sessiond (run the bench from the module, or give --sessiond PATH): %v\n%s", err, b)
	}
	return out, nil
}

// sessiondFlags are the only flags the bench gives sessiond: its Redis, its
// listeners on free loopback ports, and rate limits raised so far that the
// one load generator is never refused (their bookkeeping still runs on
// every call). Everything else is cmd/sessiond's default: metrics on the
// admin listener, logging at info (to a file), ext_authz, reflection, the
// forward-auth listener.
func sessiondFlags(rt redisTarget, grpcAddr, adminAddr, faAddr string, poolSize int) []string {
	args := append(rt.args(),
		"--listen="+grpcAddr, "--admin-listen="+adminAddr, "--forward-auth-listen="+faAddr,
		"--rate-limit-create=1000000000", "--rate-limit-create-burst=1000000000",
		"--rate-limit-failed-validations=1000000000", "--rate-limit-failed-validations-burst=1000000000",
	)
	if poolSize > 0 {
		args = append(args, "--redis-pool-size="+strconv.Itoa(poolSize))
	}
	return args
}

// startSessiond runs the sessiond binary in its own process, its output
// (the operational and the audit log) in a file, and waits until its
// /readyz says it serves.
func startSessiond(ctx context.Context, e *benchEnv, bin string, rt redisTarget, poolSize int) error {
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	e.sessiondAddr, e.adminAddr, e.forwardAuthAddr = loopback(ports[0]), loopback(ports[1]), loopback(ports[2])
	e.sessiondArgs = sessiondFlags(rt, e.sessiondAddr, e.adminAddr, e.forwardAuthAddr, poolSize)
	c, err := startChild(e, "sessiond", nil, filepath.Join(e.tmp, "sessiond.log"), bin, e.sessiondArgs...)
	if err != nil {
		return err
	}
	e.cpu.add(roleSessiond, c.cmd.Process.Pid)
	hc := &http.Client{Timeout: time.Second}
	defer hc.CloseIdleConnections()
	return waitFor(ctx, 30*time.Second, func() error {
		if err := c.exited(); err != nil {
			return permanent{err}
		}
		resp, err := hc.Get("http://" + e.adminAddr + "/readyz")
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("sessiond /readyz: %s", resp.Status)
		}
		return nil
	})
}

// floorAddrs are the listeners of the serve-floors process, as it prints
// them (one JSON line on its standard output).
type floorAddrs struct {
	Floor       string `json:"floor"`
	Unprotected string `json:"unprotected"`
	Protected   string `json:"protected"`
	Cached      string `json:"protected_cache"`
}

// startFloors re-executes this binary as `sessionbench serve-floors` on
// the same Redis (and with sessiond's address, for the protected service),
// and reads the addresses it prints.
func startFloors(ctx context.Context, e *benchEnv, rt redisTarget, poolSize int) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	args := append([]string{serveFloorsCmd}, rt.args()...)
	args = append(args, "--sessiond="+e.sessiondAddr, "--redis-pool-size="+strconv.Itoa(poolSize))
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	c, err := startChild(e, "sessionbench serve-floors", w, "", self, args...)
	_ = w.Close()
	if err != nil {
		return err
	}
	e.cpu.add(roleFloors, c.cmd.Process.Pid)
	line := make(chan []byte, 1)
	go func() {
		b, _ := bufio.NewReader(r).ReadBytes('\n')
		line <- b
	}()
	select {
	case b := <-line:
		if err := json.Unmarshal(bytes.TrimSpace(b), &e.floors); err != nil || e.floors.Floor == "" {
			select { // it printed nothing: it may be exiting
			case <-c.done:
				return c.exited()
			case <-time.After(time.Second):
			}
			return fmt.Errorf("serve-floors printed %q, not its addresses", b)
		}
		return nil
	case <-time.After(30 * time.Second):
		return errors.New("serve-floors did not print its addresses within 30s")
	case <-ctx.Done():
		return ctx.Err()
	}
}
