// Package limits reads the kernel and process limits a many-connection run
// depends on and says, for a planned run, which of them are too small and
// what to set instead.
package limits

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// KernelBytesPerSocket is the kernel memory one idle established TCP socket
// costs (socket, inode, dentry, file, tcp_sock, epoll item), measured on
// loopback at 3.6–3.9 KB; the planner uses the upper end.
const KernelBytesPerSocket = 3900

// Limits is what a run depends on.
type Limits struct {
	NofileSoft, NofileHard uint64
	NrOpen                 uint64
	FileMax                uint64
	PortLo, PortHi         int
	Somaxconn              int
	SynBacklog             int
	TCPMem                 [3]int64 // pages
	TwReuse                int
	PageSize               int64
	MemTotal               int64 // bytes
	// MaxMapCount is vm.max_map_count (memory mappings per process), -1
	// when unknown.
	MaxMapCount int64
	// ConntrackMax and ConntrackCount are net.netfilter.nf_conntrack_max
	// and _count, -1 without connection tracking. With tracking active
	// (the count grows with the connections), every connection takes an
	// entry and a full table drops new connections' SYNs.
	ConntrackMax, ConntrackCount int64
}

// Ports is the size of the ephemeral port range.
func (l Limits) Ports() int { return l.PortHi - l.PortLo + 1 }

// Read reads the limits of this process and of the kernel under procRoot
// ("/proc" normally).
func Read(procRoot string) (Limits, error) {
	var l Limits
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return l, err
	}
	l.NofileSoft, l.NofileHard = rl.Cur, rl.Max
	l.PageSize = int64(os.Getpagesize())
	return readSys(procRoot, l)
}

func readSys(procRoot string, l Limits) (Limits, error) {
	read := func(p string) []string {
		b, err := os.ReadFile(filepath.Join(procRoot, p))
		if err != nil {
			return nil
		}
		return strings.Fields(string(b))
	}
	num := func(p string) int64 {
		f := read(p)
		if len(f) == 0 {
			return -1
		}
		v, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return -1
		}
		return v
	}
	l.NrOpen = uint64(max(num("sys/fs/nr_open"), 0))
	l.FileMax = uint64(max(num("sys/fs/file-max"), 0))
	if f := read("sys/net/ipv4/ip_local_port_range"); len(f) == 2 {
		l.PortLo, _ = strconv.Atoi(f[0])
		l.PortHi, _ = strconv.Atoi(f[1])
	}
	l.Somaxconn = int(num("sys/net/core/somaxconn"))
	l.SynBacklog = int(num("sys/net/ipv4/tcp_max_syn_backlog"))
	l.TwReuse = int(num("sys/net/ipv4/tcp_tw_reuse"))
	l.MaxMapCount = num("sys/vm/max_map_count")
	l.ConntrackMax = num("sys/net/netfilter/nf_conntrack_max")
	l.ConntrackCount = num("sys/net/netfilter/nf_conntrack_count")
	if f := read("sys/net/ipv4/tcp_mem"); len(f) == 3 {
		for i := range f {
			l.TCPMem[i], _ = strconv.ParseInt(f[i], 10, 64)
		}
	}
	if b, err := os.ReadFile(filepath.Join(procRoot, "meminfo")); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				f := strings.Fields(v)
				if len(f) >= 1 {
					kb, _ := strconv.ParseInt(f[0], 10, 64)
					l.MemTotal = kb * 1024
				}
			}
		}
	}
	if l.PageSize == 0 {
		l.PageSize = 4096
	}
	return l, nil
}

// RaiseNofile raises this process's soft open-files limit to its hard limit
// (children inherit it) and returns the new soft limit.
func RaiseNofile() (uint64, error) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
			return 0, err
		}
	}
	return rl.Cur, nil
}

// Plan is a run to check the limits against. All its processes are on one
// host unless Hosts says otherwise (then the numbers are per load host).
type Plan struct {
	Conns       int // connections held at once, in total
	ServerProcs int // server processes sharing them (SO_REUSEPORT or several ports)
	LoadProcs   int // loadgen processes on this host
	LoadHosts   int // load hosts (1: client and server on this host)
	SrcAddrs    int // source addresses per load host
	DstAddrs    int // server address:port pairs
	Pending     int // handshakes in flight (listen backlog needed)
	// PerConnBytes is the server's own memory per connection (herald: about 1 KB).
	PerConnBytes int64
	// PerProcFDs, when set, is the open files the busiest process needs
	// (a plan that splits unevenly knows better than Conns ÷ processes).
	PerProcFDs int
}

// Finding is one checked limit.
type Finding struct {
	OK   bool
	What string
	Have string
	Need string
	Fix  string // the command that raises it, when not OK
	// Sysctl and Value, when set, are the kernel setting that raises the
	// limit ("fs.file-max") and the value that is enough: what Tune sets.
	Sysctl, Value string
	// Blocks says that a run cannot work with the limit too low (files,
	// ports); other limits only make it slower or noisier.
	Blocks bool
}

