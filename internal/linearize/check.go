package linearize

import (
	"cmp"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// DefaultTimeout bounds a check when Config.Timeout is 0.
const DefaultTimeout = 20 * time.Second

// Config is what Check needs to know about the sessiond that answered.
type Config struct {
	// Cap is sessiond's per-user cap (store.Config.MaxSessionsPerUser); 0:
	// none.
	Cap int
	// Timeout bounds the check; 0 means DefaultTimeout. A check that does
	// not finish in time is Unknown, which Require fails.
	Timeout time.Duration
	// Events are marked on the visualisation's time line (a kill, a
	// restart, a failover).
	Events []Event
	// OutputDir is where Require writes the visualisation of a failed
	// check; "" means the test's artifact directory when the test binary
	// runs with -test.artifacts (go test -artifacts), otherwise a new
	// directory under os.TempDir that is kept (the failure names it).
	OutputDir string
}

// Event is a moment of a run, marked on the visualisation.
type Event struct {
	At   time.Time
	What string
}

// Result is the verdict on a history, with its figures.
type Result struct {
	Verdict porcupine.CheckResult
	Took    time.Duration
	Figures Figures

	cfg   Config
	model *model
	prep  *prepared

	explained bool
	info      porcupine.LinearizationInfo
}

// explain runs porcupine's verbose check once, for the visualisation and
// the excerpt of a failed check. It must search every partition to the end
// (a failing one exhaustively), so it gets half the check's timeout; what it
// found by then is shown.
func (r *Result) explain() porcupine.LinearizationInfo {
	if !r.explained {
		_, r.info = porcupine.CheckOperationsVerbose(r.model.porcupine(), r.prep.ops, r.cfg.Timeout/2)
		var notes []porcupine.Annotation
		for _, e := range r.cfg.Events {
			at := max(e.At.Sub(r.prep.base).Nanoseconds(), 0)
			notes = append(notes, porcupine.Annotation{Tag: "test", Start: at, Description: e.What, BackgroundColor: "#ffd9a0"})
		}
		r.info.AddAnnotations(notes)
		r.explained = true
	}
	return r.info
}

// Figures describe a history and its check.
type Figures struct {
	Calls         int // every call recorded
	Checked       int // operations given to the checker (calls, and a list's omissions)
	Omissions     int // of which sessions a list left out, each checked not live at some instant of it
	Dropped       int // failed reads and writes that changed nothing (aborted, refused), left out
	Indeterminate int // writes that may or may not have happened
	Unbounded     int // lost creates and rotates whose id window has no upper bound
	Unexpected    int // answers with a code sessiond must not give here
	// Outcomes counts each kind's answers by outcome.
	Outcomes [numKinds][numOutcomes]int
	// Evicted counts sessions found ended (not live) that no revoke,
	// rotate or revoke-user could have ended: the cap's evictions, at the
	// least.
	Evicted    int
	Users      int // partitions
	Largest    int // operations of the largest partition
	MaxConfigs int // the most configurations a state held
}

// Check checks h against the model of a sessiond with cfg.Cap. It returns an
// error only for a history that is not well formed.
func Check(h History, cfg Config) (*Result, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	p, err := prepare(h)
	if err != nil {
		return nil, err
	}
	r := &Result{cfg: cfg, model: &model{limit: cfg.Cap}, prep: p}
	r.Figures = figures(h, p)
	start := time.Now()
	r.Verdict = porcupine.CheckOperationsTimeout(r.model.porcupine(), p.ops, cfg.Timeout)
	r.Took = time.Since(start)
	r.Figures.MaxConfigs = int(r.model.maxConfigs.Load())
	return r, nil
}

// Visualize writes porcupine's HTML view of the history, with the longest
// linearizations it found, to path. The first call (of Visualize or
// Excerpt) checks the history again, within half the configured timeout,
// to compute them.
func (r *Result) Visualize(path string) error {
	return porcupine.VisualizePath(r.model.porcupine(), r.explain(), path)
}

// String is the figures on a few lines, for a test log.
func (r *Result) String() string {
	f := r.Figures
	var b strings.Builder
	fmt.Fprintf(&b, "%s in %v: %d calls, %d operations checked (%d of them sessions a list left out) over %d users (largest %d), %d calls left out (failed reads, aborted or refused writes); "+
		"%d writes indeterminate (%d lost creates/rotates with no upper bound on their id); %d sessions evicted by the cap at least; "+
		"at most %d configurations in a state; %d unexpected answers",
		r.Verdict, r.Took.Round(time.Millisecond), f.Calls, f.Checked, f.Omissions, f.Users, f.Largest, f.Dropped,
		f.Indeterminate, f.Unbounded, f.Evicted, f.MaxConfigs, f.Unexpected)
	for k := range numKinds {
		var parts []string
		for o := range numOutcomes {
			if n := f.Outcomes[k][o]; n > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", n, o))
			}
		}
		if len(parts) > 0 {
			fmt.Fprintf(&b, "\n  %-12s %s", k, strings.Join(parts, ", "))
		}
	}
	return b.String()
}

