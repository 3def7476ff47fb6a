package main

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/braid-cni/braid/bench/internal/kit"
)

// summary is the median of every datapath metric, and CNI means.
type summary struct {
	p50, p99, conns, tput map[string]float64
	bestP50               map[string]float64 // lowest p50 of any run: the path length with the least interference
	cni, cniExpedited     cniSummary
}

func (r *results) summarize() summary {
	s := summary{p50: map[string]float64{}, p99: map[string]float64{}, bestP50: map[string]float64{},
		conns: map[string]float64{}, tput: map[string]float64{}}
	for _, d := range r.datapaths {
		k := d.key
		s.p50[k] = kit.Median(kit.Pick(r.rtt[k], func(x kit.RTT) float64 { return x.P50 }))
		s.bestP50[k] = slices.Min(kit.Pick(r.rtt[k], func(x kit.RTT) float64 { return x.P50 }))
		s.p99[k] = kit.Median(kit.Pick(r.rtt[k], func(x kit.RTT) float64 { return x.P99 }))
		s.conns[k] = kit.Median(kit.Pick(r.conns[k], kit.ConnResult.Rate))
		s.tput[k] = kit.Median(r.tput[k])
	}
	s.cni = summarizeCNI(r.cniNodes, r.cni)
	s.cniExpedited = summarizeCNI(r.cniNodes, r.cniExpedited)
	return s
}

// cniSummary is the ADD, DEL and ADD+DEL means (ms) and the ADD+DEL
// median, per chain.
type cniSummary struct{ add, del, cycle, cycleMedian map[string]float64 }

func summarizeCNI(nodes []*node, timings map[string][]cniTiming) cniSummary {
	s := cniSummary{add: map[string]float64{}, del: map[string]float64{}, cycle: map[string]float64{}, cycleMedian: map[string]float64{}}
	for _, n := range nodes {
		t := timings[n.name]
		s.add[n.name] = kit.Mean(kit.Pick(t, func(x cniTiming) float64 { return kit.Ms(x.add) }))
		s.del[n.name] = kit.Mean(kit.Pick(t, func(x cniTiming) float64 { return kit.Ms(x.del) }))
		cycles := kit.Pick(t, func(x cniTiming) float64 { return kit.Ms(x.add + x.del) })
		s.cycle[n.name], s.cycleMedian[n.name] = kit.Mean(cycles), kit.Median(cycles)
	}
	return s
}

func (r *results) cniTable(title string, s cniSummary) kit.Table {
	t := kit.Table{Title: title,
		Header: []string{"plugin chain", "ADD ms (mean)", "DEL ms (mean)", "ADD+DEL ms (mean)", "ADD+DEL ms (median)", "vs bridge"}}
	for _, n := range r.cniNodes {
		t.Rows = append(t.Rows, []string{cniTitle(n.name), kit.F1(s.add[n.name]), kit.F1(s.del[n.name]),
			kit.F1(s.cycle[n.name]), kit.F1(s.cycleMedian[n.name]), kit.X(s.cycle[n.name] / s.cycle["bridge"])})
	}
	return t
}

