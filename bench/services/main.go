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
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/braid-cni/braid/bench/internal/kit"
)

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
	cfg.command = kit.Invocation("services")
	os.Exit(execute(cfg))
}

func execute(cfg config) int {
	repo, err := filepath.Abs(cfg.repo)
	if err != nil {
		fmt.Fprintln(os.Stderr, "services:", err)
		return 1
	}
	cfg.repo = repo
	return kit.Main("services", footprint, cfg.out, cfg.nice, func(ctx context.Context) (kit.Report, error) {
		res, err := run(ctx, cfg)
		if err != nil {
			return kit.Report{}, err
		}
		return res.render(), nil
	})
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