// String is the finding as one line (two with the fix when too low).
func (f Finding) String() string {
	mark := "ok  "
	if !f.OK {
		mark = "LOW "
	}
	s := fmt.Sprintf("%s %-34s have %-14s need %s", mark, f.What, f.Have, f.Need)
	if !f.OK && f.Fix != "" {
		s += "\n       fix: " + f.Fix
	}
	return s
}

func ceilDiv(a, b int) int {
	if b <= 0 {
		b = 1
	}
	return (a + b - 1) / b
}

// Check compares l with what plan needs.
func Check(l Limits, p Plan) []Finding {
	p.ServerProcs = max(p.ServerProcs, 1)
	p.LoadProcs = max(p.LoadProcs, 1)
	p.LoadHosts = max(p.LoadHosts, 1)
	p.SrcAddrs = max(p.SrcAddrs, 1)
	p.DstAddrs = max(p.DstAddrs, 1)
	const spare = 128 // listeners, logs, pipes, epoll
	serverFDs := ceilDiv(p.Conns, p.ServerProcs) + spare
	loadConns := ceilDiv(p.Conns, p.LoadHosts)
	loadFDs := ceilDiv(loadConns, p.LoadProcs) + spare
	perProc := uint64(max(serverFDs, loadFDs))
	if p.PerProcFDs > 0 {
		perProc = uint64(p.PerProcFDs)
	}
	var out []Finding
	add := func(ok bool, what, have, need, fix string) *Finding {
		out = append(out, Finding{OK: ok, What: what, Have: have, Need: need, Fix: fix})
		return &out[len(out)-1]
	}
	sysctl := func(f *Finding, key, value string, blocks bool) {
		f.Sysctl, f.Value, f.Blocks = key, value, blocks
	}
	add(l.NofileHard >= perProc, "open files per process (hard)", u(l.NofileHard), u(perProc),
		fmt.Sprintf("ulimit -Hn %d (root; or LimitNOFILE= in the unit, nofile in limits.conf); else split into more processes", perProc)).Blocks = true
	add(l.NofileSoft >= perProc || l.NofileHard >= perProc, "open files per process (soft)", u(l.NofileSoft), u(perProc),
		fmt.Sprintf("ulimit -n %d (the runner raises soft to hard itself)", perProc))
	f := add(l.NrOpen >= perProc, "fs.nr_open", u(l.NrOpen), u(perProc), fmt.Sprintf("sysctl -w fs.nr_open=%d", roundUp(perProc)))
	sysctl(f, "fs.nr_open", u(roundUp(perProc)), true)
	// Sockets on this host: both ends when client and server share it.
	sockets := p.Conns
	if p.LoadHosts == 1 {
		sockets = 2 * p.Conns
	}
	fileMaxOK := l.FileMax >= uint64(sockets+4096)
	f = add(fileMaxOK, "fs.file-max", u(l.FileMax), strconv.Itoa(sockets+4096), fmt.Sprintf("sysctl -w fs.file-max=%d", roundUp(uint64(sockets+4096))))
	sysctl(f, "fs.file-max", u(roundUp(uint64(sockets+4096))), true)
	perTuple := ceilDiv(loadConns, p.SrcAddrs*p.DstAddrs)
	f = add(l.Ports() >= perTuple, "ephemeral ports per (src, dst) pair", strconv.Itoa(l.Ports()), strconv.Itoa(perTuple),
		fmt.Sprintf("sysctl -w net.ipv4.ip_local_port_range=\"1024 65535\"; and/or more source addresses (need %d at 64k ports each)", ceilDiv(loadConns, 64000*p.DstAddrs)))
	if perTuple <= 64512 {
		sysctl(f, "net.ipv4.ip_local_port_range", "1024 65535", true)
	} else {
		f.Blocks = true
	}
	pending := max(p.Pending, 512)
	f = add(l.Somaxconn >= pending, "net.core.somaxconn", strconv.Itoa(l.Somaxconn), strconv.Itoa(pending), fmt.Sprintf("sysctl -w net.core.somaxconn=%d", roundUp(uint64(pending))))
	sysctl(f, "net.core.somaxconn", u(roundUp(uint64(pending))), false)
	f = add(l.SynBacklog >= pending, "net.ipv4.tcp_max_syn_backlog", strconv.Itoa(l.SynBacklog), strconv.Itoa(pending), fmt.Sprintf("sysctl -w net.ipv4.tcp_max_syn_backlog=%d", roundUp(uint64(pending))))
	sysctl(f, "net.ipv4.tcp_max_syn_backlog", u(roundUp(uint64(pending))), false)
	// tcp_mem bounds socket buffer memory (pages); a fan-out run queues a
	// few KB per socket at times. Ask for 8 KB per socket at the max mark.
	needPages := int64(sockets) * 8192 / l.PageSize
	tcpMem := fmt.Sprintf("%d %d %d", needPages/2, needPages*3/4, needPages)
	f = add(l.TCPMem[2] >= needPages, "net.ipv4.tcp_mem (max, pages)", strconv.FormatInt(l.TCPMem[2], 10), strconv.FormatInt(needPages, 10),
		fmt.Sprintf("sysctl -w net.ipv4.tcp_mem=\"%s\"", tcpMem))
	sysctl(f, "net.ipv4.tcp_mem", tcpMem, false)
	// Connection tracking, when the module is loaded: one entry per
	// connection if anything tracks loopback traffic (count > 0 then).
	if l.ConntrackMax >= 0 {
		need := int64(p.Conns) + 65536
		if p.LoadHosts > 1 {
			need = int64(ceilDiv(p.Conns, p.LoadHosts)) + 65536
		}
		f = add(l.ConntrackMax >= need, "net.netfilter.nf_conntrack_max", strconv.FormatInt(l.ConntrackMax, 10), strconv.FormatInt(need, 10),
			fmt.Sprintf("sysctl -w net.netfilter.nf_conntrack_max=%d (only matters while tracking is active: nf_conntrack_count is %d now)", roundUp(uint64(need)), l.ConntrackCount))
		sysctl(f, "net.netfilter.nf_conntrack_max", u(roundUp(uint64(need))), false)
	}
	// Memory mappings per process: the Go runtime maps its heap in large
	// arenas, so no process here needs many; the kernel's default is
	// what the check asks for.
	if l.MaxMapCount >= 0 {
		f = add(l.MaxMapCount >= 65530, "vm.max_map_count (per process)", strconv.FormatInt(l.MaxMapCount, 10), "65530",
			"sysctl -w vm.max_map_count=262144")
		sysctl(f, "vm.max_map_count", "262144", false)
	}
	mem := int64(sockets)*KernelBytesPerSocket + int64(p.Conns)*p.PerConnBytes
	add(l.MemTotal == 0 || l.MemTotal >= mem*5/4, "memory (kernel 3.9 KB/socket + server)", bytesStr(l.MemTotal), bytesStr(mem*5/4),
		"more RAM, or fewer connections per host").Blocks = true
	return out
}

