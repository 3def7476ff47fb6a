// Command kubeproxy measures braid against a real kube-proxy, both fed by
// one real kube-apiserver (internal/kubetest) holding the same Services:
// ClusterIP connects/s and RTT through braid's sock-lb (the agent with
// --datastore kubernetes) and through kube-proxy in iptables and nftables
// modes, at 1 / 1,000 / 10,000 Services of 3 endpoints each; the time from
// an EndpointSlice change to the node enforcing it; and the agent's CPU,
// memory and time to converge from a start with every Service defined.
// Each node is a netns on an underlay bridge; kube-proxy runs inside its
// node's netns (nsenter), so its rules never reach the host's. It builds
// its own topology (netns bk-*, files under /run/braid-bench-kubeproxy,
// cgroups under /sys/fs/cgroup/unified/braid-bench-kubeproxy), removes it
// afterwards even on error or ctrl-C, prints the tables and, with -out,
// writes its section of BENCHMARKS.md. Run as root.
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
	duration  time.Duration
	cpu       string
	counts    []int
	changes   int
	nice      int
	command   string
	startLoad string
}

func main() {
	if code, ok := kit.Subcommand(os.Args); ok {
		os.Exit(code)
	}
	if len(os.Args) > 1 && os.Args[1] == "probe" {
		os.Exit(probe(os.Args[2:]))
	}
	var cfg config
	var counts string
	flag.StringVar(&cfg.out, "out", "", "write the report's Markdown section into this file (BENCHMARKS.md)")
	flag.StringVar(&cfg.repo, "repo", ".", "repository root (bin/, chain-configs/)")
	flag.IntVar(&cfg.reps, "reps", 3, "runs of each measurement per datapath and phase, datapaths alternating; the median is reported")
	flag.DurationVar(&cfg.duration, "duration", 2*time.Second, "length of each connects/s and latency run")
	flag.StringVar(&cfg.cpu, "cpu", "0", "CPU that clients and servers are pinned to")
	flag.StringVar(&counts, "services", "1,1000,10000", "phases: Services defined in each, ascending (Services are only added)")
	flag.IntVar(&cfg.changes, "changes", 5, "EndpointSlice changes timed per datapath")
	flag.IntVar(&cfg.nice, "nice", -10, "the bench's autogroup nice value while it runs (0: leave it)")
	flag.Parse()
	var err error
	if cfg.counts, err = parseCounts(counts); err != nil || cfg.reps < 1 || cfg.duration < time.Second || cfg.changes < 1 {
		fmt.Fprintln(os.Stderr, "kubeproxy: need -reps >= 1, -duration >= 1s, -changes >= 1 and -services ascending counts from 1 to 30000:", err)
		os.Exit(2)
	}
	cfg.command = kit.Invocation("kubeproxy")
	if cfg.repo, err = filepath.Abs(cfg.repo); err != nil {
		fmt.Fprintln(os.Stderr, "kubeproxy:", err)
		os.Exit(1)
	}
	os.Exit(kit.Main("kubeproxy", footprint, cfg.out, cfg.nice, func(ctx context.Context) (kit.Report, error) {
		res, err := run(ctx, cfg)
		if err != nil {
			return kit.Report{}, err
		}
		return res.render(), nil
	}))
}

func parseCounts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 30000 || (len(out) > 0 && n <= out[len(out)-1]) {
			return nil, fmt.Errorf("-services %q", s)
		}
		out = append(out, n)
	}
	return out, nil
}
