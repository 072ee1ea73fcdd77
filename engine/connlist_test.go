package engine

import (
	"math/rand/v2"
	"testing"
)

// TestConnList adds and removes connections at random against a set and
// checks every slot, and that emptied blocks are given back but one.
func TestConnList(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var cl connList
	in := map[*Conn]bool{}
	var all []*Conn
	check := func() {
		t.Helper()
		if cl.len() != len(in) {
			t.Fatalf("len %d, want %d", cl.len(), len(in))
		}
		for i := range cl.len() {
			c := cl.at(i)
			if !in[c] || int(c.slot) != i {
				t.Fatalf("slot %d holds %p (slot %d, in set %v)", i, c, c.slot, in[c])
			}
		}
		if used := (cl.len() + connBlockLen - 1) / connBlockLen; len(cl.blocks) > used+1 {
			t.Fatalf("%d blocks for %d connections", len(cl.blocks), cl.len())
		}
	}
	for round := 0; round < 4; round++ {
		// Grow past a few blocks, then shrink to almost nothing.
		for len(in) < 3*connBlockLen+7 {
			c := &Conn{}
			cl.add(c)
			in[c] = true
			all = append(all, c)
		}
		check()
		for len(in) > 5 {
			c := all[rng.IntN(len(all))]
			cl.remove(c) // may be gone already: a no-op then
			if in[c] && c.slot != -1 {
				t.Fatalf("removed connection keeps slot %d", c.slot)
			}
			delete(in, c)
			if rng.IntN(50) == 0 {
				check()
			}
		}
		check()
	}
}
