// Package procstat reads a process's CPU time and resident memory from
// /proc, the way the runner measures every server.
package procstat

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ClockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat. It
// is 100 on every Linux architecture the harness runs on.
const ClockTicks = 100

// Sample is one reading of a process.
type Sample struct {
	CPUNS    int64 // user + system time, ns
	RSSBytes int64 // VmRSS
	Threads  int
}

// Root is where proc is mounted; tests point it elsewhere.
var Root = "/proc"

// Read samples process pid.
func Read(pid int) (Sample, error) {
	dir := filepath.Join(Root, strconv.Itoa(pid))
	stat, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return Sample{}, err
	}
	cpu, threads, err := ParseStat(stat)
	if err != nil {
		return Sample{}, err
	}
	status, err := os.ReadFile(filepath.Join(dir, "status"))
	if err != nil {
		return Sample{}, err
	}
	rss, err := ParseVmRSS(status)
	if err != nil {
		return Sample{}, err
	}
	return Sample{CPUNS: cpu, RSSBytes: rss, Threads: threads}, nil
}

// ParseStat returns utime+stime in ns and the thread count from the
// contents of /proc/<pid>/stat. The command name may hold spaces and
// parentheses, so fields are counted from the last ')'.
func ParseStat(b []byte) (cpuNS int64, threads int, err error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("stat: no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime 15, num_threads 20.
	if len(f) < 18 {
		return 0, 0, fmt.Errorf("stat: %d fields", len(f)+2)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	th, err3 := strconv.Atoi(f[17])
	if err1 != nil || err2 != nil || err3 != nil {
		return 0, 0, fmt.Errorf("stat: bad utime/stime/num_threads")
	}
	return (ut + st) * (1e9 / ClockTicks), th, nil
}

// ParseVmRSS returns VmRSS in bytes from the contents of /proc/<pid>/status.
func ParseVmRSS(b []byte) (int64, error) {
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("status: odd VmRSS line %q", line)
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("status: %w", err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("status: no VmRSS")
}
