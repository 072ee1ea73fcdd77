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