// Advice is the list of fixes for the findings that are not OK.
func Advice(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		if !f.OK && f.Fix != "" {
			out = append(out, f.What+": "+f.Fix)
		}
	}
	return out
}

func u(v uint64) string { return strconv.FormatUint(v, 10) }

func roundUp(v uint64) uint64 {
	p := uint64(1024)
	for p < v {
		p *= 2
	}
	return p
}

func bytesStr(b int64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	default:
		return fmt.Sprintf("%d B", b)
	}
}

// Change is one kernel setting Tune raised, or would raise.
type Change struct {
	Sysctl string `json:"sysctl"`
	Before string `json:"before"`
	After  string `json:"after"` // read back after writing; the wanted value when not applied
	Err    string `json:"error,omitempty"`
}

// String is the change as "setting before -> after".
func (c Change) String() string {
	s := fmt.Sprintf("%-32s %s -> %s", c.Sysctl, c.Before, c.After)
	if c.Err != "" {
		s += " (failed: " + c.Err + ")"
	}
	return s
}

// Tune raises, under procRoot ("/proc"), every kernel setting that a
// finding found too low and knows how to raise (Finding.Sysctl), to the
// finding's Value. It never lowers a setting: a value that is already
// larger in every field stays. With apply false it only reports what it
// would write. Writing needs root.
func Tune(procRoot string, fs []Finding, apply bool) []Change {
	var out []Change
	for _, f := range fs {
		if f.OK || f.Sysctl == "" {
			continue
		}
		path := filepath.Join(procRoot, "sys", strings.ReplaceAll(f.Sysctl, ".", "/"))
		b, err := os.ReadFile(path)
		c := Change{Sysctl: f.Sysctl, Before: strings.Join(strings.Fields(string(b)), " "), After: f.Value}
		if err != nil {
			c.Err = err.Error()
			out = append(out, c)
			continue
		}
		want := raised(c.Before, f.Value, f.Sysctl == "net.ipv4.ip_local_port_range")
		if want == c.Before {
			continue
		}
		c.After = want
		if apply {
			if err := os.WriteFile(path, []byte(want+"\n"), 0o644); err != nil {
				c.Err = err.Error()
			}
			if b, err := os.ReadFile(path); err == nil {
				c.After = strings.Join(strings.Fields(string(b)), " ")
			}
		}
		out = append(out, c)
	}
	return out
}

// raised merges have and want field by field, keeping the larger of each
// (for a port range, the lower bound is kept the smaller: a wider range).
func raised(have, want string, portRange bool) string {
	h, w := strings.Fields(have), strings.Fields(want)
	if len(h) != len(w) {
		return want
	}
	out := make([]string, len(w))
	for i := range w {
		hv, err1 := strconv.ParseInt(h[i], 10, 64)
		wv, err2 := strconv.ParseInt(w[i], 10, 64)
		if err1 != nil || err2 != nil {
			return want
		}
		if portRange && i == 0 {
			out[i] = strconv.FormatInt(min(hv, wv), 10)
		} else {
			out[i] = strconv.FormatInt(max(hv, wv), 10)
		}
	}
	return strings.Join(out, " ")
}
