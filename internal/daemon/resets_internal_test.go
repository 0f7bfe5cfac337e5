package daemon

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestFrameScanner feeds a stream of frames in pieces of every size and
// checks that each frame is seen once, at its offset, and that boundaries
// and the bytes to the next one are right wherever a piece ends.
func TestFrameScanner(t *testing.T) {
	type frame struct {
		typ    byte
		stream uint32
		n      int
	}
	frames := []frame{{0x4, 0, 18}, {frameHeaders, 1, 40}, {frameRSTStream, 1, 4}, {0x0, 1, 70000}, {0x8, 0, 4}, {frameRSTStream, 3, 4}, {0x6, 0, 0}}
	var stream []byte
	var starts []int
	for _, f := range frames {
		starts = append(starts, len(stream))
		h := make([]byte, frameHeaderLen)
		putFrameHeader(h, f.n, f.typ, 0, f.stream)
		stream = append(append(stream, h...), make([]byte, f.n)...)
	}
	ends := map[int]bool{0: true}
	for i := range starts {
		ends[starts[i]+frameHeaderLen+frames[i].n] = true
	}
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		var s frameScanner
		var seen []frame
		var at []int
		for pos := 0; pos < len(stream); {
			n := min(len(stream)-pos, 1+r.IntN(1+[]int{3, 20, 100, 80000}[round%4]))
			piece := stream[pos : pos+n]
			if k := s.untilBoundary(piece); k < len(piece) && !ends[pos+k] {
				t.Fatalf("round %d: untilBoundary at %d says %d more, which is not a frame's end", round, pos, k)
			}
			s.scan(piece, func(typ byte, id uint32, start int) bool {
				seen = append(seen, frame{typ, id, 0})
				at = append(at, pos+start)
				return true
			})
			pos += n
			if s.boundary() != ends[pos] {
				t.Fatalf("round %d: boundary() = %v at %d", round, s.boundary(), pos)
			}
		}
		var want []frame
		for _, f := range frames {
			want = append(want, frame{f.typ, f.stream, 0})
		}
		if !slices.Equal(seen, want) || !slices.Equal(at, starts) {
			t.Fatalf("round %d: saw %v at %v, want %v at %v", round, seen, at, want, starts)
		}
	}
}
