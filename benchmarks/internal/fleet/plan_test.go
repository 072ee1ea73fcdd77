package fleet

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// The C1M plan on this kind of host (20,000 open files per process, the
// default port range): every process under its limit, every load
// generator in its own /24 with a few addresses, the four marks, and the
// waves adding up to a million.
func TestPlanC1M(t *testing.T) {
	p, err := NewPlan(Config{Conns: 1_000_000}, 20000, 28232)
	if err != nil {
		t.Fatal(err)
	}
	if p.PerProc != 18000 || p.Servers != 56 || p.MaxPerServer > 20000 {
		t.Fatalf("per proc %d, servers %d, max per server %d", p.PerProc, p.Servers, p.MaxPerServer)
	}
	if want := []int{100_000, 250_000, 500_000, 1_000_000}; !equal(p.Marks, want) {
		t.Fatalf("marks %v, want %v", p.Marks, want)
	}
	total, perWave := 0, make([]int, len(p.Marks))
	seen := map[netip.Addr]bool{}
	for _, s := range p.Shards {
		total += s.Conns
		perWave[s.Wave] += s.Conns
		if s.Conns > p.PerProc || s.Conns+FDSpare > 20000 {
			t.Errorf("shard %d: %d connections", s.Index, s.Conns)
		}
		addrs, err := s.ShardAddrs()
		if err != nil || len(addrs) != s.Addrs || s.Addrs < MinSrcPerShard {
			t.Fatalf("shard %d: %v %v", s.Index, addrs, err)
		}
		for _, a := range addrs {
			b := a.As4()
			if b[0] != 127 || b[1] < 2 || b[3] == 0 || b[3] == 255 || seen[a] {
				t.Fatalf("shard %d: address %v", s.Index, a)
			}
			seen[a] = true
		}
		if per := s.Conns / s.Addrs; per > 28232/2 {
			t.Errorf("shard %d: %d connections per source address", s.Index, per)
		}
		if s.Pending < 1 {
			t.Errorf("shard %d: pending %d", s.Index, s.Pending)
		}
	}
	if total != 1_000_000 || !equal(perWave, []int{100_000, 150_000, 250_000, 500_000}) {
		t.Fatalf("total %d, per wave %v", total, perWave)
	}
	if len(p.Shards) != 57 || p.TickInterval != 120*time.Second || p.Ticks != 3 || p.Expected() != 3_000_000 {
		t.Fatalf("%d shards, tick every %v, %d deliveries", len(p.Shards), p.TickInterval, p.Expected())
	}
	// Keepalive paced to 5k pings a second: 200 s for a million, and a
	// pong may wait behind a tick.
	if p.PingInterval != 200*time.Second || p.PongTimeout != 120*time.Second {
		t.Fatalf("keepalive: ping every %v, pong timeout %v", p.PingInterval, p.PongTimeout)
	}
	if d := strings.Join(p.Describe(), "\n"); !strings.Contains(d, "56 herald ticker processes") || !strings.Contains(d, "57 load generator processes") {
		t.Fatalf("describe:\n%s", d)
	}
}

func TestPlanSmallAndForced(t *testing.T) {
	p, err := NewPlan(Config{Conns: 50_000}, 20000, 28232)
	if err != nil {
		t.Fatal(err)
	}
	if p.Servers != 3 || !equal(p.Marks, []int{12500, 25000, 37500, 50000}) || len(p.Shards) != 4 || p.TickInterval != 6*time.Second || p.Ticks != 10 ||
		p.PingInterval != 30*time.Second || p.PongTimeout != 15*time.Second {
		t.Fatalf("%+v", p)
	}
	// The test's run: three servers forced, two marks, one load
	// generator each.
	p, err = NewPlan(Config{Conns: 2000, Servers: 3, PerProc: 1000, Marks: []int{1000}}, 20000, 28232)
	if err != nil {
		t.Fatal(err)
	}
	if p.Servers != 3 || !equal(p.Marks, []int{1000, 2000}) || len(p.Shards) != 2 || p.Shards[1].Wave != 1 || p.Shards[1].Src != "127.2.1.1-127.2.1.4" {
		t.Fatalf("%+v", p)
	}
	// Too few servers for the open-files limit, when forced, is refused.
	if _, err := NewPlan(Config{Conns: 100_000, Servers: 2}, 20000, 28232); err == nil {
		t.Fatal("50k connections per server under a 20k limit accepted")
	}
	if _, err := NewPlan(Config{Conns: 100, Marks: []int{200}}, 20000, 28232); err == nil {
		t.Fatal("a mark past -conns accepted")
	}
	// A small port range asks for more source addresses.
	p, err = NewPlan(Config{Conns: 18000, Marks: []int{18000}}, 20000, 4000)
	if err != nil || p.Shards[0].Addrs != 9 {
		t.Fatalf("%+v %v", p.Shards, err)
	}
}

func TestDefaultsAndCounts(t *testing.T) {
	for _, c := range []struct {
		hard uint64
		want int
	}{{20000, 18000}, {1024, 768}, {1 << 20, MaxPerProcCap}, {65536, 58000}} {
		if got := DefaultPerProc(c.hard); got != c.want {
			t.Errorf("DefaultPerProc(%d) = %d, want %d", c.hard, got, c.want)
		}
	}
	if m := DefaultMarks(2_000_000); !equal(m, []int{200_000, 500_000, 1_000_000, 2_000_000}) {
		t.Errorf("marks %v", m)
	}
	if m, err := ParseMarks("100k, 250k,1M"); err != nil || !equal(m, []int{100_000, 250_000, 1_000_000}) {
		t.Errorf("marks %v %v", m, err)
	}
	if _, err := ParseCount("lots"); err == nil {
		t.Error("bad count accepted")
	}
}

func TestCostModel(t *testing.T) {
	c := NewCostModel(800, 3800, 5)
	if c.HostsForMemory != 1 || len(c.Rates) != 3 || c.Rates[1].Cores != 50 || c.Rates[1].Hosts != 5 || c.Rates[2].Hosts != 45 {
		t.Fatalf("%+v", c)
	}
	md := c.Markdown()
	for _, want := range []string{"Centrifugo", "nbio", "greatws", "MigratoryData", "| 1 | 10M | 50.0 | 5 |"} {
		if !strings.Contains(md, want) {
			t.Errorf("cost model lacks %q:\n%s", want, md)
		}
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
