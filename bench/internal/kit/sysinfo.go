package kit

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Machine describes where the figures come from, as table rows.
func Machine() [][]string {
	var u unix.Utsname
	_ = unix.Uname(&u)
	kernel := unix.ByteSliceToString(u.Release[:]) + " " + unix.ByteSliceToString(u.Machine[:])
	return [][]string{
		{"kernel", kernel},
		{"OS", fileField("/etc/os-release", "PRETTY_NAME=", "\"")},
		{"CPU", fmt.Sprintf("%s, %d cores", fileField("/proc/cpuinfo", "model name", "\t: "), runtime.NumCPU())},
		{"memory", strings.Join(strings.Fields(fileField("/proc/meminfo", "MemTotal:", " ")), " ")},
		{"Go", runtime.Version()},
		{"sockperf", toolVersion("sockperf", "--version")},
		{"iperf3", toolVersion("iperf3", "--version")},
	}
}

// fileField is the rest of the first line of path starting with prefix,
// trimmed of cut characters.
func fileField(path, prefix, cut string) string {
	f, err := os.Open(path)
	if err != nil {
		return "?"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			return strings.Trim(rest, cut)
		}
	}
	return "?"
}

func toolVersion(name, flag string) string {
	out, err := In{}.Run(context.Background(), 5*time.Second, name, flag)
	if err != nil {
		return "?"
	}
	first, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
	return strings.TrimSpace(first)
}

// LoadAvg is the 1, 5 and 15 minute load averages.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// LoadWarning flags a run started on a busy machine: more runnable tasks
// than half the cores means other work shares the CPUs the measurements
// are pinned to. "" when the machine was quiet.
func LoadWarning(startLoad string) string {
	f := strings.Fields(startLoad)
	if len(f) == 0 {
		return ""
	}
	if v, err := strconv.ParseFloat(f[0], 64); err == nil && v > float64(runtime.NumCPU())/2 {
		return fmt.Sprintf("Warning: the machine was busy when the run started (1-minute load average %s, %d cores); the figures are noisier than on an idle machine.",
			f[0], runtime.NumCPU())
	}
	return ""
}

// SetAutogroupNice gives the bench's session (its autogroup: the CFS
// group every process of the session shares, whatever each one's own nice
// value) the nice value n, and returns the function that restores it. A
// process's own nice value only weighs against its own session's.
func SetAutogroupNice(n int) (restore func(), err error) {
	const path = "/proc/self/autogroup" // "/autogroup-82 nice 0"
	if n == 0 {
		return func() {}, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("autogroup (-nice 0 runs without): %w", err)
	}
	f := strings.Fields(string(b))
	if len(f) != 3 || f[1] != "nice" {
		return nil, fmt.Errorf("%s: %q", path, b)
	}
	if err := os.WriteFile(path, []byte(strconv.Itoa(n)), 0); err != nil {
		return nil, fmt.Errorf("set %s to %d (-nice 0 runs without): %w", path, n, err)
	}
	return func() { _ = os.WriteFile(path, []byte(f[2]), 0) }, nil
}
