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
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
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
	flag.Parse()
	c, s, ok := strings.Cut(tput, ",")
	if !ok || cfg.reps < 1 || cfg.duration < time.Second {
		fmt.Fprintln(os.Stderr, "crossnode: need -tput-cpus client,server, -reps >= 1, -duration >= 1s")
		os.Exit(2)
	}
	cfg.tputCPUs = [2]string{c, s}
	cfg.command = invocation()
	os.Exit(execute(cfg))
}

func execute(cfg config) int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "crossnode: must run as root (it creates network namespaces and mounts bpffs)")
		return 1
	}
	repo, err := filepath.Abs(cfg.repo)
	if err != nil {
		fmt.Fprintln(os.Stderr, "crossnode:", err)
		return 1
	}
	cfg.repo = repo
	// The first SIGINT/SIGTERM cancels the run; later ones are swallowed
	// (the handler stays installed), so the teardown always completes.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	sweep() // leftovers of an interrupted earlier run
	res, err := runBench(ctx, cfg)
	if ctx.Err() != nil {
		fmt.Fprintln(os.Stderr, "crossnode: interrupted; topology removed")
		return 130
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "crossnode:", err)
		return 1
	}
	report := res.render()
	fmt.Print(report.text)
	if cfg.out != "" {
		if err := kit.PutSection(cfg.out, "bench/crossnode", report.markdown); err != nil {
			fmt.Fprintln(os.Stderr, "crossnode:", err)
			return 1
		}
		fmt.Printf("\nwrote %s\n", cfg.out)
	}
	return 0
}

// invocation is the command that produced this run, as a user would type it.
func invocation() string {
	args := strings.Join(os.Args[1:], " ")
	cmd := strings.TrimSpace("go run ./bench/crossnode " + args)
	if os.Getenv("MAKELEVEL") != "" && args == "-out BENCHMARKS.md" {
		return "make bench  # " + cmd
	}
	return cmd
}