func (r *results) render() kit.Report {
	s := r.summarize()
	cfg := r.cfg
	runs := fmt.Sprintf("median of %d runs of %s each", cfg.reps, cfg.duration)

	dp := kit.Table{Title: "Pod to pod (" + runs + ")",
		Header: []string{"datapath", "TCP RTT p50 µs", "TCP RTT p99 µs", "RTT p50 µs, best run", "connects/s", "throughput Gbit/s"}}
	for _, d := range r.datapaths {
		dp.Rows = append(dp.Rows, []string{d.title, kit.F2(s.p50[d.key]), kit.F2(s.p99[d.key]), kit.F2(s.bestP50[d.key]), kit.F0(s.conns[d.key]), kit.F2(s.tput[d.key])})
	}
	ratios := kit.Table{Title: "Ratios (RTT: lower is better; connects/s, throughput: higher is better)",
		Header: []string{"comparison", "RTT p50", "RTT p99", "RTT p50, best run", "connects/s", "throughput"}}
	for _, c := range [][2]string{{"braid", "plain"}, {"braid", "ptp"}, {"ptp", "plain"}} {
		ratios.Rows = append(ratios.Rows, []string{r.title(c[0]) + " / " + r.title(c[1]),
			kit.X(s.p50[c[0]] / s.p50[c[1]]), kit.X(s.p99[c[0]] / s.p99[c[1]]), kit.X(s.bestP50[c[0]] / s.bestP50[c[1]]),
			kit.X(s.conns[c[0]] / s.conns[c[1]]), kit.X(s.tput[c[0]] / s.tput[c[1]])})
	}
	cni := r.cniTable(fmt.Sprintf("CNI ADD+DEL through cnitool (%d pods per plugin, plugins alternating)", cfg.pods), s.cni)
	cniX := r.cniTable("The same with rcu_expedited=1 (RCU grace periods expedited node-wide)", s.cniExpedited)
	c, cx := s.cni.cycle, s.cniExpedited.cycle
	targets := kit.Table{Title: "Targets", Header: []string{"target", "measured", "verdict"}, Rows: [][]string{
		{"braid RTT p50 ≤ 1.05× plain veth", kit.X(s.p50["braid"] / s.p50["plain"]), kit.Verdict(s.p50["braid"] <= 1.05*s.p50["plain"])},
		{"braid RTT p50 below ptp", fmt.Sprintf("%s vs %s µs", kit.F2(s.p50["braid"]), kit.F2(s.p50["ptp"])), kit.Verdict(s.p50["braid"] < s.p50["ptp"])},
		{"braid connects/s ≥ 0.95× plain veth", kit.X(s.conns["braid"] / s.conns["plain"]), kit.Verdict(s.conns["braid"] >= 0.95*s.conns["plain"])},
		{"braid ADD+DEL no slower than bridge", fmt.Sprintf("%s vs %s ms", kit.F1(c["braid"]), kit.F1(c["bridge"])), kit.Verdict(c["braid"] <= c["bridge"])},
		{"(the same, grace periods expedited: what the tcx waits cost)", fmt.Sprintf("%s vs %s ms", kit.F1(cx["braid"]), kit.F1(cx["bridge"])), kit.Verdict(cx["braid"] <= cx["bridge"])},
	}}
	env := kit.Table{Title: "Environment", Header: []string{"", ""}, Rows: append([][]string{
		{"date", r.started.UTC().Format("2006-01-02 15:04 MST")},
		{"command", cfg.command},
		{"load average (1 5 15 min)", "start " + cfg.startLoad + ", end " + r.endLoad + " (the end includes the bench itself)"},
		{"wall time", r.finished.Sub(r.started).Round(time.Second).String()},
	}, kit.Machine()...)}
	tables := []kit.Table{dp, ratios, cni, cniX, targets}

	var text, md strings.Builder
	for _, t := range tables {
		text.WriteString(t.Text())
	}
	text.WriteString(r.datapathCheck() + "\n")
	if w := kit.LoadWarning(cfg.startLoad); w != "" {
		text.WriteString(w + "\n")
	}
	fmt.Fprintf(&text, "load average start %s, end %s; wall time %s\n", cfg.startLoad, r.endLoad,
		r.finished.Sub(r.started).Round(time.Second))

	md.WriteString("## Same node: veth-ebpf\n\n")
	md.WriteString("Generated by `" + cfg.command + "` (bench/samenode). Do not edit by hand: rerun it.\n\n")
	if w := kit.LoadWarning(cfg.startLoad); w != "" {
		md.WriteString("**" + w + "**\n\n")
	}
	for _, t := range append(tables, env) {
		md.WriteString(t.Markdown(3))
	}
	md.WriteString("### Datapath check\n\n" + r.datapathCheck() + "\n\n")
	md.WriteString(r.rawRuns().Markdown(3))
	md.WriteString(method(cfg))
	return kit.Report{Text: text.String(), Markdown: md.String()}
}

// datapathCheck says whether braid's same-node traffic took bpf_redirect_peer.
func (r *results) datapathCheck() string {
	for _, d := range r.datapaths {
		if d.counters == "" {
			continue
		}
		total := d.redirect + d.passed
		share := 0.0
		if total > 0 {
			share = 100 * float64(d.redirect) / float64(total)
		}
		return fmt.Sprintf("braid veth-ebpf counters over all its measurements: %d packets delivered with bpf_redirect_peer, "+
			"%d passed to the node's stack (%.1f%% redirected).", d.redirect, d.passed, share)
	}
	return ""
}

// rawRuns lists every run, so the medians can be checked.
func (r *results) rawRuns() kit.Table {
	t := kit.Table{Title: "Every run", Header: []string{"datapath", "RTT p50 µs", "RTT p99 µs", "connects/s", "Gbit/s"}}
	for _, d := range r.datapaths {
		rt := r.rtt[d.key]
		t.Rows = append(t.Rows, []string{d.title,
			kit.Join(kit.Pick(rt, func(x kit.RTT) float64 { return x.P50 }), kit.F2), kit.Join(kit.Pick(rt, func(x kit.RTT) float64 { return x.P99 }), kit.F2),
			kit.Join(kit.Pick(r.conns[d.key], kit.ConnResult.Rate), kit.F0), kit.Join(r.tput[d.key], kit.F2)})
	}
	return t
}

func (r *results) title(key string) string {
	for _, d := range r.datapaths {
		if d.key == key {
			return d.title
		}
	}
	return key
}

func cniTitle(node string) string {
	if node == "braid" {
		return "braid veth-ebpf (node-local.conflist)"
	}
	return node + " + host-local"
}
