package linearize

import (
	"fmt"
	"hash/fnv"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/anishathalye/porcupine"
)

// gapRange is where a phantom session (one no client knows) sits in its
// user's id order: in one of the gaps lo..hi, gap g lying after the g oldest
// known ids. See the package documentation.
type gapRange struct{ lo, hi int }

func (g gapRange) String() string {
	if g.lo == g.hi {
		return "?" + strconv.Itoa(g.lo)
	}
	return "?" + strconv.Itoa(g.lo) + "-" + strconv.Itoa(g.hi)
}

// liveSession is a known live session: its position in the user's
// universe and its attribute "v".
type liveSession struct {
	pos   int
	value string
}

// config is one possible state of a user's sessions: the known live ones
// (sorted by position) and the phantoms (sorted). It is immutable.
type config struct {
	live     []liveSession
	phantoms []gapRange
	key      string
}

func newConfig(live []liveSession, phantoms []gapRange) config {
	slices.SortFunc(live, func(a, b liveSession) int { return a.pos - b.pos })
	slices.SortFunc(phantoms, func(a, b gapRange) int {
		if a.lo != b.lo {
			return a.lo - b.lo
		}
		return a.hi - b.hi
	})
	var b strings.Builder
	for _, s := range live {
		b.WriteString("s")
		b.WriteString(strconv.Itoa(s.pos))
		b.WriteString("=")
		b.WriteString(s.value)
		b.WriteString(" ")
	}
	for _, p := range phantoms {
		b.WriteString(p.String())
		b.WriteString(" ")
	}
	return config{live: live, phantoms: phantoms, key: strings.TrimSpace(b.String())}
}

func (c config) find(pos int) (liveSession, bool) {
	i, ok := slices.BinarySearchFunc(c.live, pos, func(s liveSession, p int) int { return s.pos - p })
	if !ok {
		return liveSession{}, false
	}
	return c.live[i], true
}

// without returns c without the known session pos.
func (c config) without(pos int) ([]liveSession, []gapRange) {
	live := make([]liveSession, 0, len(c.live))
	for _, s := range c.live {
		if s.pos != pos {
			live = append(live, s)
		}
	}
	return live, slices.Clone(c.phantoms)
}

func (c config) size() int { return len(c.live) + len(c.phantoms) }

// state is what porcupine sees: the set of configurations the history so far
// allows, sorted by key.
type state struct {
	configs []config
	key     string
}

func newState(m map[string]config) *state {
	s := &state{configs: make([]config, 0, len(m))}
	for _, c := range m {
		s.configs = append(s.configs, c)
	}
	slices.SortFunc(s.configs, func(a, b config) int { return strings.Compare(a.key, b.key) })
	keys := make([]string, len(s.configs))
	for i, c := range s.configs {
		keys[i] = "{" + c.key + "}"
	}
	s.key = strings.Join(keys, " | ")
	return s
}

// model is the sequential specification of one user's sessions under a
// per-user cap of limit (0: none).
type model struct {
	limit int
	// maxConfigs is the most configurations one state held.
	maxConfigs atomic.Int64
}

func (m *model) porcupine() porcupine.Model {
	return porcupine.Model{
		Partition: partitionByUser,
		Init: func() any {
			return newState(map[string]config{"": newConfig(nil, nil)})
		},
		Step: m.step,
		Equal: func(a, b any) bool {
			return a.(*state).key == b.(*state).key
		},
		Hash: func(s any) uint64 {
			h := fnv.New64a()
			h.Write([]byte(s.(*state).key))
			return h.Sum64()
		},
		DescribeOperation: describeOperation,
		DescribeState: func(s any) string {
			const most = 2000
			if k := s.(*state).key; len(k) <= most {
				return k
			} else {
				return k[:most] + fmt.Sprintf(" ... (%d configurations)", len(s.(*state).configs))
			}
		},
		DescribeOperationMetadata: describeMetadata,
	}
}

func partitionByUser(history []porcupine.Operation) [][]porcupine.Operation {
	index := map[string]int{}
	var parts [][]porcupine.Operation
	for _, op := range history {
		u := op.Input.(*input).user
		i, ok := index[u]
		if !ok {
			i = len(parts)
			index[u] = i
			parts = append(parts, nil)
		}
		parts[i] = append(parts[i], op)
	}
	return parts
}

func (m *model) step(st, in, out any) (bool, any) {
	s, i, o := st.(*state), in.(*input), out.(*output)
	if o.bad != "" {
		return false, nil
	}
	next := map[string]config{}
	for _, c := range s.configs {
		for _, n := range m.stepConfig(c, i, o) {
			next[n.key] = n
		}
	}
	if len(next) == 0 {
		return false, nil
	}
	for {
		seen := m.maxConfigs.Load()
		if int64(len(next)) <= seen || m.maxConfigs.CompareAndSwap(seen, int64(len(next))) {
			break
		}
	}
	return true, newState(next)
}

