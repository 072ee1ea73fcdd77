package procstat

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// System is one reading of what the host's kernel spends on sockets: the
// counters of /proc/net/sockstat, the slab and free memory of
// /proc/meminfo, the slab caches of /proc/slabinfo (readable by root only)
// and the connection tracking table.
type System struct {
	SocketsUsed int64 `json:"sockets_used"` // sockstat "sockets: used"
	TCPInUse    int64 `json:"tcp_inuse"`
	TCPOrphan   int64 `json:"tcp_orphan"`
	TCPTimeWait int64 `json:"tcp_tw"`
	TCPAlloc    int64 `json:"tcp_alloc"`
	// TCPMemPages is sockstat's TCP "mem": the pages the TCP stack holds
	// for socket buffers, what net.ipv4.tcp_mem limits.
	TCPMemPages int64 `json:"tcp_mem_pages"`
	// SlabBytes and SUnreclaimBytes are meminfo's Slab and SUnreclaim:
	// the kernel objects of every socket (struct sock, inode, dentry, file,
	// epoll item) live there, beside everything else the kernel caches.
	SlabBytes       int64 `json:"slab_bytes"`
	SUnreclaimBytes int64 `json:"sunreclaim_bytes"`
	MemAvailable    int64 `json:"mem_available_bytes"`
	// Conntrack is net.netfilter.nf_conntrack_count, or -1 without
	// connection tracking.
	Conntrack int64 `json:"conntrack"`
	// Slabs is each slab cache, or nil when /proc/slabinfo cannot be
	// read.
	Slabs map[string]Slab `json:"-"`
}

// Slab is one slab cache of /proc/slabinfo.
type Slab struct {
	Objs    int64 // num_objs
	ObjSize int64 // bytes per object
}

// Bytes is the cache's size: objects × object size.
func (s Slab) Bytes() int64 { return s.Objs * s.ObjSize }

// ReadSystem reads the host's socket and kernel memory counters under Root.
// Slabs stays nil if slabinfo is not readable (it needs root); the rest
// must be there.
func ReadSystem() (System, error) {
	s := System{Conntrack: -1}
	b, err := os.ReadFile(filepath.Join(Root, "net", "sockstat"))
	if err != nil {
		return s, err
	}
	if err := ParseSockstat(b, &s); err != nil {
		return s, err
	}
	b, err = os.ReadFile(filepath.Join(Root, "meminfo"))
	if err != nil {
		return s, err
	}
	mi := ParseMeminfo(b)
	s.SlabBytes, s.SUnreclaimBytes, s.MemAvailable = mi["Slab"], mi["SUnreclaim"], mi["MemAvailable"]
	if b, err := os.ReadFile(filepath.Join(Root, "sys", "net", "netfilter", "nf_conntrack_count")); err == nil {
		if v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil {
			s.Conntrack = v
		}
	}
	if b, err := os.ReadFile(filepath.Join(Root, "slabinfo")); err == nil {
		s.Slabs, _ = ParseSlabinfo(b)
	}
	return s, nil
}

// ParseSockstat fills s's socket counters from the contents of
// /proc/net/sockstat.
func ParseSockstat(b []byte, s *System) error {
	seen := false
	for _, line := range strings.Split(string(b), "\n") {
		head, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		get := func(key string) int64 {
			for i := 0; i+1 < len(f); i += 2 {
				if f[i] == key {
					v, _ := strconv.ParseInt(f[i+1], 10, 64)
					return v
				}
			}
			return 0
		}
		switch head {
		case "sockets":
			s.SocketsUsed = get("used")
		case "TCP":
			seen = true
			s.TCPInUse, s.TCPOrphan, s.TCPTimeWait, s.TCPAlloc, s.TCPMemPages = get("inuse"), get("orphan"), get("tw"), get("alloc"), get("mem")
		}
	}
	if !seen {
		return fmt.Errorf("sockstat: no TCP line")
	}
	return nil
}

// ParseMeminfo returns the fields of /proc/meminfo in bytes (those given
// in kB) or as they are (counts).
func ParseMeminfo(b []byte) map[string]int64 {
	out := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		k, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		if len(f) > 1 && f[1] == "kB" {
			v *= 1024
		}
		out[k] = v
	}
	return out
}

// ParseSlabinfo returns each cache's objects and object size from the
// contents of /proc/slabinfo (version 2.x).
func ParseSlabinfo(b []byte) (map[string]Slab, error) {
	out := map[string]Slab{}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if len(line) == 0 || line[0] == '#' || bytes.HasPrefix(line, []byte("slabinfo")) {
			continue
		}
		f := strings.Fields(string(line))
		if len(f) < 4 {
			continue
		}
		objs, err1 := strconv.ParseInt(f[2], 10, 64)
		size, err2 := strconv.ParseInt(f[3], 10, 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("slabinfo: odd line %q", line)
		}
		out[f[0]] = Slab{Objs: objs, ObjSize: size}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("slabinfo: no caches")
	}
	return out, nil
}

// CountFDs is the number of open files of process pid under Root. Since
// Linux 6.2 the size of /proc/<pid>/fd says it without listing the
// directory; listing it (the fallback on older kernels) makes the kernel
// build a proc inode and a dentry for every descriptor, which then show
// in the slab as if the process's sockets cost that much more.
func CountFDs(pid int) (int, error) {
	dir := filepath.Join(Root, strconv.Itoa(pid), "fd")
	if fi, err := os.Stat(dir); err == nil && fi.Size() > 0 {
		return int(fi.Size()), nil
	}
	f, err := os.Open(dir)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n := 0
	for {
		names, err := f.Readdirnames(4096)
		n += len(names)
		if err != nil || len(names) == 0 {
			break
		}
	}
	return n, nil
}
