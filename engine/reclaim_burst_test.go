package engine

import (
	"testing"
	"time"
)

// The burst-end decision is a function of the sweeps' arrival counts and
// the timer clock, driven here sweep by sweep: no real time passes.
func TestArrivalBurstDecision(t *testing.T) {
	const threshold = 8 << 20
	full := uint64(threshold / arrivalGarbage) // arrivals whose garbage reaches the threshold
	type sweep struct {
		fresh     uint64 // arrivals since the previous sweep
		returning bool   // another rule returns memory at this sweep
		want      bool
	}
	// ramp is a ramp of n arrivals over k sweeps, none of which returns.
	ramp := func(n uint64, k int) []sweep {
		s := make([]sweep, k)
		for i := range s {
			s[i].fresh = n / uint64(k)
		}
		s[k-1].fresh += n % uint64(k)
		return s
	}
	quiet := func(k int, last bool) []sweep {
		s := make([]sweep, k)
		s[k-1].want = last
		return s
	}
	cat := func(parts ...[]sweep) []sweep {
		var all []sweep
		for _, p := range parts {
			all = append(all, p...)
		}
		return all
	}
	steady := make([]sweep, 200)
	for i := range steady {
		steady[i].fresh = full / 10 // the threshold's worth every 10 sweeps
	}
	uneven := make([]sweep, 200)
	for i := range uneven {
		uneven[i].fresh = full/10 + uint64(i%3)*full/40 // busiest sweep not 16 times the quietest
	}
	for _, tc := range []struct {
		name      string
		threshold int64
		sweeps    []sweep
	}{
		{"a ramp that stays returns once, after it ends", threshold, cat(
			ramp(2*full, 20), quiet(quietSweeps, true), quiet(30, false),
		)},
		{"not while it goes on", threshold, ramp(20*full, 200)},
		{"one quiet sweep in a ramp is not its end", threshold, cat(
			ramp(full, 5), quiet(quietSweeps-1, false), ramp(full, 5), quiet(quietSweeps, true),
		)},
		{"a trickle after the ramp is an end", threshold, cat(
			ramp(2*full, 10), []sweep{{fresh: 2}, {fresh: 1, want: true}}, quiet(30, false),
		)},
		{"steady arrivals never return", threshold, steady},
		{"nor uneven ones", threshold, uneven},
		{"a ramp short of the threshold does not", threshold, cat(ramp(full-1, 10), quiet(30, false))},
		{"ramps add up until they reach it", threshold, cat(
			ramp(full/2, 5), quiet(5, false), ramp(full/2, 5), quiet(quietSweeps, true),
		)},
		{"another rule's return pays the debt", threshold, cat(
			ramp(2*full, 10), []sweep{{returning: true}}, quiet(30, false),
		)},
		{"disabled", -1, cat(ramp(100*full, 10), quiet(30, false))},
		{"zero disables it too", 0, cat(ramp(100*full, 10), quiet(30, false))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := memoryReturn{threshold: tc.threshold}
			var b arrivalBurst
			var arrived uint64
			for i, s := range tc.sweeps {
				arrived += s.fresh
				now := time.Duration(i+1) * time.Second
				if got := b.due(&r, arrived, now, s.returning); got != s.want {
					t.Fatalf("sweep %d (%d arrivals, %d so far): return = %v, want %v", i, s.fresh, arrived, got, s.want)
				}
			}
		})
	}
}

// A ramp that ends inside the cooldown of another return waits for the
// cooldown, returns once then, and shares its own cooldown with the
// other rules.
func TestArrivalBurstCooldown(t *testing.T) {
	r := memoryReturn{threshold: 1 << 20}
	var b arrivalBurst
	full := uint64(r.threshold / arrivalGarbage)
	var arrived uint64
	now := time.Duration(0)
	step := func(fresh uint64) bool {
		arrived += fresh
		now += time.Second
		return b.due(&r, arrived, now, false)
	}
	// Another rule returned memory at the first sweep.
	r.last, r.returned = time.Second, true
	start := r.last
	for i := 0; i < 3; i++ {
		if step(full) {
			t.Fatalf("returned during the ramp, at %v", now)
		}
	}
	returnedAt := time.Duration(0)
	for i := 0; i < 30 && returnedAt == 0; i++ {
		if step(0) {
			returnedAt = now
		}
	}
	if returnedAt == 0 {
		t.Fatal("the ramp never returned")
	}
	if returnedAt-start < returnCooldown {
		t.Fatalf("returned %v after the previous return, within the %v cooldown", returnedAt-start, returnCooldown)
	}
	// The next ramp's end waits for this return's cooldown, which the
	// drop rule shares.
	for i := 0; i < 2; i++ {
		step(full)
	}
	if got := r.observe(0, 64<<20, now); got {
		t.Fatal("a drop returned within the burst return's cooldown")
	}
	for i := 0; i < 30; i++ {
		if step(0) {
			if now-returnedAt < returnCooldown {
				t.Fatalf("returned %v after the previous return, within the cooldown", now-returnedAt)
			}
			return
		}
	}
	t.Fatal("the second ramp never returned")
}

// The end of a ramp of native connections that all stay gives its
// garbage back to the OS on its own (Stats.MemoryReturns): no drop from a
// peak, nothing closed. It waits for the return, not for a time.
func TestArrivalBurstReturnsMemory(t *testing.T) {
	r := echoRecorder()
	const n = 33
	s := startServer(t, Config{Loops: 1, ReturnMemoryAfter: (n - 1) * arrivalGarbage}, r)
	for i := 0; i < n; i++ {
		dial(t, s, "/", nil)
		waitOpen(t, r)
	}
	waitFor(t, "a memory return", func() bool { return s.Stats().MemoryReturns > 0 })
	if st := s.Stats(); st.Open != n {
		t.Fatalf("%d open, want %d", st.Open, n)
	}
}
