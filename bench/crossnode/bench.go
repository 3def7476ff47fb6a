package main

import (
	"context"
	"fmt"
	"time"

	"github.com/braid-cni/braid/bench/internal/kit"
)

// results holds every run: runs[datapath key][figure name], in order.
type results struct {
	cfg       config
	started   time.Time
	finished  time.Time
	endLoad   string
	datapaths []*datapath
	runs      map[string]map[string][]float64
}

func (r *results) add(d *datapath, f figure, v float64) {
	if r.runs[d.key] == nil {
		r.runs[d.key] = map[string][]float64{}
	}
	r.runs[d.key][f.name] = append(r.runs[d.key][f.name], v)
}

// runBench builds the topology, measures, and tears the topology down.
func runBench(ctx context.Context, cfg config) (*results, error) {
	cfg.startLoad = kit.LoadAvg()
	res := &results{cfg: cfg, started: time.Now(), runs: map[string]map[string][]float64{}, datapaths: datapaths()}
	l, err := newLab(ctx, cfg.repo)
	if l != nil {
		defer l.close()
	}
	if err != nil {
		return nil, fmt.Errorf("underlay: %w", err)
	}
	for _, d := range res.datapaths {
		kit.Progress("building %s: nodes %s and %s", d.title, d.a.name, d.b.name)
		if err := l.build(ctx, d); err != nil {
			return nil, fmt.Errorf("%s: %w", d.title, err)
		}
		if err := checkReachable(ctx, d); err != nil {
			return nil, err
		}
	}
	err = counted(res.datapaths, func() error { return measureAll(ctx, cfg, res) })
	if err != nil {
		return nil, err
	}
	res.finished, res.endLoad = time.Now(), kit.LoadAvg()
	return res, nil
}

// step is one measurement of one datapath; it records its figures in res
// and returns a progress line.
type step func(ctx context.Context, d *datapath) (string, error)

// measureAll runs every measurement cfg.reps times. Within a repetition
// the datapaths take turns, and the order rotates from one repetition to
// the next, so a drift in machine load spreads over all of them.
func measureAll(ctx context.Context, cfg config, res *results) error {
	steps := []struct {
		what string
		run  step
	}{
		{"latency", func(ctx context.Context, d *datapath) (string, error) {
			r, err := kit.MeasureRTT(ctx, d.pair(cfg.cpu, cfg.cpu), false, kit.SockperfPort, cfg.duration)
			if err != nil {
				return "", err
			}
			res.add(d, figP50, r.P50)
			res.add(d, figP99, r.P99)
			return fmt.Sprintf("RTT p50 %6.2f µs  p99 %6.2f µs", r.P50, r.P99), nil
		}},
		{"connects/s", func(ctx context.Context, d *datapath) (string, error) {
			r, err := kit.MeasureConnects(ctx, d.pair(cfg.cpu, cfg.cpu), kit.ConnPort, false, cfg.duration)
			if err != nil {
				return "", err
			}
			res.add(d, figConns, r.Rate())
			return fmt.Sprintf("%8.0f connects/s (errors %d, slow %d)", r.Rate(), r.Errors, r.Slow), nil
		}},
		{"throughput", func(ctx context.Context, d *datapath) (string, error) {
			g, err := kit.MeasureThroughput(ctx, d.pair(cfg.tputCPUs[0], cfg.tputCPUs[1]), cfg.duration)
			if err != nil {
				return "", err
			}
			res.add(d, figTput, g)
			return fmt.Sprintf("%6.2f Gbit/s", g), nil
		}},
	}
	dps := res.datapaths
	for rep := 0; rep < cfg.reps; rep++ {
		for _, s := range steps {
			for i := range dps {
				d := dps[(i+rep)%len(dps)]
				line, err := s.run(ctx, d)
				if err != nil {
					return fmt.Errorf("%s %s: %w", d.title, s.what, err)
				}
				kit.Progress("rep %d/%d  %-20s %s", rep+1, cfg.reps, d.title, line)
			}
		}
	}
	return nil
}
