package procstat

import (
	"os"
	"path/filepath"
	"testing"
)

func TestParseStatOddName(t *testing.T) {
	// A command name with spaces and a ')' must not shift the fields.
	stat := "4242 (node (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 7 0 100 1000 200 0 0"
	cpu, th, err := ParseStat([]byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	if cpu != 325*1e7 || th != 7 {
		t.Fatalf("cpu %d ns, threads %d", cpu, th)
	}
	if _, _, err := ParseStat([]byte("1 (x) S 1 2")); err == nil {
		t.Fatal("short stat accepted")
	}
}

func TestParseVmRSS(t *testing.T) {
	rss, err := ParseVmRSS([]byte("Name:\tx\nVmPeak:\t  9 kB\nVmRSS:\t   21952 kB\nThreads: 3\n"))
	if err != nil || rss != 21952*1024 {
		t.Fatalf("rss %d err %v", rss, err)
	}
	if _, err := ParseVmRSS([]byte("Name: x\n")); err == nil {
		t.Fatal("missing VmRSS accepted")
	}
}

func TestReadSelfAndFakeRoot(t *testing.T) {
	s, err := Read(os.Getpid())
	if err != nil || s.RSSBytes <= 0 || s.Threads < 1 {
		t.Fatalf("self: %+v %v", s, err)
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "77")
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(p, "stat"), []byte("77 (srv) S 1 1 1 0 -1 0 0 0 0 0 10 10 0 0 20 0 2 0 0 0 0"), 0o644)
	os.WriteFile(filepath.Join(p, "status"), []byte("VmRSS:\t100 kB\n"), 0o644)
	old := Root
	Root = dir
	defer func() { Root = old }()
	s, err = Read(77)
	if err != nil || s.CPUNS != 20*1e7 || s.RSSBytes != 100*1024 || s.Threads != 2 {
		t.Fatalf("fake: %+v %v", s, err)
	}
}

func TestParseSockstat(t *testing.T) {
	var s System
	in := "sockets: used 2015\nTCP: inuse 2006 orphan 1 tw 1807 alloc 2008 mem 208\nUDP: inuse 0 mem 0\n"
	if err := ParseSockstat([]byte(in), &s); err != nil {
		t.Fatal(err)
	}
	if s.SocketsUsed != 2015 || s.TCPInUse != 2006 || s.TCPOrphan != 1 || s.TCPTimeWait != 1807 || s.TCPAlloc != 2008 || s.TCPMemPages != 208 {
		t.Fatalf("%+v", s)
	}
	if err := ParseSockstat([]byte("sockets: used 1\n"), &s); err == nil {
		t.Fatal("sockstat without TCP accepted")
	}
}

func TestParseMeminfoAndSlabinfo(t *testing.T) {
	mi := ParseMeminfo([]byte("MemTotal:       24606636 kB\nSlab:             151920 kB\nHugePages_Total:       0\n"))
	if mi["Slab"] != 151920*1024 || mi["MemTotal"] != 24606636*1024 || mi["HugePages_Total"] != 0 {
		t.Fatalf("%v", mi)
	}
	slab := "slabinfo - version: 2.1\n# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>\n" +
		"TCP                 2070   2100   2432   13    8 : tunables    0    0    0 : slabdata    161    161      0\n" +
		"sock_inode_cache    4150   4176    768   21    4 : tunables    0    0    0 : slabdata    198    198      0\n"
	m, err := ParseSlabinfo([]byte(slab))
	if err != nil || m["TCP"].Bytes() != 2100*2432 || m["sock_inode_cache"] != (Slab{Objs: 4176, ObjSize: 768}) {
		t.Fatalf("%v %v", m, err)
	}
}

func TestReadSystemAndCountFDs(t *testing.T) {
	s, err := ReadSystem()
	if err != nil {
		t.Fatal(err)
	}
	if s.SlabBytes <= 0 || s.MemAvailable <= 0 {
		t.Fatalf("%+v", s)
	}
	f, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, err := CountFDs(os.Getpid())
	if err != nil || n < 4 {
		t.Fatalf("%d open files, %v", n, err)
	}
	more := make([]*os.File, 10)
	for i := range more {
		if more[i], err = os.Open(os.Args[0]); err != nil {
			t.Fatal(err)
		}
		defer more[i].Close()
	}
	if m, err := CountFDs(os.Getpid()); err != nil || m != n+10 {
		t.Fatalf("%d open files after opening 10 more than %d, %v", m, n, err)
	}
}
