package main

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sessiond/sessiond/internal/testutil"
)

// TestSoak runs a short soak of the real binary, Redis restarted during it,
// and checks that it reports what it promises: the capacity it measured,
// a row of figures every --report-every, the restarts, and the summary.
// Redis' restarts fail some calls; none of them may fail as INTERNAL (a
// sessiond bug, not an outage).
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server and the sessiond binary")
	}
	bin := testutil.BuildSessiond(t)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	var out bytes.Buffer
	err := run(ctx, config{
		duration:     3 * time.Second,
		restartEvery: time.Second,
		revokeEvery:  20 * time.Millisecond,
		probe:        500 * time.Millisecond,
		ttl:          time.Minute,
		report:       500 * time.Millisecond,
		load:         0.2,
		workers:      4,
		users:        50,
		sessiond:     bin,
	}, &out)
	text := out.String()
	if err != nil {
		t.Fatalf("run: %v\n%s", err, text)
	}
	t.Logf("\n%s", text)

	if m := regexp.MustCompile(`capacity (\d+) calls/s`).FindStringSubmatch(text); m == nil || m[1] == "0" {
		t.Errorf("no capacity measured (want a positive \"capacity N calls/s\")")
	}
	rows := regexp.MustCompile(`(?m)^ +[\d.]+m?s +\d+ +\d+ +[\d.]+ +\d+ +\d+ +[\d.]+ +\d+`).FindAllString(text, -1)
	if len(rows) < 2 {
		t.Errorf("%d rows of figures over a 3s soak reported every 500ms; want at least 2", len(rows))
	}
	m := regexp.MustCompile(`(\d+) Redis restarts; (\d+) calls in all`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no \"N Redis restarts; M calls in all\" line")
	}
	if n, _ := strconv.Atoi(m[1]); n < 1 {
		t.Errorf("%d Redis restarts over a 3s soak restarting every 1s; want at least 1", n)
	}
	if n, _ := strconv.Atoi(m[2]); n < 1 {
		t.Errorf("%d calls in all; want some", n)
	}
	for _, figure := range []string{"calls/s", "rss MiB", "goroutines", "fds", "redis used MiB", "keys"} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(figure) + ` +[\d.-]+ +[\d.-]+ +[\d.-]+ +[\d.-]+$`).MatchString(text) {
			t.Errorf("the summary has no row for %q", figure)
		}
	}
	if strings.Contains(text, "Internal:") {
		t.Errorf("calls failed as INTERNAL while Redis restarted; want only codes that say the store is unavailable")
	}
}

func TestSoakRefusesSettingsItCannotRunWith(t *testing.T) {
	good := config{duration: time.Second, revokeEvery: time.Second, probe: time.Second, ttl: time.Second, report: time.Second, load: 0.5, workers: 1, users: 1}
	if err := good.check(); err != nil {
		t.Fatalf("check(%+v) = %v; want nil", good, err)
	}
	for name, mutate := range map[string]func(*config){
		"--duration":      func(c *config) { c.duration = 0 },
		"--revoke-every":  func(c *config) { c.revokeEvery = 0 },
		"--probe":         func(c *config) { c.probe = -time.Second },
		"--report-every":  func(c *config) { c.report = 0 },
		"--restart-every": func(c *config) { c.restartEvery = -time.Second },
		"--load":          func(c *config) { c.load = 0 },
		"--workers":       func(c *config) { c.workers = 0 },
	} {
		c := good
		mutate(&c)
		err := c.check()
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("with %s out of range, check() = %v; want an error naming %s", name, err, name)
		}
	}
}