// stepConfig returns the configurations c can move to by the operation (in,
// out): none if c cannot explain the answer.
func (m *model) stepConfig(c config, in *input, out *output) []config {
	maybe := out.outcome == Indeterminate || out.outcome == Unexpected
	target, live := c.find(in.target)
	switch in.kind {
	case Create:
		switch {
		case out.outcome == OK:
			if out.value != in.value {
				return nil
			}
			return m.evictAndAdd(c, func(l []liveSession, p []gapRange) ([]liveSession, []gapRange) {
				return append(l, liveSession{pos: out.pos, value: in.value}), p
			})
		case maybe:
			return append(m.evictAndAdd(c, func(l []liveSession, p []gapRange) ([]liveSession, []gapRange) {
				return l, append(p, in.phantom)
			}), c)
		}
	case Validate, Extend:
		switch {
		case out.outcome == OK:
			if live && out.pos == in.target && out.value == target.value {
				return []config{c}
			}
		case out.outcome == NotLive:
			if !live {
				return []config{c}
			}
		case maybe:
			return []config{c}
		}
	case RevokeToken, RevokeID:
		switch {
		case out.outcome == OK && out.revoked:
			if live {
				return []config{newConfig(c.without(in.target))}
			}
		case out.outcome == OK:
			if !live {
				return []config{c}
			}
		case maybe:
			if live {
				return []config{c, newConfig(c.without(in.target))}
			}
			return []config{c}
		}
	case RevokeUser:
		kept, keep := c.find(in.except)
		n := c.size()
		var after config
		if keep {
			n--
			after = newConfig([]liveSession{kept}, nil)
		} else {
			after = newConfig(nil, nil)
		}
		switch {
		case out.outcome == OK:
			if out.count == n {
				return []config{after}
			}
		case maybe:
			return []config{c, after}
		}
	case Rotate:
		switch {
		case out.outcome == OK:
			if live && out.value == target.value {
				l, p := c.without(in.target)
				return []config{newConfig(append(l, liveSession{pos: out.pos, value: target.value}), p)}
			}
		case out.outcome == NotLive:
			if !live {
				return []config{c}
			}
		case maybe:
			if live {
				l, p := c.without(in.target)
				return []config{c, newConfig(l, append(p, in.phantom))}
			}
			return []config{c}
		}
	case UpdateToken, UpdateID:
		switch {
		case out.outcome == OK:
			if live && out.pos == in.target && out.value == in.value {
				l, p := c.without(in.target)
				return []config{newConfig(append(l, liveSession{pos: in.target, value: in.value}), p)}
			}
		case out.outcome == NotLive:
			if !live {
				return []config{c}
			}
		case maybe:
			if live {
				l, p := c.without(in.target)
				return []config{c, newConfig(append(l, liveSession{pos: in.target, value: in.value}), p)}
			}
			return []config{c}
		}
	case List:
		if out.outcome == OK && c.lists(out.listed, out.unknown) {
			return []config{c}
		}
	}
	return nil
}

// lists reports whether c explains a list answer: every known session
// listed is live, and the unknown ids listed are distinct phantoms whose
// ranges hold their gaps.
func (c config) lists(known, unknownGaps []int) bool {
	for _, pos := range known {
		if _, ok := c.find(pos); !ok {
			return false
		}
	}
	if len(unknownGaps) == 0 {
		return true
	}
	// Points to intervals: take each gap, smallest first, by the unused
	// phantom that holds it and ends first (an optimal matching).
	gaps := slices.Sorted(slices.Values(unknownGaps))
	used := make([]bool, len(c.phantoms))
	for _, g := range gaps {
		best := -1
		for i, p := range c.phantoms {
			if !used[i] && p.lo <= g && g <= p.hi && (best < 0 || p.hi < c.phantoms[best].hi) {
				best = i
			}
		}
		if best < 0 {
			return false
		}
		used[best] = true
	}
	return true
}