func figures(h History, p *prepared) Figures {
	f := Figures{Calls: len(h), Checked: len(p.ops), Dropped: p.dropped}
	for _, op := range p.ops {
		if op.Input.(*input).omitted {
			f.Omissions++
		}
	}
	for i := range h {
		op := &h[i]
		o := op.Outcome()
		f.Outcomes[op.Kind][o]++
		if (o == Indeterminate || o == Unexpected) && op.Kind.writes() {
			f.Indeterminate++
			if (op.Kind == Create || op.Kind == Rotate) && !op.answeredBySessiond() {
				f.Unbounded++
			}
		}
		if o == Unexpected {
			f.Unexpected++
		}
	}
	parts := partitionByUser(p.ops)
	f.Users = len(parts)
	for _, part := range parts {
		f.Largest = max(f.Largest, len(part))
	}
	f.Evicted = evicted(h)
	return f
}

// evicted counts the sessions some answer showed ended, when no call that
// could end them (a revoke or rotate naming them, a revoke-user of their
// user not keeping them, answered after they were asked for) had been sent
// by then.
func evicted(h History) int {
	owner := map[string]*Op{}       // session -> the create or rotate that answered it
	ended := map[string]time.Time{} // session -> first answer showing it ended
	named := map[string]time.Time{} // session -> first revoke or rotate naming it
	userWide := map[string][]*Op{}  // user -> revoke-user calls
	for i := range h {
		op := &h[i]
		if (op.Kind == Create || op.Kind == Rotate) && op.Outcome() == OK {
			owner[op.ID] = op
		}
		notLive := op.Outcome() == NotLive || (op.Kind == RevokeToken || op.Kind == RevokeID) && op.Outcome() == OK && !op.Revoked
		if notLive {
			if t, ok := ended[op.Target]; !ok || op.Return.Before(t) {
				ended[op.Target] = op.Return
			}
		}
		switch op.Kind {
		case RevokeToken, RevokeID, Rotate:
			if t, ok := named[op.Target]; !ok || op.Call.Before(t) {
				named[op.Target] = op.Call
			}
		case RevokeUser:
			userWide[op.User] = append(userWide[op.User], op)
		}
	}
	n := 0
	for id, at := range ended {
		if t, ok := named[id]; ok && t.Before(at) {
			continue
		}
		could, made := false, owner[id]
		if made == nil {
			continue
		}
		for _, op := range userWide[made.User] {
			// A revoke-user ends the session if it can take effect after
			// its creation and before the answer that showed it ended.
			if op.Call.Before(at) && op.Return.After(made.Call) && op.Except != id {
				could = true
				break
			}
		}
		if !could {
			n++
		}
	}
	return n
}

// Require checks h as Check does and fails tb unless the history is
// linearizable: on a violation or an unknown verdict it writes the
// visualisation (see Config.OutputDir) and fails with its path. Answers with
// codes that sessiond must not give (anything but OK, UNAUTHENTICATED,
// NOT_FOUND, UNAVAILABLE, DEADLINE_EXCEEDED, CANCELED and ABORTED, where
// each applies) fail the test too. It logs the figures.
func Require(tb testing.TB, h History, cfg Config) *Result {
	tb.Helper()
	r, err := Check(h, cfg)
	if err != nil {
		tb.Fatalf("linearize: %v", err)
	}
	tb.Logf("linearizability: %v", r)
	if r.Figures.Unexpected > 0 {
		var some []string
		for i := range h {
			if h[i].Outcome() == Unexpected && len(some) < 10 {
				some = append(some, fmt.Sprintf("%s of %s: %v %q", h[i].Kind, h[i].User, h[i].Code, h[i].Message))
			}
		}
		tb.Errorf("linearize: %d answers with a code sessiond must not give here, for example:\n  %s", r.Figures.Unexpected, strings.Join(some, "\n  "))
	}
	if r.Verdict == porcupine.Ok {
		return r
	}
	path, err := r.writeVisualization(tb)
	if err != nil {
		tb.Errorf("linearize: writing the visualisation: %v", err)
	}
	switch r.Verdict {
	case porcupine.Illegal:
		tb.Logf("linearize: where the first failing user's history gets stuck (times from the first call; sN is the user's session N, "+
			"oldest first; ?g a session no client knows, in gap g between them):\n  %s", strings.Join(r.Excerpt(20), "\n  "))
		tb.Errorf("linearize: VIOLATION: the history of %d calls is not linearizable under the model of sessiond (cap %d); "+
			"porcupine's visualisation (open it in a browser; each user is a partition, the longest linearizations are shown): %s",
			len(h), cfg.Cap, path)
	default:
		tb.Errorf("linearize: the check did not finish within %v (verdict %v): that is a failure, not a pass; "+
			"a history this test should check in time has grown too large or too uncertain (at most %d configurations in a state). "+
			"Visualisation of what was checked: %s", r.cfg.Timeout, r.Verdict, r.Figures.MaxConfigs, path)
	}
	return r
}

