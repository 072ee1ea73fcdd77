package runner

import (
	"fmt"
	"os/exec"
	"runtime"
)

// CPUSplit gives the server and the load generator separate CPUs, so that
// neither steals the other's time and every server gets the same budget:
// a single-threaded server (uWS.js, ws) and a multi-threaded one (herald,
// the Go peers, which size themselves to the CPUs they may use) compete on
// equal terms, as they would on a dedicated host with remote clients.
type CPUSplit struct {
	Server, Load string // taskset CPU lists; "" leaves a side unpinned
}

// DefaultSplit puts the server on the first half of the CPUs and the load
// generators on the rest (server CPU 0 and load CPU 1 on two cores). With
// one CPU, or without taskset, nothing is pinned.
func DefaultSplit() CPUSplit {
	n := runtime.NumCPU()
	if n < 2 {
		return CPUSplit{}
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		return CPUSplit{}
	}
	half := n / 2
	return CPUSplit{Server: cpuRange(0, half-1), Load: cpuRange(half, n-1)}
}

func cpuRange(lo, hi int) string {
	if lo == hi {
		return fmt.Sprint(lo)
	}
	return fmt.Sprintf("%d-%d", lo, hi)
}

// Describe says what the split is, for the report.
func (s CPUSplit) Describe() string {
	if s.Server == "" && s.Load == "" {
		return "Servers and load generators were not pinned to CPUs."
	}
	return fmt.Sprintf("Each server ran pinned to CPU %s and the load generators to CPU %s (taskset), so every server had the same CPUs and the client never competed with it.", s.Server, s.Load)
}

// pin rewrites cmd to run under taskset with the given CPU list. taskset
// execs the program, so the process id (read for /proc sampling) is the
// program's own, and every thread it starts inherits the mask.
func pin(cmd *exec.Cmd, cpus string) {
	if cpus == "" {
		return
	}
	path, err := exec.LookPath("taskset")
	if err != nil {
		return
	}
	cmd.Args = append([]string{"taskset", "-c", cpus, cmd.Path}, cmd.Args[1:]...)
	cmd.Path = path
	cmd.Err = nil
}

// Pin runs cmd under taskset on cpus ("" leaves it unpinned).
func Pin(cmd *exec.Cmd, cpus string) { pin(cmd, cpus) }
