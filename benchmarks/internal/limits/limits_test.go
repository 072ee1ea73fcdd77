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