func (r *Result) writeVisualization(tb testing.TB) (string, error) {
	dir := r.cfg.OutputDir
	if dir == "" {
		if f := flag.Lookup("test.artifacts"); f != nil && f.Value.String() == "true" {
			dir = tb.ArtifactDir()
		} else {
			var err error
			if dir, err = os.MkdirTemp("", "sessiond-linearize-"); err != nil {
				return "", err
			}
		}
	}
	name := strings.Map(func(r rune) rune {
		if r == '/' || r == ' ' || r == os.PathSeparator {
			return '_'
		}
		return r
	}, tb.Name())
	path := filepath.Join(dir, name+".html")
	return path, r.Visualize(path)
}

// Excerpt describes, for a history that is not linearizable, where the
// first failing user's history gets stuck, as lines for a log: the last
// calls (at most n) of the longest linearization porcupine found, in its
// order, the states the model allows after it, and the calls that no order
// can place next (the pending ones, called before the earliest answer among
// them). The visualisation shows the same with every alternative.
func (r *Result) Excerpt(n int) []string {
	if r.Verdict != porcupine.Illegal {
		return nil
	}
	m := r.model.porcupine()
	info := r.explain()
	partials := info.PartialLinearizationsOperations()
	for i, part := range partitionByUser(r.prep.ops) {
		if i >= len(partials) {
			break // the verbose check timed out before it got here
		}
		var longest []porcupine.Operation
		for _, seq := range partials[i] {
			if len(seq) > len(longest) {
				longest = seq
			}
		}
		if len(longest) == len(part) {
			continue // linearizable
		}
		placed := map[*input]bool{} // a list's omissions share its *Op
		st := m.Init()
		for _, op := range longest {
			placed[op.Input.(*input)] = true
			_, st = m.Step(st, op.Input, op.Output)
		}
		lines := []string{fmt.Sprintf("the longest linearization places %d of the user's %d operations; its last ones, in its order:", len(longest), len(part))}
		for _, op := range longest[max(0, len(longest)-n):] {
			lines = append(lines, "  "+r.describe(op))
		}
		lines = append(lines, "after them the model allows: "+m.DescribeState(st))
		var left []porcupine.Operation
		first := int64(-1)
		for _, op := range part {
			if !placed[op.Input.(*input)] {
				left = append(left, op)
				if first < 0 || op.Return < first {
					first = op.Return
				}
			}
		}
		slices.SortStableFunc(left, func(a, b porcupine.Operation) int { return cmp.Compare(a.Call, b.Call) })
		lines = append(lines, "and none of these pending calls can come next:")
		for _, op := range left {
			if op.Call <= first && len(lines) < 2*n+8 {
				lines = append(lines, "  "+r.describe(op))
			}
		}
		return lines
	}
	return nil
}

// describe is one call for a log: its user, client, times from the first
// call, the model's view of it and what was recorded.
func (r *Result) describe(op porcupine.Operation) string {
	in := op.Input.(*input)
	ret := "open"
	if o := in.op.Outcome(); o != Indeterminate && o != Unexpected {
		ret = fmt.Sprintf("%.3fms", float64(op.Return)/1e6)
	}
	return fmt.Sprintf("%s c%d [%.3fms, %s] %s   (%s)", in.user, op.ClientId, float64(op.Call)/1e6, ret,
		describeOperation(op.Input, op.Output), describeMetadata(op.Metadata))
}
