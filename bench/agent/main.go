// Command agent measures braid agent with etcd on this machine: how long a
// `braid service add` and a node joining take to work on every node, and
// what the agent costs in CPU and memory with 100 simulated nodes and
// 10,000 services in etcd. It builds its own topology (network namespaces
// ba-*, files under /run/braid-bench-agent, cgroups ba-* under the cgroup2
// mount), removes it afterwards, prints the results and, with -out, puts
// them into that Markdown file as a section of their own (between markers;
// the rest of the file is kept). Run as root after `make build`:
//
//	go run ./bench/agent -out BENCHMARKS.md
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/braid-cni/braid/bench/internal/kit"
)

type config struct {
	repo     string
	out      string
	reps     int
	nodes    int // simulated nodes
	services int
	window   time.Duration // steady-state CPU sample
}

func main() {
	if len(os.Args) > 1 {
		if sub, ok := helpers[os.Args[1]]; ok {
			os.Exit(sub(os.Args[2:]))
		}
	}
	var cfg config
	flag.StringVar(&cfg.repo, "repo", ".", "repository root (bin/, chain-configs/)")
	flag.StringVar(&cfg.out, "out", "", "Markdown file to put the results in (its braid agent section)")
	flag.IntVar(&cfg.reps, "reps", 5, "service adds timed (median and max reported); node joins: min(reps, 3)")
	flag.IntVar(&cfg.nodes, "nodes", 100, "simulated nodes registered in etcd for the scale run")
	flag.IntVar(&cfg.services, "services", 10000, "services written to etcd for the scale run")
	flag.DurationVar(&cfg.window, "window", 30*time.Second, "steady-state CPU sampling window")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench/agent: must run as root (network namespaces, bpffs, cgroups)")
		os.Exit(1)
	}
	repo, err := filepath.Abs(cfg.repo)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cfg.repo = repo
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	l := &lab{repo: repo, ctx: ctx}
	res, err := run(l, cfg)
	if err != nil {
		l.logTails()
	}
	l.teardown()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/agent:", err)
		os.Exit(1)
	}
	md := res.markdown(cfg)
	fmt.Print(md)
	if cfg.out != "" {
		if err := kit.PutSection(cfg.out, "bench/agent", md); err != nil {
			fmt.Fprintln(os.Stderr, "bench/agent:", err)
			os.Exit(1)
		}
		fmt.Println("wrote", cfg.out)
	}
}
