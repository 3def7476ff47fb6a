package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/braid-cni/braid/core/maps"
	"github.com/braid-cni/braid/plugins/counters"
)

// counterSet is a braid plugin's per-CPU counters map
// (<bpfRoot>/<plugin>/counters): the names of its indexes, in order.
type counterSet struct {
	plugin string
	names  []string
}

// The routing plugins' counters (plugins/counters).
var (
	vxlanCounters  = counterSet{"vxlan-tunnel", counters.Names("vxlan-tunnel")}
	nativeCounters = counterSet{"native-route", counters.Names("native-route")}
)

// read sums the counters of d's routing plugin over both its nodes.
func (d *datapath) readCounters() (map[string]uint64, error) {
	sum := map[string]uint64{}
	for _, n := range []*node{d.a, d.b} {
		v, err := maps.PinnedCounters(filepath.Join(n.bpfRoot(), d.counters.plugin, maps.CountersPin))
		if err != nil {
			return nil, fmt.Errorf("%s counters on %s: %w", d.counters.plugin, n.name, err)
		}
		for i, name := range d.counters.names {
			sum[name] += v[i]
		}
	}
	return sum, nil
}

// counted runs fn and keeps, for each braid datapath, its counters'
// increase over it.
func counted(dps []*datapath, fn func() error) error {
	before := map[*datapath]map[string]uint64{}
	for _, d := range dps {
		if d.counters == nil {
			continue
		}
		c, err := d.readCounters()
		if err != nil {
			return err
		}
		before[d] = c
	}
	if err := fn(); err != nil {
		return err
	}
	for d, b := range before {
		after, err := d.readCounters()
		if err != nil {
			return err
		}
		d.delta = map[string]uint64{}
		for name, v := range after {
			d.delta[name] = v - b[name]
		}
	}
	return nil
}

// dropped is the sum of the counters that count drops.
func (d *datapath) dropped() uint64 {
	var n uint64
	for name, v := range d.delta {
		if strings.HasPrefix(name, "drop_") || name == "not_configured" {
			n += v
		}
	}
	return n
}

// check says whether d's traffic took braid's eBPF path, from the counter
// increases over all measurements ("" for a kernel path).
func (d *datapath) check() string {
	c := d.delta
	switch d.counters {
	case &vxlanCounters:
		out := c["encap"] + c["pass_next"] + c["frag_needed"]
		in := c["decap_deliver"] + c["decap_to_stack"]
		return fmt.Sprintf("%s: pod egress: %d packets encapsulated in eBPF (tunnel key set, bpf_redirect to the VXLAN device), "+
			"%d left to the stack (pass_next %d, frag_needed %d): %s on the eBPF path; overlay ingress: %d delivered with "+
			"bpf_redirect_peer, %d to the stack: %s; %d dropped.", d.title, c["encap"], c["pass_next"]+c["frag_needed"],
			c["pass_next"], c["frag_needed"], share(c["encap"], out), c["decap_deliver"], c["decap_to_stack"],
			share(c["decap_deliver"], in), d.dropped())
	case &nativeCounters:
		fwd := c["fib_redirect"] + c["fib_redirect_neigh"]
		out := fwd + c["fib_to_stack"] + c["pass_next"]
		in := c["netdev_deliver"] + c["netdev_pass"]
		return fmt.Sprintf("%s: pod egress: %d packets forwarded in eBPF after bpf_fib_lookup (%d with bpf_redirect_neigh), "+
			"%d left to the stack (fib_to_stack %d, pass_next %d): %s on the eBPF path; node device ingress: %d delivered with "+
			"bpf_redirect_peer, %d passed on (ARP and the like): %s; %d dropped.", d.title, fwd, c["fib_redirect_neigh"],
			c["fib_to_stack"]+c["pass_next"], c["fib_to_stack"], c["pass_next"], share(fwd, out), c["netdev_deliver"],
			c["netdev_pass"], share(c["netdev_deliver"], in), d.dropped())
	}
	return ""
}

// share renders part/total as a percentage.
func share(part, total uint64) string {
	if total == 0 {
		return "no packets"
	}
	return fmt.Sprintf("%.2f%%", 100*float64(part)/float64(total))
}
