// Command bench measures braid's same-node datapath side by side with a
// plain veth pair (the limit) and the reference ptp plugin, and braid's CNI
// ADD+DEL with the reference bridge plugin. It builds its own topology
// (network namespaces bb-*, files under /run/braid-bench), removes it
// afterwards even on error or ctrl-C, prints a table and, with -out, writes
// the report as Markdown. Run as root: `make bench`.
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
	pods      int           // CNI ADD+DEL cycles per plugin
	cpu       string        // latency and connects/s: client and server share it
	tputCPUs  [2]string     // throughput: client, server
	only      string        // "cni": skip the datapath measurements (for iterating on ADD/DEL)
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
	flag.StringVar(&cfg.out, "out", "", "write the report as Markdown to this file")
	flag.StringVar(&cfg.repo, "repo", ".", "repository root (bin/, chain-configs/)")
	flag.IntVar(&cfg.reps, "reps", 5, "runs of each measurement per datapath, alternating datapaths; the median is reported")
	flag.DurationVar(&cfg.duration, "duration", 3*time.Second, "length of each latency, connects/s and throughput run")
	flag.IntVar(&cfg.pods, "pods", 30, "pods added and deleted per CNI plugin")
	flag.StringVar(&cfg.cpu, "cpu", "0", "CPU that latency and connects/s clients and servers are pinned to")
	flag.StringVar(&tput, "tput-cpus", "0,1", "CPUs of the iperf3 client and server")
	flag.IntVar(&cfg.nice, "nice", -10, "nice value of the bench's scheduling group (its session's autogroup) while it runs: "+
		"on a shared machine, other sessions' work then disturbs the measurements less (0: leave it)")
	flag.StringVar(&cfg.only, "only", "", `"cni": measure only CNI ADD+DEL, not the datapaths (no -out)`)
	flag.Parse()
	c, s, ok := strings.Cut(tput, ",")
	// A partial run must not replace the report's section in -out.
	onlyOK := cfg.only == "" || (cfg.only == "cni" && cfg.out == "")
	if !ok || cfg.reps < 1 || cfg.pods < 1 || cfg.duration < time.Second || !onlyOK {
		fmt.Fprintln(os.Stderr, "bench: need -tput-cpus client,server, -reps >= 1, -pods >= 1, -duration >= 1s, and -only cni without -out")
		os.Exit(2)
	}
	cfg.tputCPUs = [2]string{c, s}
	cfg.command = kit.Invocation("samenode")
	os.Exit(execute(cfg))
}

func execute(cfg config) int {
	repo, err := filepath.Abs(cfg.repo)
	if err != nil {
		fmt.Fprintln(os.Stderr, "samenode:", err)
		return 1
	}
	cfg.repo = repo
	return kit.Main("samenode", footprint, cfg.out, cfg.nice, func(ctx context.Context) (kit.Report, error) {
		res, err := runBench(ctx, cfg)
		if err != nil {
			return kit.Report{}, err
		}
		return res.render(), nil
	})
}
