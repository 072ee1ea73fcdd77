package limits

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func fakeProc(t *testing.T, files map[string]string) string {
	dir := t.TempDir()
	for p, v := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func thisMachine(t *testing.T) Limits {
	root := fakeProc(t, map[string]string{
		"sys/fs/nr_open":                    "1048576\n",
		"sys/fs/file-max":                   "2466170\n",
		"sys/net/ipv4/ip_local_port_range":  "32768\t60999\n",
		"sys/net/core/somaxconn":            "4096\n",
		"sys/net/ipv4/tcp_max_syn_backlog":  "2048\n",
		"sys/net/ipv4/tcp_mem":              "287898\t383867\t575796\n",
		"meminfo":                           "MemTotal:       24641816 kB\nMemFree: 1 kB\n",
		"sys/net/ipv4/tcp_tw_reuse":         "2\n",
		"sys/net/ipv4/unrelated_other_file": "1\n",
	})
	l, err := readSys(root, Limits{NofileSoft: 1024, NofileHard: 20000, PageSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestReadSys(t *testing.T) {
	l := thisMachine(t)
	if l.NrOpen != 1048576 || l.Ports() != 28232 || l.Somaxconn != 4096 || l.TCPMem[2] != 575796 || l.MemTotal != 24641816*1024 || l.TwReuse != 2 {
		t.Fatalf("%+v", l)
	}
	// Missing files read as unknown, not as an error.
	if _, err := readSys(t.TempDir(), Limits{}); err != nil {
		t.Fatal(err)
	}
}

func find(fs []Finding, what string) Finding {
	for _, f := range fs {
		if strings.HasPrefix(f.What, what) {
			return f
		}
	}
	return Finding{What: "missing " + what}
}

func TestCheckQuickRunFits(t *testing.T) {
	fs := Check(thisMachine(t), Plan{Conns: 15000, LoadProcs: 2, SrcAddrs: 8, DstAddrs: 1, Pending: 512, PerConnBytes: 1024})
	for _, f := range fs {
		if !f.OK && !strings.Contains(f.What, "soft") {
			t.Errorf("15k on this machine should fit: %s", f)
		}
	}
}

func TestCheckC1MSaysWhatToRaise(t *testing.T) {
	fs := Check(thisMachine(t), Plan{Conns: 1_000_000, LoadProcs: 20, SrcAddrs: 20, PerConnBytes: 1024})
	hard := find(fs, "open files per process (hard)")
	if hard.OK || !strings.Contains(hard.Fix, "ulimit -Hn") {
		t.Errorf("hard nofile: %s", hard)
	}
	if f := find(fs, "ephemeral ports"); f.OK {
		t.Errorf("50k conns per source address over a 28k port range should not fit: %s", f)
	}
	if f := find(fs, "net.ipv4.tcp_mem"); f.OK || !strings.Contains(f.Fix, "tcp_mem") {
		t.Errorf("tcp_mem: %s", f)
	}
	if f := find(fs, "memory"); !f.OK {
		t.Errorf("1M on 24 GiB fits: %s", f)
	}
	adv := Advice(fs)
	if len(adv) == 0 {
		t.Fatal("no advice")
	}
	// With the server split over processes and ports widened, files and
	// ports fit.
	l := thisMachine(t)
	l.NofileHard, l.NofileSoft, l.PortLo, l.PortHi = 1<<20, 1<<20, 1024, 65535
	fs = Check(l, Plan{Conns: 1_000_000, ServerProcs: 1, LoadProcs: 20, SrcAddrs: 20})
	if f := find(fs, "ephemeral ports"); !f.OK {
		t.Errorf("ports: %s", f)
	}
	if f := find(fs, "open files per process (hard)"); !f.OK {
		t.Errorf("files: %s", f)
	}
}

func TestConntrackAndMapCount(t *testing.T) {
	l := thisMachine(t)
	if l.ConntrackMax != -1 || l.MaxMapCount != -1 {
		t.Fatalf("absent files must read as -1: %+v", l)
	}
	l.ConntrackMax, l.ConntrackCount, l.MaxMapCount = 262144, 0, 65530
	fs := Check(l, Plan{Conns: 1_000_000, ServerProcs: 56, LoadProcs: 56, SrcAddrs: 224})
	if f := find(fs, "net.netfilter.nf_conntrack_max"); f.OK || f.Sysctl == "" || f.Blocks {
		t.Errorf("conntrack: %+v", f)
	}
	if f := find(fs, "vm.max_map_count"); !f.OK {
		t.Errorf("max_map_count: %+v", f)
	}
	if f := find(fs, "open files per process (hard)"); !f.OK {
		t.Errorf("1M over 56 processes fits 20000 files each: %+v", f)
	}
	if f := find(fs, "ephemeral ports"); !f.OK {
		t.Errorf("1M over 224 source addresses fits the default port range: %+v", f)
	}
}

// Tune raises what is too low to what the plan needs, never lowers, and
// reads back what it wrote.
func TestTune(t *testing.T) {
	root := fakeProc(t, map[string]string{
		"sys/fs/nr_open":                       "1048576\n",
		"sys/fs/file-max":                      "1000000\n",
		"sys/net/ipv4/ip_local_port_range":     "32768\t60999\n",
		"sys/net/core/somaxconn":               "4096\n",
		"sys/net/ipv4/tcp_max_syn_backlog":     "2048\n",
		"sys/net/ipv4/tcp_mem":                 "287898\t3000000\t575796\n",
		"sys/net/netfilter/nf_conntrack_max":   "262144\n",
		"sys/net/netfilter/nf_conntrack_count": "0\n",
		"sys/vm/max_map_count":                 "65530\n",
		"meminfo":                              "MemTotal:       24641816 kB\n",
	})
	l, err := readSys(root, Limits{NofileSoft: 20000, NofileHard: 20000, PageSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	fs := Check(l, Plan{Conns: 1_000_000, ServerProcs: 56, LoadProcs: 56, SrcAddrs: 224, Pending: 512})
	dry := Tune(root, fs, false)
	got := map[string]Change{}
	for _, c := range dry {
		got[c.Sysctl] = c
	}
	if len(dry) != 3 || got["fs.file-max"].After != "2097152" || got["net.netfilter.nf_conntrack_max"].After != "2097152" {
		t.Fatalf("dry run: %v", dry)
	}
	// The middle field of tcp_mem was larger already: it stays.
	if c := got["net.ipv4.tcp_mem"]; c.Before != "287898 3000000 575796" || c.After != "2000000 3000000 4000000" {
		t.Fatalf("tcp_mem: %+v", c)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "sys/fs/file-max")); string(b) != "1000000\n" {
		t.Fatalf("a dry run wrote %q", b)
	}
	for _, c := range Tune(root, fs, true) {
		if c.Err != "" || c.After != got[c.Sysctl].After {
			t.Errorf("applied: %+v", c)
		}
	}
	l, _ = readSys(root, Limits{NofileSoft: 20000, NofileHard: 20000, PageSize: 4096})
	for _, f := range Check(l, Plan{Conns: 1_000_000, ServerProcs: 56, LoadProcs: 56, SrcAddrs: 224, Pending: 512}) {
		if !f.OK {
			t.Errorf("still low after tuning: %s", f)
		}
	}
	if r := raised("32768 60999", "1024 65535", true); r != "1024 65535" {
		t.Errorf("port range %q", r)
	}
}
