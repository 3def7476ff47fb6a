// Command services measures braid's service load balancing against the
// kube-proxy way, in one run: ClusterIP through sock-lb (issue 5) with 1,
// 1,000 and 10,000 services defined, vs kube-proxy-style iptables DNAT and
// vs connecting to the backend pod directly; and NodePort from a client
// outside the cluster through dsr (DSR and SNAT modes) vs an iptables
// DNAT+MASQUERADE NodePort (issue 6), with captures showing which way the
// replies go. It builds its own topology (netns bs-*, files under
// /run/braid-bench-services, cgroups under
// /sys/fs/cgroup/unified/braid-bench-services), removes it afterwards even
// on error or ctrl-C, prints the tables and, with -out, writes its section
// of BENCHMARKS.md. Run as root.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/braid-cni/braid/bench/internal/kit"
)

// section is this benchmark's part of BENCHMARKS.md.
const section = "bench/services"

type config struct {
	out       string
	repo      string
	reps      int
	duration  time.Duration // each connects/s and latency run
	cpu       string        // client and server share it
	counts    []int         // ClusterIP: services defined
	nice      int           // the bench's autogroup nice value while it runs
	command   string        // how this run was invoked, for the report
	startLoad string
}

func main() {
	if code, ok := kit.Subcommand(os.Args); ok {
		os.Exit(code)
	}
	var cfg config
	var counts string
	flag.StringVar(&cfg.out, "out", "", "write the report's Markdown section into this file (BENCHMARKS.md)")
	flag.StringVar(&cfg.repo, "repo", ".", "repository root (bin/, chain-configs/)")
	flag.IntVar(&cfg.reps, "reps", 5, "runs of each measurement per datapath, alternating datapaths; the median is reported")
	flag.DurationVar(&cfg.duration, "duration", 3*time.Second, "length of each connects/s and latency run")
	flag.StringVar(&cfg.cpu, "cpu", "0", "CPU that clients and servers are pinned to")
	flag.IntVar(&cfg.nice, "nice", -10, "nice value of the bench's scheduling group (its session's autogroup) while it runs: "+
		"on a shared machine, other sessions' work then disturbs the measurements less (0: leave it)")
	flag.StringVar(&counts, "services", "1,1000,10000", "ClusterIP phases: services defined in each, ascending (services are only added)")
	flag.Parse()
	var err error
	if cfg.counts, err = parseCounts(counts); err != nil || cfg.reps < 1 || cfg.duration < time.Second {
		fmt.Fprintln(os.Stderr, "services: need -reps >= 1, -duration >= 1s and -services ascending counts from 1 to 60000:", err)
		os.Exit(2)
	}
	cfg.command = invocation()
	os.Exit(execute(cfg))
}

func execute(cfg config) int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "services: must run as root (it creates network namespaces, cgroups and bpffs mounts)")
		return 1
	}
	repo, err := filepath.Abs(cfg.repo)
	if err != nil {
		fmt.Fprintln(os.Stderr, "services:", err)
		return 1
	}
	cfg.repo = repo
	// The first SIGINT/SIGTERM cancels the run; later ones are swallowed so
	// that the teardown always completes.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	sweep() // leftovers of an interrupted earlier run
	restore, err := setAutogroupNice(cfg.nice)
	if err != nil {
		fmt.Fprintln(os.Stderr, "services:", err)
		return 1
	}
	defer restore()
	res, err := run(ctx, cfg)
	if ctx.Err() != nil {
		fmt.Fprintln(os.Stderr, "services: interrupted; topology removed")
		return 130
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "services:", err)
		return 1
	}
	rep := res.render()
	fmt.Print(rep.text)
	if cfg.out != "" {
		if err := kit.PutSection(cfg.out, section, rep.markdown); err != nil {
			fmt.Fprintln(os.Stderr, "services:", err)
			return 1
		}
		fmt.Printf("\nwrote %s\n", cfg.out)
	}
	return 0
}

// setAutogroupNice gives the bench's session (its autogroup: the CFS
// group every process of the session shares, whatever each one's own nice
// value) the nice value n, and returns the function that restores it. A
// process's own nice value only weighs against its own session's.
func setAutogroupNice(n int) (restore func(), err error) {
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

// parseCounts parses "1,1000,10000": ascending, since a phase only adds
// services to the ones before; at most what the filler addresses hold.
func parseCounts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > maxServices || (len(out) > 0 && n <= out[len(out)-1]) {
			return nil, fmt.Errorf("-services %q", s)
		}
		out = append(out, n)
	}
	return out, nil
}

// invocation is the command that produced this run, as a user would type it.
func invocation() string {
	return strings.TrimSpace("go run ./bench/services " + strings.Join(os.Args[1:], " "))
}
