package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/braid-cni/braid/bench/internal/kit"
)

// results holds every run, per datapath key (or CNI node name), in order.
type results struct {
	cfg       config
	started   time.Time
	finished  time.Time
	endLoad   string
	datapaths []*datapath
	rtt       map[string][]kit.RTT
	conns     map[string][]kit.ConnResult
	tput      map[string][]float64
	cniNodes  []*node
	cni       map[string][]cniTiming
	// The same cycles with RCU grace periods expedited node-wide; nil when
	// the kernel has no switch for it.
	cniExpedited map[string][]cniTiming
}

type cniTiming struct{ add, del time.Duration }

// runBench builds the topology, measures, and tears the topology down.
func runBench(ctx context.Context, cfg config) (res *results, err error) {
	cfg.startLoad = kit.LoadAvg()
	res = &results{cfg: cfg, started: time.Now(), rtt: map[string][]kit.RTT{}, conns: map[string][]kit.ConnResult{},
		tput: map[string][]float64{}, cni: map[string][]cniTiming{}}
	l, err := newLab(cfg.repo)
	if err != nil {
		return nil, err
	}
	defer l.close()

	kit.Progress("building the topology")
	ptp := &node{name: "ptp", index: 2, network: nsPrefix + "ptp"}
	braid := &node{name: "braid", index: 3, network: nsPrefix + "braid"}
	bridge := &node{name: "bridge", index: 4, network: nsPrefix + "bridge"}
	for _, n := range []*node{ptp, braid, bridge} {
		if err := l.addNode(ctx, n); err != nil {
			return nil, fmt.Errorf("node %s: %w", n.name, err)
		}
	}
	if cfg.only != "cni" {
		if err := l.measureDatapaths(ctx, cfg, res, ptp, braid); err != nil {
			return nil, err
		}
	}

	res.cniNodes = []*node{bridge, ptp, braid}
	kit.Progress("CNI ADD+DEL: %d pods per plugin, alternating plugins", cfg.pods)
	if res.cni, err = l.churn(ctx, res.cniNodes, cfg.pods, "a"); err != nil {
		return nil, err
	}
	kit.Progress("CNI ADD+DEL again with rcu_expedited=1")
	err = withRCUExpedited(func() (err error) {
		res.cniExpedited, err = l.churn(ctx, res.cniNodes, cfg.pods, "x")
		return err
	})
	if err != nil {
		return nil, err
	}
	res.finished, res.endLoad = time.Now(), kit.LoadAvg()
	return res, nil
}

// measureDatapaths attaches two pods per datapath and measures them all.
func (l *lab) measureDatapaths(ctx context.Context, cfg config, res *results, ptp, braid *node) error {
	plainDP, err := plainPair(ctx)
	if err != nil {
		return fmt.Errorf("plain veth pair: %w", err)
	}
	ptpDP, err := l.cniPair(ctx, ptp, "ptp + host-local")
	if err != nil {
		return fmt.Errorf("ptp pods: %w", err)
	}
	braidDP, err := l.cniPair(ctx, braid, "braid veth-ebpf")
	if err != nil {
		return fmt.Errorf("braid pods: %w", err)
	}
	res.datapaths = []*datapath{plainDP, ptpDP, braidDP}
	for _, d := range res.datapaths {
		if err := checkReachable(ctx, d); err != nil {
			return err
		}
	}
	return measureAll(ctx, cfg, res)
}

// measureAll runs every measurement cfg.reps times. Within a repetition
// the datapaths take turns, and the order rotates from one repetition to
// the next, so a drift in machine load spreads over all of them.
func measureAll(ctx context.Context, cfg config, res *results) error {
	dps := res.datapaths
	for rep := 0; rep < cfg.reps; rep++ {
		order := make([]*datapath, len(dps))
		for i := range dps {
			order[i] = dps[(i+rep)%len(dps)]
		}
		for _, d := range order {
			err := d.counted(func() error {
				r, err := kit.MeasureRTT(ctx, d.pair(cfg.cpu, cfg.cpu), false, kit.SockperfPort, cfg.duration)
				if err == nil {
					res.rtt[d.key] = append(res.rtt[d.key], r)
					kit.Progress("rep %d/%d  %-18s RTT p50 %6.2f µs  p99 %6.2f µs", rep+1, cfg.reps, d.title, r.P50, r.P99)
				}
				return err
			})
			if err != nil {
				return fmt.Errorf("%s latency: %w", d.title, err)
			}
		}
		for _, d := range order {
			err := d.counted(func() error {
				r, err := kit.MeasureConnects(ctx, d.pair(cfg.cpu, cfg.cpu), kit.ConnPort, false, cfg.duration)
				if err == nil {
					res.conns[d.key] = append(res.conns[d.key], r)
					kit.Progress("rep %d/%d  %-18s %8.0f connects/s (errors %d, slow %d)", rep+1, cfg.reps, d.title, r.Rate(), r.Errors, r.Slow)
				}
				return err
			})
			if err != nil {
				return fmt.Errorf("%s connects/s: %w", d.title, err)
			}
		}
		for _, d := range order {
			err := d.counted(func() error {
				g, err := kit.MeasureThroughput(ctx, d.pair(cfg.tputCPUs[0], cfg.tputCPUs[1]), cfg.duration)
				if err == nil {
					res.tput[d.key] = append(res.tput[d.key], g)
					kit.Progress("rep %d/%d  %-18s %6.2f Gbit/s", rep+1, cfg.reps, d.title, g)
				}
				return err
			})
			if err != nil {
				return fmt.Errorf("%s throughput: %w", d.title, err)
			}
		}
	}
	return nil
}

// churn times cnitool ADD then DEL of pods fresh pods on each node, the
// nodes taking turns (rotating who goes first). One unmeasured warm-up
// cycle per node comes first.
func (l *lab) churn(ctx context.Context, nodes []*node, pods int, run string) (map[string][]cniTiming, error) {
	for _, n := range nodes {
		for i := 0; i <= pods; i++ {
			if err := kit.Sh(ctx, "ip", "netns", "add", churnPod(n, run, i)); err != nil {
				return nil, err
			}
		}
	}
	out := map[string][]cniTiming{}
	for i := 0; i <= pods; i++ {
		for j := range nodes {
			n := nodes[(i+j)%len(nodes)]
			_, add, err := l.cniAdd(ctx, n, churnPod(n, run, i))
			if err != nil {
				return nil, err
			}
			del, err := l.cniDel(ctx, n, churnPod(n, run, i))
			if err != nil {
				return nil, err
			}
			if i > 0 {
				out[n.name] = append(out[n.name], cniTiming{add, del})
			}
		}
	}
	return out, nil
}

func churnPod(n *node, run string, i int) string {
	return fmt.Sprintf("%scni%s-%s-%02d", nsPrefix, run, n.name, i)
}

// rcuExpedited is the kernel's switch for expedited RCU grace periods.
const rcuExpedited = "/sys/kernel/rcu_expedited"

// withRCUExpedited runs fn with RCU grace periods expedited node-wide, and
// restores the setting. Every tcx attach and detach waits for a grace
// period (synchronize_rcu in the kernel's tcx code), as a veth's deletion
// does: the difference this makes to each chain is what those waits cost.
func withRCUExpedited(fn func() error) error {
	old, err := os.ReadFile(rcuExpedited)
	if err != nil {
		return fmt.Errorf("%s: %w", rcuExpedited, err)
	}
	if err := os.WriteFile(rcuExpedited, []byte("1"), 0o644); err != nil {
		return err
	}
	defer os.WriteFile(rcuExpedited, old, 0o644)
	return fn()
}
