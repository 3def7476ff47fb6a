// Command crossnode measures braid's two routing modes between pods on
// different nodes, side by side with the kernel paths they replace: braid
// vxlan-tunnel against a flannel-style kernel VXLAN (bridge, vxlan device,
// static FDB and neighbour entries), braid native-route against a
// host-gw-style kernel path (bridge, plain routes via the other node). Each
// datapath gets its own two nodes on one underlay. It builds its own topology
// (network namespaces bx-*, files under /run/braid-bench-crossnode), removes
// it afterwards even on error or ctrl-C, prints tables and, with -out,
// writes its section of BENCHMARKS.md. Run as root: `make bench`.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/braid-cni/braid/bench/internal/kit"
)

type config struct {
	out       string
	repo      string
	reps      int
	duration  time.Duration // each latency, connects/s and throughput run
	cpu       string        // latency and connects/s: client and server share it
	tputCPUs  [2]string     // throughput: client, server
	nice      int           // the bench session's autogroup nice value while it runs
	command   string        // how this run was invoked, for the report
	startLoad string
}

func main() {
	if code, ok := kit.Subcommand(os.Args); ok {
		os.Exit(code)
	}
	var cfg config
	var tput string
	flag.StringVar(&cfg.out, "out", "", "write the report as Markdown into this file (its bench/crossnode section)")
	flag.StringVar(&cfg.repo, "repo", ".", "repository root (bin/, chain-configs/)")
	flag.IntVar(&cfg.reps, "reps", 5, "runs of each measurement per datapath, alternating datapaths; the median is reported")
	flag.DurationVar(&cfg.duration, "duration", 3*time.Second, "length of each latency, connects/s and throughput run")
	flag.StringVar(&cfg.cpu, "cpu", "0", "CPU that latency and connects/s clients and servers are pinned to")
	flag.StringVar(&tput, "tput-cpus", "0,1", "CPUs of the iperf3 client and server")
	flag.IntVar(&cfg.nice, "nice", -10, "nice value of the bench's scheduling group (its session's autogroup) while it runs: "+
		"on a shared machine, other sessions' work then disturbs the measurements less (0: leave it)")
	flag.Parse()
	c, s, ok := strings.Cut(tput, ",")
	if !ok || cfg.reps < 1 || cfg.duration < time.Second {
		fmt.Fprintln(os.Stderr, "crossnode: need -tput-cpus client,server, -reps >= 1, -duration >= 1s")
		os.Exit(2)
	}
	cfg.tputCPUs = [2]string{c, s}
	cfg.command = kit.Invocation("crossnode")
	os.Exit(execute(cfg))
}

func execute(cfg config) int {
	repo, err := filepath.Abs(cfg.repo)
	if err != nil {
		fmt.Fprintln(os.Stderr, "crossnode:", err)
		return 1
	}
	cfg.repo = repo
	return kit.Main("crossnode", footprint, cfg.out, cfg.nice, func(ctx context.Context) (kit.Report, error) {
		res, err := runBench(ctx, cfg)
		if err != nil {
			return kit.Report{}, err
		}
		return res.render(), nil
	})
}