// evictAndAdd applies the per-user cap before a session is added (by add):
// when the user has limit sessions or more, the oldest are revoked so that
// it ends with exactly limit. Where the order of the oldest is not known (a
// phantom whose range straddles another session), every choice consistent
// with some order is a configuration of its own.
func (m *model) evictAndAdd(c config, add func([]liveSession, []gapRange) ([]liveSession, []gapRange)) []config {
	n := c.size()
	if m.limit <= 0 || n < m.limit {
		return []config{newConfig(add(slices.Clone(c.live), slices.Clone(c.phantoms)))}
	}
	evict := n - m.limit + 1
	if n > 20 {
		// The cap keeps a configuration at most limit sessions large; this
		// cannot happen unless the model is broken.
		panic(fmt.Sprintf("linearize: a configuration of %d sessions under a cap of %d", n, m.limit))
	}
	// Elements 0..len(live)-1 are the known sessions, then the phantoms.
	older := func(x, y int) bool { // x is certainly older than y
		kx, ky := x < len(c.live), y < len(c.live)
		switch {
		case kx && ky:
			return c.live[x].pos < c.live[y].pos
		case kx:
			return c.live[x].pos < c.phantoms[y-len(c.live)].lo
		case ky:
			return c.phantoms[x-len(c.live)].hi <= c.live[y].pos
		}
		return c.phantoms[x-len(c.live)].hi < c.phantoms[y-len(c.live)].lo
	}
	seen := map[string]bool{}
	var out []config
	for set := uint32(0); set < 1<<n; set++ {
		if bits.OnesCount32(set) != evict {
			continue
		}
		ok := true
		for x := 0; x < n && ok; x++ {
			for y := 0; y < n && ok; y++ {
				// An evicted x with an older y kept: not the oldest.
				if set&(1<<x) != 0 && set&(1<<y) == 0 && older(y, x) {
					ok = false
				}
			}
		}
		if !ok {
			continue
		}
		var live []liveSession
		var phantoms []gapRange
		for x := range n {
			if set&(1<<x) != 0 {
				continue
			}
			if x < len(c.live) {
				live = append(live, c.live[x])
			} else {
				phantoms = append(phantoms, c.phantoms[x-len(c.live)])
			}
		}
		next := newConfig(add(live, phantoms))
		if !seen[next.key] {
			seen[next.key] = true
			out = append(out, next)
		}
	}
	return out
}

func sessionName(pos int) string { return "s" + strconv.Itoa(pos) }

func describeOperation(in, out any) string {
	i, o := in.(*input), out.(*output)
	if i.omitted {
		return fmt.Sprintf("list → leaves out %s (not live at some instant of the call)", sessionName(i.target))
	}
	var b strings.Builder
	b.WriteString(i.kind.String())
	switch i.kind {
	case Create:
		fmt.Fprintf(&b, "(v=%s)", i.value)
	case RevokeUser:
		if i.except >= 0 {
			fmt.Fprintf(&b, "(except %s)", sessionName(i.except))
		}
	case List:
	case UpdateToken, UpdateID:
		fmt.Fprintf(&b, "(%s, v=%s)", sessionName(i.target), i.value)
	default:
		fmt.Fprintf(&b, "(%s)", sessionName(i.target))
	}
	b.WriteString(" → ")
	switch {
	case o.bad != "":
		b.WriteString("BAD ANSWER: " + o.bad)
	case o.outcome == Indeterminate || o.outcome == Unexpected:
		fmt.Fprintf(&b, "%v (may or may not have happened)", i.op.Code)
		if i.kind == Create || i.kind == Rotate {
			fmt.Fprintf(&b, " phantom %v", i.phantom)
		}
	case o.outcome == NotLive:
		b.WriteString(i.op.Code.String())
	default:
		switch i.kind {
		case Create, Rotate:
			fmt.Fprintf(&b, "%s v=%s", sessionName(o.pos), o.value)
		case Validate, UpdateToken, UpdateID, Extend:
			fmt.Fprintf(&b, "OK v=%s", o.value)
		case RevokeToken, RevokeID:
			fmt.Fprintf(&b, "revoked=%v", o.revoked)
		case RevokeUser:
			fmt.Fprintf(&b, "revoked %d", o.count)
		case List:
			var names []string
			for _, p := range o.listed {
				names = append(names, sessionName(p))
			}
			for _, g := range o.unknown {
				names = append(names, fmt.Sprintf("unknown@gap%d", g))
			}
			fmt.Fprintf(&b, "[%s]", strings.Join(names, " "))
		}
	}
	return b.String()
}

func describeMetadata(meta any) string {
	op, ok := meta.(*Op)
	if !ok {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "client %d, user %s; called %s, answered %s: %v", op.Client, op.User,
		op.Call.Format("15:04:05.000000"), op.Return.Format("15:04:05.000000"), op.Code)
	if op.Message != "" {
		fmt.Fprintf(&b, " %q", op.Message)
	}
	if op.Target != "" {
		fmt.Fprintf(&b, "; target %s", op.Target)
	}
	if op.Except != "" {
		fmt.Fprintf(&b, "; except %s", op.Except)
	}
	if op.ID != "" {
		fmt.Fprintf(&b, "; answered session %s", op.ID)
	}
	for _, s := range op.Listed {
		fmt.Fprintf(&b, "; listed %s", s.ID)
	}
	return b.String()
}
